"""Test doubles and a served app for the web tests: a box 'detector', the tiny pose model, a launched server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.track import Models
from app.web_models import ModelSpec, WebSettings
from pose.estimator import PoseEstimator, PoseSettings
from pose.structures import Detections
from pose.threads import torch_threads

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference"
SMALL_POSE = REFERENCE / "resnet_small" / "resnet_small_ap10k.pth"
FAKE_DETECTOR = "two-boxes.pt"


class TwoBoxes:
    """Stands in for YOLO: two confident boxes at fixed places of any frame (left and right halves)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, image: np.ndarray) -> Detections:
        self.calls += 1
        h, w = image.shape[:2]
        boxes = np.array([[0.05 * w, 0.1 * h, 0.45 * w, 0.9 * h], [0.55 * w, 0.1 * h, 0.95 * w, 0.9 * h]], np.float32)
        return Detections(boxes, np.array([0.9, 0.8], np.float32))


def fake_models(spec: ModelSpec) -> Models:
    """The model factory of the web tests: the box detector and the tiny pose model of ``spec``."""
    settings = PoseSettings(flip_test=spec.flip_test, device=spec.device)
    return Models(TwoBoxes(), PoseEstimator.from_weights(spec.pose_weights, settings))


def web_settings(work_dir: Path, **changes) -> WebSettings:
    values = dict(pose_weights=(str(SMALL_POSE),), det_weights=(FAKE_DETECTOR,), offer_cached=False,
                  work_dir=work_dir)
    values.update(changes)
    return WebSettings(**values)


def one_torch_thread():
    """Two cores shared with the server's threads: one torch thread each is much faster than contention."""
    return torch_threads(1)


@pytest.fixture(scope="module")
def served_app(tmp_path_factory) -> Iterator[tuple[object, str]]:
    """The app launched on 127.0.0.1 (a free port) with the fake models: (demo, url)."""
    from app.web import build_app, launch

    with one_torch_thread():
        demo = build_app(web_settings(tmp_path_factory.mktemp("web")), fake_models)
        _, url, _ = launch(demo, host="127.0.0.1", port=None, block=False, quiet=True)
        try:
            yield demo, url
        finally:
            demo.close()


@pytest.fixture(scope="module")
def web_clip(tmp_path_factory) -> Path:
    """A 24-frame synthetic clip of two animals (320x192, 12 fps)."""
    from train.synthetic import VideoSettings, render_video

    path = tmp_path_factory.mktemp("webclip") / "walk.mp4"
    render_video(path, VideoSettings(num_animals=2, num_frames=24, width=320, height=192, fps=12, seed=3))
    return path
