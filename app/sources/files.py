"""Readers of files: every frame of a video file, and the images of a folder, glob or list, in order."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from app.sources.base import (
    FALLBACK_FPS,
    Frame,
    FrameSource,
    QueuedReader,
    SourceError,
    SourceStats,
    VideoInfo,
    plausible_fps,
    quiet_opencv,
)
from app.sources.paths import list_images

logger = logging.getLogger(__name__)

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


class VideoFileSource(FrameSource):
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
        self._reader: QueuedReader | None = None
        _check_readable_file(self.path)
        with quiet_opencv():
            capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            raise SourceError(f"{self.path} cannot be read as a video (not a video file, or damaged)")
        self._capture: cv2.VideoCapture | None = capture
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        total = int(count) if math.isfinite(count) and count > 0 else None
        fps = plausible_fps(capture.get(cv2.CAP_PROP_FPS))
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
        self._reader = QueuedReader(self._produce, self._queue_size, name=f"read {self.path.name}")
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


class ImageFolderSource(FrameSource):
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
        self._reader: QueuedReader | None = None
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
        self._reader = QueuedReader(self._produce, self._queue_size, name="read images")
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


