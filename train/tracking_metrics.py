"""Scores of a tracker's per-frame output against a simulated or rendered truth: identity metrics with
py-motmetrics (IDF1, MOTA, switches), keypoint RMSE, jitter (mean absolute acceleration) and lag."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence as SequenceType

import numpy as np

from pose.keypoints import NUM_KEYPOINTS
from tracking.matching import box_iou, linear_assignment
from train.synthetic.tracks import SimulatedSequence


@dataclass(frozen=True)
class FrameOutput:
    """One method's output in one frame: N instances.

    Attributes:
        ids: (N,) int64 identities (for per-frame output without identities, any distinct numbers).
        boxes: (N, 4) ``xyxy`` boxes.
        keypoints: (N, K, 2+) keypoints; NaN where the method gives none.
    """

    ids: np.ndarray
    boxes: np.ndarray
    keypoints: np.ndarray

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, np.int64).reshape(-1)
        boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4)
        keypoints = np.asarray(self.keypoints, np.float64)
        if keypoints.size == 0:
            keypoints = keypoints.reshape(0, NUM_KEYPOINTS, 2)
        if len(boxes) != len(ids) or len(keypoints) != len(ids):
            raise ValueError(f"ids, boxes and keypoints must have the same length, got {len(ids)}, {len(boxes)}, "
                             f"{len(keypoints)}")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "keypoints", keypoints[..., :2])

    @classmethod
    def empty(cls) -> "FrameOutput":
        return cls(np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros((0, NUM_KEYPOINTS, 2)))


def match_to_truth(sequence: SimulatedSequence, outputs: SequenceType[FrameOutput],
                   iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Assign output instances to true animals per frame (optimal IoU matching, IoU >= threshold).

    Returns:
        keypoints (T, A, K, 2) of the matched instance of each animal (NaN when none) and
        ids (T, A) of that instance (-1 when none).
    """
    if len(outputs) != sequence.num_frames:
        raise ValueError(f"outputs must have one entry per frame ({sequence.num_frames}), got {len(outputs)}")
    t_count, a = sequence.present.shape
    keypoints = np.full((t_count, a, NUM_KEYPOINTS, 2), np.nan)
    ids = np.full((t_count, a), -1, np.int64)
    for t, out in enumerate(outputs):
        animals = np.flatnonzero(sequence.present[t])
        cost = 1.0 - box_iou(sequence.boxes[t, animals], out.boxes)
        assignment = linear_assignment(cost, 1.0 - iou_threshold)
        rows, cols = animals[assignment.matches[:, 0]], assignment.matches[:, 1]
        keypoints[t, rows] = out.keypoints[cols]
        ids[t, rows] = out.ids[cols]
    return keypoints, ids


def ideal_identities(sequence: SimulatedSequence, outputs: SequenceType[FrameOutput],
                     iou_threshold: float = 0.5) -> list[FrameOutput]:
    """``outputs`` with perfect identities: every instance that covers a true animal (the matching of
    :func:`match_to_truth`) takes that animal's number, the others keep theirs, shifted past the
    animals' numbers. Scoring them with :func:`identity_metrics` gives the IDF1 the boxes would reach
    with no identity error at all, a ceiling set by the misses and false positives alone."""
    _, ids = match_to_truth(sequence, outputs, iou_threshold)
    num_animals = sequence.present.shape[1]
    ideal = []
    for t, out in enumerate(outputs):
        new_ids = out.ids - out.ids.min(initial=0) + num_animals  # distinct and not an animal's number
        for animal in np.flatnonzero(ids[t] >= 0):
            new_ids[np.flatnonzero(out.ids == ids[t, animal])] = animal
        ideal.append(FrameOutput(new_ids, out.boxes, out.keypoints))
    return ideal


def identity_metrics(sequence: SimulatedSequence, outputs: SequenceType[FrameOutput],
                     iou_threshold: float = 0.5) -> dict[str, float]:
    """CLEAR-MOT and identity metrics from py-motmetrics: idf1, mota, num_switches, precision, recall.

    Distances are ``1 - IoU``, pairs below ``iou_threshold`` IoU cannot match (computed here:
    ``motmetrics.distances.iou_matrix`` uses ``np.asfarray``, removed in NumPy 2).
    """
    import motmetrics

    if len(outputs) != sequence.num_frames:
        raise ValueError(f"outputs must have one entry per frame ({sequence.num_frames}), got {len(outputs)}")
    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    for t, out in enumerate(outputs):
        animals = np.flatnonzero(sequence.present[t])
        distance = 1.0 - box_iou(sequence.boxes[t, animals], out.boxes)
        distance = np.where(distance <= 1.0 - iou_threshold, distance, np.nan)
        accumulator.update(animals.tolist(), out.ids.tolist(), distance)
    names = ["idf1", "mota", "num_switches", "precision", "recall", "num_false_positives", "num_misses"]
    summary = motmetrics.metrics.create().compute(accumulator, metrics=names, name="sequence")
    return {name: float(summary[name].iloc[0]) for name in names}


def keypoint_metrics(sequence: SimulatedSequence, keypoints: np.ndarray, ids: np.ndarray, mask: np.ndarray,
                     max_lag: float = 4.0) -> dict[str, float]:
    """Keypoint error, jitter and lag of matched estimates against the truth.

    Args:
        sequence: the truth.
        keypoints: (T, A, K, 2) estimates from :func:`match_to_truth`.
        ids: (T, A) identities from :func:`match_to_truth`.
        mask: (T, A, K) bool, the entries to score (estimates must be finite there).
        max_lag: lags searched, in frames, on both sides.

    Returns:
        rmse (pixels, per coordinate pair: sqrt of the mean squared distance), rmse_box (the same with
        each distance divided by the true box's scale ``sqrt(w * h)``: a fraction of the box size),
        jitter (mean |x(t+1) - 2 x(t) + x(t-1)| in pixels/frame^2 over runs of three frames with the
        same identity), truth_jitter (the same on the true keypoints at those entries), runs (how many
        such entries), lag (frames, the shift of the truth that best explains the estimates; positive =
        estimates late) and count.
    """
    truth = sequence.keypoints
    mask = mask & np.isfinite(keypoints).all(-1)
    if not mask.any():
        return {"rmse": math.nan, "rmse_box": math.nan, "jitter": math.nan, "truth_jitter": math.nan, "runs": 0,
                "lag": math.nan, "count": 0}
    error = np.linalg.norm(keypoints - truth, axis=-1)
    rmse = float(np.sqrt(np.mean(error[mask] ** 2)))
    size = np.maximum(sequence.boxes[..., 2:] - sequence.boxes[..., :2], 1.0)
    scale = np.sqrt(size[..., 0] * size[..., 1])[..., None]
    rmse_box = float(np.sqrt(np.mean((error / scale)[mask] ** 2)))
    same = (ids[1:-1] >= 0) & (ids[:-2] == ids[1:-1]) & (ids[2:] == ids[1:-1])
    run = mask[:-2] & mask[1:-1] & mask[2:] & same[..., None]
    accel = np.linalg.norm(keypoints[2:] - 2 * keypoints[1:-1] + keypoints[:-2], axis=-1)
    true_accel = np.linalg.norm(truth[2:] - 2 * truth[1:-1] + truth[:-2], axis=-1)
    jitter = float(accel[run].mean()) if run.any() else math.nan
    truth_jitter = float(true_accel[run].mean()) if run.any() else math.nan
    return {"rmse": rmse, "rmse_box": rmse_box, "jitter": jitter, "truth_jitter": truth_jitter, "runs": int(run.sum()),
            "lag": estimate_lag(truth, keypoints, mask, max_lag), "count": int(mask.sum())}


def estimate_lag(truth: np.ndarray, estimates: np.ndarray, mask: np.ndarray, max_lag: float = 4.0,
                 step: float = 0.1) -> float:
    """Shift s (frames) minimising the mean squared distance between estimates(t) and truth(t - s).

    The truth (T, ...) is linearly interpolated between frames; entries whose shifted time falls
    outside the sequence are left out.
    """
    t_count = len(truth)
    frames = np.nonzero(mask)
    best, best_error = 0.0, math.inf
    for shift in np.arange(-max_lag, max_lag + step / 2, step):
        source = frames[0] - shift
        ok = (source >= 0) & (source <= t_count - 1)
        if not ok.any():
            continue
        lower = np.floor(source[ok]).astype(np.int64)
        upper = np.minimum(lower + 1, t_count - 1)
        w = (source[ok] - lower)[:, None]
        rest = tuple(f[ok] for f in frames[1:])
        shifted = (1 - w) * truth[(lower, *rest)] + w * truth[(upper, *rest)]
        err = np.mean(np.sum((estimates[(frames[0][ok], *rest)] - shifted) ** 2, axis=-1))
        if err < best_error - 1e-12:
            best, best_error = float(shift), float(err)
    return best
