"""Frames already in memory (numpy arrays from any library) as a source like the others."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Iterator

import numpy as np

from app.sources.base import Frame, FrameSource, SourceError, VideoInfo


def as_bgr(image: np.ndarray, name: str = "image") -> np.ndarray:
    """``image`` as an (H, W, 3) uint8 BGR array: grey (H, W) or (H, W, 1) is repeated into three channels,
    the alpha channel of (H, W, 4) BGRA is dropped; colour arrays are taken as BGR, as OpenCV gives them.

    Raises:
        ValueError: not a uint8 array of one of those shapes.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be a uint8 array (8-bit BGR), got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or min(image.shape[:2]) < 1:
        raise ValueError(f"{name} must be (H, W), (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA, got shape {image.shape}")
    if image.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    return image


class ArraySource(FrameSource):
    """An iterable of images (numpy arrays, BGR as OpenCV gives them) as frames at ``fps``, read lazily.

    Frame ``n`` has index ``n`` and time ``n / fps``. The first image is taken at construction (for
    :attr:`info`); grey and BGRA images are converted (:func:`as_bgr`).

    Raises:
        SourceError: the iterable is empty.
        ValueError: ``fps`` is not positive, or an image is not one :func:`as_bgr` takes.
    """

    def __init__(self, frames: Iterable[np.ndarray], fps: float = 30.0, name: str = "frames") -> None:
        super().__init__()
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps}")
        self._frames = iter(frames)
        try:
            first = as_bgr(next(self._frames), "frame 0")
        except StopIteration:
            raise SourceError(f"{name}: no frames") from None
        self._first = first
        total = len(frames) if hasattr(frames, "__len__") else None  # type: ignore[arg-type]
        self.info = VideoInfo(first.shape[1], first.shape[0], float(fps), total, name, is_live=False)

    def __iter__(self) -> Iterator[Frame]:
        self._begin_iteration()
        try:
            for index, image in enumerate(itertools.chain([self._first], self._frames)):
                image = image if index == 0 else as_bgr(image, f"frame {index}")
                self._count(frames_read=1, frames_delivered=1)
                yield Frame(index, index / self.info.fps, time.monotonic(), image)
        finally:
            self.close()

    def close(self) -> None:
        self._closed = True
