"""The web app's image and video jobs, with the box detector and the tiny pose model."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from web_support import SMALL_POSE, fake_models, one_torch_thread, web_clip, web_settings  # noqa: F401

from app.web.jobs import ImageResult, VideoProgress, VideoResult, WebJobs, confidence_series, sample_images
from app.web.models import RunOptions, WebError

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


@pytest.fixture()
def jobs(tmp_path):
    with one_torch_thread():
        yield WebJobs(web_settings(tmp_path / "work"), fake_models)


def _options(jobs: WebJobs, **changes) -> RunOptions:
    values = dict(pose=jobs.pose_choices()[0], detector=jobs.detector_choices()[0], device="cpu", flip_test=False)
    values.update(changes)
    return RunOptions(**values)


def test_image_job_draws_tables_and_writes_json(jobs):
    sample = SAMPLES / "ap10k" / "000000000004.jpg"
    result = jobs.image(sample, _options(jobs))
    assert result.image_rgb.shape == cv2.imread(str(sample)).shape and result.image_rgb.dtype == np.uint8
    assert result.animals == 2 and len(result.rows) == 34
    animal, keypoint, x, y, confidence = result.rows[0]
    assert (animal, keypoint) == ("#1", "L_Eye") and all(isinstance(v, float) for v in (x, y, confidence))
    document = json.loads(result.json_path.read_text())
    assert document["source"]["name"] == sample.name and document["frames"][0]["frame"] == 0
    assert result.json_path.parent.parent == jobs.work_dir


@pytest.mark.parametrize("name, content, message", [
    ("notes.txt", b"hello", "notes.txt is not an image this app accepts"),
    ("broken.png", b"not a png", "broken.png is not an image this app can read"),
    ("empty.jpg", b"", "empty.jpg is not an image this app can read"),
])
def test_image_job_refuses_what_is_not_an_image(jobs, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(WebError, match=message):
        jobs.image(path, _options(jobs))
    with pytest.raises(WebError, match=message):  # the check made as soon as it is uploaded
        jobs.check_image(path)


def test_an_upload_is_checked_under_its_own_name(jobs, tmp_path):
    cached = tmp_path / "upload-1234"  # how a server may keep an upload
    cached.write_bytes(b"hello")
    with pytest.raises(WebError, match="^notes.jpg is not an image this app can read"):
        jobs.check_image(cached, "notes.jpg")
    jobs.check_image(SAMPLES / "zebra" / "810.jpg")  # a real image passes


def test_thresholds_and_the_flip_test_load_no_model(tmp_path):
    loads = []

    def counting(spec):
        loads.append(spec)
        return fake_models(spec)

    jobs = WebJobs(web_settings(tmp_path / "work"), counting)
    sample = SAMPLES / "zebra" / "810.jpg"
    with one_torch_thread():
        found = [jobs.image(sample, _options(jobs, det_conf=conf, flip_test=flip, kpt_thr=thr)).animals
                 for conf, flip, thr in [(0.25, False, 0.3), (0.85, False, 0.3), (0.85, True, 0.6), (0.95, True, 0.1)]]
    assert found == [2, 1, 1, 0]  # the box 'detector' scores its boxes 0.9 and 0.8
    assert len(loads) == 1


@pytest.mark.parametrize("animals, det_conf, text", [
    (2, 0.25, "2 animals found"),
    (1, 0.25, "1 animal found"),
    (0, 0.4, "No animals found — try a lower detector confidence (now 0.40, under Settings)"),
    (0, 0.05, "No animals found, even at the lowest detector confidence (0.05)"),
])
def test_the_image_summary_suggests_a_lower_confidence_when_nothing_is_found(animals, det_conf, text):
    result = ImageResult(np.zeros((4, 4, 3), np.uint8), [], Path("r.json"), animals, det_conf)
    assert result.describe() == text


def test_the_video_summary_suggests_a_lower_confidence_when_nothing_is_found():
    result = VideoResult(Path("v.webm"), Path("v.json"), Path("v.csv"), frames=24, fps=12.0, duration_s=2.0,
                         tracks=[], confidence=[], det_conf=0.5)
    assert result.describe() == ("24 frames (2.0 s of video), analysed at 12.0 frames/s: no animals found — "
                                 "try a lower detector confidence (now 0.50, under Settings)")


def test_weights_that_cannot_be_used_are_not_offered_and_the_log_says_why(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ANIMALPOSE_CACHE", str(tmp_path / "cache"))
    missing = tmp_path / "models" / "missing.pth"
    settings = web_settings(tmp_path / "work", pose_weights=(str(SMALL_POSE), str(missing), "hrnet_w48"))
    with caplog.at_level("WARNING"):
        jobs = WebJobs(settings, fake_models, can_download=lambda url: False)
    assert jobs.pose_choices() == [SMALL_POSE.name] and jobs.ready
    notes = {label: s.note for label, s in jobs.weights_status()["pose"].items() if not s.usable}
    assert notes == {"missing.pth": "its file is missing on this server",
                     "hrnet_w48": "not downloaded yet, and this server cannot download it now"}
    assert str(missing) in caplog.text and "--pose-weights PATH" in caplog.text  # for the operator only
    with pytest.raises(WebError, match="^the pose model missing.pth is not available on this server: its file"):
        jobs.spec(_options(jobs, pose="missing.pth"))


def test_a_server_without_usable_weights_is_not_ready(tmp_path):
    settings = web_settings(tmp_path / "work", pose_weights=(str(tmp_path / "missing.pth"),))
    jobs = WebJobs(settings, fake_models)
    assert not jobs.ready and jobs.pose_choices() == [] and jobs.detector_choices() == ["two-boxes.pt"]
    assert jobs.missing_kinds() == "pose model"
    neither = WebJobs(web_settings(tmp_path / "w2", pose_weights=("gone.pth",), det_weights=("gone/d.pt",)))
    assert neither.missing_kinds() == "pose model and no detector"


def test_a_model_that_fails_to_load_is_named_without_server_paths(tmp_path, caplog):
    unreadable = tmp_path / "models" / "unreadable.pth"
    unreadable.parent.mkdir()
    unreadable.write_bytes(b"not a checkpoint")
    jobs = WebJobs(web_settings(tmp_path / "work", pose_weights=(str(unreadable),)), fake_models)
    with caplog.at_level("ERROR"), pytest.raises(WebError) as error:
        jobs.image(SAMPLES / "zebra" / "810.jpg", _options(jobs))
    assert str(error.value) == ("the pose model unreadable.pth could not be loaded on this server (its file could "
                                "not be read); choose another one under Settings or try again later")
    assert str(unreadable) in caplog.text  # the details are the operator's


@pytest.mark.parametrize("changes, message", [
    ({"pose": "/etc/passwd"}, "unknown pose model"),
    ({"detector": "yolo_from_a_visitor.pt"}, "unknown detector"),
    ({"device": "cuda:7"}, "not available"),
])
def test_only_the_servers_choices_are_used(jobs, changes, message):
    with pytest.raises(WebError, match=message):
        jobs.image(SAMPLES / "zebra" / "810.jpg", _options(jobs, **changes))


@pytest.mark.parametrize("smoothing", ["offline", "causal", "none"])
def test_video_job_writes_outputs_and_reports_progress(jobs, web_clip, smoothing):
    reports: list[VideoProgress] = []
    result = jobs.video(web_clip, _options(jobs, smoothing=smoothing), reports.append, poll_s=0.05)
    assert result.video.suffix == ".mp4" and result.video.stat().st_size > 0
    assert result.frames == 24 and result.duration_s == pytest.approx(2.0) and result.tracks == [1, 2]
    document = json.loads(result.json.read_text())
    statuses = {s for f in document["frames"] for a in f["animals"] for s in a["status"]}
    assert {"offline": 3, "causal": 3, "none": 1}[smoothing] in statuses
    assert result.csv.read_text().startswith("frame,time,track_id,keypoint")
    assert {animal for _, animal, _ in result.confidence} == {"#1", "#2"}
    assert reports and all(r.total == 24 for r in reports)
    assert [r.frames for r in reports] == sorted(r.frames for r in reports)
    assert "24 frames (2.0 s of video), 2 animals tracked" in result.describe()


def test_video_job_refuses_bad_uploads(jobs, tmp_path, web_clip):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(WebError, match=r"^broken.mp4 cannot be read as a video"):
        jobs.video(broken, _options(jobs))
    with pytest.raises(WebError, match="clip.gif is not a video this app accepts"):
        jobs.video(tmp_path / "clip.gif", _options(jobs))
    short = WebJobs(web_settings(tmp_path / "w2", max_video_s=1.0), fake_models)
    with pytest.raises(WebError, match="lasts 2 s.*at most 1 s"):
        short.video(web_clip, _options(short))


@pytest.mark.parametrize("progress, text", [
    (VideoProgress(10, 100, 2.0), "5.0 frames/s, 18 s left"),
    (VideoProgress(10, 1000, 2.0), "5.0 frames/s, 3 min 18 s left"),
    (VideoProgress(10, None, 2.0), "5.0 frames/s"),
    (VideoProgress(0, 100, 0.0), "0.0 frames/s"),
    (VideoProgress(100, 100, 9.0, writing=True), "smoothing the tracks and writing the labeled video"),
])
def test_progress_says_rate_and_time_left(progress, text):
    assert progress.describe() == text


def test_confidence_series_averages_known_keypoints_and_thins_long_videos():
    animal = {"track_id": 3, "keypoints": [[1.0, 2.0, 0.5], [None, None, None], [3.0, 4.0, 0.7]]}
    document = {"frames": [{"frame": i, "time": i / 10, "animals": [animal]} for i in range(10)]}
    series = confidence_series(document, max_frames=5)
    assert series[0] == (0.0, "#3", 0.6) and [t for t, _, _ in series] == [0.0, 0.2, 0.4, 0.6, 0.8]


def test_sample_images_come_from_the_settings_or_the_repository(tmp_path):
    chosen = SAMPLES / "zebra" / "810.jpg"
    assert sample_images(web_settings(tmp_path, examples=(chosen, tmp_path / "gone.jpg"))) == [chosen]
    shipped = sample_images(web_settings(tmp_path))
    assert shipped[0].name == "000000000004.jpg" and all(p.is_file() for p in shipped)
    assert {p.parent.name for p in shipped} == {"ap10k", "animalpose", "atrw", "zebra", "horse10", "macaque"}


def test_old_results_are_removed_when_a_job_starts(jobs):
    old = jobs.new_job_dir()
    stale = time.time() - jobs.settings.keep_results_s - 10
    os.utime(old, (stale, stale))
    fresh = jobs.new_job_dir()
    assert fresh.is_dir() and not old.exists()


# --------------------------------------------------------------------------------------------------
# Profiles (the webcam's realtime profile)


def test_the_full_profile_keeps_the_visitors_options(jobs):
    options = _options(jobs, flip_test=True, det_every=3)
    assert jobs.with_profile(options, "full") is options


def test_the_realtime_profile_runs_its_own_choices_and_keeps_the_thresholds(jobs, tmp_path):
    from app.profiles import REALTIME_CHOICES

    options = _options(jobs, flip_test=True, det_every=1, det_conf=0.5, kpt_thr=0.6)
    realtime = jobs.with_profile(options, "realtime")
    # RTMPose-m is not offered by this server: the visitor's pose model stays
    assert jobs.realtime_pose_label() is None and realtime.pose == options.pose
    assert (realtime.flip_test, realtime.det_every, realtime.det_image_size) == \
        (False, REALTIME_CHOICES.det_every, REALTIME_CHOICES.det_image_size)
    assert (realtime.det_conf, realtime.kpt_thr, realtime.device) == (0.5, 0.6, "cpu")
    assert jobs.spec(realtime, live=True).det_image_size == REALTIME_CHOICES.det_image_size
    assert jobs.spec(options).det_image_size == 640
    with pytest.raises(WebError, match="profile must be one of"):
        jobs.with_profile(options, "fastest")


def test_the_realtime_profile_takes_rtmpose_when_the_server_offers_it(tmp_path):
    import shutil

    offered = tmp_path / "rtmpose_m"
    offered.mkdir()
    shutil.copy(SMALL_POSE, offered / "rtmpose_m")  # a file named as the official model
    settings = web_settings(tmp_path / "work", pose_weights=(str(SMALL_POSE), str(offered / "rtmpose_m")))
    jobs = WebJobs(settings, fake_models)
    label = jobs.realtime_pose_label()
    assert label is not None and jobs.weights_status()["pose"][label].entry.endswith("rtmpose_m")
    options = _options(jobs, pose=jobs.pose_choices()[0])
    assert jobs.with_profile(options, "realtime").pose == label
