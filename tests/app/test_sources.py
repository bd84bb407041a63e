"""Frame sources: video files (good, truncated, damaged, empty), image folders, input expansion, live streams."""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from streaming import MJPEGServer, frame_number, panning_frames, stamp_frame_number

from app.sources import (
    ImageFolderSource,
    ImageReadError,
    LiveSettings,
    LiveSource,
    SourceError,
    SourceKind,
    VideoFileSource,
    VideoInfo,
    expand_video_inputs,
    open_source,
    read_image_file,
    redact_url,
    source_kind,
)

SIZE = (160, 120)  # width, height of the test videos


def pan_zoom_frames(image_path: Path, count: int, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    """``count`` views of a real image: a window that pans right and zooms in over time."""
    image = cv2.imread(str(image_path))
    height, width = image.shape[:2]
    frames = []
    for t in np.linspace(0.0, 1.0, count):
        crop_h = int(height * (1.0 - 0.4 * t))
        crop_w = min(width, int(crop_h * size[0] / size[1]))
        x = int((width - crop_w) * t)
        y = (height - crop_h) // 2
        frames.append(cv2.resize(image[y:y + crop_h, x:x + crop_w], size, interpolation=cv2.INTER_AREA))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0, fourcc: str = "mp4v") -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"cannot write test video {path} with {fourcc}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def jaguar(samples_dir) -> Path:
    return samples_dir / "ap10k" / "000000037516.jpg"


@pytest.fixture(scope="module")
def pan_frames(jaguar) -> list[np.ndarray]:
    return pan_zoom_frames(jaguar, 24)


@pytest.fixture(scope="module")
def videos(tmp_path_factory, pan_frames) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    return {
        "mp4": write_video(folder / "pan.mp4", pan_frames, fourcc="mp4v"),
        "avi": write_video(folder / "pan.avi", pan_frames, fourcc="MJPG"),
    }


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


# --------------------------------------------------------------------------------------------------
# Video files


@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_video_file_delivers_every_frame_in_order(kind, videos, pan_frames):
    with VideoFileSource(videos[kind]) as source:
        assert source.info == VideoInfo(SIZE[0], SIZE[1], 10.0, len(pan_frames), str(videos[kind]), is_live=False)
        frames = list(source)
    assert [f.index for f in frames] == list(range(len(pan_frames)))
    np.testing.assert_allclose([f.timestamp_s for f in frames], np.arange(len(pan_frames)) / 10.0, atol=1e-6)
    for frame in frames:
        assert frame.image.shape == (SIZE[1], SIZE[0], 3)
        errors = [mean_abs_diff(frame.image, original) for original in pan_frames]
        assert int(np.argmin(errors)) == frame.index  # the decoded frame is the one written there
    stats = source.stats
    assert (stats.frames_read, stats.frames_delivered, stats.frames_expected) == (24, 24, 24)
    assert stats.complete and stats.frames_dropped == 0


def test_two_animal_kingdom_frames(tmp_path, samples_dir):
    images = [cv2.imread(str(p)) for p in sorted((samples_dir / "ak" / "AAOYRUDX").glob("*.jpg"))]
    path = write_video(tmp_path / "ak.avi", images, fps=25.0, fourcc="MJPG")
    with open_source(str(path)) as source:
        frames = list(source)
    assert len(frames) == 2
    assert (source.info.width, source.info.height) == (images[0].shape[1], images[0].shape[0])
    assert mean_abs_diff(frames[1].image, images[1]) < mean_abs_diff(frames[1].image, images[0])


def test_reader_stays_a_bounded_queue_ahead(videos):
    with VideoFileSource(videos["avi"], queue_size=3) as source:
        iterator = iter(source)
        next(iterator)
        time.sleep(0.3)  # the reader fills the queue and waits
        assert source.stats.frames_read <= 1 + 3 + 1
        assert len(list(iterator)) == 23


def test_close_mid_file_stops_the_reader(videos):
    source = VideoFileSource(videos["mp4"], queue_size=2)
    next(iter(source))
    start = time.monotonic()
    source.close()
    assert time.monotonic() - start < 1.0
    assert not [t for t in threading.enumerate() if t.name == "read pan.mp4"]
    with pytest.raises(RuntimeError, match="closed"):
        next(iter(source))


@pytest.mark.parametrize("kind, damage", [("avi", "truncate"), ("avi", "scramble"), ("mp4", "scramble")])
def test_damaged_video_stops_at_last_good_frame(kind, damage, videos, tmp_path, caplog):
    data = bytearray(videos[kind].read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        middle = slice(len(data) // 2, len(data) * 3 // 4)
        data[middle] = np.random.default_rng(0).integers(0, 256, len(data[middle]), dtype=np.uint8).tobytes()
    path = tmp_path / f"damaged.{kind}"
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="app.sources"), VideoFileSource(path) as source:
        frames = list(source)
    assert 0 < len(frames) < 24
    assert [f.index for f in frames] == list(range(len(frames)))
    assert source.stats.frames_read == len(frames) and source.stats.frames_expected == 24
    assert not source.stats.complete
    assert f"ended after {len(frames)} of 24 frames" in caplog.text


def _zero_frame_video(path: Path) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, SIZE)
    writer.release()


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "does not exist"),
        ("folder", "is a folder"),
        ("empty", "is empty"),
        ("text", "cannot be read as a video"),
        ("garbage", "cannot be read as a video"),
        ("truncated_mp4", "cannot be read as a video"),  # MP4's index (moov) is written last
        ("zero_frames", "has no frames"),
    ],
)
def test_video_file_errors(case, expected, tmp_path, videos):
    path = tmp_path / "input.mp4"
    if case == "folder":
        path.mkdir()
    elif case == "empty":
        path.touch()
    elif case == "text":
        path.write_text("this is not a video\n" * 20)
    elif case == "garbage":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    elif case == "truncated_mp4":
        data = videos["mp4"].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "zero_frames":
        path = tmp_path / "input.avi"
        _zero_frame_video(path)
    with pytest.raises(SourceError, match=expected) as info:
        VideoFileSource(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------------
# Image folders and input expansion


@pytest.fixture()
def image_folder(tmp_path, pan_frames) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in (1, 2, 10):  # natural order: 1, 2, 10 (a plain sort would put 10 before 2)
        cv2.imwrite(str(folder / f"img{n}.png" if n != 2 else folder / f"img{n}.jpg"), pan_frames[n])
    (folder / "img3.jpg").write_text("not an image")
    (folder / "notes.txt").write_text("ignored")
    return folder


def test_image_folder_in_natural_order_skipping_unreadable(image_folder, pan_frames, caplog):
    with caplog.at_level(logging.WARNING, logger="app.sources"), ImageFolderSource(image_folder, fps=5.0) as source:
        assert [p.name for p in source.files] == ["img1.png", "img2.jpg", "img3.jpg", "img10.png"]
        assert (source.info.width, source.info.height, source.info.fps, source.info.total_frames) == (*SIZE, 5.0, 4)
        frames = list(source)
    assert [f.index for f in frames] == [0, 1, 3]
    np.testing.assert_allclose([f.timestamp_s for f in frames], [0.0, 0.2, 0.6])
    np.testing.assert_array_equal(frames[0].image, pan_frames[1])  # PNG is lossless
    assert mean_abs_diff(frames[1].image, pan_frames[2]) < 6  # JPEG
    stats = source.stats
    assert (stats.frames_read, stats.frames_delivered, stats.frames_skipped, stats.frames_expected) == (3, 3, 1, 4)
    assert "skipping" in caplog.text and "img3.jpg" in caplog.text


@pytest.mark.parametrize("case, expected", [("none", "no images found"), ("unreadable", "can be read")])
def test_image_folder_errors(case, expected, tmp_path):
    if case == "unreadable":
        (tmp_path / "a.jpg").write_text("no")
        (tmp_path / "b.png").write_bytes(b"\x89PNG broken")
    else:
        (tmp_path / "a.txt").write_text("no")
    with pytest.raises(SourceError, match=expected):
        ImageFolderSource(tmp_path)


@pytest.fixture()
def video_tree(tmp_path) -> Path:
    for name in ["b10.mp4", "b2.MOV", "a.webm", "notes.txt", "still.jpg", "sub/c.mkv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("", ["a.webm", "b2.MOV", "b10.mp4"]),
        ("*.mp4", ["b10.mp4"]),
        ("**/*", ["a.webm", "b2.MOV", "b10.mp4", "sub/c.mkv"]),
        ("b10.mp4", ["b10.mp4"]),
    ],
)
def test_expand_video_inputs(pattern, expected, video_tree):
    found = expand_video_inputs(str(video_tree / pattern) if pattern else str(video_tree))
    assert [p.relative_to(video_tree).as_posix() for p in found] == expected


@pytest.mark.parametrize("pattern, expected", [("sub/*.txt", "no videos found"), ("nothing", "does not exist")])
def test_expand_video_inputs_errors(pattern, expected, video_tree):
    with pytest.raises(SourceError, match=expected):
        expand_video_inputs(str(video_tree / pattern))


@pytest.mark.parametrize(
    "spec, expected",
    [
        (0, SourceKind.LIVE),
        ("2", SourceKind.LIVE),
        ("rtsp://user:pw@10.0.0.5:554/stream", SourceKind.LIVE),
        ("https://example.org/cam.mjpg", SourceKind.LIVE),
        ("b10.mp4", SourceKind.VIDEO),
        ("still.jpg", SourceKind.IMAGES),
        ("", SourceKind.VIDEOS),
        ("*.mp4", SourceKind.VIDEOS),
        ("*.jpg", SourceKind.IMAGES),
    ],
)
def test_source_kind(spec, expected, video_tree):
    if isinstance(spec, str) and not spec.isdigit() and "://" not in spec:
        spec = str(video_tree / spec) if spec else str(video_tree)
    assert source_kind(spec) is expected


def test_open_source_dispatch(videos, image_folder, tmp_path):
    with open_source(str(videos["avi"])) as source:
        assert isinstance(source, VideoFileSource)
    with open_source(image_folder, fps=2.0) as source:
        assert isinstance(source, ImageFolderSource) and source.info.fps == 2.0
    with open_source(str(image_folder / "img1.png")) as source:
        assert isinstance(source, ImageFolderSource) and len(list(source)) == 1
    with pytest.raises(SourceError, match="holds 2 videos"):
        open_source(str(videos["avi"].parent))
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "missing.mp4"))


def test_redact_url():
    assert redact_url("rtsp://admin:secret@10.0.0.5:554/live") == "rtsp://***@10.0.0.5:554/live"
    assert redact_url("http://cam.local/x.mjpg") == "http://cam.local/x.mjpg"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"open_timeout_s": 0}, "open_timeout_s"),
        ({"initial_backoff_s": 2.0, "max_backoff_s": 1.0}, "max_backoff_s"),
        ({"max_reconnect_s": -1}, "max_reconnect_s"),
        ({"fresh_wait": -0.1}, "fresh_wait"),
        ({"fresh_wait": 1.5}, "fresh_wait"),
    ],
)
def test_live_settings_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LiveSettings(**kwargs)


@pytest.mark.parametrize(
    "args, message",
    [((0, 10, 25.0, None, "x"), "width"), ((10, 10, 0.0, None, "x"), "fps"), ((10, 10, 25.0, -1, "x"), "total_frames")],
)
def test_video_info_validation(args, message):
    with pytest.raises(ValueError, match=message):
        VideoInfo(*args)


# --------------------------------------------------------------------------------------------------
# Live streams (a real HTTP MJPEG server on 127.0.0.1)

FPS = 20.0
QUICK = LiveSettings(open_timeout_s=2.0, read_timeout_s=1.0, initial_backoff_s=0.2, max_backoff_s=0.4,
                     max_reconnect_s=3.0, close_timeout_s=2.0)


@pytest.fixture(scope="module")
def stream_backgrounds(jaguar) -> list[np.ndarray]:
    return panning_frames(jaguar, size=SIZE, count=8)


@pytest.fixture()
def camera(stream_backgrounds):
    with MJPEGServer(stream_backgrounds, fps=FPS, max_frames=int(60 * FPS)) as server:
        yield server


@pytest.mark.parametrize("number", [0, 1, 1234, 65535])
def test_frame_numbers_survive_jpeg(number, stream_backgrounds):
    data = cv2.imencode(".jpg", stamp_frame_number(stream_backgrounds[0], number), [cv2.IMWRITE_JPEG_QUALITY, 70])[1]
    assert frame_number(cv2.imdecode(data, cv2.IMREAD_COLOR)) == number


def test_live_stream_delivers_fresh_frames(camera):
    with LiveSource(camera.url, QUICK) as source:
        assert source.info.is_live and source.info.total_frames is None
        assert (source.info.width, source.info.height) == SIZE
        numbers = []
        for frame in source:
            numbers.append(frame_number(frame.image))
            assert time.monotonic() - frame.captured_at < 0.5
            if len(numbers) == 15:
                break
    assert numbers == sorted(numbers) and len(set(numbers)) == 15
    assert numbers[-1] - numbers[0] < 15 + 10  # a fast consumer misses few frames


def test_slow_consumer_gets_newest_frame_and_drops_are_counted(camera):
    lags = []
    with LiveSource(camera.url, QUICK) as source:
        for n, frame in enumerate(source):
            lags.append(camera.current_frame() - frame_number(frame.image))
            time.sleep(4 / FPS)  # a consumer four times slower than the camera
            if n == 7:
                break
    stats = source.stats
    # newest-frame semantics: the frame taken is at most a frame or two behind the camera, never a backlog
    assert max(lags[1:]) <= 3, lags
    assert stats.frames_delivered == 8
    assert stats.frames_dropped >= 8  # about three of every four frames
    assert stats.frames_read == stats.frames_delivered + stats.frames_dropped


@pytest.mark.parametrize("fresh_wait", [0.0, 0.5])
def test_a_slow_consumer_is_not_handed_frames_most_of_an_interval_old(camera, fresh_wait):
    # A consumer 1.6 frame intervals slow finds the newest frame anywhere from 0 to an interval old. With
    # fresh_wait 0.5 it waits for the next one instead of taking one older than half an interval.
    interval = 1.0 / FPS
    ages, waits = [], []
    settings = dataclasses.replace(QUICK, fresh_wait=fresh_wait)
    with LiveSource(camera.url, settings) as source:
        asked = time.monotonic()
        for n, frame in enumerate(source):
            now = time.monotonic()
            ages.append(now - frame.captured_at)
            waits.append(now - asked)
            if n == 24:
                break
            time.sleep(1.6 * interval)
            asked = time.monotonic()
        assert source.frame_interval() == pytest.approx(interval, rel=0.3)
    ages = sorted(ages[5:])  # after the interval is measured
    if fresh_wait:
        assert ages[int(0.8 * len(ages))] <= 0.5 * interval + 0.01, ages
        assert max(waits[5:]) <= 1.25 * interval + 0.05  # never more than to a quarter interval past the next frame
    else:
        assert ages[-1] > 0.6 * interval, ages  # the newest frame, however old


def test_stream_cut_reconnects_and_continues(camera):
    numbers = []
    with LiveSource(camera.url, QUICK) as source:
        for frame in source:
            numbers.append(frame_number(frame.image))
            if len(numbers) == 5:
                camera.cut()
                threading.Timer(1.0, camera.resume).start()
            if len(numbers) == 15:
                break
    assert source.stats.reconnects >= 1 and camera.connections >= 2
    gaps = np.diff(numbers)
    assert gaps.max() >= 0.8 * FPS  # the frames produced during the outage never arrived...
    assert (gaps > 0).all()  # ...and the stream went on, in order, after it


def test_stream_that_stays_down_raises(camera):
    settings = LiveSettings(open_timeout_s=1.0, read_timeout_s=1.0, initial_backoff_s=0.2, max_backoff_s=0.4,
                            max_reconnect_s=1.0)
    with LiveSource(camera.url, settings) as source:
        start = None
        with pytest.raises(SourceError, match="could not reconnect within 1 s"):
            for n, _ in enumerate(source):
                if n == 2:
                    camera.cut()
                    start = time.monotonic()
        assert time.monotonic() - start < 3.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("spec, expected", [("http", "cannot open the stream"), (97, "cannot open camera 97")])
def test_unreachable_live_source_fails_fast(spec, expected):
    if spec == "http":
        spec = f"http://user:secret@127.0.0.1:{_closed_port()}/stream.mjpg"
    start = time.monotonic()
    with pytest.raises(SourceError, match=expected) as info:
        LiveSource(spec, QUICK)
    assert time.monotonic() - start < 2.0
    assert "secret" not in str(info.value)


def test_close_and_ctrl_c_stop_the_reader_promptly(camera):
    source = LiveSource(camera.url, QUICK)
    with pytest.raises(KeyboardInterrupt):
        with source:
            for n, _ in enumerate(source):
                if n == 3:
                    start = time.monotonic()
                    raise KeyboardInterrupt
    assert time.monotonic() - start < 1.5
    assert not source._thread.is_alive()
    stats = source.stats
    assert stats.frames_read == stats.frames_delivered + stats.frames_dropped


# --------------------------------------------------------------------------------------------------
# Reading one image file


def _cut_jpeg(folder: Path, image: np.ndarray, name: str = "cut.jpg") -> Path:
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    path = folder / name
    path.write_bytes(data.tobytes()[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d, im: d / "missing.jpg", "does not exist"),
        (lambda d, im: d, "is not a file"),
        (lambda d, im: (d / "empty.png").write_bytes(b"") or d / "empty.png", "is empty"),
        (lambda d, im: (d / "t.jpg").write_text("text") and d / "t.jpg", "not an image OpenCV can read"),
        (lambda d, im: _cut_jpeg(d, im), "is damaged: its JPEG data ends early"),
    ],
)
def test_read_image_file_errors_name_the_file(tmp_path, pan_frames, make, message):
    path = make(tmp_path, pan_frames[0])
    with pytest.raises(ImageReadError, match=message) as info:
        read_image_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_read_image_file_reads_whole_jpeg_and_png(tmp_path, pan_frames):
    for name in ("a.jpg", "a.png"):
        cv2.imwrite(str(tmp_path / name), pan_frames[0])
        assert read_image_file(tmp_path / name).shape == (*SIZE[::-1], 3)


def test_image_folder_skips_a_jpeg_cut_short(tmp_path, pan_frames, caplog):
    for n in range(3):
        cv2.imwrite(str(tmp_path / f"{n}.jpg"), pan_frames[n])
    _cut_jpeg(tmp_path, pan_frames[3], "1.jpg")
    with caplog.at_level(logging.WARNING, logger="app.sources"), ImageFolderSource(tmp_path) as source:
        assert [f.index for f in source] == [0, 2]
    assert source.stats.frames_skipped == 1 and "1.jpg is damaged" in caplog.text


def test_a_file_as_a_live_source_plays_at_its_rate_and_ends(synthetic_clip):
    """A video file given to ``live`` behaves like a camera: frames at the file's rate (a fast consumer
    misses none of them), and the end of the file ends the stream instead of reconnecting."""
    clip, gt = synthetic_clip
    with LiveSource(str(clip)) as source:
        assert source.is_file
        frames = list(source)
    stats = source.stats
    assert stats.reconnects == 0 and stats.frames_read == len(gt["frames"])
    assert len(frames) >= 0.9 * len(gt["frames"])  # read as fast as it decodes, most would be dropped
    assert frames[-1].timestamp_s >= 0.9 * (len(gt["frames"]) - 1) / source.info.fps
