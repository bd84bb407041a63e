"""Frame readers: video files, image folders, webcams and network streams.

Every source is a context manager and an iterable of :class:`Frame`, with an
:class:`VideoInfo` (``.info``) known as soon as it is opened and a
:class:`SourceStats` snapshot (``.stats``) that says what was read, delivered,
dropped or skipped. Reading starts with the iteration and happens on a reader
thread, so decoding overlaps with whatever the consumer does with each frame:

* :class:`VideoFileSource` and :class:`ImageFolderSource` put every frame on a
  bounded queue; a slow consumer slows the reader down, nothing is dropped.
* :class:`LiveSource` keeps only the newest frame in a one-slot buffer; a frame
  the consumer had no time to take is replaced and counted as dropped. The
  consumer therefore always works on a frame at most one frame-interval old,
  however slow it is (the buffer never falls behind the camera), and reconnects
  with exponential backoff when the stream drops.

Problems a user can act on (missing file, not a video, unreachable stream) raise
:class:`SourceError` with a one-line message that names the source.
"""

from __future__ import annotations

import contextlib
import enum
import glob
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts",
     ".m2ts", ".3gp", ".ogv"}
)
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm"}
)
STREAM_SCHEMES: frozenset[str] = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt"})

#: Frame rates outside (0, MAX_PLAUSIBLE_FPS] reported by a container are treated as unknown.
MAX_PLAUSIBLE_FPS = 1000.0
#: Frame rate assumed when a video does not state a plausible one.
FALLBACK_FPS = 30.0


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message is one line naming the source."""


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a source once it is open.

    Attributes:
        width, height: frame size in pixels (of the first frame).
        fps: frames per second; for live sources the rate the device or stream announces.
        total_frames: number of frames the file announces; None for live sources or when unknown.
        name: the source as shown to a user (a path, a camera index, a URL without credentials).
        is_live: True for cameras and network streams (frames may be dropped).
    """

    width: int
    height: int
    fps: float
    total_frames: int | None
    name: str
    is_live: bool = False

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"width and height must be positive, got {self.width}x{self.height}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive number, got {self.fps}")
        if self.total_frames is not None and self.total_frames < 0:
            raise ValueError(f"total_frames must be >= 0 or None, got {self.total_frames}")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, the order OpenCV's writers take."""
        return self.width, self.height


@dataclass(frozen=True)
class Frame:
    """One image from a source.

    Attributes:
        index: 0-based position of the frame in its source. Files: the frame number in the video
            (image folders: the position in the sorted file list). Live: the count of frames read
            before it, so gaps between delivered indices are frames dropped for being stale.
        timestamp_s: media time in seconds for files; seconds since the source was opened for live sources.
        captured_at: ``time.monotonic()`` when the reader got the frame (latency = now - captured_at).
        image: (H, W, 3) uint8 BGR image, owned by the consumer.
    """

    index: int
    timestamp_s: float
    captured_at: float
    image: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"index must be >= 0, got {self.index}")
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 BGR, got {self.image.shape} {self.image.dtype}")


@dataclass(frozen=True)
class SourceStats:
    """A snapshot of what a source has done so far.

    Attributes:
        frames_read: frames decoded by the reader.
        frames_delivered: frames handed to the consumer.
        frames_dropped: live only: frames replaced by a newer one before the consumer took them
            (after ``close()``, frames_read == frames_delivered + frames_dropped).
        frames_skipped: image folders only: files that could not be read as images.
        frames_expected: frames (or image files) the source announced; None when unknown or live.
        reconnects: live only: times the stream was lost and opened again.
    """

    frames_read: int = 0
    frames_delivered: int = 0
    frames_dropped: int = 0
    frames_skipped: int = 0
    frames_expected: int | None = None
    reconnects: int = 0

    @property
    def complete(self) -> bool:
        """False when a file ended before the number of frames its header announced."""
        if self.frames_expected is None:
            return True
        return self.frames_read + self.frames_skipped >= self.frames_expected

    def describe(self) -> str:
        """One line for a log or a summary."""
        parts = [f"{self.frames_delivered} frames delivered of {self.frames_read} read"]
        if self.frames_expected is not None:
            parts.append(f"{self.frames_expected} expected")
        if self.frames_dropped:
            parts.append(f"{self.frames_dropped} dropped as stale")
        if self.frames_skipped:
            parts.append(f"{self.frames_skipped} unreadable skipped")
        if self.reconnects:
            parts.append(f"{self.reconnects} reconnects")
        return ", ".join(parts)


@dataclass(frozen=True)
class LiveSettings:
    """How a :class:`LiveSource` opens, waits and reconnects. All times in seconds.

    Attributes:
        open_timeout_s: give up opening a network stream after this long.
        read_timeout_s: a network stream that sends nothing for this long counts as dropped.
        initial_backoff_s: wait before the second reconnection attempt; doubled after each failure...
        max_backoff_s: ...up to this.
        max_reconnect_s: stop trying and raise :class:`SourceError` once the stream has been down this long.
        close_timeout_s: ``close()`` waits this long for the reader thread, then leaves it to finish
            on its own (it is a daemon thread and releases the device itself).
    """

    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 5.0
    max_reconnect_s: float = 30.0
    close_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("open_timeout_s", "read_timeout_s", "initial_backoff_s", "max_backoff_s", "close_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError(
                f"max_backoff_s ({self.max_backoff_s}) must be >= initial_backoff_s ({self.initial_backoff_s})"
            )
        if not self.max_reconnect_s >= 0:
            raise ValueError(f"max_reconnect_s must be >= 0 (0: never reconnect), got {self.max_reconnect_s}")


class SourceKind(enum.Enum):
    """What a user's source argument points at; see :func:`source_kind`."""

    VIDEO = "video"
    VIDEOS = "videos"
    IMAGES = "images"
    LIVE = "live"


# --------------------------------------------------------------------------------------------------
# Recognising and expanding source arguments


def _natural_key(path: Path) -> list[object]:
    """Sort key putting ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _is_live_spec(spec: str | int) -> bool:
    if isinstance(spec, int):
        return True
    text = spec.strip()
    return text.isdigit() or urlsplit(text).scheme.lower() in STREAM_SCHEMES


def _candidates(spec: str | Path) -> list[Path]:
    """Files a folder holds (not recursive), a glob matches, or the file itself."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        return sorted((p for p in path.iterdir() if p.is_file()), key=_natural_key)
    if path.is_file():
        return [path]
    if _has_glob(text):
        return sorted((Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()), key=_natural_key)
    raise SourceError(f"{text} does not exist")


def _with_extensions(paths: Sequence[Path], extensions: frozenset[str]) -> list[Path]:
    return [p for p in paths if p.suffix.lower() in extensions]


def expand_video_inputs(spec: str | Path) -> list[Path]:
    """The videos a folder (not recursive), a glob pattern (``**`` recurses) or a single file names.

    Files are kept when their extension is one of :data:`VIDEO_EXTENSIONS` (any case), sorted by
    name with numbers in natural order. A single file is returned as is, whatever its extension.

    Raises:
        SourceError: the path does not exist, or no videos match.
    """
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_file():
        return [path]
    videos = _with_extensions(_candidates(text), VIDEO_EXTENSIONS)
    if not videos:
        where = f"in the folder {text}" if path.is_dir() else f"matching {text}"
        raise SourceError(f"no videos found {where} (looked for {', '.join(sorted(VIDEO_EXTENSIONS))})")
    return videos


def list_images(spec: str | Path | Sequence[str | Path]) -> list[Path]:
    """The images a folder (not recursive), a glob pattern or an explicit list names, in natural name order.

    Raises:
        SourceError: the path does not exist, or no images (:data:`IMAGE_EXTENSIONS`) match.
    """
    if isinstance(spec, (str, Path)):
        images = _with_extensions(_candidates(spec), IMAGE_EXTENSIONS)
        if not images:
            raise SourceError(f"no images found in {spec} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        return images
    images = [Path(p) for p in spec]
    if not images:
        raise SourceError("the list of images is empty")
    for image in images:
        if not image.is_file():
            raise SourceError(f"{image} does not exist")
    return images


def source_kind(spec: str | int | Path) -> SourceKind:
    """Classify a user's source argument.

    * an int, a string of digits, or a URL (rtsp://, http(s)://, ...): ``LIVE``
    * an image file, or a folder / glob holding images and no videos: ``IMAGES``
    * a folder or glob holding videos: ``VIDEOS`` (see :func:`expand_video_inputs`)
    * any other existing file: ``VIDEO`` (OpenCV decides whether it can read it)

    Raises:
        SourceError: the path does not exist or a folder / glob holds neither videos nor images.
    """
    if isinstance(spec, int) or (isinstance(spec, str) and _is_live_spec(spec)):
        return SourceKind.LIVE
    path = Path(str(spec)).expanduser()
    if path.is_file():
        return SourceKind.IMAGES if path.suffix.lower() in IMAGE_EXTENSIONS else SourceKind.VIDEO
    files = _candidates(spec)
    if _with_extensions(files, VIDEO_EXTENSIONS):
        return SourceKind.VIDEOS
    if _with_extensions(files, IMAGE_EXTENSIONS):
        return SourceKind.IMAGES
    raise SourceError(f"{spec} holds no videos or images")


def redact_url(url: str) -> str:
    """``url`` with any user name and password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


# --------------------------------------------------------------------------------------------------
# OpenCV helpers

_log_lock = threading.Lock()
_log_quieted = 0
_log_previous = 0


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's and FFmpeg's own stderr messages (we report failures ourselves). Nestable."""
    global _log_quieted, _log_previous
    with _log_lock:
        if _log_quieted == 0:
            _log_previous = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        _log_quieted += 1
    try:
        yield
    finally:
        with _log_lock:
            _log_quieted -= 1
            if _log_quieted == 0:
                cv2.utils.logging.setLogLevel(_log_previous)


class ImageReadError(SourceError):
    """An image file that cannot be read: missing, not an image, or damaged (e.g. a JPEG cut short)."""


def _jpeg_is_truncated(path: Path) -> bool:
    """True when the JPEG ``path`` ends before its compressed data does (libjpeg would only warn and
    return an image grey below the cut). Decoded at 1/8 scale with Pillow, which reads all of it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except OSError as exc:
        return "truncated" in str(exc)
    except Exception:  # Pillow cannot judge this file; OpenCV decides
        return False
    return False


def read_image_file(path: str | Path) -> np.ndarray:
    """Read an image file as an (H, W, 3) BGR uint8 array.

    Raises:
        ImageReadError: the file is missing, unreadable, not an image OpenCV can decode, or a JPEG
            whose data ends early.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"image {path} does not exist")
    if not path.is_file():
        raise ImageReadError(f"{path} is not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(3)
    except OSError as exc:
        raise ImageReadError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not head:
        raise ImageReadError(f"{path} is empty (0 bytes)")
    if head == b"\xff\xd8\xff" and _jpeg_is_truncated(path):
        raise ImageReadError(f"{path} is damaged: its JPEG data ends early (a file cut short while copying?)")
    with quiet_opencv():
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"{path} is not an image OpenCV can read (damaged, or an unsupported format)")
    return image


def _plausible_fps(value: float) -> float | None:
    return value if math.isfinite(value) and 0 < value <= MAX_PLAUSIBLE_FPS else None


# --------------------------------------------------------------------------------------------------
# Bounded queue between a reader thread and the consumer

_END = object()


class _QueuedReader:
    """Runs ``produce(put)`` on a daemon thread; what it puts reaches :meth:`__iter__` through a bounded queue.

    ``put(frame)`` blocks while the queue is full and returns False once :meth:`close` was called
    (the producer should then return). An exception in ``produce`` is raised in the consumer.
    """

    def __init__(self, produce: Callable[[Callable[[Frame], bool]], None], maxsize: int, name: str) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(produce,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, produce: Callable[[Callable[[Frame], bool]], None]) -> None:
        try:
            produce(self._put)
        except BaseException as exc:  # handed to the consumer, who decides
            self._put(exc)
        else:
            self._put(_END)

    def __iter__(self) -> Iterator[Frame]:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def close(self, timeout_s: float) -> bool:
        """Stop the reader; True when its thread ended within ``timeout_s``."""
        self._stop.set()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


_Self = TypeVar("_Self", bound="_FrameSource")


class _FrameSource:
    """What every source shares: context management, one iteration, stats under a lock."""

    info: VideoInfo

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = SourceStats()
        self._iterated = False
        self._closed = False

    @property
    def stats(self) -> SourceStats:
        with self._lock:
            return self._stats

    def _count(self, **increments: int) -> None:
        with self._lock:
            self._bump(**increments)

    def _bump(self, **increments: int) -> None:
        """Add to the stats; the caller holds ``self._lock``."""
        self._stats = replace(self._stats, **{name: getattr(self._stats, name) + n for name, n in increments.items()})

    def _begin_iteration(self) -> None:
        if self._closed:
            raise RuntimeError(f"source {self.info.name} is closed")
        if self._iterated:
            raise RuntimeError(f"source {self.info.name} can be iterated only once")
        self._iterated = True

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


# --------------------------------------------------------------------------------------------------
# Files


def _check_readable_file(path: Path) -> None:
    if not path.exists():
        raise SourceError(f"{path} does not exist")
    if path.is_dir():
        raise SourceError(f"{path} is a folder, not a video file")
    try:
        with open(path, "rb") as f:
            head = f.read(1)
    except OSError as exc:
        raise SourceError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not head:
        raise SourceError(f"{path} is empty (0 bytes)")


class VideoFileSource(_FrameSource):
    """Every frame of a video file that OpenCV's FFmpeg backend can read, in order.

    Args:
        path: the video file.
        queue_size: frames decoded ahead of the consumer (memory: queue_size x one frame).

    The file is opened and its first frame decoded on construction, so errors surface at once.
    A file that ends early (truncated, or damaged so that decoding stops) ends the iteration
    with a logged warning; ``stats.frames_read`` vs ``stats.frames_expected`` then tells how much was read.

    Raises:
        SourceError: the file does not exist, is empty, cannot be read as a video, or has no frames.
    """

    def __init__(self, path: str | Path, queue_size: int = 8) -> None:
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.path = Path(path)
        self._queue_size = queue_size
        self._reader: _QueuedReader | None = None
        _check_readable_file(self.path)
        with quiet_opencv():
            capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            raise SourceError(f"{self.path} cannot be read as a video (not a video file, or damaged)")
        self._capture: cv2.VideoCapture | None = capture
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        total = int(count) if math.isfinite(count) and count > 0 else None
        fps = _plausible_fps(capture.get(cv2.CAP_PROP_FPS))
        if fps is None:
            logger.warning("%s does not state a frame rate; assuming %g fps", self.path, FALLBACK_FPS)
            fps = FALLBACK_FPS
        first = self._read_image()
        if first is None:
            self._release()
            if total:
                raise SourceError(f"{self.path} cannot be decoded (its header announces {total} frames): damaged")
            raise SourceError(f"{self.path} has no frames")
        self._first = first
        height, width = first.shape[:2]
        self.info = VideoInfo(width, height, fps, total, str(self.path), is_live=False)
        self._stats = SourceStats(frames_read=1, frames_expected=total)

    def _read_image(self) -> np.ndarray | None:
        assert self._capture is not None
        try:
            ok, image = self._capture.read()
        except cv2.error as exc:
            logger.warning("%s: decoding failed: %s", self.path, str(exc).strip().splitlines()[-1])
            return None
        return image if ok and image is not None else None

    def _media_time(self, index: int, previous: float) -> float:
        """The frame's presentation time from the container, or index / fps when that is unusable."""
        assert self._capture is not None
        seconds = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if math.isfinite(seconds) and seconds >= 0 and (index == 0 or seconds > previous):
            return seconds
        return index / self.info.fps

    def _produce(self, put: Callable[[Frame], bool]) -> None:
        index, image, timestamp = 0, self._first, 0.0
        self._first = None
        while image is not None:
            timestamp = self._media_time(index, timestamp) if index else 0.0
            if not put(Frame(index, timestamp, time.monotonic(), image)):
                return
            index += 1
            image = self._read_image()
            if image is not None:
                self._count(frames_read=1)
        stats = self.stats
        if not stats.complete:
            logger.warning(
                "%s ended after %d of %d frames: the file is truncated or damaged after frame %d",
                self.path, stats.frames_read, stats.frames_expected, stats.frames_read - 1,
            )

    def __iter__(self) -> Iterator[Frame]:
        self._begin_iteration()
        self._reader = _QueuedReader(self._produce, self._queue_size, name=f"read {self.path.name}")
        try:
            for frame in self._reader:
                self._count(frames_delivered=1)
                yield frame
        finally:  # also when the consumer stops early: the reader must not wait forever
            self.close()

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def close(self) -> None:
        """Stop the reader thread and release the file. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None and not self._reader.close(timeout_s=5.0):
            logger.warning("%s: the reader thread did not stop; leaving it to finish", self.path)
            return
        self._release()


class ImageFolderSource(_FrameSource):
    """The images of a folder, a glob pattern or a list, as frames at ``fps``, in natural name order.

    Args:
        images: a folder (not recursive), a glob pattern, or a list of image files.
        fps: frame rate the sequence stands for; timestamps are index / fps.
        queue_size: images decoded ahead of the consumer.

    ``Frame.index`` is the image's position in :attr:`files`. Files that cannot be read as images
    are skipped with a warning and counted in ``stats.frames_skipped``. Images of another size than
    the first are delivered as they are (a video sink resizes them).

    Raises:
        SourceError: nothing matches, or none of the files is a readable image.
    """

    def __init__(self, images: str | Path | Sequence[str | Path], fps: float = 1.0, queue_size: int = 8) -> None:
        super().__init__()
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.files: list[Path] = list_images(images)
        self._queue_size = queue_size
        self._reader: _QueuedReader | None = None
        name = str(images) if isinstance(images, (str, Path)) else str(self.files[0].parent)
        first_index, first = self._first_readable()
        self._first = (first_index, first)
        height, width = first.shape[:2]
        self.info = VideoInfo(width, height, float(fps), len(self.files), name, is_live=False)
        self._stats = SourceStats(frames_read=1, frames_skipped=first_index, frames_expected=len(self.files))

    def _read(self, index: int) -> np.ndarray | None:
        try:
            return read_image_file(self.files[index])
        except ImageReadError as exc:
            logger.warning("skipping frame %d: %s", index, exc)
            return None

    def _first_readable(self) -> tuple[int, np.ndarray]:
        for index in range(len(self.files)):
            image = self._read(index)
            if image is not None:
                return index, image
        raise SourceError(f"none of the {len(self.files)} image files in {self.files[0].parent} can be read")

    def _produce(self, put: Callable[[Frame], bool]) -> None:
        first_index, first = self._first
        size = first.shape[:2]
        warned_size = False
        for index in range(first_index, len(self.files)):
            image = first if index == first_index else self._read(index)
            if image is None:
                self._count(frames_skipped=1)
                continue
            if index != first_index:
                self._count(frames_read=1)
            if image.shape[:2] != size and not warned_size:
                logger.warning("%s is %dx%d, not %dx%d like the first image",
                               self.files[index], image.shape[1], image.shape[0], size[1], size[0])
                warned_size = True
            if not put(Frame(index, index / self.info.fps, time.monotonic(), image)):
                return

    def __iter__(self) -> Iterator[Frame]:
        self._begin_iteration()
        self._reader = _QueuedReader(self._produce, self._queue_size, name="read images")
        try:
            for frame in self._reader:
                self._count(frames_delivered=1)
                yield frame
        finally:
            self.close()

    def close(self) -> None:
        """Stop the reader thread. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.close(timeout_s=5.0)


# --------------------------------------------------------------------------------------------------
# Cameras and network streams


class LiveSource(_FrameSource):
    """Newest-frame reader for a webcam (an index) or a network stream (rtsp://, http(s)://, ...).

    A reader thread reads the device as fast as it delivers and keeps only the newest frame:
    an unconsumed frame that a newer one replaces is counted in ``stats.frames_dropped``. When the
    stream drops (read error, end of stream, or nothing for ``read_timeout_s``), the reader reopens
    it, first at once and then with exponential backoff; after ``max_reconnect_s`` without success
    the iteration raises :class:`SourceError`. ``close()`` (also on leaving the ``with`` block,
    e.g. after Ctrl-C in the consumer) stops the reader within ``close_timeout_s``. A video file
    given as a live source plays like a camera: its frames come at its frame rate, newest first, and
    it ends at its end.

    Args:
        spec: camera index, or a stream URL (credentials in it are never logged).
        settings: timeouts and backoff.

    Raises:
        SourceError: the camera or stream cannot be opened, or sends no first frame.
    """

    def __init__(self, spec: int | str, settings: LiveSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or LiveSettings()
        if isinstance(spec, str) and spec.strip().isdigit():
            spec = int(spec.strip())
        self.spec = spec
        is_camera = isinstance(spec, int)
        #: A video file read as a live source ends at its end instead of reconnecting.
        self.is_file = not is_camera and Path(spec).is_file()
        name = f"camera {spec}" if is_camera else redact_url(spec)
        self._cond = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._slot: Frame | None = None
        self._error: SourceError | None = None
        self._finished = False
        self._thread: threading.Thread | None = None
        self._capture = self._open()
        if self._capture is None:
            if is_camera:
                raise SourceError(f"cannot open {name}: no such camera, or it is in use by another program")
            raise SourceError(
                f"cannot open the stream {name}: unreachable, or not a video stream "
                f"(gave up after {self.settings.open_timeout_s:g} s)"
            )
        self._opened_at = time.monotonic()
        ok, image = self._capture.read()
        if not ok or image is None:
            self._capture.release()
            raise SourceError(f"{name} opened but sent no frame within {self.settings.read_timeout_s:g} s")
        fps = _plausible_fps(self._capture.get(cv2.CAP_PROP_FPS)) or FALLBACK_FPS
        self.info = VideoInfo(image.shape[1], image.shape[0], fps, None, name, is_live=True)
        self._publish(image)

    def _open(self) -> cv2.VideoCapture | None:
        with quiet_opencv():
            if isinstance(self.spec, int):
                capture = cv2.VideoCapture(self.spec)
            else:
                capture = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.settings.open_timeout_s * 1000),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.settings.read_timeout_s * 1000),
                ])
        if not capture.isOpened():
            capture.release()
            return None
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # honoured by some backends (V4L2, ...), harmless elsewhere
        return capture

    def _publish(self, image: np.ndarray) -> None:
        now = time.monotonic()
        with self._cond:
            frame = Frame(self._stats.frames_read, now - self._opened_at, now, image)
            self._bump(frames_read=1, frames_dropped=int(self._slot is not None))
            self._slot = frame
            self._cond.notify_all()

    def _until_due(self) -> float:
        """Seconds until the next frame of a file is due at the file's frame rate (a file plays like a camera)."""
        return max(0.0, self._opened_at + self._stats.frames_read / self.info.fps - time.monotonic())

    def _reconnect(self) -> cv2.VideoCapture | None:
        """Reopen the stream with backoff; None when stopped or after ``max_reconnect_s`` (error set)."""
        settings = self.settings
        down_since = time.monotonic()
        delay = settings.initial_backoff_s
        attempts = 0
        logger.warning("lost %s; reconnecting (giving up after %g s)", self.info.name, settings.max_reconnect_s)
        while not self._stop.is_set():
            attempts += 1
            capture = self._open()
            if capture is not None:
                self._count(reconnects=1)
                logger.info("reconnected to %s after %.1f s (%d attempts)",
                            self.info.name, time.monotonic() - down_since, attempts)
                return capture
            if time.monotonic() + delay - down_since > settings.max_reconnect_s:
                self._error = SourceError(
                    f"lost {self.info.name} and could not reconnect within {settings.max_reconnect_s:g} s "
                    f"({attempts} attempts)"
                )
                return None
            if self._stop.wait(delay):
                return None
            delay = min(2 * delay, settings.max_backoff_s)
        return None

    def _run(self) -> None:
        capture = self._capture
        try:
            while capture is not None and not self._stop.is_set():
                try:
                    ok, image = capture.read()
                except cv2.error:
                    ok, image = False, None
                if self.is_file and ok and self._stop.wait(self._until_due()):
                    break
                if self._stop.is_set():
                    break
                if ok and image is not None:
                    self._publish(image)
                    continue
                capture.release()
                if self.is_file:  # the end of a file is its end, not a lost stream
                    logger.info("%s: end of the file", self.info.name)
                    capture = None
                    break
                capture = self._reconnect()
        except BaseException as exc:  # surfaced in the consumer
            self._error = SourceError(f"reading {self.info.name} failed: {exc}")
        finally:
            if capture is not None:
                capture.release()
            self._capture = None
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        self._begin_iteration()
        self._thread = threading.Thread(target=self._run, name=f"read {self.info.name}", daemon=True)
        self._thread.start()
        try:
            while True:
                with self._cond:
                    while self._slot is None and not self._finished and not self._stop.is_set():
                        self._cond.wait(0.25)
                    frame, self._slot = self._slot, None
                    if frame is not None:
                        self._bump(frames_delivered=1)
                if frame is None:
                    break
                yield frame
            if self._error is not None and not self._stop.is_set():
                raise self._error
        finally:  # the consumer stopped, failed or was interrupted (Ctrl-C): stop reading
            self.close()

    def close(self) -> None:
        """Stop the reader (waiting at most ``close_timeout_s``) and release the device. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.settings.close_timeout_s)
            if self._thread.is_alive():
                logger.warning("%s is still blocked in a read; it will be released in the background",
                               self.info.name)
        elif self._capture is not None:
            self._capture.release()
            self._capture = None
        with self._cond:
            if self._slot is not None:
                self._slot = None
                self._bump(frames_dropped=1)
            self._cond.notify_all()


# --------------------------------------------------------------------------------------------------


def open_source(
    spec: str | int | Path,
    *,
    fps: float | None = None,
    queue_size: int = 8,
    live: LiveSettings | None = None,
) -> VideoFileSource | ImageFolderSource | LiveSource:
    """Open what ``spec`` names (see :func:`source_kind`).

    Args:
        spec: a video file, an image file / folder / glob, a camera index, or a stream URL.
        fps: frame rate of an image sequence (default 1); ignored for videos and live sources.
        queue_size: frames read ahead for files and image folders.
        live: settings of a live source.

    Raises:
        SourceError: the source cannot be opened, or ``spec`` holds several videos (open each of
            :func:`expand_video_inputs` in turn).
    """
    kind = source_kind(spec)
    if kind is SourceKind.LIVE:
        return LiveSource(spec if isinstance(spec, int) else str(spec), live)
    if kind is SourceKind.IMAGES:
        return ImageFolderSource(spec, fps=fps or 1.0, queue_size=queue_size)
    if kind is SourceKind.VIDEOS:
        videos = expand_video_inputs(spec)
        if len(videos) > 1:
            raise SourceError(f"{spec} holds {len(videos)} videos; process them one at a time")
        spec = videos[0]
    return VideoFileSource(spec, queue_size=queue_size)
