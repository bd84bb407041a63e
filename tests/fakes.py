"""Test doubles for the pipeline: a detector that returns the synthetic clip's ground truth."""

from __future__ import annotations

import numpy as np

from pose.structures import Detections


class GroundTruthDetector:
    """Stands in for YOLO: returns the ground-truth boxes of the synthetic clip.

    The caller sets ``frame`` before each call, or ``auto_advance`` takes the n-th call as frame
    n modulo the clip length (for runs that call it once per frame, video after video).
    """

    def __init__(self, gt: dict, score: float = 0.9, auto_advance: bool = False) -> None:
        self.frames = gt["frames"]
        self.score = score
        self.auto_advance = auto_advance
        self.calls = 0
        self.frame = 0

    def __call__(self, image: np.ndarray) -> Detections:
        if self.auto_advance:  # one call per frame, clip after clip of the same video
            self.frame = self.calls % len(self.frames)
        animals = self.frames[self.frame]["animals"] if self.frame < len(self.frames) else []
        self.calls += 1
        boxes = np.array([a["bbox"] for a in animals], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        return Detections(boxes, np.full(len(boxes), self.score, np.float32))
