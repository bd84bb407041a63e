"""app.runs: one source into result files, with progress, as ``animalpose track`` and the web app run it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import pytest

from app.outputs import OutputBusyError, OutputLock
from app.pipeline import PoseOrder
from app.runs import (
    DEFAULT_FPS,
    Models,
    OutputPaths,
    TrackProgress,
    TrackSettings,
    TrackSummary,
    lost_frames,
    make_pipeline,
    output_stems,
    outputs_in_folder,
    process_source,
)
from app.sinks import SinkError, partial_path
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


def test_lost_time_counts_the_frames_the_detector_runs_on():
    # The tracker counts a track unseen only on the frames the detector looks at: with the detector on every 2nd
    # frame, 3 s of a 30 fps video are 45 of them, not 90 (which would keep identities 6 s).
    assert lost_frames(3.0, 30.0, det_every=2) == 45 and lost_frames(3.0, 30.0, det_every=3) == 30


def test_make_pipeline_applies_the_settings(synthetic_clip, small_estimator):
    _, gt = synthetic_clip
    settings = TrackSettings(det_every=4, smoothing=SmoothingMode.NONE, pose_order=PoseOrder.BEFORE_TRACKING,
                             max_lost_s=2.0, min_hits=3, appearance=0.4)
    pipeline = make_pipeline(Models(GroundTruthDetector(gt), small_estimator), settings, live=True, fps=12.0)
    assert pipeline.settings.det_every == 4 and pipeline.settings.pose_order is PoseOrder.BEFORE_TRACKING
    assert pipeline.smoothing_mode is SmoothingMode.NONE
    assert pipeline.tracker.settings.max_lost_frames == 6  # 2 s at 12 frames/s, the detector on every 4th
    assert pipeline.tracker.settings.appearance_weight == 0.4 and pipeline.tracker.settings.min_hits == 3


@pytest.mark.parametrize("video", [False, True])
@pytest.mark.parametrize("smoothing", [SmoothingMode.CAUSAL, SmoothingMode.OFFLINE])
def test_process_source_reports_progress_of_each_pass(synthetic_clip, small_estimator, tmp_path, smoothing, video):
    path, gt = synthetic_clip
    n = len(gt["frames"])
    models = Models(GroundTruthDetector(gt, auto_advance=True), small_estimator)
    outputs = OutputPaths(video=tmp_path / "out.mp4" if video else None, json=tmp_path / "out.json",
                          jsonl=tmp_path / "out.jsonl", csv=tmp_path / "out.csv")
    seen: list[TrackProgress] = []
    summary = process_source(str(path), outputs, models, TrackSettings(smoothing=smoothing, progress_bar=False),
                             progress=seen.append)
    assert summary == TrackSummary(str(path), n, summary.fps, True) and summary.fps > 0
    tracking = [p for p in seen if not p.writing]
    assert [p.done for p in tracking] == list(range(1, n + 1)) and {p.total for p in tracking} == {n}
    writing = [p.done for p in seen if p.writing]
    # Offline smoothing reads the frames a second time only to draw the labeled video.
    assert writing == (list(range(1, n + 1)) if smoothing is SmoothingMode.OFFLINE and video else [])
    document = json.loads(outputs.json.read_text())
    assert len(document["frames"]) == n
    assert len(outputs.jsonl.read_text().splitlines()) == n


# --------------------------------------------------------------------------------------------------
# Every processed frame in every output; partial results on every way out


def _frames_of(path) -> list[int]:
    return [f["frame"] for f in json.loads(path.read_text())["frames"]]


def _video_frames(path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


@pytest.fixture()
def images_with_a_bad_one(tmp_path, synthetic_clip) -> Path:
    """Six frames of the clip as JPEG files; the third is a text file named .jpg."""
    clip, _ = synthetic_clip
    folder = tmp_path / "images"
    folder.mkdir()
    capture = cv2.VideoCapture(str(clip))
    for n in range(6):
        ok, image = capture.read()
        assert ok
        cv2.imwrite(str(folder / f"{n:03d}.jpg"), image)
    capture.release()
    (folder / "002.jpg").write_text("not an image")
    return folder


def _all_outputs(folder: Path) -> OutputPaths:
    return OutputPaths(video=folder / "v.mp4", json=folder / "r.json", jsonl=folder / "r.jsonl",
                       csv=folder / "r.csv", coco=folder / "r.coco.json")


def _temporary_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("smoothing", list(SmoothingMode))
def test_every_processed_frame_reaches_every_output_when_an_image_is_unreadable(
        images_with_a_bad_one, synthetic_clip, small_estimator, tmp_path, smoothing, caplog):
    _, gt = synthetic_clip
    outputs = _all_outputs(tmp_path / "out")
    models = Models(GroundTruthDetector(gt, auto_advance=True), small_estimator)
    summary = process_source(str(images_with_a_bad_one), outputs, models,
                             TrackSettings(smoothing=smoothing, progress_bar=False, fps=5.0))
    processed = [0, 1, 3, 4, 5]
    assert summary.frames == 5 and summary.frames_skipped == 1
    assert _frames_of(outputs.json) == processed
    assert [json.loads(line)["frame"] for line in outputs.jsonl.read_text().splitlines()] == processed
    assert json.loads(outputs.json.read_text())["frames_skipped"] == 1
    assert _video_frames(outputs.video) == 5
    with open(outputs.csv, newline="") as f:
        csv_frames = {int(row["frame"]) for row in csv.DictReader(f)}
    document = json.loads(outputs.json.read_text())
    with_animals = {f["frame"] for f in document["frames"] if f["animals"]}
    assert csv_frames == with_animals and 5 in with_animals  # the last frame too
    assert {r["image_id"] for r in json.loads(outputs.coco.read_text())} == with_animals
    # The results of frame 3 are those of the fourth image, not of the third processed frame's index.
    assert [f["time"] for f in document["frames"]] == pytest.approx([n / 5.0 for n in processed])
    assert "002.jpg" in caplog.text and _temporary_files(outputs.json.parent) == []


class _StopAt:
    """A progress callback that interrupts the run (as Ctrl-C would) at a given frame of a given pass."""

    def __init__(self, done: int, writing: bool) -> None:
        self.done, self.writing = done, writing

    def __call__(self, progress: TrackProgress) -> None:
        if progress.writing == self.writing and progress.done == self.done:
            raise KeyboardInterrupt


def test_interrupted_tracking_pass_leaves_partial_smoothed_results(synthetic_clip, small_estimator, tmp_path):
    path, gt = synthetic_clip
    outputs = _all_outputs(tmp_path / "out")
    models = Models(GroundTruthDetector(gt, auto_advance=True), small_estimator)
    with pytest.raises(KeyboardInterrupt):
        process_source(str(path), outputs, models, TrackSettings(progress_bar=False), progress=_StopAt(10, False))
    folder = outputs.json.parent
    assert sorted(p.name for p in folder.iterdir()) == ["r.coco.partial.json", "r.jsonl", "r.partial.csv",
                                                        "r.partial.json"]
    document = json.loads((folder / "r.partial.json").read_text())
    assert document["complete"] is False and [f["frame"] for f in document["frames"]] == list(range(10))
    assert {s for f in document["frames"] for a in f["animals"] for s in a["status"]} >= {3}  # smoothed
    assert len(outputs.jsonl.read_text().splitlines()) == 10


def test_interrupted_video_pass_keeps_complete_results_and_a_partial_video(synthetic_clip, small_estimator,
                                                                           tmp_path):
    path, gt = synthetic_clip
    outputs = _all_outputs(tmp_path / "out")
    models = Models(GroundTruthDetector(gt, auto_advance=True), small_estimator)
    with pytest.raises(KeyboardInterrupt):
        process_source(str(path), outputs, models, TrackSettings(progress_bar=False), progress=_StopAt(5, True))
    n = len(gt["frames"])
    assert _frames_of(outputs.json) == list(range(n)) and json.loads(outputs.json.read_text())["complete"]
    assert outputs.csv.is_file() and outputs.coco.is_file() and not outputs.video.exists()
    assert 4 <= _video_frames(partial_path(outputs.video)) <= 5
    assert _temporary_files(outputs.json.parent) == []


def test_interrupted_causal_run_leaves_every_output_partial(synthetic_clip, small_estimator, tmp_path):
    path, gt = synthetic_clip
    outputs = _all_outputs(tmp_path / "out")
    models = Models(GroundTruthDetector(gt, auto_advance=True), small_estimator)
    with pytest.raises(KeyboardInterrupt):
        process_source(str(path), outputs, models, TrackSettings(smoothing=SmoothingMode.CAUSAL, progress_bar=False),
                       progress=_StopAt(7, False))
    folder = outputs.json.parent
    assert sorted(p.name for p in folder.iterdir()) == ["r.coco.partial.json", "r.jsonl", "r.partial.csv",
                                                        "r.partial.json", "v.partial.mp4"]
    assert _frames_of(folder / "r.partial.json") == list(range(7))
    assert _video_frames(folder / "v.partial.mp4") == 7


def test_a_complete_run_removes_the_partial_files_of_an_earlier_one(synthetic_clip, small_estimator, tmp_path):
    path, gt = synthetic_clip
    outputs = OutputPaths(json=tmp_path / "r.json", jsonl=tmp_path / "r.jsonl")
    partial_path(outputs.json).write_text("{}")
    models = Models(GroundTruthDetector(gt, auto_advance=True), small_estimator)
    process_source(str(path), outputs, models, TrackSettings(progress_bar=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.jsonl"]


def test_process_source_refuses_to_overwrite_its_input(synthetic_clip, small_estimator, tmp_path):
    path, gt = synthetic_clip
    before = path.read_bytes()
    models = Models(GroundTruthDetector(gt, auto_advance=True), small_estimator)
    with pytest.raises(SinkError, match="is the input"):
        process_source(str(path), OutputPaths(json=tmp_path / "r.json", csv=path), models)
    assert path.read_bytes() == before and not (tmp_path / "r.json").exists()


def test_process_source_refuses_outputs_another_run_writes(synthetic_clip, small_estimator, tmp_path):
    path, gt = synthetic_clip
    outputs = OutputPaths(json=tmp_path / "r.json", jsonl=tmp_path / "r.jsonl")
    models = Models(GroundTruthDetector(gt, auto_advance=True), small_estimator)
    with OutputLock([outputs.jsonl]), pytest.raises(OutputBusyError, match="r.jsonl is being written"):
        process_source(str(path), outputs, models)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "names, expected",
    [
        (["a.mp4", "b.mp4"], ["a", "b"]),
        (["a.mp4", "a.avi", "b.mp4"], ["a_mp4", "a_avi", "b"]),
        (["day1/IMG_1.MP4", "day2/IMG_1.MP4", "day2/IMG_2.MP4"], ["day1__IMG_1_MP4", "day2__IMG_1_MP4", "IMG_2"]),
    ],
)
def test_output_stems_are_distinct(tmp_path, names, expected):
    videos = [tmp_path / name for name in names]
    for video in videos:
        video.parent.mkdir(parents=True, exist_ok=True)
        video.write_bytes(b"x")
    assert output_stems(videos) == expected


@pytest.mark.parametrize("device, live, ahead", [("cpu", False, 0), ("cuda", False, 2), ("cuda:1", True, 1)])
def test_the_detector_runs_ahead_only_on_a_gpu(small_estimator, device, live, ahead):
    class OnDevice:
        settings = type("Settings", (), {"resolved_device": device})()

        def __call__(self, image):
            raise AssertionError("not called")

    pipeline = make_pipeline(Models(OnDevice(), small_estimator), TrackSettings(smoothing=SmoothingMode.CAUSAL),
                             live=live)
    assert pipeline.settings.detect_ahead == ahead


# --------------------------------------------------------------------------------------------------
# The pose files of the field, from the same run as the JSON


def test_outputs_in_folder_names_the_pose_files(tmp_path):
    outputs = outputs_in_folder("clip", tmp_path, ["dlc", "dlc-csv", "sleap", "slp", "nwb", "json"], ".mp4")
    assert outputs == OutputPaths(json=tmp_path / "clip.json", jsonl=tmp_path / "clip.jsonl",
                                  dlc=tmp_path / "clip.dlc.h5", dlc_csv=tmp_path / "clip.dlc.csv",
                                  sleap=tmp_path / "clip.sleap.h5", slp=tmp_path / "clip.slp",
                                  nwb=tmp_path / "clip.nwb")
    with pytest.raises(ValueError, match="unknown outputs"):
        outputs_in_folder("clip", tmp_path, ["mat"], ".mp4")


def test_the_save_choices_of_the_cli_and_the_api_are_the_runs_ones():
    import animalpose.model
    from app.cli import video
    from app.runs import SAVE_CHOICES, SAVE_SUFFIXES

    assert video.SAVE_CHOICES == SAVE_CHOICES == animalpose.model.SAVE_CHOICES == tuple(SAVE_SUFFIXES)


def _pose_files(folder: Path) -> OutputPaths:
    return OutputPaths(json=folder / "r.json", jsonl=folder / "r.jsonl", dlc=folder / "r.dlc.h5",
                       dlc_csv=folder / "r.dlc.csv", sleap=folder / "r.sleap.h5", slp=folder / "r.slp",
                       nwb=folder / "r.nwb")


@pytest.mark.parametrize("smoothing", [SmoothingMode.OFFLINE, SmoothingMode.CAUSAL])
def test_every_pose_file_holds_what_the_json_holds(synthetic_clip, small_estimator, tmp_path, smoothing):
    from pose_file_support import assert_movement_matches, json_arrays, movement_dataset

    path, gt = synthetic_clip
    outputs = _pose_files(tmp_path)
    models = Models(GroundTruthDetector(gt, auto_advance=True), small_estimator)
    process_source(str(path), outputs, models, TrackSettings(smoothing=smoothing, progress_bar=False))
    expected = json_arrays(outputs.json)
    assert len(expected.individuals) == 2 and expected.keypoints.shape[0] == len(gt["frames"])
    for file, software in [(outputs.dlc, "DeepLabCut"), (outputs.dlc_csv, "DeepLabCut"), (outputs.sleap, "SLEAP"),
                           (outputs.slp, "SLEAP")]:
        assert_movement_matches(movement_dataset(file, software, fps=expected.fps), expected)
    for name in expected.individuals:
        dataset = movement_dataset(outputs.nwb, "NWB", pose_estimation_key=name)
        assert dataset.attrs["fps"] == pytest.approx(expected.fps)
        assert_movement_matches(dataset, expected, individuals=[name])


def test_an_interrupted_run_leaves_partial_pose_files(synthetic_clip, small_estimator, tmp_path):
    from pose_file_support import movement_dataset

    path, gt = synthetic_clip
    outputs = _pose_files(tmp_path / "out")
    models = Models(GroundTruthDetector(gt, auto_advance=True), small_estimator)
    with pytest.raises(KeyboardInterrupt):
        process_source(str(path), outputs, models, TrackSettings(progress_bar=False), progress=_StopAt(10, False))
    folder = outputs.json.parent
    assert sorted(p.name for p in folder.iterdir()) == ["r.dlc.partial.csv", "r.dlc.partial.h5", "r.jsonl",
                                                        "r.partial.json", "r.partial.nwb", "r.partial.slp",
                                                        "r.sleap.partial.h5"]
    assert movement_dataset(folder / "r.dlc.partial.h5", "DeepLabCut").sizes["time"] == 10


def test_a_pose_format_without_its_packages_is_refused_before_any_work(synthetic_clip, small_estimator, tmp_path,
                                                                      monkeypatch):
    import importlib.util

    import app.sinks.base

    path, gt = synthetic_clip
    real = importlib.util.find_spec
    monkeypatch.setattr(app.sinks.base.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pynwb" else real(name, *a))
    models = Models(GroundTruthDetector(gt, auto_advance=True), small_estimator)
    with pytest.raises(SinkError, match=r"r\.nwb: the NWB format needs pynwb, installed with "
                                        r"pip install 'animalpose\[formats\]'$"):
        process_source(str(path), OutputPaths(json=tmp_path / "r.json", nwb=tmp_path / "r.nwb"), models)
    assert list(tmp_path.iterdir()) == []
