"""Result dataclasses passed from stage to stage: parallel arrays, checked on creation.

Coordinates are image pixels, boxes are ``xyxy`` (x1, y1, x2, y2) unless a name
says otherwise. Every class is frozen and can be sliced by an index array or a
boolean mask, like supervision's ``Detections``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pose.keypoints import NUM_KEYPOINTS


def _as_array(value: object, dtype: type, name: str, shape_tail: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=dtype)
    if array.size == 0:
        array = array.reshape((0, *shape_tail))
    if array.ndim != 1 + len(shape_tail) or array.shape[1:] != shape_tail:
        expected = ", ".join(["N", *map(str, shape_tail)])
        raise ValueError(f"{name} must have shape ({expected}), got {array.shape}")
    return array


@dataclass(frozen=True)
class Detections:
    """Boxes found in one frame.

    Attributes:
        xyxy: (N, 4) float32 boxes in image pixels.
        scores: (N,) float32 detector confidences in [0, 1].
        class_ids: (N,) int64 class indices of the detector.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        xyxy = _as_array(self.xyxy, np.float32, "xyxy", (4,))
        n = len(xyxy)
        scores = _as_array(self.scores, np.float32, "scores", ())
        class_ids = np.asarray(self.class_ids, dtype=np.int64)
        if class_ids.size == 0 and n > 0:
            class_ids = np.zeros(n, np.int64)
        class_ids = class_ids.reshape(-1)
        if len(scores) != n or len(class_ids) != n:
            raise ValueError(
                f"xyxy, scores and class_ids must have the same length, got {n}, {len(scores)}, {len(class_ids)}"
            )
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice | int) -> "Detections":
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(self.xyxy[index], self.scores[index], self.class_ids[index])


@dataclass(frozen=True)
class Poses:
    """Keypoints of N animals in one frame.

    Attributes:
        keypoints: (N, K, 3) float32 rows of (x, y, score), x and y in image pixels.
        boxes: (N, 4) float32 ``xyxy`` boxes the poses were estimated in.
    """

    keypoints: np.ndarray
    boxes: np.ndarray

    def __post_init__(self) -> None:
        keypoints = np.asarray(self.keypoints, dtype=np.float32)
        if keypoints.size == 0:
            keypoints = keypoints.reshape(0, NUM_KEYPOINTS, 3)
        if keypoints.ndim != 3 or keypoints.shape[2] != 3:
            raise ValueError(f"keypoints must have shape (N, K, 3), got {keypoints.shape}")
        boxes = _as_array(self.boxes, np.float32, "boxes", (4,))
        if len(boxes) != len(keypoints):
            raise ValueError(f"boxes and keypoints must have the same length, got {len(boxes)} and {len(keypoints)}")
        object.__setattr__(self, "keypoints", keypoints)
        object.__setattr__(self, "boxes", boxes)

    @classmethod
    def empty(cls, num_keypoints: int = NUM_KEYPOINTS) -> "Poses":
        return cls(np.zeros((0, num_keypoints, 3), np.float32), np.zeros((0, 4), np.float32))

    @property
    def xy(self) -> np.ndarray:
        """(N, K, 2) keypoint coordinates in image pixels."""
        return self.keypoints[..., :2]

    @property
    def scores(self) -> np.ndarray:
        """(N, K) keypoint confidences."""
        return self.keypoints[..., 2]

    def __len__(self) -> int:
        return len(self.keypoints)

    def __getitem__(self, index: np.ndarray | slice | int) -> "Poses":
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Poses(self.keypoints[index], self.boxes[index])
