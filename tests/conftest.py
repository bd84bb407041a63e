"""Shared pytest fixtures: paths to the copied reference data, a synthetic clip with ground truth and a
small pose model (for pipeline, CLI and reliability tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parent / "data"
REFERENCE_DIR = DATA_DIR / "reference"
SAMPLES_DIR = DATA_DIR / "samples"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES_DIR


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module: on a busy 2-core machine OpenMP's spinning threads
    slow training about 20x."""
    from pose.threads import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def synthetic_clip(tmp_path_factory) -> tuple[Path, dict]:
    """A 36-frame 320x192 clip of two animals at 12 frames/s, and its ground truth."""
    from train.synthetic import VideoSettings, render_video

    folder = tmp_path_factory.mktemp("clip")
    path = folder / "walk.mp4"
    gt = render_video(path, VideoSettings(num_animals=2, num_frames=36, width=320, height=192, fps=12, seed=3))
    if not isinstance(gt, dict) or "frames" not in gt:
        gt = json.loads(path.with_suffix(".json").read_text())
    return path, gt


@pytest.fixture(scope="session")
def small_estimator(reference_dir):
    """The small reference HRNet (random weights of the mmpose layout), without the flip test."""
    from pose.estimator import PoseEstimator, PoseSettings

    return PoseEstimator.from_weights(
        reference_dir / "hrnet_small" / "hrnet_small_ap10k.pth", PoseSettings(flip_test=False)
    )
