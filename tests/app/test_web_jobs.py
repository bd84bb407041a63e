"""The web app's image and video jobs, with the box detector and the tiny pose model."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.web_jobs import VideoProgress, WebJobs, confidence_series, sample_images
from app.web_models import RunOptions, WebError
from web_support import fake_models, one_torch_thread, web_clip, web_settings  # noqa: F401

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
    ("broken.png", b"not a png", "broken.png is not an image OpenCV can read"),
])
def test_image_job_refuses_what_is_not_an_image(jobs, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(WebError, match=message):
        jobs.image(path, _options(jobs))


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
    assert result.video.suffix == ".webm" and result.video.stat().st_size > 0
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
