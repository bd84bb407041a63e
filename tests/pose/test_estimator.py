"""PoseEstimator end to end: image + boxes -> keypoints, against mmpose 0.x's own output."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from pose.codec import PostProcess
from pose.estimator import (
    Backend,
    DeviceNetwork,
    Execution,
    PoseEstimator,
    PoseSettings,
    Precision,
    network_forward,
    prepare_inputs,
    resolve_execution,
)
from pose.graphs import batch_buckets, capture_eager

#: The torch path on the CPU (the default, AUTO, runs ONNX Runtime there).
TORCH = PoseSettings(backend=Backend.TORCH)

JAGUAR_BOX = [66, 192, 1092, 512]  # GT box of 000000037516.jpg in test_ap10k.json
ANTELOPE_BOX = [408, 197, 429, 341]  # GT box of 000000000004.jpg


@pytest.fixture(scope="module")
def jaguar(samples_dir):
    return cv2.imread(str(samples_dir / "ap10k" / "000000037516.jpg"))


@pytest.fixture(scope="module", params=["hrnet_small", "resnet_small"])
def small(request, reference_dir):
    folder = reference_dir / request.param
    estimator = PoseEstimator.from_weights(folder / f"{request.param}_ap10k.pth", PoseSettings(backend=Backend.TORCH))
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
    batch = prepare_inputs(jaguar, np.array([JAGUAR_BOX]), PoseSettings(backend=Backend.TORCH))
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
    flip = PoseEstimator.from_weights(weights, TORCH).estimate_xywh(jaguar, np.array([JAGUAR_BOX]))
    for settings in (
        PoseSettings(backend=Backend.TORCH, flip_test=False),
        PoseSettings(backend=Backend.TORCH, post_process=PostProcess.DARK),
        PoseSettings(backend=Backend.TORCH, post_process=PostProcess.UDP),
        PoseSettings(backend=Backend.TORCH, post_process=PostProcess.NONE),
    ):
        out = PoseEstimator.from_weights(weights, settings).estimate_xywh(jaguar, np.array([JAGUAR_BOX]))
        assert out.keypoints.shape == (1, 17, 3) and np.isfinite(out.keypoints).all()
        assert not np.array_equal(out.keypoints, flip.keypoints)


def test_onnxruntime_backend_matches_torch(reference_dir, jaguar):
    weights = reference_dir / "resnet_small" / "resnet_small_ap10k.pth"
    boxes = np.array([JAGUAR_BOX, [100, 100, 300, 200]], np.float32)
    torch_out = PoseEstimator.from_weights(weights, PoseSettings(backend=Backend.TORCH)).estimate_xywh(jaguar, boxes)
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
        {"precision": "half"},
        {"precision": None},
    ],
)
def test_settings_are_validated(kwargs):
    with pytest.raises(ValueError):
        PoseSettings(backend=Backend.TORCH, **kwargs)


def test_a_checkpoint_runs_at_the_input_size_it_was_trained_at(reference_dir, jaguar, tmp_path):
    from pose.checkpoint import load_pose_model, save_checkpoint

    model, _ = load_pose_model(reference_dir / "hrnet_small" / "hrnet_small_ap10k.pth")
    save_checkpoint(model, tmp_path / "trained_at_128.pth", meta={"input_size": [128, 128]})
    recorded = PoseEstimator.from_weights(tmp_path / "trained_at_128.pth", PoseSettings(backend=Backend.TORCH))
    assert recorded.settings.input_size == (128, 128)
    assert prepare_inputs(jaguar, np.array([JAGUAR_BOX]), recorded.settings).inputs.shape == (1, 3, 128, 128)
    assert recorded.estimate_xywh(jaguar, np.array([JAGUAR_BOX])).keypoints.shape == (1, 17, 3)
    explicit = PoseEstimator.from_weights(tmp_path / "trained_at_128.pth", PoseSettings(input_size=(192, 192)),
                                          checkpoint_input_size=False)
    assert explicit.settings.input_size == (192, 192)
    official = PoseEstimator.from_weights(reference_dir / "hrnet_small" / "hrnet_small_ap10k.pth", TORCH)
    assert official.settings.input_size == (256, 256)


def test_tf32_block_sets_and_restores_the_process_wide_flag():
    from pose.estimator import cudnn_tf32

    assert PoseSettings(backend=Backend.TORCH).tf32 is False  # true float32 on CUDA unless asked (docs/gpu.md)
    before = torch.backends.cudnn.allow_tf32
    with pytest.raises(RuntimeError, match="inside"), cudnn_tf32(not before):
        assert torch.backends.cudnn.allow_tf32 is (not before)
        raise RuntimeError("inside")
    assert torch.backends.cudnn.allow_tf32 is before


@pytest.mark.parametrize(
    ("value", "expected"), [("exact", Precision.EXACT), ("fast", Precision.FAST), (Precision.FAST, Precision.FAST)]
)
def test_precision_setting_takes_the_enum_or_its_value(value, expected):
    assert PoseSettings(backend=Backend.TORCH, precision=value).precision is expected
    assert PoseSettings().precision is Precision.EXACT and PoseSettings().cuda_graphs is True
    assert PoseSettings().backend is Backend.AUTO and PoseSettings().device == "auto"


@pytest.mark.parametrize(
    ("backend", "device", "cuda_graphs", "expected"),
    [
        (Backend.TORCH, "cpu", True, Execution.HOST),
        (Backend.TORCH, "cpu", False, Execution.HOST),
        (Backend.ONNXRUNTIME, "cpu", True, Execution.ONNXRUNTIME),
        (Backend.ONNXRUNTIME, "cuda", True, Execution.ONNXRUNTIME),
        (Backend.TORCH, "cuda", True, Execution.DEVICE_GRAPHS),
        (Backend.TORCH, "cuda:1", True, Execution.DEVICE_GRAPHS),
        (Backend.TORCH, "cuda", False, Execution.DEVICE_EAGER),
    ],
)
def test_execution_per_backend_device_and_graph_setting(backend, device, cuda_graphs, expected):
    assert resolve_execution(backend, device, cuda_graphs) is expected


def test_execution_needs_a_resolved_backend():
    with pytest.raises(ValueError, match="resolve"):
        resolve_execution(Backend.AUTO, "cpu", True)


@pytest.fixture(scope="module")
def hrnet_small(reference_dir):
    return PoseEstimator.from_weights(reference_dir / "hrnet_small" / "hrnet_small_ap10k.pth", TORCH)


def test_cpu_runs_the_host_path_and_fast_equals_exact_there(reference_dir, hrnet_small, jaguar):
    weights = reference_dir / "hrnet_small" / "hrnet_small_ap10k.pth"
    fast = PoseEstimator.from_weights(
        weights, PoseSettings(backend=Backend.TORCH, precision=Precision.FAST, half=True, tf32=True))
    assert hrnet_small.execution is Execution.HOST and fast.execution is Execution.HOST
    assert not fast.uses_graphs and not fast.half and next(fast.model.parameters()).dtype == torch.float32
    boxes = np.array([JAGUAR_BOX, [100, 100, 300, 200]], np.float32)
    np.testing.assert_array_equal(fast.estimate_xywh(jaguar, boxes).keypoints,
                                  hrnet_small.estimate_xywh(jaguar, boxes).keypoints)


THREE_BOXES = np.array([JAGUAR_BOX, [100, 100, 300, 200], [900, 600, 299, 266]], np.float32)


def test_device_path_equals_the_host_path_on_the_cpu(hrnet_small, jaguar):
    # The CUDA path (crops up once, mirrored and merged on the device, network through the graph
    # runner) run on the CPU: eagerly it is the host path exactly; with stand-in graphs the batches
    # (3 crops, 6 with the flip test) go through bucket buffers, which changes nothing but, at most,
    # float rounding.
    inputs = prepare_inputs(jaguar, THREE_BOXES, hrnet_small.settings).inputs
    host_flip, host = hrnet_small.heatmaps_with_flip(inputs), hrnet_small.infer_heatmaps(inputs)
    forward = network_forward(hrnet_small.model, hrnet_small.plan)
    eager = DeviceNetwork(forward, "cpu", batch_buckets(64), capture=None)
    np.testing.assert_array_equal(eager.heatmaps_with_flip(inputs), host_flip)
    np.testing.assert_array_equal(eager.heatmaps(inputs), host)
    graphed = DeviceNetwork(forward, "cpu", batch_buckets(64), capture=capture_eager)
    np.testing.assert_allclose(graphed.heatmaps_with_flip(inputs), host_flip, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(graphed.heatmaps(inputs), host, rtol=1e-6, atol=1e-7)
    assert graphed.uses_graphs and sorted(key[0] for key in graphed.runner.graphs) == [3, 6]
    padded = DeviceNetwork(forward, "cpu", (1, 2, 4, 8), capture=capture_eager)  # 6 crops padded to 8
    np.testing.assert_allclose(padded.heatmaps_with_flip(inputs), host_flip, rtol=1e-6, atol=1e-7)


def test_device_path_chunks_large_batches(hrnet_small, jaguar):
    inputs = np.repeat(prepare_inputs(jaguar, THREE_BOXES[:1], hrnet_small.settings).inputs, 5, axis=0)
    forward = network_forward(hrnet_small.model, hrnet_small.plan)
    small_buckets = DeviceNetwork(forward, "cpu", batch_buckets(4), capture=capture_eager)
    out = small_buckets.heatmaps_with_flip(inputs)  # 10 crops: buckets 4, 4 and 2
    np.testing.assert_allclose(out, hrnet_small.heatmaps_with_flip(inputs), rtol=1e-6, atol=1e-7)
    assert sorted(key[0] for key in small_buckets.runner.graphs) == [2, 4]


def test_device_path_flip_test_needs_the_ap10k_keypoints():
    network = DeviceNetwork(lambda x: torch.zeros(len(x), 5, 4, 4), "cpu", (1, 2), capture=capture_eager)
    with pytest.raises(ValueError, match="flip"):
        network.heatmaps_with_flip(np.zeros((1, 3, 16, 16), np.float32))


def test_the_cuda_wiring_falls_back_to_eager_when_capture_fails(hrnet_small, jaguar, monkeypatch, caplog):
    # The CUDA path forced onto the CPU: the real capture (CUDA only) fails there, which must leave the
    # estimator working eagerly, with one warning, and giving the host path's heatmaps.
    import pose.estimator

    monkeypatch.setattr(pose.estimator, "resolve_execution", lambda *args: Execution.DEVICE_GRAPHS)
    estimator = PoseEstimator(hrnet_small.model, hrnet_small.settings)
    assert estimator.uses_graphs  # nothing captured yet
    inputs = prepare_inputs(jaguar, THREE_BOXES, hrnet_small.settings).inputs
    for _ in range(2):
        np.testing.assert_array_equal(estimator.heatmaps_with_flip(inputs), hrnet_small.heatmaps_with_flip(inputs))
    assert not estimator.uses_graphs
    assert sum("capture of the pose network failed" in r.getMessage() for r in caplog.records) == 1


# --- an mmpose 1.x SimCC model (RTMPose): the model's codec picks the path -------------------------------------------

def _small_rtmpose():
    from pose.model import RTMPoseArchitecture, build_model

    torch.manual_seed(0)
    arch = RTMPoseArchitecture(input_size=(64, 96), widths=(8, 16, 32, 64), depths=(1, 1, 1, 1), stem_width=8,
                               hidden_dims=16, attention_dims=8)
    return build_model(arch).eval()


@pytest.fixture(scope="module")
def small_rtmpose():
    return PoseEstimator(_small_rtmpose(), PoseSettings(backend=Backend.TORCH, input_size=(64, 96)))


def test_an_rtmpose_model_runs_only_at_its_input_size():
    with pytest.raises(ValueError, match="input_size must be 64x96"):
        PoseEstimator(_small_rtmpose(), TORCH)


def test_from_weights_runs_rtmpose_at_its_size_whatever_the_settings(tmp_path):
    from pose.checkpoint import save_checkpoint

    save_checkpoint(_small_rtmpose(), tmp_path / "rtm.pth")
    for flag in (True, False):
        estimator = PoseEstimator.from_weights(tmp_path / "rtm.pth", PoseSettings(input_size=(128, 128)),
                                               checkpoint_input_size=flag)
        assert estimator.settings.input_size == (64, 96) and estimator.codec.bins == (128, 192)


def test_rtmpose_device_path_equals_the_host_path_on_the_cpu(small_rtmpose, jaguar):
    batch = small_rtmpose.codec.prepare_xywh(jaguar, THREE_BOXES, small_rtmpose.settings, clean=False)
    host_flip = small_rtmpose.infer_with_flip(batch.inputs)
    forward = network_forward(small_rtmpose.model, small_rtmpose.plan)
    eager = DeviceNetwork(forward, "cpu", batch_buckets(64), capture=None, codec=small_rtmpose.codec)
    np.testing.assert_array_equal(eager.outputs_with_flip(batch.inputs), host_flip)
    graphed = DeviceNetwork(forward, "cpu", (1, 2, 4, 8), capture=capture_eager, codec=small_rtmpose.codec)
    np.testing.assert_allclose(graphed.outputs_with_flip(batch.inputs), host_flip, rtol=1e-6, atol=1e-6)


def test_rtmpose_boxes_are_not_cleaned_unless_asked(small_rtmpose, jaguar):
    off_image = np.array([[-50.5, 600.0, 400.0, 400.0]])  # leaves the 1200x867 image left and below
    as_given = small_rtmpose.estimate_xywh(jaguar, off_image)
    cleaned = small_rtmpose.estimate_xywh(jaguar, off_image, clean=True)
    assert not np.array_equal(as_given.keypoints, cleaned.keypoints)
    unclean = small_rtmpose.estimate_xywh(jaguar, off_image, clean=False)
    np.testing.assert_array_equal(as_given.keypoints, unclean.keypoints)
    np.testing.assert_array_equal(as_given.boxes, [[-50.5, 600.0, 349.5, 1000.0]])


def test_rtmpose_detector_boxes_are_xyxy_as_given(small_rtmpose, jaguar):
    xyxy = np.array([[66, 192, 1158, 704]], np.float32)
    np.testing.assert_array_equal(small_rtmpose(jaguar, xyxy).keypoints,
                                  small_rtmpose.estimate_xywh(jaguar, np.array([[66, 192, 1092, 512]])).keypoints)


def test_rtmpose_no_boxes_and_degenerate_boxes(small_rtmpose, jaguar):
    assert small_rtmpose(jaguar, np.zeros((0, 4))).keypoints.shape == (0, 17, 3)
    assert small_rtmpose.estimate_xywh(jaguar, np.zeros((0, 4))).keypoints.shape == (0, 17, 3)
    out = small_rtmpose.estimate_xywh(jaguar, np.array([[5000, 5000, 10, 10], [10, 10, 0, 0]]))
    assert out.keypoints.shape == (2, 17, 3) and np.isfinite(out.keypoints).all()
