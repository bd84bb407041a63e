"""The CUDA paths: the pose network against mmpose, float16 and TF32, batches against the CPU, the pipeline,
the CLI and mixed-precision training on a GPU.

Skipped where torch sees no CUDA device (CI has none); run on a machine with a GPU with
``python -m pytest tests/test_cuda.py`` (see ``bench/gpu_run.sh``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pose.estimator import PoseEstimator, PoseSettings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

BOXES = np.array([[66, 192, 1092, 512],  # the jaguar's GT box (x, y, w, h) and two others
                  [100, 100, 300, 200], [900, 600, 299, 266]], np.float32)


@pytest.fixture(scope="module")
def jaguar(samples_dir: Path) -> np.ndarray:
    return cv2.imread(str(samples_dir / "ap10k" / "000000037516.jpg"))


@pytest.fixture(scope="module", params=["hrnet_small", "resnet_small"])
def reference(request, reference_dir: Path) -> tuple[Path, Path]:
    """The reference network's checkpoint and the folder of mmpose's outputs."""
    folder = reference_dir / request.param
    return folder / f"{request.param}_ap10k.pth", folder


def _network_outputs(weights: Path, settings: PoseSettings, reference_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps, without and with the flip test, of mmpose's own preprocessed input (no OpenCV crop: the
    machine's OpenCV may not be the 4.x that mmpose's crops are reproduced with)."""
    estimator = PoseEstimator.from_weights(weights, settings)
    inputs = np.load(reference_dir / "preprocess" / "000000037516_input.npy")
    return estimator.infer_heatmaps(inputs), estimator.heatmaps_with_flip(inputs)


def _error(actual: np.ndarray, reference: np.ndarray) -> float:
    """Largest error relative to the reference's peak."""
    return float(np.abs(actual - reference).max() / np.abs(reference).max())


def test_float32_on_the_gpu_reproduces_mmpose(reference, reference_dir: Path) -> None:
    weights, folder = reference
    heatmaps, flipped = _network_outputs(weights, PoseSettings(device="cuda"), reference_dir)
    assert _error(heatmaps, np.load(folder / "heatmaps.npy")) < 1e-4  # the CPU tests' tolerance
    assert _error(flipped, np.load(folder / "heatmaps_flip.npy")) < 1e-4


def test_float16_and_tf32_stay_close_and_restore_the_tf32_flag(reference, reference_dir: Path) -> None:
    weights, folder = reference
    expected = np.load(folder / "heatmaps.npy")
    for settings in (PoseSettings(device="cuda", half=True), PoseSettings(device="cuda", tf32=True)):
        heatmaps, _ = _network_outputs(weights, settings, reference_dir)
        assert np.isfinite(heatmaps).all()
        # Measured on an H100: float16 5.0e-2 and TF32 3.0e-2 at worst (resnet_small), float32 1e-5.
        assert _error(heatmaps, expected) < 0.1, settings
    assert torch.backends.cudnn.allow_tf32 is True  # the estimator restores PyTorch's process-wide flag


def test_gpu_batch_equals_one_at_a_time_and_the_cpu(reference, jaguar) -> None:
    weights, _ = reference
    gpu = PoseEstimator.from_weights(weights, PoseSettings(device="cuda"))
    cpu = PoseEstimator.from_weights(weights, PoseSettings(device="cpu"))
    together = gpu.estimate_xywh(jaguar, BOXES).keypoints
    alone = np.concatenate([gpu.estimate_xywh(jaguar, b[None]).keypoints for b in BOXES])
    np.testing.assert_allclose(together, alone, atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(together, cpu.estimate_xywh(jaguar, BOXES).keypoints, atol=2e-3, rtol=1e-3)


def test_float16_model_really_runs_in_float16(reference_dir: Path) -> None:
    weights = reference_dir / "hrnet_small" / "hrnet_small_ap10k.pth"
    estimator = PoseEstimator.from_weights(weights, PoseSettings(device="cuda", half=True))
    assert next(estimator.model.parameters()).dtype == torch.float16
    heatmaps = estimator.infer_heatmaps(np.zeros((3, 3, 256, 256), np.float32))
    assert heatmaps.dtype == np.float32 and heatmaps.shape == (3, 17, 64, 64)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, dict]:
    from train.synthetic import VideoSettings, render_video

    path = tmp_path_factory.mktemp("clip") / "walk.mp4"
    return path, render_video(path, VideoSettings(num_animals=2, num_frames=24, width=320, height=192, fps=12,
                                                  seed=3))


def test_pipeline_on_the_gpu_gives_the_cpu_keypoints(clip, reference_dir: Path) -> None:
    from app.pipeline import Pipeline, PipelineSettings, run_frames
    from app.sources import VideoFileSource
    from tracking.tracker import Tracker, TrackerSettings
    from train.e2e import GroundTruthDetector

    path, gt = clip
    weights = reference_dir / "hrnet_small" / "hrnet_small_ap10k.pth"
    results = {}
    for device in ("cuda", "cpu"):
        pipeline = Pipeline(GroundTruthDetector(gt, auto_advance=True),
                            PoseEstimator.from_weights(weights, PoseSettings(device=device)),
                            Tracker(TrackerSettings(min_hits=1)), PipelineSettings())
        frames: list = []
        with VideoFileSource(path) as source:
            stats = run_frames(source, pipeline, [], on_result=lambda _frame, r, out=frames: out.append(r))
        assert stats.frames == len(gt["frames"])
        results[device] = frames
    for gpu, cpu in zip(results["cuda"], results["cpu"], strict=True):
        np.testing.assert_array_equal(gpu.track_ids, cpu.track_ids)
        np.testing.assert_allclose(gpu.keypoints, cpu.keypoints, atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("half", [False, True])
def test_track_command_runs_both_models_on_the_gpu(clip, reference_dir: Path, tmp_path: Path, half: bool) -> None:
    from ultralytics import YOLO

    from app.cli import main

    path, gt = clip
    detector = tmp_path / "yolo11n_random.pt"
    YOLO("yolo11n.yaml").save(str(detector))
    out = tmp_path / "r.json"
    argv = ["track", str(path), "--pose-weights", str(reference_dir / "hrnet_small" / "hrnet_small_ap10k.pth"),
            "--det-weights", str(detector), "--device", "cuda", "--det-conf", "0.01", "--json", str(out), "-q"]
    assert main(argv + (["--half"] if half else [])) == 0
    document = json.loads(out.read_text())
    assert [f["frame"] for f in document["frames"]] == list(range(len(gt["frames"])))


def test_training_with_mixed_precision_on_the_gpu(tmp_path: Path) -> None:
    from pose.checkpoint import load_pose_model
    from train.synthetic import DatasetSettings, write_dataset
    from train.train_pose import PoseTrainSettings, train

    root = tmp_path / "data"
    write_dataset(root, DatasetSettings(num_images=32, width=96, height=96, seed=7, val_fraction=0.25,
                                        test_fraction=0.0, formats=("ap10k",)))
    settings = PoseTrainSettings(
        train_ann=root / "annotations" / "ap10k-train-split1.json",
        val_ann=root / "annotations" / "ap10k-val-split1.json", image_root=root / "data",
        output_dir=tmp_path / "run", arch="hrnet_tiny", input_size=(64, 64), heatmap_size=(16, 16), epochs=2,
        batch_size=8, warmup_iters=2, eval_interval=1, workers=2, progress=False, device="cuda", amp=True, lr=2e-3,
    )
    result = train(settings)
    assert result is not None and 0.0 <= result.best_ap <= 1.0
    with result.log_csv.open(newline="") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    model, _ = load_pose_model(result.best_checkpoint)  # saved from the GPU, loads on the CPU
    assert not next(model.parameters()).is_cuda
