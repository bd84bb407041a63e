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


@dataclass(frozen=True)
class FrameResult:
    """Everything the pipeline knows about one frame: the tracked animals and their keypoints.

    Attributes:
        frame_index: 0-based index of the frame in its source.
        timestamp_s: media time of the frame in seconds (index / fps for files, capture time for live).
        track_ids: (N,) int64 identities, stable across frames.
        boxes: (N, 4) float32 ``xyxy`` boxes in image pixels.
        box_scores: (N,) float32 detector confidences (of the last matched detection).
        keypoints: (N, K, 3) float32 rows of (x, y, confidence) in image pixels.
        keypoint_status: (N, K) uint8 codes of ``tracking.smoothing.KeypointStatus``
            (0 missing, 1 observed, 2 predicted, 3 smoothed).
    """

    frame_index: int
    timestamp_s: float
    track_ids: np.ndarray
    boxes: np.ndarray
    box_scores: np.ndarray
    keypoints: np.ndarray
    keypoint_status: np.ndarray

    def __post_init__(self) -> None:
        track_ids = _as_array(self.track_ids, np.int64, "track_ids", ())
        n = len(track_ids)
        boxes = _as_array(self.boxes, np.float32, "boxes", (4,))
        box_scores = _as_array(self.box_scores, np.float32, "box_scores", ())
        keypoints = np.asarray(self.keypoints, np.float32)
        if keypoints.size == 0:
            keypoints = keypoints.reshape(0, NUM_KEYPOINTS, 3)
        if keypoints.ndim != 3 or keypoints.shape[2] != 3:
            raise ValueError(f"keypoints must have shape (N, K, 3), got {keypoints.shape}")
        status = np.asarray(self.keypoint_status, np.uint8)
        if status.size == 0:
            status = status.reshape(0, keypoints.shape[1])
        if status.shape != keypoints.shape[:2]:
            raise ValueError(f"keypoint_status must have shape {keypoints.shape[:2]}, got {status.shape}")
        if not (len(boxes) == len(box_scores) == len(keypoints) == n):
            raise ValueError(
                f"track_ids, boxes, box_scores and keypoints must have the same length, got "
                f"{n}, {len(boxes)}, {len(box_scores)}, {len(keypoints)}"
            )
        object.__setattr__(self, "track_ids", track_ids)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "box_scores", box_scores)
        object.__setattr__(self, "keypoints", keypoints)
        object.__setattr__(self, "keypoint_status", status)

    @classmethod
    def empty(cls, frame_index: int, timestamp_s: float, num_keypoints: int = NUM_KEYPOINTS) -> "FrameResult":
        return cls(
            frame_index, timestamp_s, np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
            np.zeros((0, num_keypoints, 3), np.float32), np.zeros((0, num_keypoints), np.uint8),
        )

    def __len__(self) -> int:
        return len(self.track_ids)
