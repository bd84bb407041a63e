"""Keypoints as CSV: long (a row per frame x animal x keypoint) or wide (DeepLabCut's layout)."""

from __future__ import annotations

import csv
import enum
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from app.results_json import json_number
from app.sinks.base import (
    SinkBase,
    SinkError,
    finish_file,
    keep_partial,
    part_path,
    partial_path,
    prepare_folder,
    sink_error,
    write_file_atomically,
)
from pose.keypoints import KEYPOINT_NAMES
from pose.structures import FrameResult

logger = logging.getLogger(__name__)



class CsvLayout(enum.Enum):
    """LONG: one row per frame x track x keypoint. WIDE: one row per frame, DeepLabCut's header rows."""

    LONG = "long"
    WIDE = "wide"


LONG_HEADER: tuple[str, ...] = ("frame", "time", "track_id", "keypoint", "x", "y", "confidence", "status")


def _cell(value: float, digits: int) -> str:
    number = json_number(value, digits)
    return "" if number is None else f"{number:.{digits}f}"


def long_rows(result: FrameResult) -> Iterable[list[str | int]]:
    """The LONG rows of one frame: frame, time (s), track_id, keypoint name, x, y (px), confidence, status."""
    time_cell = _cell(result.timestamp_s, 6)
    for n, track_id in enumerate(result.track_ids):
        for k, name in enumerate(KEYPOINT_NAMES[: result.keypoints.shape[1]]):
            x, y, c = result.keypoints[n, k]
            yield [int(result.frame_index), time_cell, int(track_id), name, _cell(x, 3), _cell(y, 3), _cell(c, 4),
                   int(result.keypoint_status[n, k])]


def write_wide_csv(
    out: IO[str], frames: Sequence[tuple[int, np.ndarray, np.ndarray]], scorer: str = "animalpose"
) -> None:
    """Write DeepLabCut's multi-animal CSV layout.

    Four header rows, each starting with its name: ``scorer``, ``individuals`` (track ids, in
    increasing order), ``bodyparts`` (AP-10K names), ``coords`` (x, y, likelihood); then one row per
    frame: the frame index and x, y, likelihood of every track and keypoint, empty where the
    track is absent or the keypoint missing. ``pandas.read_csv(f, header=[0, 1, 2, 3], index_col=0)``
    reads it as DeepLabCut does.

    Args:
        frames: (frame index, (N,) track ids, (N, K, 3) keypoints) per frame.
    """
    track_ids = sorted({int(t) for _, ids, _ in frames for t in ids})
    names = KEYPOINT_NAMES
    columns = [(t, k, c) for t in track_ids for k in range(len(names)) for c in range(3)]
    writer = csv.writer(out)
    writer.writerow(["scorer"] + [scorer] * len(columns))
    writer.writerow(["individuals"] + [str(t) for t, _, _ in columns])
    writer.writerow(["bodyparts"] + [names[k] for _, k, _ in columns])
    writer.writerow(["coords"] + [("x", "y", "likelihood")[c] for _, _, c in columns])
    slot = {t: i for i, t in enumerate(track_ids)}
    for frame_index, ids, keypoints in frames:
        row = [""] * len(columns)
        for n, track_id in enumerate(ids):
            start = slot[int(track_id)] * len(names) * 3
            for k in range(len(names)):
                x, y, c = keypoints[n, k]
                row[start + 3 * k: start + 3 * k + 3] = [_cell(x, 3), _cell(y, 3), _cell(c, 4)]
        writer.writerow([int(frame_index)] + row)


class CsvSink(SinkBase):
    """Keypoints as CSV in a :class:`CsvLayout`.

    LONG rows (:data:`LONG_HEADER`) are streamed to the ``.part`` file as frames come; WIDE needs
    every track id for its header, so it is written at ``close()`` from results kept in memory.
    Coordinates are pixels with 3 decimals, confidences 4; missing values are empty cells.
    """

    def __init__(self, path: str | Path, layout: CsvLayout = CsvLayout.LONG) -> None:
        self.path = Path(path)
        self.layout = CsvLayout(layout)
        self.part = part_path(self.path)
        self._frames: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._file: IO[str] | None = None
        self._closed = False
        self.frames_written = 0
        prepare_folder(self.path)
        if self.layout is CsvLayout.LONG:
            try:
                self._file = open(self.part, "w", encoding="utf-8", newline="")
                self._csv = csv.writer(self._file)
                self._csv.writerow(LONG_HEADER)
            except OSError as exc:
                raise sink_error(self.path, exc) from None

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        """Add the rows of ``result`` (``image`` is ignored)."""
        if self._closed:
            raise SinkError(f"cannot write {self.path}: the sink is closed")
        if self.layout is CsvLayout.WIDE:
            self._frames.append((int(result.frame_index), result.track_ids.copy(), result.keypoints.copy()))
        else:
            try:
                self._csv.writerows(long_rows(result))
            except OSError as exc:
                raise sink_error(self.path, exc) from None
        self.frames_written += 1

    def close(self) -> None:
        """Write (WIDE) or finish (LONG) the file and rename it to its final name."""
        if self._closed:
            return
        self._closed = True
        if self.layout is CsvLayout.WIDE:
            write_file_atomically(self.path, lambda out: write_wide_csv(out, self._frames))
        else:
            try:
                finish_file(self.part, self.path, self._file)
            except SinkError:
                if self.frames_written == 0 or keep_partial(self.part, self.path) is None:
                    self.part.unlink(missing_ok=True)
                raise
        logger.info("wrote %s", self.path)

    def abort(self) -> None:
        """Leave the rows of the frames written so far in :func:`partial_path` (nothing when none)."""
        if self._closed:
            return
        self._closed = True
        target: Path | None = None
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                logger.error("%s", sink_error(self.path, exc))
            target = keep_partial(self.part, self.path) if self.frames_written else None
            if target is None:
                self.part.unlink(missing_ok=True)
        elif self._frames:
            try:
                target = write_file_atomically(partial_path(self.path), lambda out: write_wide_csv(out, self._frames))
            except SinkError as exc:
                logger.error("%s", exc)
        if target is not None:
            logger.warning("%s is incomplete: the %d frames written are in %s", self.path, self.frames_written,
                           target)


