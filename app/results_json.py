"""The one JSON layout of results, for a video, a stream or one image (documented in ``docs/formats.md``).

A document is ``{"format_version", "source", "keypoint_names", "skeleton", "skeleton_base",
"keypoint_status", "complete", ..., "frames": [frame, ...]}``; a frame is ``{"frame", "time", "animals"}``
and an animal ``{"track_id", "bbox" (x1, y1, x2, y2), "score", "keypoints" ([x, y, confidence] x 17),
"status" (17 codes)}``. JSON Lines files hold one frame per line. An image is a document of one frame
whose animals are numbered 1..N in the order of their boxes.

:func:`read_results` also reads the layouts written before ``format_version`` existed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from app.sources import VideoInfo
from pose.keypoints import KEYPOINT_NAMES, SKELETON
from pose.structures import FrameResult, Poses
from tracking.smoothing import KeypointStatus

#: The version of the layout this module writes; documents without one are version 1.
FORMAT_VERSION = 2

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
    """The head of a document: the format's version, the source and the AP-10K layout."""
    meta: dict[str, Any] = {"format_version": FORMAT_VERSION}
    if info is not None:
        meta["source"] = {"name": info.name, "fps": info.fps, "width": info.width, "height": info.height,
                          "total_frames": info.total_frames, "is_live": info.is_live}
    meta["keypoint_names"] = list(KEYPOINT_NAMES)
    meta["skeleton"] = SKELETON.tolist()
    meta["skeleton_base"] = 0
    meta["keypoint_status"] = {str(code): name for code, name in enumerate(STATUS_NAMES)}
    return meta


def image_result(poses: Poses, box_scores: np.ndarray | None = None) -> FrameResult:
    """The :class:`FrameResult` of one image: its animals numbered 1..N in the order of ``poses``, each
    keypoint observed (missing where it is not finite), box scores 1 when none are given (given boxes)."""
    n = len(poses)
    finite = np.isfinite(poses.keypoints).all(axis=-1)
    status = np.where(finite, KeypointStatus.OBSERVED, KeypointStatus.MISSING).astype(np.uint8)
    scores = np.ones(n, np.float32) if box_scores is None else np.asarray(box_scores, np.float32)
    return FrameResult(frame_index=0, timestamp_s=0.0, track_ids=np.arange(1, n + 1), boxes=poses.boxes,
                       box_scores=scores, keypoints=poses.keypoints, keypoint_status=status)


def image_document(name: str, width: int, height: int, result: FrameResult) -> dict[str, Any]:
    """The document of one image (:func:`image_result`): one frame at time 0."""
    return {**layout_metadata(VideoInfo(width, height, 1.0, 1, name)), "complete": True,
            "frames": [frame_to_json(result)]}


def read_results(path: str | Path) -> dict[str, Any]:
    """A results document in the current layout, whatever version wrote ``path``: a document of this
    layout (version 1 or 2), or the image layout of ``animalpose pose --json`` before version 2
    (``{"image", "instances": [{"bbox": [x, y, w, h], "keypoints"}]}``), converted.

    Raises:
        ValueError: ``path`` holds neither.
    """
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(document, dict) and isinstance(document.get("frames"), list):
        return {**document, "format_version": document.get("format_version", 1)}
    if isinstance(document, dict) and isinstance(document.get("instances"), list):
        animals = []
        for n, instance in enumerate(document["instances"], 1):
            x, y, w, h = instance["bbox"]
            keypoints = instance["keypoints"]
            status = [int(all(v is not None for v in point[:2])) for point in keypoints]
            animals.append({"track_id": n, "bbox": [x, y, x + w, y + h], "score": None, "keypoints": keypoints,
                            "status": status})
        head = layout_metadata()
        head["source"] = {"name": document.get("image"), "fps": 1.0, "width": None, "height": None,
                          "total_frames": 1, "is_live": False}
        return {**head, "complete": True, "frames": [{"frame": 0, "time": 0.0, "animals": animals}]}
    raise ValueError(f"{path} is not an animalpose results file (no 'frames' or 'instances')")
