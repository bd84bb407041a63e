"""The web app's settings, the visitor's options and the shared model cache."""

from __future__ import annotations

import threading
import time

import pytest

from app.sources import SourceError
from app.track import Models
from app.web_models import (
    ModelCache, ModelSpec, RunOptions, WebError, WebSettings, as_web_error, detector_settings, pose_settings,
    track_settings, weight_choices,
)
from pose.weights import WeightsError


@pytest.mark.parametrize("changes, message", [
    ({"pose_weights": ()}, "pose_weights"),
    ({"det_weights": ("",)}, "det_weights"),
    ({"max_upload_mb": 0}, "max_upload_mb"),
    ({"max_video_s": float("inf")}, "max_video_s"),
    ({"concurrency": 0}, "concurrency"),
    ({"queue_size": 1.5}, "queue_size"),
    ({"webcam_max_side": 32}, "webcam_max_side"),
])
def test_web_settings_are_validated(changes, message):
    with pytest.raises(ValueError, match=message):
        WebSettings(**changes)


@pytest.mark.parametrize("changes, message", [
    ({"det_conf": 1.5}, "det_conf"),
    ({"kpt_thr": -0.1}, "kpt_thr"),
    ({"smoothing": "kalman"}, "smoothing"),
    ({"det_every": 0}, "detector interval"),
    ({"det_every": 2.5}, "detector interval"),
])
def test_run_options_are_validated_with_page_messages(changes, message):
    with pytest.raises(WebError, match=message):
        RunOptions(pose="p", detector="d", **changes)


def test_run_options_take_slider_floats():
    options = RunOptions(pose="p", detector="d", det_every=3.0, det_conf=1, flip_test=0)
    assert options.det_every == 3 and isinstance(options.det_every, int)
    assert options.det_conf == 1.0 and options.flip_test is False


@pytest.mark.parametrize("entries, expected", [
    (["hrnet_w32"], {"hrnet_w32": "hrnet_w32"}),
    (["/w/a.pth", "hrnet_w32", "/w/a.pth"], {"a.pth": "/w/a.pth", "hrnet_w32": "hrnet_w32"}),
    (["/x/a.pth", "/y/a.pth"], {"x/a.pth": "/x/a.pth", "y/a.pth": "/y/a.pth"}),
])
def test_weight_choices_label_files_by_name(entries, expected):
    assert weight_choices(entries) == expected


@pytest.mark.parametrize("spec", [
    ModelSpec("p.pth", "d.pt", "cpu", 0.4, flip_test=False),
    ModelSpec("hrnet_w32", "models/best.pt", "cpu", 0.25, flip_test=True),
])
def test_models_are_set_up_as_the_command_line_sets_them_up(spec):
    from app.cli import build_parser, pose_settings_from_args
    from app.cli_track import detector_settings_from_args

    argv = ["track", "clip.mp4", "--pose-weights", spec.pose_weights, "--det-weights", spec.det_weights,
            "--device", spec.device, "--det-conf", str(spec.det_conf)] + ([] if spec.flip_test else ["--no-flip"])
    args = build_parser().parse_args(argv)
    cli_pose = pose_settings_from_args(args)
    assert pose_settings(spec) == cli_pose
    assert detector_settings(spec) == detector_settings_from_args(args, cli_pose.device, cli_pose.half)
    assert detector_settings(spec).allow_download is (spec.det_weights == "d.pt")


def test_track_settings_follow_the_visitor_options():
    from tracking.smoothing import SmoothingMode

    options = RunOptions("p", "d", kpt_thr=0.6, smoothing="offline", det_every=3)
    settings = track_settings(options, "causal")
    assert settings.smoothing is SmoothingMode.CAUSAL and settings.det_every == 3
    assert settings.draw.kpt_thr == 0.6 and not settings.progress_bar


@pytest.mark.parametrize("exc, expected", [
    (SourceError("/tmp/gradio/abc/clip.mp4 cannot be read as a video"), "clip.mp4 cannot be read as a video"),
    (WeightsError("pose weights 'x' not found"), "pose weights 'x' not found"),
    (WebError("as is"), "as is"),
    (KeyError("a bug"), None),
])
def test_library_errors_become_page_messages_without_server_paths(exc, expected):
    from pathlib import Path

    error = as_web_error(exc, upload=Path("/tmp/gradio/abc/clip.mp4"))
    assert (None if error is None else str(error)) == expected


def _spec(name: str) -> ModelSpec:
    return ModelSpec(name, "d.pt", "cpu", 0.25, True)


class _Slow:
    num_keypoints = 17

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0

    def __call__(self, *args):
        self.inside += 1
        self.most = max(self.most, self.inside)
        time.sleep(0.02)
        self.inside -= 1


def test_model_cache_loads_once_keeps_the_newest_and_serializes_calls():
    loads = []

    def factory(spec):
        loads.append(spec.pose_weights)
        return Models(_Slow(), _Slow())

    cache = ModelCache(factory, size=2)
    first = cache.get(_spec("a"))
    assert cache.get(_spec("a")) is first and loads == ["a"]
    cache.get(_spec("b"))
    cache.get(_spec("c"))  # evicts a, the least recently used
    cache.get(_spec("a"))
    assert loads == ["a", "b", "c", "a"]
    assert first.estimator.num_keypoints == 17  # attributes pass through the lock
    threads = [threading.Thread(target=first.detector, args=(None,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert first.detector._model.most == 1  # never two calls at once
