"""COCO keypoint detection results, one entry per frame and animal."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from app.sinks.base import SinkBase, SinkError, partial_path, prepare_folder, write_file_atomically
from pose.structures import FrameResult

logger = logging.getLogger(__name__)



def coco_results(result: FrameResult, image_id: int, category_id: int = 1) -> list[dict[str, Any]]:
    """COCO keypoint detection results for one frame.

    Each animal gives ``{"image_id", "category_id", "keypoints": [x1, y1, c1, ...] (51 numbers),
    "score": mean keypoint confidence x box score, "bbox": [x, y, w, h], "track_id"}``; missing
    keypoints are written as (0, 0, 0).
    """
    out = []
    for n in range(len(result)):
        keypoints = np.nan_to_num(result.keypoints[n].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        x1, y1, x2, y2 = (float(v) for v in result.boxes[n])
        score = float(keypoints[:, 2].mean()) * float(result.box_scores[n])
        out.append({
            "image_id": int(image_id),
            "category_id": int(category_id),
            "keypoints": [round(float(v), 3) for v in keypoints.reshape(-1)],
            "score": round(score, 6),
            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
            "track_id": int(result.track_ids[n]),
        })
    return out


class CocoResultsSink(SinkBase):
    """All frames as one COCO keypoint results list (``image_id`` = frame index + ``image_id_offset``).

    The list is kept in memory and written atomically at ``close()``; an aborted run writes nothing.
    ``pycocotools.coco.COCO.loadRes`` reads the file.
    """

    def __init__(self, path: str | Path, image_id_offset: int = 0, category_id: int = 1) -> None:
        self.path = Path(path)
        self.image_id_offset = int(image_id_offset)
        self.category_id = int(category_id)
        self._results: list[dict[str, Any]] = []
        self._closed = False
        self.frames_written = 0
        prepare_folder(self.path)

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        """Add the animals of ``result`` (``image`` is ignored)."""
        if self._closed:
            raise SinkError(f"cannot write {self.path}: the sink is closed")
        self._results.extend(coco_results(result, result.frame_index + self.image_id_offset, self.category_id))
        self.frames_written += 1

    def close(self) -> None:
        """Write the results list to ``path``."""
        if self._closed:
            return
        self._closed = True
        write_file_atomically(self.path, lambda out: json.dump(self._results, out))
        logger.info("wrote %s (%d results)", self.path, len(self._results))

    def abort(self) -> None:
        """Write the results of the frames so far to :func:`partial_path` (nothing when no frame came)."""
        if self._closed:
            return
        self._closed = True
        if not self.frames_written:
            return
        try:
            target = write_file_atomically(partial_path(self.path), lambda out: json.dump(self._results, out))
        except SinkError as exc:
            logger.error("%s", exc)
            return
        logger.warning("%s is incomplete: the %d frames written are in %s", self.path, self.frames_written, target)
