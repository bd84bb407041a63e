"""Test doubles for the pipeline: a detector that returns the synthetic clip's ground truth."""

from __future__ import annotations

import numpy as np

from pose.structures import Detections


class GroundTruthDetector:
    """Stands in for YOLO: returns the ground-truth boxes of the synthetic clip, frame after frame."""

    def __init__(self, gt: dict, score: float = 0.9) -> None:
        self.frames = gt["frames"]
        self.score = score
        self.calls = 0
        self.frame = 0

    def __call__(self, image: np.ndarray) -> Detections:
        animals = self.frames[self.frame]["animals"] if self.frame < len(self.frames) else []
        self.calls += 1
        boxes = np.array([a["bbox"] for a in animals], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        return Detections(boxes, np.full(len(boxes), self.score, np.float32))
