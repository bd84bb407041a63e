"""One visitor's webcam session: its own tracks, causal smoothing, bounded frame size, rate and latency."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from web_support import SMALL_POSE, fake_models, one_torch_thread, web_clip  # noqa: F401

from app.web.live import LiveSession
from app.web.models import ModelCache, ModelSpec, RunOptions

SPEC = ModelSpec(str(SMALL_POSE), "two-boxes.pt", "cpu")


@pytest.fixture(scope="module")
def shared():
    with one_torch_thread():
        yield ModelCache(fake_models).get(SPEC)


@pytest.fixture(scope="module")
def models(shared):
    return shared.for_call(0.25, flip_test=False)


@pytest.fixture(scope="module")
def frames_rgb(web_clip) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(web_clip))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames[:6]


def _options(**changes) -> RunOptions:
    return RunOptions(pose="small", detector="boxes", **changes)


def test_each_session_has_its_own_tracks(models, frames_rgb):
    first, second = LiveSession(), LiveSession()
    seen_first = [first.process(frame, models, SPEC, _options()).track_ids for frame in frames_rgb]
    seen_second = [second.process(frame, models, SPEC, _options()).track_ids for frame in frames_rgb[:3]]
    assert seen_first[-1] == (1, 2)
    assert seen_second[0] == () and seen_second[-1] == (1, 2)  # a new visitor starts from #1 again
    assert first._pipeline is not second._pipeline


def test_frames_are_labeled_shrunk_and_timed(models, frames_rgb):
    session = LiveSession(max_side=160)
    shown = [session.process(frame, models, SPEC, _options(smoothing="offline")) for frame in frames_rgb]
    assert shown[-1].image_rgb.shape == (96, 160, 3)  # 320x192 shrunk to 160 on the longer side
    assert session._pipeline.smoothing_mode.value == "causal"  # offline is for files: the webcam is causal
    assert shown[0].fps == 0.0 and shown[-1].fps > 0 and shown[-1].latency_ms > 0
    assert "frames/s · latency" in shown[-1].describe() and shown[-1].describe().endswith("2 animals")


def test_a_pause_or_new_settings_start_new_tracks(models, frames_rgb):
    session = LiveSession(restart_after_s=0.0)
    session.process(frames_rgb[0], models, SPEC, _options())
    pipeline = session._pipeline
    session.process(frames_rgb[1], models, SPEC, _options())
    assert session._pipeline is not pipeline  # longer than restart_after_s since the last frame
    patient = LiveSession(restart_after_s=60.0)
    patient.process(frames_rgb[0], models, SPEC, _options())
    kept = patient._pipeline
    patient.process(frames_rgb[1], models, SPEC, _options())
    assert patient._pipeline is kept
    patient.process(frames_rgb[2], models, SPEC, _options(det_every=2))
    assert patient._pipeline is not kept and patient.process(frames_rgb[3], models, SPEC, _options()).frames == 1


def test_a_new_threshold_keeps_the_tracks_and_takes_effect(shared, frames_rgb):
    session = LiveSession(restart_after_s=60.0)
    shown = [session.process(frame, shared.for_call(0.25, False), SPEC, _options()) for frame in frames_rgb[:3]]
    pipeline = session._pipeline
    stricter = shared.for_call(0.85, True)  # the box 'detector' scores its boxes 0.9 and 0.8
    later = session.process(frames_rgb[3], stricter, SPEC, _options(det_conf=0.85, flip_test=True))
    assert session._pipeline is pipeline and later.frames == shown[-1].frames + 1  # the same tracks go on
    assert pipeline.detector is stricter.detector and pipeline.pose_model is stricter.estimator
    assert len(pipeline.detector(frames_rgb[4][..., ::-1].copy())) == 1


@pytest.mark.parametrize("frame", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32)])
def test_frames_that_are_not_rgb_images_are_refused(models, frame):
    with pytest.raises(ValueError, match="webcam frame"):
        LiveSession().process(frame, models, SPEC, _options())
