"""What every frame source shares: the records a source hands out (:class:`VideoInfo`, :class:`Frame`,
:class:`SourceStats`), :class:`SourceError`, the reader thread behind a bounded queue, and quieting
OpenCV's own messages."""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TypeVar

import cv2
import numpy as np

logger = logging.getLogger(__name__)

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


def plausible_fps(value: float) -> float | None:
    return value if math.isfinite(value) and 0 < value <= MAX_PLAUSIBLE_FPS else None



_END = object()


class QueuedReader:
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


_Self = TypeVar("_Self", bound="FrameSource")


class FrameSource:
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


