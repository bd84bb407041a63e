"""Result sinks: labeled video, JSON Lines + final JSON, CSV (long and wide), COCO results; atomic names and errors."""

from __future__ import annotations

import csv
import errno
import io
import json
import math
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import pytest

import app.sinks.base
import app.sinks.coco
import app.sinks.json_lines
import app.sinks.keypoints_csv
import app.sinks.video as video_sink
from app.drawing import DrawSettings, TrailHistory, draw_frame, track_color
from app.results_json import STATUS_NAMES
from app.sinks import (
    LONG_HEADER,
    CocoResultsSink,
    CsvLayout,
    CsvSink,
    JsonLinesSink,
    SinkError,
    VideoSink,
    part_path,
    partial_path,
)
from app.sources import VideoInfo
from pose.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS, SKELETON
from pose.structures import FrameResult

WIDTH, HEIGHT, FPS = 160, 120, 10.0
INFO = VideoInfo(WIDTH, HEIGHT, FPS, None, "synthetic", is_live=False)


def make_results(count: int = 6) -> list[FrameResult]:
    """Two animals walking right; track 7 is absent in frame 2, frame 4 is empty, one keypoint is missing."""
    rng = np.random.default_rng(0)
    template = rng.uniform([0, 0], [30, 25], size=(NUM_KEYPOINTS, 2))
    results = []
    for f in range(count):
        ids, boxes, scores, keypoints, status = [], [], [], [], []
        for track_id, x0, y0 in ((3, 10.0, 20.0), (7, 90.0, 70.0)):
            if (f == 2 and track_id == 7) or f == 4:
                continue
            xy = template + [x0 + 4 * f, y0]
            conf = rng.uniform(0.5, 1.0, NUM_KEYPOINTS)
            kpts = np.column_stack([xy, conf])
            st = np.full(NUM_KEYPOINTS, 3, np.uint8)
            if track_id == 3:
                kpts[5] = (np.nan, np.nan, 0.0)
                st[5] = 0
            ids.append(track_id)
            boxes.append([*(xy.min(0) - 2), *(xy.max(0) + 2)])
            scores.append(0.9)
            keypoints.append(kpts)
            status.append(st)
        if ids:
            results.append(FrameResult(f, f / FPS, ids, boxes, scores, keypoints, status))
        else:
            results.append(FrameResult.empty(f, f / FPS))
    return results


@pytest.fixture(scope="module")
def results() -> list[FrameResult]:
    return make_results()


@pytest.fixture(scope="module")
def background(samples_dir) -> np.ndarray:
    return cv2.resize(cv2.imread(str(samples_dir / "ap10k" / "000000037516.jpg")), (WIDTH, HEIGHT))


def read_video(path: Path) -> tuple[int, tuple[int, int], float]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    frames = 0
    while capture.read()[0]:
        frames += 1
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return frames, size, fps


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


# --------------------------------------------------------------------------------------------------
# Video


@pytest.mark.parametrize(
    "name, codecs", [("out.mp4", ("libx264", "h264_nvenc")), ("out.mkv", ("libx264", "h264_nvenc")),
                     ("out.avi", ("mjpeg",)), ("out.webm", ("libvpx-vp9",))]
)
def test_video_sink_writes_every_frame(name, codecs, tmp_path, results, background):
    path = tmp_path / "labeled" / name
    with VideoSink(path, INFO, DrawSettings(trail_length=4)) as sink:
        assert sink.codec in codecs
        assert sink.part == tmp_path / "labeled" / f".out.part{path.suffix}"
        for result in results:
            sink.write(result, background)
    assert read_video(path) == (len(results), (WIDTH, HEIGHT), FPS)
    assert leftovers(path.parent) == []


def test_video_sink_resizes_frames_of_another_size(tmp_path, results, background, caplog):
    path = tmp_path / "out.avi"
    with VideoSink(path, INFO) as sink:
        for result in results[:3]:
            sink.write(result, cv2.resize(background, (WIDTH * 2, HEIGHT * 2)))
    assert read_video(path)[:2] == (3, (WIDTH, HEIGHT))
    assert "resizing 320x240 frames to 160x120" in caplog.text


@pytest.mark.parametrize("name", ["out.mp4", "out.avi"])
def test_video_sink_leaves_a_partial_video_on_exception(name, tmp_path, results, background):
    path = tmp_path / name
    with pytest.raises(RuntimeError, match="pipeline broke"):
        with VideoSink(path, INFO) as sink:
            for result in results[:3]:
                sink.write(result, background)
            raise RuntimeError("pipeline broke")
    assert not path.exists() and not part_path(path).exists()
    assert partial_path(path) == tmp_path / f"out.partial{path.suffix}"
    assert read_video(partial_path(path))[0] == 3  # the partial video is finalised (its index written) and plays


def test_sinks_that_received_nothing_leave_nothing_on_exception(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with ExitStack() as stack:
            for kind in KINDS:
                stack.enter_context(_open_sink(kind, tmp_path / kind / "out"))
            raise KeyboardInterrupt
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    "name, codecs, expected",
    [("out.gif", None, "unknown video extension '.gif'"), ("out.mp4", ("zzzz",), "none of the encoders zzzz opens")],
)
def test_video_sink_codec_errors(name, codecs, expected, tmp_path):
    with pytest.raises(SinkError, match=expected):
        VideoSink(tmp_path / name, INFO, codecs=codecs)
    assert leftovers(tmp_path) == []


def test_video_sink_reports_a_full_disk(tmp_path, results, background, monkeypatch):
    full = type("Usage", (), {"total": 1, "used": 1, "free": 0})()
    monkeypatch.setattr(video_sink.shutil, "disk_usage", lambda path: full)
    with pytest.raises(SinkError, match=r"cannot write .*out\.avi: no space left on device"):
        with VideoSink(tmp_path / "out.avi", INFO, queue_size=1) as sink:
            for n in range(video_sink.DISK_CHECK_EVERY + 3):
                sink.write(results[n % len(results)], background)
    assert not (tmp_path / "out.avi").exists()


def test_video_sink_reports_a_failed_write_in_one_line_and_keeps_no_broken_file(tmp_path, results, background,
                                                                               monkeypatch):
    def full(self, image, timestamp_s):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(video_sink.VideoEncoder, "encode", full)
    with pytest.raises(SinkError, match=r"^cannot write .*out\.mp4: no space left on device$"):
        with VideoSink(tmp_path / "out.mp4", INFO, queue_size=1) as sink:
            for n in range(5):
                sink.write(results[n % len(results)], background)
    assert list(tmp_path.iterdir()) == []


def test_draw_frame_draws_skeleton_boxes_and_trails(results, background):
    settings = DrawSettings(trail_length=5)
    before = background.copy()
    trails = TrailHistory(5)
    for result in results[:4]:
        drawn_trails = trails.update(result)
    plain = draw_frame(background, results[3], DrawSettings())
    with_trails = draw_frame(background, results[3], settings, drawn_trails)
    assert not np.array_equal(plain, background) and not np.array_equal(with_trails, plain)
    np.testing.assert_array_equal(background, before)  # drawn on copies
    # the trail of track 3 ends at its box centre, drawn in the track's colour
    x1, y1, x2, y2 = results[3].boxes[0]
    centre = with_trails[int(round((y1 + y2) / 2)), int(round((x1 + x2) / 2)) - 2].astype(int)
    assert np.abs(centre - track_color(3)).max() < 60


def test_trail_history_follows_and_forgets_tracks(results):
    trails = TrailHistory(length=2)
    assert set(trails.update(results[0])) == {3, 7}
    out = trails.update(results[1])
    assert out[3].shape == (2, 2) and out[3][1, 0] - out[3][0, 0] == pytest.approx(4.0, abs=1e-3)
    assert set(trails.update(results[2])) == {3}  # 7 absent: not drawn
    assert set(trails.update(results[3])) == {3, 7}  # back: its trail continues
    trails.update(results[4])  # empty frame
    assert 7 in trails._points
    trails.update(FrameResult.empty(5, 0.5))  # absent for 2 frames: forgotten
    assert trails._points == {}
    keypoint_trails = TrailHistory(length=3, keypoint=5)  # missing keypoint: no point for track 3
    assert 3 not in keypoint_trails.update(results[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"kpt_thr": 1.5}, "kpt_thr"), ({"trail_length": -1}, "trail_length"), ({"trail_keypoint": 17}, "trail_keypoint"),
     ({"thickness": 0}, "thickness")],
)
def test_draw_settings_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DrawSettings(**kwargs)


# --------------------------------------------------------------------------------------------------
# JSON


def assert_frame_matches(obj: dict, result: FrameResult) -> None:
    assert obj["frame"] == result.frame_index and obj["time"] == pytest.approx(result.timestamp_s)
    assert [a["track_id"] for a in obj["animals"]] == result.track_ids.tolist()
    for animal, box, score, kpts, status in zip(obj["animals"], result.boxes, result.box_scores, result.keypoints,
                                                result.keypoint_status):
        np.testing.assert_allclose(animal["bbox"], box, atol=1e-3)
        assert animal["score"] == pytest.approx(score, abs=1e-4)
        assert animal["status"] == status.tolist()
        got = np.array([[math.nan if v is None else v for v in row] for row in animal["keypoints"]])
        np.testing.assert_allclose(got, kpts, atol=1e-3)  # NaN (missing) written as null


def test_json_lines_and_final_json(tmp_path, results):
    lines, final = tmp_path / "run.jsonl", tmp_path / "out" / "run.json"
    with JsonLinesSink(lines, final, info=INFO, metadata={"model": "hrnet"}) as sink:
        for n, result in enumerate(results):
            sink.write(result)
            assert len(lines.read_text().splitlines()) == n + 1  # flushed per frame
        sink.set_metadata(stats={"frames": len(results)})
        assert not final.exists()
    rows = [json.loads(line) for line in lines.read_text().splitlines()]
    for row, result in zip(rows, results, strict=True):
        assert_frame_matches(row, result)
    document = json.loads(final.read_text())
    assert document["frames"] == rows
    assert document["source"] == {"name": "synthetic", "fps": FPS, "width": WIDTH, "height": HEIGHT,
                                  "total_frames": None, "is_live": False}
    assert document["keypoint_names"] == list(KEYPOINT_NAMES)
    assert document["skeleton"] == SKELETON.tolist() and document["skeleton_base"] == 0
    assert document["keypoint_status"] == {"0": "missing", "1": "observed", "2": "predicted", "3": "smoothed"}
    assert document["model"] == "hrnet" and document["stats"] == {"frames": len(results)}
    assert leftovers(tmp_path) == [] and leftovers(final.parent) == []


def test_json_lines_survive_a_crash_and_the_final_json_is_left_partial(tmp_path, results):
    lines, final = tmp_path / "run.jsonl", tmp_path / "run.json"
    with pytest.raises(RuntimeError):
        with JsonLinesSink(lines, final) as sink:
            for result in results[:3]:
                sink.write(result)
            raise RuntimeError("crash")
    assert len(lines.read_text().splitlines()) == 3
    assert not final.exists() and not part_path(final).exists()
    document = json.loads(partial_path(final).read_text())
    assert document["complete"] is False
    assert [f["frame"] for f in document["frames"]] == [r.frame_index for r in results[:3]]


def test_status_names_match_the_tracker():
    smoothing = pytest.importorskip("tracking.smoothing")
    assert STATUS_NAMES == tuple(s.name.lower() for s in sorted(smoothing.KeypointStatus))


# --------------------------------------------------------------------------------------------------
# CSV


def test_long_csv_rows_equal_the_results(tmp_path, results):
    path = tmp_path / "kpts.csv"
    with CsvSink(path, CsvLayout.LONG) as sink:
        for result in results:
            sink.write(result)
        assert not path.exists() and part_path(path).exists()
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == LONG_HEADER
        rows = list(reader)
    expected = [(r, n, k) for r in results for n in range(len(r)) for k in range(NUM_KEYPOINTS)]
    assert len(rows) == len(expected)
    for row, (result, n, k) in zip(rows, expected):
        assert int(row["frame"]) == result.frame_index and float(row["time"]) == pytest.approx(result.timestamp_s)
        assert int(row["track_id"]) == result.track_ids[n] and row["keypoint"] == KEYPOINT_NAMES[k]
        x, y, c = result.keypoints[n, k]
        if np.isnan(x):
            assert row["x"] == row["y"] == ""
        else:
            assert float(row["x"]) == pytest.approx(x, abs=1e-3) and float(row["y"]) == pytest.approx(y, abs=1e-3)
        assert float(row["confidence"]) == pytest.approx(c, abs=1e-4)
        assert int(row["status"]) == result.keypoint_status[n, k]
    assert leftovers(tmp_path) == []


def test_wide_csv_has_deeplabcut_layout(tmp_path, results):
    path = tmp_path / "wide.csv"
    with CsvSink(path, CsvLayout.WIDE) as sink:
        for result in results:
            sink.write(result)
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    columns = 2 * NUM_KEYPOINTS * 3
    assert [row[0] for row in table[:4]] == ["scorer", "individuals", "bodyparts", "coords"]
    assert all(len(row) == 1 + columns for row in table)
    assert table[1][1:] == ["3"] * (columns // 2) + ["7"] * (columns // 2)
    assert table[2][1:4] == [KEYPOINT_NAMES[0]] * 3 and table[3][1:4] == ["x", "y", "likelihood"]
    body = table[4:]
    assert [int(row[0]) for row in body] == [r.frame_index for r in results]
    for row, result in zip(body, results):
        for track_slot, track_id in enumerate((3, 7)):
            cells = row[1 + track_slot * NUM_KEYPOINTS * 3: 1 + (track_slot + 1) * NUM_KEYPOINTS * 3]
            if track_id not in result.track_ids:
                assert cells == [""] * len(cells)
                continue
            kpts = result.keypoints[list(result.track_ids).index(track_id)]
            got = np.array([math.nan if v == "" else float(v) for v in cells]).reshape(NUM_KEYPOINTS, 3)
            np.testing.assert_allclose(got, kpts, atol=1e-3)  # NaN (missing) written as empty cells


def test_wide_csv_reads_like_deeplabcut_with_pandas(tmp_path, results):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "wide.csv"
    with CsvSink(path, CsvLayout.WIDE) as sink:
        for result in results:
            sink.write(result)
    table = pd.read_csv(path, header=[0, 1, 2, 3], index_col=0)
    assert table.shape == (len(results), 2 * NUM_KEYPOINTS * 3)
    assert table[("animalpose", "7", "Nose", "x")].iloc[0] == pytest.approx(results[0].keypoints[1, 2, 0], abs=1e-3)


@pytest.mark.parametrize("layout", list(CsvLayout))
def test_csv_leaves_the_frames_written_in_a_partial_file_on_exception(tmp_path, results, layout):
    with pytest.raises(RuntimeError):
        with CsvSink(tmp_path / "k.csv", layout) as sink:
            sink.write(results[0])
            raise RuntimeError("crash")
    assert [p.name for p in tmp_path.iterdir()] == ["k.partial.csv"]
    text = (tmp_path / "k.partial.csv").read_text()
    assert text.count("\n") == (1 + 17 * len(results[0]) if layout is CsvLayout.LONG else 5)


def test_coco_results_left_partial_on_exception(tmp_path, results):
    with pytest.raises(KeyboardInterrupt):
        with CocoResultsSink(tmp_path / "r.coco.json") as sink:
            for result in results[:2]:
                sink.write(result)
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["r.coco.partial.json"]
    assert len(json.loads((tmp_path / "r.coco.partial.json").read_text())) == len(results[0]) + len(results[1])


# --------------------------------------------------------------------------------------------------
# COCO


def test_coco_results_load_and_score_perfectly(tmp_path, results):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path = tmp_path / "results.json"
    with CocoResultsSink(path, image_id_offset=100) as sink:
        for result in results:
            sink.write(result)
    detections = json.loads(path.read_text())
    assert len(detections) == sum(len(r) for r in results)
    first = detections[0]
    assert first["image_id"] == 100 and first["category_id"] == 1 and first["track_id"] == 3
    assert len(first["keypoints"]) == 3 * NUM_KEYPOINTS and first["keypoints"][15:18] == [0.0, 0.0, 0.0]
    box = results[0].boxes[0]
    np.testing.assert_allclose(first["bbox"], [box[0], box[1], box[2] - box[0], box[3] - box[1]], atol=1e-3)
    assert first["score"] == pytest.approx(np.nanmean(results[0].keypoints[0, :, 2]) * 0.9, abs=1e-5)

    annotations = []
    for result in results:
        for n in range(len(result)):
            kpts = np.nan_to_num(result.keypoints[n]).copy()
            kpts[:, 2] = np.where(result.keypoint_status[n] > 0, 2, 0)
            x1, y1, x2, y2 = (float(v) for v in result.boxes[n])
            annotations.append({
                "id": len(annotations) + 1, "image_id": result.frame_index + 100, "category_id": 1, "iscrowd": 0,
                "keypoints": kpts.reshape(-1).tolist(), "num_keypoints": int((kpts[:, 2] > 0).sum()),
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
            })
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": [{"id": r.frame_index + 100, "width": WIDTH, "height": HEIGHT} for r in results],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "animal", "keypoints": list(KEYPOINT_NAMES),
                        "skeleton": (SKELETON + 1).tolist()}],
    }
    ground_truth.createIndex()
    evaluation = COCOeval(ground_truth, ground_truth.loadRes(str(path)), "keypoints")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------
# Failures of the file system


def _open_sink(kind: str, path: Path):
    if kind == "video":
        return VideoSink(path.with_suffix(".avi"), INFO)
    if kind == "jsonl":
        return JsonLinesSink(path.with_suffix(".jsonl"), path.with_suffix(".json"))
    if kind == "long_csv":
        return CsvSink(path.with_suffix(".csv"), CsvLayout.LONG)
    if kind == "wide_csv":
        return CsvSink(path.with_suffix(".csv"), CsvLayout.WIDE)
    return CocoResultsSink(path.with_suffix(".json"))


KINDS = ["video", "jsonl", "long_csv", "wide_csv", "coco"]


@pytest.mark.parametrize("kind", KINDS)
def test_unwritable_location_is_one_clear_error(kind, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(SinkError, match=r"cannot write .*a_file/sub/out\.\w+: ") as info:
        _open_sink(kind, blocker / "sub" / "out")
    assert "\n" not in str(info.value)


class _FullDisk(io.TextIOWrapper):
    """A text file whose writes fail with ENOSPC once ``budget`` characters have been written."""

    budget = 300

    def write(self, text: str) -> int:
        type(self).budget -= len(text)
        if type(self).budget < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(text)


def _full_disk_open(file, mode="r", *args, **kwargs):
    handle = open(file, mode, *args, **kwargs)
    if "w" not in mode:
        return handle
    return _FullDisk(handle.detach(), encoding="utf-8", newline=kwargs.get("newline"))


@pytest.mark.parametrize("kind", ["jsonl", "long_csv", "wide_csv", "coco"])
def test_full_disk_is_one_clear_error(kind, tmp_path, results, monkeypatch):
    monkeypatch.setattr(_FullDisk, "budget", 300)
    for module in (app.sinks.base, app.sinks.json_lines, app.sinks.keypoints_csv, app.sinks.coco):
        monkeypatch.setattr(module, "open", _full_disk_open, raising=False)
    with pytest.raises(SinkError, match=r"cannot write .*out\.\w+: no space left on device$"):
        with _open_sink(kind, tmp_path / "out") as sink:
            for result in results:
                sink.write(result)
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "out.csv").exists()
    if kind in ("wide_csv", "coco"):
        assert leftovers(tmp_path) == []  # built at close: the failed temporary file is removed


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_json_lines_on_a_really_full_device(results):
    with pytest.raises(SinkError, match="cannot write /dev/full: no space left on device"):
        JsonLinesSink("/dev/full").write(results[0])


@pytest.mark.parametrize("kind", KINDS)
def test_write_after_close_is_an_error(kind, tmp_path, results, background):
    sink = _open_sink(kind, tmp_path / "out")
    sink.close()
    with pytest.raises(SinkError, match="closed"):
        sink.write(results[0], background)
