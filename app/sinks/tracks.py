"""The results of a run as dense arrays (frames x animals x keypoints), the shape that the pose files of
DeepLabCut, SLEAP and NWB store, and the sink that collects them and writes such a file at the end.

Missing values are NaN: the coordinates of a keypoint the tracker lost (its confidence stays as the
pipeline gave it), and every value of an animal absent from a frame. Numbers are rounded as in the JSON
results (:mod:`app.results_json`: 0.001 pixel, 0.0001 of confidence), so that every file of a run holds
the same values.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.sinks.base import (
    SinkBase,
    SinkError,
    partial_path,
    prepare_folder,
    require_formats,
    write_path_atomically,
)
from app.sources import VideoInfo
from pose.keypoints import KEYPOINT_NAMES, SKELETON
from pose.structures import FrameResult

logger = logging.getLogger(__name__)

#: Decimals kept: of pixel coordinates, and of confidences and scores (as the JSON results).
COORDINATE_DIGITS = 3
SCORE_DIGITS = 4


def individual_name(track_id: int) -> str:
    """The name of an animal in every pose file: ``track_<id>`` (``track_3``)."""
    return f"track_{int(track_id)}"


def video_path(info: VideoInfo | None) -> str:
    """The source as pose files name it: a video file's absolute path (so that a program that opens the
    pose file finds the video), else the source's name (a camera, a stream); "" when unknown."""
    if info is None:
        return ""
    path = Path(info.name)
    return str(path.resolve()) if path.is_file() else info.name


@dataclass(frozen=True)
class PoseTable:
    """Every frame of a run, dense.

    Attributes:
        frames: (F,) frame indices, increasing.
        times: (F,) time stamps in seconds (NaN where unknown).
        track_ids: (T,) the animals' track ids, increasing.
        keypoints: (F, T, K, 3) float64 x, y (pixels) and confidence; NaN where the animal is absent,
            x and y NaN where a keypoint is missing.
        box_scores: (F, T) float64 detector scores; NaN where the animal is absent.
        keypoint_names: (K,) names, skeleton: (E, 2) 0-based links (``pose.keypoints``).
    """

    frames: np.ndarray
    times: np.ndarray
    track_ids: np.ndarray
    keypoints: np.ndarray
    box_scores: np.ndarray
    keypoint_names: tuple[str, ...] = KEYPOINT_NAMES
    skeleton: np.ndarray = field(default_factory=lambda: SKELETON)

    def __len__(self) -> int:
        """The number of rows (frames)."""
        return len(self.frames)

    @property
    def individuals(self) -> list[str]:
        """:func:`individual_name` of each track."""
        return [individual_name(t) for t in self.track_ids]

    @property
    def present(self) -> np.ndarray:
        """(F, T) bool: the animal is in the frame."""
        return np.isfinite(self.box_scores)

    def every_frame(self) -> PoseTable:
        """The table with a row for every frame from 0 to the last one (NaN rows for frames that have no
        result, e.g. unreadable images or frames a live source dropped): what frame-indexed formats store."""
        count = int(self.frames[-1]) + 1 if len(self.frames) else 0
        if len(self.frames) == count:
            return self
        rows = np.full(count, -1)
        rows[self.frames] = np.arange(len(self.frames))
        have = rows >= 0

        def spread(values: np.ndarray) -> np.ndarray:
            out = np.full((count, *values.shape[1:]), np.nan, values.dtype)
            out[have] = values[rows[have]]
            return out

        return PoseTable(np.arange(count), spread(self.times), self.track_ids, spread(self.keypoints),
                         spread(self.box_scores), self.keypoint_names, self.skeleton)


def pose_table(frames: Sequence[FrameResult]) -> PoseTable:
    """The :class:`PoseTable` of ``frames`` (in the order of their frame indices)."""
    frames = sorted(frames, key=lambda r: r.frame_index)
    track_ids = np.array(sorted({int(t) for r in frames for t in r.track_ids}), np.int64)
    column = {int(t): n for n, t in enumerate(track_ids)}
    count = frames[0].keypoints.shape[1] if frames else len(KEYPOINT_NAMES)
    keypoints = np.full((len(frames), len(track_ids), count, 3), np.nan, np.float64)
    scores = np.full((len(frames), len(track_ids)), np.nan, np.float64)
    for row, result in enumerate(frames):
        columns = [column[int(t)] for t in result.track_ids]
        keypoints[row, columns] = result.keypoints
        scores[row, columns] = result.box_scores
    keypoints[..., :2] = keypoints[..., :2].round(COORDINATE_DIGITS)
    keypoints[..., 2] = keypoints[..., 2].round(SCORE_DIGITS)
    keypoints[~np.isfinite(keypoints)] = np.nan  # infinities too
    return PoseTable(np.array([r.frame_index for r in frames], np.int64),
                     np.array([r.timestamp_s for r in frames], np.float64), track_ids, keypoints,
                     scores.round(SCORE_DIGITS), KEYPOINT_NAMES[:count])


class PoseFileSink(SinkBase):
    """A pose file written at the end of a run from every frame it received.

    Frames are kept in memory (their keypoints and scores); ``close()`` writes the file atomically,
    ``abort()`` writes the frames so far under :func:`partial_path` (nothing when none came).
    Subclasses name the packages they need (:meth:`modules`) and implement :meth:`write_file`.

    Args:
        path: the file.
        info: the source (its name, frame rate and size go into the file where the format has room).

    Raises:
        SinkError: the folder cannot take the file, or a package the format needs is missing.
    """

    #: What the format is called in messages.
    format_name = "this format"

    @classmethod
    def modules(cls, path: Path) -> tuple[str, ...]:
        """The modules that writing ``path`` needs; :class:`SinkError` for an extension the format lacks."""
        return ()

    @classmethod
    def check(cls, path: str | Path) -> None:
        """Raise :class:`SinkError` when ``path`` cannot be written in this format here (its extension, or a
        missing package), before any work; creates nothing."""
        require_formats(Path(path), cls.format_name, *cls.modules(Path(path)))

    def __init__(self, path: str | Path, info: VideoInfo | None = None) -> None:
        self.path = Path(path)
        self.info = info
        self.check(self.path)
        prepare_folder(self.path)
        self._frames: list[FrameResult] = []
        self._closed = False

    @property
    def frames_written(self) -> int:
        return len(self._frames)

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        """Keep ``result`` for the file (``image`` is ignored)."""
        if self._closed:
            raise SinkError(f"cannot write {self.path}: the sink is closed")
        self._frames.append(result)

    def write_file(self, path: Path, table: PoseTable) -> None:  # pragma: no cover - overridden
        """Write ``table`` to ``path`` (a temporary name)."""
        raise NotImplementedError

    def close(self) -> None:
        """Write the file under its final name."""
        if self._closed:
            return
        self._closed = True
        write_path_atomically(self.path, lambda part: self.write_file(part, pose_table(self._frames)))
        logger.info("wrote %s (%d frames)", self.path, len(self._frames))

    def abort(self) -> None:
        """Write the frames received so far under :func:`partial_path` (nothing when none came)."""
        if self._closed:
            return
        self._closed = True
        if not self._frames:
            return
        target = partial_path(self.path)
        try:
            write_path_atomically(target, lambda part: self.write_file(part, pose_table(self._frames)))
        except SinkError as exc:
            logger.error("%s", exc)
            return
        logger.warning("%s is incomplete: the %d frames written are in %s", self.path, len(self._frames), target)
