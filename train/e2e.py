"""Scoring ``animalpose track`` output against the ground truth of a synthetic clip.

The end-to-end proof (``bench/e2e_synthetic.py`` and ``tests/test_e2e_synthetic.py``) renders
clips with :func:`train.synthetic.render_video`, runs the track command on them and scores its
final JSON here:

- identities: IDF1, MOTA and ID switches (py-motmetrics, IoU >= 0.5), as
  :func:`tracking.simulate.identity_metrics`;
- keypoints: per-frame OKS AP with the AP-10K sigmas (each frame a COCO image);
- motion: keypoint RMSE and jitter of the matched animals on their labelled keypoints, as
  :func:`tracking.simulate.keypoint_metrics`.

:class:`GroundTruthDetector` stands in for the detector with the clip's true boxes, to measure the
rest of the system (pose, tracking, the pipeline's own cost) without detection errors.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose.keypoints import SIGMAS
from pose.structures import Detections
from train.metrics import evaluate_keypoints
from train.tracking_metrics import FrameOutput, ideal_identities, identity_metrics, keypoint_metrics, match_to_truth

__all__ = ["ClipTruth", "GroundTruthDetector", "clip_truth", "frame_coco", "load_track_json", "score_clip",
           "track_outputs", "track_predictions"]

NUM_KEYPOINTS = len(SIGMAS)
_CATEGORY = {"id": 1, "name": "animal", "supercategory": "animal"}


@dataclass(frozen=True)
class ClipTruth:
    """A synthetic clip's ground truth as arrays (T frames, A animals, K = 17).

    It has the fields of :class:`tracking.simulate.SimulatedSequence` that the scoring helpers
    read, so :func:`match_to_truth`, :func:`identity_metrics` and :func:`keypoint_metrics` take it.

    Attributes:
        keypoints: (T, A, K, 2) true keypoints in pixels (NaN where unlabelled or absent).
        boxes: (T, A, 4) ``xyxy`` boxes in pixels (zeros where absent).
        present: (T, A) bool, animals annotated in the frame.
        keypoint_visible: (T, A, K) bool, labelled keypoints (visibility flag > 0).
    """

    keypoints: np.ndarray
    boxes: np.ndarray
    present: np.ndarray
    keypoint_visible: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.present)

    @property
    def num_animals(self) -> int:
        return self.present.shape[1]


def clip_truth(gt: dict) -> ClipTruth:
    """Arrays from the ground-truth dict :func:`train.synthetic.render_video` returns (track ids 1..A)."""
    frames = gt["frames"]
    num_animals = max([len(gt.get("animals", []))] + [a["track_id"] for f in frames for a in f["animals"]])
    shape = (len(frames), num_animals)
    keypoints = np.full((*shape, NUM_KEYPOINTS, 2), np.nan)
    boxes = np.zeros((*shape, 4))
    present = np.zeros(shape, bool)
    visible = np.zeros((*shape, NUM_KEYPOINTS), bool)
    for t, frame in enumerate(frames):
        for animal in frame["animals"]:
            a = animal["track_id"] - 1
            x, y, w, h = animal["bbox"]
            boxes[t, a] = (x, y, x + w, y + h)
            present[t, a] = True
            points = np.asarray(animal["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3)
            visible[t, a] = points[:, 2] > 0
            keypoints[t, a][visible[t, a]] = points[visible[t, a], :2]
    return ClipTruth(keypoints, boxes, present, visible)


def frame_coco(gt: dict) -> dict:
    """COCO keypoint ground truth of a clip: one image per frame (``image_id`` = frame number),
    one category for every animal."""
    images, annotations = [], []
    for frame in gt["frames"]:
        images.append({"id": frame["frame"], "width": gt["width"], "height": gt["height"],
                       "file_name": f"{frame['frame']:06d}.jpg"})
        for animal in frame["animals"]:
            points = np.asarray(animal["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3)
            points[points[:, 2] <= 0] = 0.0
            w, h = animal["bbox"][2:]
            annotations.append({
                "id": len(annotations) + 1, "image_id": frame["frame"], "category_id": _CATEGORY["id"],
                "bbox": list(animal["bbox"]), "area": float(w * h), "iscrowd": 0,
                "num_keypoints": int((points[:, 2] > 0).sum()), "keypoints": points.reshape(-1).tolist(),
            })
    return {"images": images, "annotations": annotations, "categories": [dict(_CATEGORY)]}


def load_track_json(path: str | Path) -> list[dict]:
    """The ``frames`` list of the final JSON ``animalpose track --json`` writes."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["frames"]


def _keypoint_array(keypoints: list | None) -> np.ndarray:
    """(K, 3) ``x, y, confidence`` of one output animal; missing keypoints are NaN with confidence 0."""
    out = np.full((NUM_KEYPOINTS, 3), np.nan)
    out[:, 2] = 0.0
    for k, point in enumerate(keypoints or []):
        if point is not None:
            out[k] = point[:3]
    return out


def _frames_by_number(frames: list[dict], num_frames: int) -> list[list[dict]]:
    animals: list[list[dict]] = [[] for _ in range(num_frames)]
    for frame in frames:
        if 0 <= frame["frame"] < num_frames:
            animals[frame["frame"]] = frame["animals"]
    return animals


def track_outputs(frames: list[dict], num_frames: int) -> list[FrameOutput]:
    """Per-frame :class:`FrameOutput` (ids, ``xyxy`` boxes, keypoints) of the track JSON frames."""
    outputs = []
    for animals in _frames_by_number(frames, num_frames):
        if not animals:
            outputs.append(FrameOutput.empty())
            continue
        outputs.append(FrameOutput(
            ids=[a["track_id"] for a in animals], boxes=[a["bbox"] for a in animals],
            keypoints=np.stack([_keypoint_array(a["keypoints"])[:, :2] for a in animals]),
        ))
    return outputs


def track_predictions(frames: list[dict]) -> list[dict]:
    """COCO keypoint results of the track JSON frames (``image_id`` = frame number); a missing
    keypoint is put at the box centre with confidence 0; the instance score is the box score."""
    records = []
    for frame in frames:
        for animal in frame["animals"]:
            points = _keypoint_array(animal["keypoints"])
            x1, y1, x2, y2 = animal["bbox"]
            missing = ~np.isfinite(points[:, :2]).all(1)
            points[missing] = ((x1 + x2) / 2, (y1 + y2) / 2, 0.0)
            records.append({"image_id": frame["frame"], "category_id": _CATEGORY["id"],
                            "keypoints": points.reshape(-1).tolist(), "score": float(animal.get("score", 1.0))})
    return records


def score_clip(gt: dict, frames: list[dict]) -> dict[str, float]:
    """All end-to-end metrics of one clip.

    Args:
        gt: the clip's ground truth (:func:`train.synthetic.render_video`).
        frames: the ``frames`` of the track command's final JSON.

    Returns:
        ``idf1``, ``mota``, ``num_switches``, ``precision``, ``recall`` (identities); ``idf1_ideal``,
        the IDF1 of the same boxes with perfect identities (:func:`tracking.simulate.ideal_identities`:
        what the misses and false positives alone leave);
        ``oks_ap``, ``oks_ap50`` (per-frame OKS AP, AP-10K sigmas); ``rmse`` (pixels),
        ``jitter`` and ``truth_jitter`` (pixels/frame^2) over matched, labelled keypoints.
    """
    truth = clip_truth(gt)
    outputs = track_outputs(frames, truth.num_frames)
    scores = identity_metrics(truth, outputs)  # type: ignore[arg-type]  # duck-typed sequence
    ideal = ideal_identities(truth, outputs)  # type: ignore[arg-type]
    scores["idf1_ideal"] = identity_metrics(truth, ideal)["idf1"]  # type: ignore[arg-type]
    predictions = track_predictions(frames)
    if predictions:
        ap = evaluate_keypoints(frame_coco(gt), predictions)
        scores.update(oks_ap=float(ap.AP), oks_ap50=float(ap.AP50))
    else:
        scores.update(oks_ap=0.0, oks_ap50=0.0)
    keypoints, ids = match_to_truth(truth, outputs)  # type: ignore[arg-type]
    motion = keypoint_metrics(truth, keypoints, ids, truth.keypoint_visible)  # type: ignore[arg-type]
    scores.update({name: motion[name] for name in ("rmse", "jitter", "truth_jitter")})
    return {name: (float(value) if value is not None else math.nan) for name, value in scores.items()}


class GroundTruthDetector:
    """Stands in for the detector: returns the ground-truth boxes of a synthetic clip (``gt`` as
    :func:`train.synthetic.render_video` returns it).

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
