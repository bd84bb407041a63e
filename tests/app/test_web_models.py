"""The web app's settings, the visitor's options and the shared model cache."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from web_support import SMALL_POSE

from app.runs import Models
from app.sources import SourceError
from app.web.models import (
    DETECTOR_FLOOR,
    Availability,
    DetectorAtConfidence,
    ModelCache,
    ModelSpec,
    RunOptions,
    WebError,
    WebSettings,
    as_web_error,
    can_reach,
    detector_settings,
    detector_weights_status,
    memoized_by_host,
    pose_settings,
    pose_weights_status,
    track_settings,
    weight_choices,
    with_flip_test,
)
from pose.structures import Detections
from pose.weights import OFFICIAL_WEIGHTS, WeightsError


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
    ({"det_conf": 0.01}, "det_conf must be between 0.05 and 1"),  # below the detector's floor
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


@pytest.mark.parametrize("spec, det_conf, flip_test", [
    (ModelSpec("p.pth", "d.pt", "cpu"), 0.4, False),
    (ModelSpec("hrnet_w32", "models/best.pt", "cpu"), 0.25, True),
])
def test_models_are_set_up_as_the_command_line_sets_them_up(spec, det_conf, flip_test):
    from app.cli import build_parser
    from app.cli.common import pose_settings_from_args
    from app.cli.video import detector_settings_from_args

    argv = ["track", "clip.mp4", "--pose-weights", spec.pose_weights, "--det-weights", spec.det_weights,
            "--device", spec.device, "--det-conf", str(det_conf)] + ([] if flip_test else ["--no-flip"])
    args = build_parser().parse_args(argv)
    cli_pose = pose_settings_from_args(args)
    # loaded once with the flip test on and the detector at the floor; both are set per call
    assert replace(pose_settings(spec), flip_test=flip_test) == cli_pose
    cli_detector = detector_settings_from_args(args, cli_pose)
    assert replace(detector_settings(spec), confidence=det_conf) == cli_detector
    assert detector_settings(spec).confidence == DETECTOR_FLOOR
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
    return ModelSpec(name, "d.pt", "cpu")


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


def _run_together(calls) -> None:
    threads = [threading.Thread(target=call, args=(None,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


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
    assert first.for_call(0.25, True).estimator.num_keypoints == 17  # attributes pass through the lock
    _run_together([first.detector] * 4)
    assert first.detector._model.most == 1  # never two calls at once
    views = [first.for_call(0.5, flip).estimator for flip in (True, False, True, False)]
    _run_together(views)
    assert first.estimators[True]._model.most == 1  # the views of one network share its lock


class _NmsStandIn:
    """Stands in for YOLO after its network: fixed raw predictions (twelve clusters of overlapping
    boxes, scores spread over [0, 1]) through ultralytics' own non-maximum suppression, as
    ``tracking.detector.Detector`` runs it (agnostic, IoU 0.7) at ``confidence`` with ``max_det``."""

    def __init__(self, confidence: float, max_det: int) -> None:
        import torch

        self.confidence, self.max_det = confidence, max_det
        g = torch.Generator().manual_seed(0)
        centres = torch.rand(1, 2, 12, generator=g) * 500
        xy = centres.repeat_interleave(40, dim=2) + torch.randn(1, 2, 480, generator=g) * 4
        wh = 80 + torch.randn(1, 2, 480, generator=g) * 4
        self.prediction = torch.cat([xy, wh, torch.rand(1, 3, 480, generator=g) ** 2], 1)

    def __call__(self, frame) -> Detections:
        from ultralytics.utils.nms import non_max_suppression

        kept = non_max_suppression(self.prediction.clone(), conf_thres=self.confidence, iou_thres=0.7,
                                   agnostic=True, max_det=self.max_det)[0]
        return Detections(kept[:, :4].numpy(), kept[:, 4].numpy(), kept[:, 5].long().numpy())


# 31 boxes survive NMS at the floor, 24 above 0.8: under the cap of 100, and over a cap of 5
@pytest.mark.parametrize("max_det", [100, 5])
@pytest.mark.parametrize("confidence", [DETECTOR_FLOOR, 0.1, 0.3, 0.5, 0.8, 0.95])
def test_filtering_the_floor_run_equals_running_at_the_confidence(confidence, max_det):
    at_floor = DetectorAtConfidence(_NmsStandIn(DETECTOR_FLOOR, max_det), DETECTOR_FLOOR, confidence)(None)
    direct = _NmsStandIn(confidence, max_det)(None)
    assert len(direct) > 0
    np.testing.assert_array_equal(at_floor.xyxy, direct.xyxy)
    np.testing.assert_array_equal(at_floor.scores, direct.scores)
    np.testing.assert_array_equal(at_floor.class_ids, direct.class_ids)


def test_a_confidence_below_the_floor_is_refused():
    with pytest.raises(ValueError, match="confidence must be in"):
        DetectorAtConfidence(_NmsStandIn(0.25, 100), 0.25, 0.1)


def test_the_flip_test_is_a_per_call_view_of_one_network():
    from pose.estimator import PoseEstimator, PoseSettings

    loaded = PoseEstimator.from_weights(SMALL_POSE, PoseSettings(flip_test=True))
    view = with_flip_test(loaded, False)
    assert view.model is loaded.model and not view.settings.flip_test and loaded.settings.flip_test
    assert with_flip_test(loaded, True) is loaded
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8)
    boxes = np.array([[10, 10, 60, 80], [50, 5, 120, 90]], np.float32)
    fresh = PoseEstimator.from_weights(SMALL_POSE, PoseSettings(flip_test=False))
    np.testing.assert_array_equal(view(image, boxes).keypoints, fresh(image, boxes).keypoints)
    assert not np.array_equal(loaded(image, boxes).keypoints, fresh(image, boxes).keypoints)


# --------------------------------------------------------------------------------------------------
# Weights checked at start-up: the visitor's note has no paths or options, the operator's fix has them


def _official_file(name: str) -> str:
    return OFFICIAL_WEIGHTS[name].rsplit("/", 1)[-1]


@pytest.mark.parametrize("cached, online, availability", [
    (True, False, Availability.READY),
    (False, True, Availability.DOWNLOAD),
    (False, False, Availability.MISSING),
])
def test_official_pose_weights_are_ready_cached_downloadable_or_missing(tmp_path, monkeypatch, cached, online,
                                                                       availability):
    monkeypatch.setenv("ANIMALPOSE_CACHE", str(tmp_path))
    if cached:
        (tmp_path / _official_file("hrnet_w32")).write_bytes(b"weights")
    asked = []
    status = pose_weights_status("hrnet_w32", lambda url: asked.append(url) or online)
    assert status.availability is availability and status.usable is (availability is not Availability.MISSING)
    assert asked == ([] if cached else [OFFICIAL_WEIGHTS["hrnet_w32"]])
    assert "/" not in status.note and "--" not in status.note
    if availability is Availability.MISSING:
        assert "cannot download" in status.note
        assert "--pose-weights PATH" in status.fix and str(tmp_path) in status.fix


def test_pose_weights_files_are_ready_or_missing(tmp_path):
    present = tmp_path / "mine.pth"
    present.write_bytes(b"weights")
    assert pose_weights_status(str(present), lambda url: False).availability is Availability.READY
    missing = pose_weights_status(str(tmp_path / "gone.pth"), lambda url: True)
    assert missing.availability is Availability.MISSING and missing.note == "its file is missing on this server"
    assert str(tmp_path / "gone.pth") in missing.fix and "--pose-weights" in missing.fix


@pytest.mark.parametrize("entry, in_weights_dir, online, availability", [
    ("yolo11n.pt", True, False, Availability.READY),
    ("yolo11n.pt", False, True, Availability.DOWNLOAD),
    ("yolo11n.pt", False, False, Availability.MISSING),
    ("not-a-release.pt", False, True, Availability.MISSING),
])
def test_detector_release_names_are_ready_downloadable_or_missing(tmp_path, monkeypatch, entry, in_weights_dir,
                                                                  online, availability):
    import app.web.models as web_models

    monkeypatch.chdir(tmp_path)  # ultralytics looks in the working folder first
    weights_dir = tmp_path / "ultralytics"
    weights_dir.mkdir()
    monkeypatch.setattr(web_models, "ultralytics_weights_dir", lambda: weights_dir)
    if in_weights_dir:
        (weights_dir / entry).write_bytes(b"weights")
    status = detector_weights_status(entry, lambda url: online)
    assert status.availability is availability
    assert "/" not in status.note and "--" not in status.note
    if availability is Availability.MISSING:
        assert "--det-weights" in status.fix


def test_detector_files_are_ready_or_missing(tmp_path):
    present = tmp_path / "mdv.pt"
    present.write_bytes(b"weights")
    assert detector_weights_status(str(present), lambda url: False).availability is Availability.READY
    missing = detector_weights_status(str(tmp_path / "models" / "gone.pt"), lambda url: True)
    assert missing.availability is Availability.MISSING and "--det-weights" in missing.fix


def test_reachability_is_a_connection_asked_once_per_host():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    assert can_reach(f"http://127.0.0.1:{port}/weights.pth", timeout_s=2.0)
    server.close()
    assert not can_reach(f"http://127.0.0.1:{port}/weights.pth", timeout_s=2.0)
    asked = []
    check = memoized_by_host(lambda url: asked.append(url) or True)
    assert check("https://a.org/x.pth") and check("https://a.org/y.pth") and check("https://b.org/x.pth")
    assert asked == ["https://a.org/x.pth", "https://b.org/x.pth"]


@pytest.mark.parametrize(
    "device, live, expected",
    [("cpu", False, "exact"), ("cpu", True, "exact"), ("cuda:0", False, "exact"), ("cuda:0", True, "fast")],
)
def test_webcam_runs_fast_on_a_gpu_and_shares_the_model_on_the_cpu(device, live, expected):
    """As the command line: results to keep in EXACT, live video in FAST (on the CPU both are float32,
    so the webcam shares the Image and Video tabs' model there)."""
    from app.web.models import ModelSpec, detector_settings, pose_settings, spec_precision

    precision = spec_precision(device, live)
    assert precision.value == expected
    spec = ModelSpec("w.pth", "d.pt", "cpu", precision)
    assert pose_settings(spec).precision is precision and detector_settings(spec).precision is precision
