"""RTMPose-m (mmpose 1.x, SimCC) end to end against mmpose 1.3.2 itself (tests/data/reference/rtmpose_m).

The reference network is the official AP-10K RTMPose-m with seeded random weights. For each case (two
real AP-10K images; ground-truth, fractional, off-image and float32 detector boxes) mmpose's
``inference_topdown`` gave the keypoints with and without the flip test of its config; its crops,
inputs and SimCC logits were recorded on the way. The tolerances are the issue's: logits within 1e-4
of their range, keypoints within 1e-3 px, on the CPU in torch and with ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
import torch

from pose.checkpoint import load_pose_checkpoint
from pose.estimator import Backend, PoseEstimator, PoseSettings
from pose.model import ARCHITECTURES, RTMPoseModel
from pose.transforms_v1 import normalize_crops

BACKENDS = [Backend.TORCH, Backend.ONNXRUNTIME]


@pytest.fixture(scope="module")
def loaded(rtmpose_checkpoint):
    with torch.inference_mode():
        return load_pose_checkpoint(rtmpose_checkpoint)


@pytest.fixture(scope="module", params=BACKENDS, ids=[b.value for b in BACKENDS])
def estimator(request, loaded, one_torch_thread):
    model, _, _ = loaded
    return PoseEstimator(model, PoseSettings(device="cpu", backend=request.param))


@pytest.fixture(scope="module")
def images(samples_dir, rtmpose_reference):
    names = {case["image"] for case in rtmpose_reference["cases"]}
    return {name: cv2.imread(str(samples_dir / "ap10k" / name)) for name in names}


def _logits(rtmpose_dir, name: str, suffix: str = "") -> np.ndarray:
    with np.load(rtmpose_dir / "simcc_logits.npz") as saved:
        return np.concatenate([saved[f"{name}_x{suffix}"], saved[f"{name}_y{suffix}"]], axis=-1)


def _reference_inputs(rtmpose_dir, rtmpose_reference) -> np.ndarray:
    crops = [cv2.imread(str(rtmpose_dir / case["crop"])) for case in rtmpose_reference["cases"]]
    return normalize_crops(np.stack(crops)[..., ::-1])


def _poses(estimator: PoseEstimator, image: np.ndarray, case: dict):
    if case["box_format"] == "xywh":  # as `animalpose pose --box X,Y,W,H` passes them
        return estimator.estimate_xywh(image, np.array([case["box"]]))
    return estimator(image, np.array([case["box"]], np.float32))  # a detector box


def test_the_checkpoint_loads_as_rtmpose_m(loaded, rtmpose_checkpoint):
    model, arch, input_size = loaded
    assert isinstance(model, RTMPoseModel) and not model.training
    assert arch == ARCHITECTURES["rtmpose_m"] and input_size == (256, 256)
    assert str(arch).startswith("CSPNeXt(widths=(96, 192, 384, 768), depths=(2, 4, 4, 2)")


def test_the_inputs_are_mmposes(estimator, images, rtmpose_reference):
    for case in rtmpose_reference["cases"]:
        image = images[case["image"]]
        if case["box_format"] == "xywh":
            batch = estimator.codec.prepare_xywh(image, np.array([case["box"]]), estimator.settings, clean=False)
        else:
            batch = estimator.codec.prepare_xyxy(image, np.array([case["box"]]), estimator.settings)
        digest = hashlib.sha256(batch.inputs[0].astype("<f4").tobytes()).hexdigest()
        assert digest == case["input_sha256"], case["name"]


@pytest.mark.parametrize("flip", [False, True], ids=["plain", "flip-test"])
def test_logits_within_1e4_of_their_range(estimator, flip, rtmpose_dir, rtmpose_reference):
    inputs = _reference_inputs(rtmpose_dir, rtmpose_reference)
    got = estimator.infer_with_flip(inputs) if flip else estimator.infer(inputs)
    assert got.shape == (len(inputs), 17, 1024) and got.dtype == np.float32
    for row, case in zip(got, rtmpose_reference["cases"]):
        expected = _logits(rtmpose_dir, case["name"], "_flip" if flip else "")
        span = float(expected.max() - expected.min())
        assert np.abs(row - expected).max() <= 1e-4 * span, case["name"]


@pytest.mark.parametrize("flip", [True, False], ids=["flip-test", "plain"])
def test_keypoints_within_1e3_px(estimator, flip, images, rtmpose_reference):
    run = estimator if flip else PoseEstimator(estimator.model, PoseSettings(device="cpu", flip_test=False,
                                                                              backend=estimator.backend))
    for case in rtmpose_reference["cases"]:
        poses = _poses(run, images[case["image"]], case)
        suffix = "_flip" if flip else ""
        assert poses.keypoints.shape == (1, 17, 3)
        np.testing.assert_allclose(poses.keypoints[0, :, :2], case["keypoints" + suffix], atol=1e-3, rtol=0,
                                   err_msg=case["name"])
        span = case["logit_range"][1] - case["logit_range"][0]
        np.testing.assert_allclose(poses.keypoints[0, :, 2], case["scores" + suffix], atol=1e-4 * span, rtol=0,
                                   err_msg=case["name"])


def test_a_batch_of_boxes_equals_one_at_a_time(estimator, images, rtmpose_reference):
    cases = [c for c in rtmpose_reference["cases"] if c["image"] == "000000037516.jpg"]
    together = estimator.estimate_xywh(images[cases[0]["image"]], np.array([c["box"] for c in cases]))
    for row, case in zip(together.keypoints, cases):
        np.testing.assert_allclose(row[:, :2], case["keypoints_flip"], atol=1e-3, rtol=0)
    x, y, w, h = cases[0]["box"]
    np.testing.assert_array_equal(together.boxes[0], [x, y, x + w, y + h])


def test_cli_box_gives_inference_topdown_with_the_flip_test(rtmpose_checkpoint, samples_dir, rtmpose_reference,
                                                            tmp_path):
    """``animalpose pose IMAGE --pose-weights W --box X,Y,W,H`` = ``inference_topdown(model, IMAGE,
    bboxes=[[X, Y, X+W, Y+H]], bbox_format='xyxy')`` with the config's flip test."""
    from app.cli import main

    cases = [c for c in rtmpose_reference["cases"] if c["box_format"] == "xywh" and c["image"] == "000000037516.jpg"]
    out = tmp_path / "poses.json"
    argv = ["pose", str(samples_dir / "ap10k" / cases[0]["image"]), "--pose-weights", str(rtmpose_checkpoint),
            "--device", "cpu", "--json", str(out)]
    for case in cases:
        argv += ["--box", ",".join(str(v) for v in case["box"])]
    assert main(argv) == 0
    animals = json.loads(out.read_text())["frames"][0]["animals"]
    for animal, case in zip(animals, cases, strict=True):
        np.testing.assert_allclose(np.asarray(animal["keypoints"])[:, :2], case["keypoints_flip"], atol=1e-3, rtol=0)
