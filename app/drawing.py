"""Drawing results on frames: skeletons in the AP-10K colours, boxes, track ids and trails (on a copy; the
input is never changed)."""

from __future__ import annotations

import colorsys
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pose.keypoints import KEYPOINT_COLORS, NUM_KEYPOINTS, SKELETON, SKELETON_COLORS
from pose.structures import FrameResult


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
    keypoints = (np.asarray(keypoints, np.float32).reshape(len(keypoints), -1, 3) if len(keypoints)
                 else np.zeros((0, 0, 3)))
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



@dataclass(frozen=True)
class DrawSettings:
    """How a :class:`VideoSink` labels frames.

    Attributes:
        kpt_thr: keypoints (and links) with a confidence below this are not drawn.
        boxes: outline each animal's box.
        labels: write each animal's track id at its box.
        trail_length: draw each track's last ``trail_length`` positions (0: no trails).
        trail_keypoint: keypoint index whose path the trail follows; None: the box centre.
        thickness, radius: line thickness and keypoint radius in pixels; None: follow the frame size.
    """

    kpt_thr: float = 0.3
    boxes: bool = True
    labels: bool = True
    trail_length: int = 0
    trail_keypoint: int | None = None
    thickness: int | None = None
    radius: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.kpt_thr <= 1.0:
            raise ValueError(f"kpt_thr must be in [0, 1], got {self.kpt_thr}")
        if self.trail_length < 0:
            raise ValueError(f"trail_length must be >= 0, got {self.trail_length}")
        if self.trail_keypoint is not None and not 0 <= self.trail_keypoint < NUM_KEYPOINTS:
            raise ValueError(
                f"trail_keypoint must be a keypoint index in [0, {NUM_KEYPOINTS}), got {self.trail_keypoint}"
            )
        for name in ("thickness", "radius"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 pixel or None, got {value}")


def track_color(track_id: int) -> tuple[int, int, int]:
    """A bright BGR colour for a track id; neighbouring ids get well separated hues."""
    hue = (int(track_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


class TrailHistory:
    """The last ``length`` positions of each track (box centre or one keypoint), in pixels.

    A track's trail is forgotten once it has been absent for ``length`` frames.
    """

    def __init__(self, length: int, keypoint: int | None = None, kpt_thr: float = 0.3) -> None:
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.length = length
        self.keypoint = keypoint
        self.kpt_thr = kpt_thr
        self._points: dict[int, deque[tuple[float, float]]] = {}
        self._last_seen: dict[int, int] = {}
        self._frames = 0

    def update(self, result: FrameResult) -> dict[int, np.ndarray]:
        """Add the positions in ``result``; return {track id: (M, 2) positions, oldest first} of its tracks."""
        self._frames += 1
        for n, track_id in enumerate(int(t) for t in result.track_ids):
            if self.keypoint is None:
                x1, y1, x2, y2 = result.boxes[n]
                point = ((x1 + x2) / 2, (y1 + y2) / 2)
            else:
                x, y, c = result.keypoints[n, self.keypoint]
                point = (x, y) if c >= self.kpt_thr else (math.nan, math.nan)
            if math.isfinite(point[0]) and math.isfinite(point[1]):
                self._points.setdefault(track_id, deque(maxlen=self.length)).append((float(point[0]), float(point[1])))
            self._last_seen[track_id] = self._frames
        for track_id in [t for t, seen in self._last_seen.items() if self._frames - seen >= self.length]:
            self._points.pop(track_id, None)
            del self._last_seen[track_id]
        present = {int(t) for t in result.track_ids}
        return {t: np.array(p, np.float32) for t, p in self._points.items() if t in present and p}


def draw_trails(image_bgr: np.ndarray, trails: Mapping[int, np.ndarray], thickness: int = 2) -> np.ndarray:
    """Draw each track's positions (M, 2) as a line in the track's colour, thinner towards the past; in place."""
    for track_id, points in trails.items():
        color = track_color(track_id)
        pixels = np.round(points).astype(np.int32)
        for m in range(1, len(pixels)):
            width = max(1, int(round(thickness * m / (len(pixels) - 1))))
            cv2.line(image_bgr, tuple(pixels[m - 1]), tuple(pixels[m]), color, width, cv2.LINE_AA)
    return image_bgr


def draw_frame(image_bgr: np.ndarray, result: FrameResult, settings: DrawSettings,
               trails: Mapping[int, np.ndarray] | None = None) -> np.ndarray:
    """A copy of ``image_bgr`` with the skeletons (AP-10K colours), boxes, track ids and trails of ``result``."""
    labels = [f"#{int(t)}" for t in result.track_ids] if settings.labels else None
    keypoints = result.keypoints.copy()
    missing = ~np.isfinite(keypoints).all(axis=-1)
    keypoints[missing] = 0.0  # missing keypoints have NaN coordinates: give them zero confidence
    canvas = draw_poses(
        image_bgr, keypoints, SKELETON, KEYPOINT_COLORS, SKELETON_COLORS,
        boxes_xyxy=result.boxes if settings.boxes else None, labels=labels,
        score_threshold=settings.kpt_thr, radius=settings.radius, thickness=settings.thickness,
    )
    if labels is not None and not settings.boxes:
        for label, (x1, y1, _, _) in zip(labels, result.boxes):
            cv2.putText(canvas, label, (int(x1) + 2, max(12, int(y1) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5, (255, 255, 255), 1, cv2.LINE_AA)
    if trails:
        draw_trails(canvas, trails, thickness=settings.thickness or max(2, min(canvas.shape[:2]) // 240))
    return canvas


