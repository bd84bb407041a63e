"""Fixtures for pipeline and CLI tests: a synthetic clip with ground truth, a GT 'detector', a small pose model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pose.estimator import PoseEstimator, PoseSettings


@pytest.fixture(scope="session")
def synthetic_clip(tmp_path_factory) -> tuple[Path, dict]:
    from train.synthetic import VideoSettings, render_video

    folder = tmp_path_factory.mktemp("clip")
    path = folder / "walk.mp4"
    gt = render_video(path, VideoSettings(num_animals=2, num_frames=36, width=320, height=192, fps=12, seed=3))
    if not isinstance(gt, dict) or "frames" not in gt:
        gt = json.loads(path.with_suffix(".json").read_text())
    return path, gt


@pytest.fixture(scope="session")
def small_estimator(reference_dir) -> PoseEstimator:
    return PoseEstimator.from_weights(
        reference_dir / "hrnet_small" / "hrnet_small_ap10k.pth", PoseSettings(flip_test=False)
    )
