"""PoseEstimator end to end: image + boxes -> keypoints, against mmpose 0.x's own output."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pose.codec import PostProcess
from pose.estimator import Backend, PoseEstimator, PoseSettings, prepare_inputs

JAGUAR_BOX = [66, 192, 1092, 512]  # GT box of 000000037516.jpg in test_ap10k.json
ANTELOPE_BOX = [408, 197, 429, 341]  # GT box of 000000000004.jpg


@pytest.fixture(scope="module")
def jaguar(samples_dir):
    return cv2.imread(str(samples_dir / "ap10k" / "000000037516.jpg"))


@pytest.fixture(scope="module", params=["hrnet_small", "resnet_small"])
def small(request, reference_dir):
    folder = reference_dir / request.param
    estimator = PoseEstimator.from_weights(folder / f"{request.param}_ap10k.pth")
    expected = json.loads((folder / "keypoints_e2e.json").read_text())
    return estimator, expected


def test_reproduces_mmpose_keypoints(small, jaguar):
    estimator, expected = small
    poses = estimator.estimate_xywh(jaguar, np.array([JAGUAR_BOX]))
    ref = np.asarray(expected["keypoints_xy_score"], np.float32)
    assert poses.keypoints.shape == (1, 17, 3)
    np.testing.assert_allclose(poses.keypoints[0, :, :2], ref[:, :2], atol=1e-3)
    np.testing.assert_allclose(poses.keypoints[0, :, 2], ref[:, 2], rtol=1e-4)


def test_prepared_input_is_the_reference_input(jaguar, reference_dir):
    batch = prepare_inputs(jaguar, np.array([JAGUAR_BOX]), PoseSettings())
    expected = np.load(reference_dir / "preprocess" / "000000037516_input.npy")
    np.testing.assert_array_equal(batch.inputs, expected)
    np.testing.assert_array_equal(batch.center[0], [611.5, 447.5])


def test_batch_equals_one_at_a_time(small, jaguar):
    estimator, _ = small
    boxes = np.array([JAGUAR_BOX, [100, 100, 300, 200], [900, 600, 299, 266]], np.float32)
    together = estimator.estimate_xywh(jaguar, boxes)
    alone = np.concatenate([estimator.estimate_xywh(jaguar, b[None]).keypoints for b in boxes])
    np.testing.assert_allclose(together.keypoints, alone, atol=2e-3, rtol=1e-4)
    np.testing.assert_allclose(together.boxes[0], [66, 192, 66 + 1092, 192 + 512])


def test_xyxy_call_follows_mmpose_detector_convention(small, jaguar):
    estimator, _ = small
    xyxy = np.array([[66, 192, 1157, 703]], np.float32)  # inclusive box: w = 1157 - 66 + 1 = 1092
    poses = estimator(jaguar, xyxy)
    direct = estimator.estimate_xywh(jaguar, np.array([[66, 192, 1092, 512]]), clean=False)
    np.testing.assert_array_equal(poses.keypoints, direct.keypoints)
    np.testing.assert_array_equal(poses.boxes, xyxy)


def test_no_boxes_and_degenerate_boxes(small, jaguar):
    estimator, _ = small
    assert estimator(jaguar, np.zeros((0, 4))).keypoints.shape == (0, 17, 3)
    out = estimator.estimate_xywh(jaguar, np.array([[5000, 5000, 10, 10], [10, 10, 0, 0]]))
    assert out.keypoints.shape == (2, 17, 3) and np.isfinite(out.keypoints).all()


def test_no_flip_differs_and_other_decoders_run(reference_dir, jaguar):
    weights = reference_dir / "hrnet_small" / "hrnet_small_ap10k.pth"
    flip = PoseEstimator.from_weights(weights).estimate_xywh(jaguar, np.array([JAGUAR_BOX]))
    for settings in (
        PoseSettings(flip_test=False),
        PoseSettings(post_process=PostProcess.DARK),
        PoseSettings(post_process=PostProcess.UDP),
        PoseSettings(post_process=PostProcess.NONE),
    ):
        out = PoseEstimator.from_weights(weights, settings).estimate_xywh(jaguar, np.array([JAGUAR_BOX]))
        assert out.keypoints.shape == (1, 17, 3) and np.isfinite(out.keypoints).all()
        assert not np.array_equal(out.keypoints, flip.keypoints)


def test_onnxruntime_backend_matches_torch(reference_dir, jaguar):
    weights = reference_dir / "resnet_small" / "resnet_small_ap10k.pth"
    boxes = np.array([JAGUAR_BOX, [100, 100, 300, 200]], np.float32)
    torch_out = PoseEstimator.from_weights(weights).estimate_xywh(jaguar, boxes)
    ort = PoseEstimator.from_weights(weights, PoseSettings(backend=Backend.ONNXRUNTIME))
    ort_out = ort.estimate_xywh(jaguar, boxes)
    np.testing.assert_allclose(ort_out.keypoints[..., 2], torch_out.keypoints[..., 2], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ort_out.keypoints[..., :2], torch_out.keypoints[..., :2], atol=0.05)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_size": (250, 256)},
        {"kernel": 4},
        {"padding": 0.0},
        {"device": "tpu"},
        {"max_batch": 0},
    ],
)
def test_settings_are_validated(kwargs):
    with pytest.raises(ValueError):
        PoseSettings(**kwargs)


def test_a_checkpoint_runs_at_the_input_size_it_was_trained_at(reference_dir, jaguar, tmp_path):
    from pose.checkpoint import load_pose_model, save_checkpoint

    model, _ = load_pose_model(reference_dir / "hrnet_small" / "hrnet_small_ap10k.pth")
    save_checkpoint(model, tmp_path / "trained_at_128.pth", meta={"input_size": [128, 128]})
    recorded = PoseEstimator.from_weights(tmp_path / "trained_at_128.pth")
    assert recorded.settings.input_size == (128, 128)
    assert prepare_inputs(jaguar, np.array([JAGUAR_BOX]), recorded.settings).inputs.shape == (1, 3, 128, 128)
    assert recorded.estimate_xywh(jaguar, np.array([JAGUAR_BOX])).keypoints.shape == (1, 17, 3)
    explicit = PoseEstimator.from_weights(tmp_path / "trained_at_128.pth", PoseSettings(input_size=(192, 192)),
                                          checkpoint_input_size=False)
    assert explicit.settings.input_size == (192, 192)
    official = PoseEstimator.from_weights(reference_dir / "hrnet_small" / "hrnet_small_ap10k.pth")
    assert official.settings.input_size == (256, 256)


def test_tf32_block_sets_and_restores_the_process_wide_flag():
    import torch

    from pose.estimator import cudnn_tf32

    assert PoseSettings().tf32 is False  # true float32 on CUDA unless asked (docs/gpu.md)
    before = torch.backends.cudnn.allow_tf32
    with pytest.raises(RuntimeError, match="inside"), cudnn_tf32(not before):
        assert torch.backends.cudnn.allow_tf32 is (not before)
        raise RuntimeError("inside")
    assert torch.backends.cudnn.allow_tf32 is before
