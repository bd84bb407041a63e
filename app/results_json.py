"""The JSON layout of results: one frame, one animal, and the head of a final document."""

from __future__ import annotations

import math
from typing import Any

from app.sources import VideoInfo
from pose.keypoints import KEYPOINT_NAMES, SKELETON
from pose.structures import FrameResult
from tracking.smoothing import KeypointStatus

#: Names of the ``FrameResult.keypoint_status`` codes (``tracking.smoothing.KeypointStatus``).
STATUS_NAMES: tuple[str, ...] = tuple(status.name.lower() for status in sorted(KeypointStatus))



def json_number(value: float, digits: int) -> float | None:
    """``value`` rounded for output; None (JSON null, empty CSV cell) when it is NaN or infinite."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def animal_to_json(result: FrameResult, n: int) -> dict[str, Any]:
    """The ``n``-th animal of ``result`` as a JSON-ready dict (pixels rounded to 0.001, scores to 1e-4)."""
    return {
        "track_id": int(result.track_ids[n]),
        "bbox": [json_number(v, 3) for v in result.boxes[n]],
        "score": json_number(result.box_scores[n], 4),
        "keypoints": [[json_number(x, 3), json_number(y, 3), json_number(c, 4)] for x, y, c in result.keypoints[n]],
        "status": [int(s) for s in result.keypoint_status[n]],
    }


def frame_to_json(result: FrameResult) -> dict[str, Any]:
    """``{"frame", "time", "animals": [...]}`` for one frame, as written to JSON Lines."""
    return {
        "frame": int(result.frame_index),
        "time": json_number(result.timestamp_s, 6),
        "animals": [animal_to_json(result, n) for n in range(len(result))],
    }


def layout_metadata(info: VideoInfo | None = None) -> dict[str, Any]:
    """Source description and the AP-10K layout, for the head of a final JSON document."""
    meta: dict[str, Any] = {}
    if info is not None:
        meta["source"] = {"name": info.name, "fps": info.fps, "width": info.width, "height": info.height,
                          "total_frames": info.total_frames, "is_live": info.is_live}
    meta["keypoint_names"] = list(KEYPOINT_NAMES)
    meta["skeleton"] = SKELETON.tolist()
    meta["skeleton_base"] = 0
    meta["keypoint_status"] = {str(code): name for code, name in enumerate(STATUS_NAMES)}
    return meta


