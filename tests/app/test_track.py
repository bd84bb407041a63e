"""app.track: one source into result files, with progress, as ``animalpose track`` and the web app run it."""

from __future__ import annotations

import json

import pytest

from app.pipeline import PoseOrder
from app.track import (
    DEFAULT_FPS, Models, OutputPaths, TrackProgress, TrackSettings, TrackSummary, lost_frames, make_pipeline,
    outputs_in_folder, process_source,
)
from tracking.smoothing import SmoothingMode
from train.e2e import GroundTruthDetector


def test_outputs_in_folder_names_each_format(tmp_path):
    outputs = outputs_in_folder("clip", tmp_path, ["video", "json", "csv"], ".webm")
    assert outputs == OutputPaths(video=tmp_path / "clip.webm", json=tmp_path / "clip.json",
                                  jsonl=tmp_path / "clip.jsonl", csv=tmp_path / "clip.csv")
    assert not outputs.done()
    for path in outputs.requested():
        path.write_text("x")
    assert outputs.done()
    assert not OutputPaths().done()


@pytest.mark.parametrize("changes", [{"det_every": 0}, {"max_lost_s": -1.0}, {"appearance": -0.1}, {"min_hits": 0},
                                     {"smoothing": "offline"},
                                     {"pose_order": "after"}, {"fps": 0.0}])
def test_track_settings_are_validated(changes):
    with pytest.raises(ValueError):
        TrackSettings(**changes)


def test_default_smoothing_is_offline_for_files_and_causal_live():
    assert TrackSettings().smoothing_for(live=False) is SmoothingMode.OFFLINE
    assert TrackSettings().smoothing_for(live=True) is SmoothingMode.CAUSAL
    with pytest.raises(ValueError, match="live"):
        TrackSettings(smoothing=SmoothingMode.OFFLINE).smoothing_for(live=True)


@pytest.mark.parametrize("seconds, fps, frames", [(3.0, 15.0, 45), (3.0, 29.97, 90), (2.0, None, 2 * DEFAULT_FPS),
                                                  (1.0, 0.0, DEFAULT_FPS), (0.0, 25.0, 0)])
def test_lost_time_becomes_frames_at_the_source_rate(seconds, fps, frames):
    assert lost_frames(seconds, fps) == frames


def test_make_pipeline_applies_the_settings(synthetic_clip, small_estimator):
    _, gt = synthetic_clip
    settings = TrackSettings(det_every=4, smoothing=SmoothingMode.NONE, pose_order=PoseOrder.BEFORE_TRACKING,
                             max_lost_s=2.0, min_hits=3, appearance=0.4)
    pipeline = make_pipeline(Models(GroundTruthDetector(gt), small_estimator), settings, live=True, fps=12.0)
    assert pipeline.settings.det_every == 4 and pipeline.settings.pose_order is PoseOrder.BEFORE_TRACKING
    assert pipeline.smoothing_mode is SmoothingMode.NONE
    assert pipeline.tracker.settings.max_lost_frames == 24
    assert pipeline.tracker.settings.appearance_weight == 0.4 and pipeline.tracker.settings.min_hits == 3


@pytest.mark.parametrize("smoothing", [SmoothingMode.CAUSAL, SmoothingMode.OFFLINE])
def test_process_source_reports_progress_of_each_pass(synthetic_clip, small_estimator, tmp_path, smoothing):
    path, gt = synthetic_clip
    n = len(gt["frames"])
    models = Models(GroundTruthDetector(gt, auto_advance=True), small_estimator)
    outputs = OutputPaths(json=tmp_path / "out.json", jsonl=tmp_path / "out.jsonl", csv=tmp_path / "out.csv")
    seen: list[TrackProgress] = []
    summary = process_source(str(path), outputs, models, TrackSettings(smoothing=smoothing, progress_bar=False),
                             progress=seen.append)
    assert summary == TrackSummary(str(path), n, summary.fps, True) and summary.fps > 0
    tracking = [p for p in seen if not p.writing]
    assert [p.done for p in tracking] == list(range(1, n + 1)) and {p.total for p in tracking} == {n}
    writing = [p.done for p in seen if p.writing]
    assert writing == (list(range(1, n + 1)) if smoothing is SmoothingMode.OFFLINE else [])
    document = json.loads(outputs.json.read_text())
    assert len(document["frames"]) == n
    assert len(outputs.jsonl.read_text().splitlines()) == n
