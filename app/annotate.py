"""Drawing poses, boxes and track ids on a frame (on a copy; the input is never changed)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def draw_poses(
    image_bgr: np.ndarray,
    keypoints: np.ndarray,
    skeleton: np.ndarray,
    keypoint_colors: Sequence[tuple[int, int, int]],
    link_colors: Sequence[tuple[int, int, int]],
    boxes_xyxy: np.ndarray | None = None,
    labels: Sequence[str] | None = None,
    score_threshold: float = 0.3,
    radius: int | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """Return a copy of ``image_bgr`` with N skeletons drawn on it.

    Args:
        image_bgr: (H, W, 3) uint8 frame.
        keypoints: (N, K, 3) rows of (x, y, score) in image pixels.
        skeleton: (L, 2) 0-based keypoint index pairs to join.
        keypoint_colors: K colour triples, used as BGR (as mmpose's renderings do).
        link_colors: L colour triples, used as BGR.
        boxes_xyxy: optional (N, 4) boxes to outline.
        labels: optional N texts written at each box's top-left corner.
        score_threshold: keypoints and links below this score are not drawn.
        radius, thickness: sizes in pixels; by default they follow the frame size.
    """
    canvas = image_bgr.copy()
    height, width = canvas.shape[:2]
    scale = max(1.0, min(height, width) / 480.0)
    radius = radius or int(round(3 * scale))
    thickness = thickness or int(round(2 * scale))
    keypoints = np.asarray(keypoints, np.float32).reshape(len(keypoints), -1, 3) if len(keypoints) else np.zeros((0, 0, 3))
    for n, instance in enumerate(keypoints):
        finite = np.isfinite(instance).all(axis=1)
        visible = finite & (np.nan_to_num(instance[:, 2], nan=0.0) >= score_threshold)
        points = np.round(np.where(finite[:, None], instance[:, :2], 0.0)).clip(-1e6, 1e6).astype(np.int32)
        for link, (a, b) in enumerate(np.asarray(skeleton)):
            if visible[a] and visible[b]:
                color = tuple(int(c) for c in link_colors[link % len(link_colors)])
                cv2.line(canvas, tuple(points[a]), tuple(points[b]), color, thickness, cv2.LINE_AA)
        for k in np.flatnonzero(visible):
            color = tuple(int(c) for c in keypoint_colors[k % len(keypoint_colors)])
            cv2.circle(canvas, tuple(points[k]), radius, color, -1, cv2.LINE_AA)
    if boxes_xyxy is not None:
        for n, box in enumerate(np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), (255, 255, 255), max(1, thickness // 2))
            if labels is not None and n < len(labels):
                cv2.putText(
                    canvas, labels[n], (x1 + 2, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 * scale, (255, 255, 255), max(1, thickness // 2), cv2.LINE_AA,
                )
    return canvas
