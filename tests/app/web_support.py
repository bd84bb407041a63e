"""Test doubles and a served app for the web tests: a box 'detector', the tiny pose model, a launched server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.runs import Models
from app.web.models import ModelSpec, WebSettings
from pose.estimator import PoseEstimator, PoseSettings
from pose.structures import Detections
from pose.threads import torch_threads

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference"
SMALL_POSE = REFERENCE / "resnet_small" / "resnet_small_ap10k.pth"
#: The label of the box 'detector' (an empty file of this name, so that the server offers it).
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
    """The model factory of the web tests: the box detector and the tiny pose model of ``spec``
    (a pose file that is not a checkpoint fails to load as it would on a server)."""
    settings = PoseSettings(device=spec.device)
    return Models(TwoBoxes(), PoseEstimator.from_weights(spec.pose_weights, settings))


def fake_detector_file(folder: Path) -> Path:
    """An empty file named :data:`FAKE_DETECTOR` in ``folder``: weights that exist, read only by fakes."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FAKE_DETECTOR
    path.touch()
    return path


def web_settings(work_dir: Path, **changes) -> WebSettings:
    """Settings offering the tiny pose model and the box 'detector', writing under ``work_dir``."""
    values = dict(pose_weights=(str(SMALL_POSE),), det_weights=(str(fake_detector_file(work_dir / "weights")),),
                  offer_cached=False, work_dir=work_dir)
    values.update(changes)
    return WebSettings(**values)


def one_torch_thread():
    """Two cores shared with the server's threads: one torch thread each is much faster than contention."""
    return torch_threads(1)


#: The pose choices of :func:`served_app` besides the tiny model: a file that is not a checkpoint
#: (offered, fails to load) and one that does not exist (not offered).
UNREADABLE_POSE = "unreadable.pth"
MISSING_POSE = "missing.pth"


@pytest.fixture(scope="module")
def served_app(tmp_path_factory) -> Iterator[tuple[object, str]]:
    """The app launched on 127.0.0.1 (a free port) with the fake models: (demo, url). Its pose
    choices are the tiny model (the default), :data:`UNREADABLE_POSE` and :data:`MISSING_POSE`."""
    from app.web import build_app, launch

    folder = tmp_path_factory.mktemp("web")
    (folder / UNREADABLE_POSE).write_bytes(b"not a checkpoint")
    settings = web_settings(folder / "work", pose_weights=(str(SMALL_POSE), str(folder / UNREADABLE_POSE),
                                                           str(folder / MISSING_POSE)))
    with one_torch_thread():
        demo = build_app(settings, fake_models)
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
