"""Cameras and network streams (and video files played like them), newest frame first, with reconnection."""

from __future__ import annotations

import collections
import logging
import math
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.sources.base import FALLBACK_FPS, Frame, FrameSource, SourceError, VideoInfo, plausible_fps, quiet_opencv
from app.sources.paths import redact_url

logger = logging.getLogger(__name__)

_GAPS_KEPT = 15  # arrival gaps the frame interval is measured over
_FRESH_DEADLINE = 1.25  # LiveSettings.fresh_wait: the next frame is awaited until this many intervals after the last


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
        fresh_wait: a frame older than this fraction of the stream's frame interval (the median of its recent
            arrival gaps) when the consumer asks for one is passed over for the next one if that comes within a
            quarter interval of being due: the consumer waits at most ``1.25 - fresh_wait`` intervals and its
            result comes out earlier, counted from the frame's capture, by more than that. A pipeline slower
            than the camera, which otherwise takes frames of any age up to an interval, then takes none older
            than this fraction (a live stream's latency p95 falls by about half a frame interval, at a few per
            cent of its frames per second). 0: always the newest frame at once, however old.
    """

    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 5.0
    max_reconnect_s: float = 30.0
    close_timeout_s: float = 2.0
    fresh_wait: float = 0.5

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
        if not 0.0 <= self.fresh_wait <= 1.0:
            raise ValueError(f"fresh_wait must be in [0, 1] (0: off), got {self.fresh_wait}")




class LiveSource(FrameSource):
    """Newest-frame reader for a webcam (an index) or a network stream (rtsp://, http(s)://, ...).

    A reader thread reads the device as fast as it delivers and keeps only the newest frame:
    an unconsumed frame that a newer one replaces is counted in ``stats.frames_dropped``. A consumer slower
    than the stream is not handed a frame that is already most of an interval old when the next one is
    about to come (``LiveSettings.fresh_wait``). When the
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
        self._gaps: collections.deque[float] = collections.deque(maxlen=_GAPS_KEPT)  # seconds between arrivals
        self._latest: float | None = None  # when the newest frame arrived
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
        fps = plausible_fps(self._capture.get(cv2.CAP_PROP_FPS)) or FALLBACK_FPS
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
            if self._latest is not None:
                self._gaps.append(now - self._latest)
            self._latest = now
            frame = Frame(self._stats.frames_read, now - self._opened_at, now, image)
            self._bump(frames_read=1, frames_dropped=int(self._slot is not None))
            self._slot = frame
            self._cond.notify_all()

    def frame_interval(self) -> float | None:
        """The stream's frame interval in seconds as measured: the median of the last arrival gaps (None before
        there are any)."""
        with self._lock:
            return self._median_gap()

    def _median_gap(self) -> float | None:
        """The median of the last arrival gaps, None before there are any (the caller holds the lock)."""
        return statistics.median(self._gaps) if self._gaps else None

    def _await_fresher(self, frame: Frame) -> None:
        """With the condition held and ``frame`` in the slot: wait for the next frame when ``frame`` is older than
        ``fresh_wait`` intervals and the next one is due soon enough (:class:`LiveSettings`)."""
        interval = self._median_gap() if self.settings.fresh_wait else None
        if interval is None:
            return
        if time.monotonic() - frame.captured_at <= self.settings.fresh_wait * interval:
            return
        deadline = frame.captured_at + _FRESH_DEADLINE * interval
        while self._slot is frame and not self._finished and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

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
                    if self._slot is not None:
                        self._await_fresher(self._slot)
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
