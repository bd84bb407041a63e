"""Cost matrices between tracks and detections, and the optimal assignment that pairs them.

Boxes are ``xyxy`` in image pixels. Similarities are in [0, 1]; costs are ``1 - similarity``.
Every function takes plain arrays, never mutates them, and accepts empty inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import lap
import numpy as np

from pose.keypoints import SIGMAS


@dataclass(frozen=True)
class Assignment:
    """Result of :func:`linear_assignment`.

    Attributes:
        matches: (K, 2) int64 rows of (row index, column index).
        unmatched_rows: (R,) int64 row indices left without a partner.
        unmatched_cols: (C,) int64 column indices left without a partner.
    """

    matches: np.ndarray
    unmatched_rows: np.ndarray
    unmatched_cols: np.ndarray


def box_area(boxes: np.ndarray) -> np.ndarray:
    """(N,) areas of (N, 4) ``xyxy`` boxes; degenerate or non-finite boxes have area 0."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    size = np.maximum(boxes[:, 2:] - boxes[:, :2], 0.0)
    area = size[:, 0] * size[:, 1]
    return np.where(np.isfinite(area), area, 0.0)


def box_intersection(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(N, M) areas of the intersections of (N, 4) and (M, 4) ``xyxy`` boxes (0 where they do not overlap)."""
    return _intersection(np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4),
                         np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4))


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`box_intersection` of float64 (N, 4) and (M, 4) arrays."""
    wh = np.maximum(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0.0)
    return wh[..., 0] * wh[..., 1]


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of (N, 4) and (M, 4) ``xyxy`` boxes.

    Pairs involving an empty, inverted or non-finite box get 0.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    inter = _intersection(a, b)
    # Both sides' areas in one pass (called per stage and frame on a few boxes: numpy's call overhead is the cost).
    areas = box_area(np.concatenate([a, b]))
    union = areas[:len(a), None] + areas[None, len(a):] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return np.where(np.isfinite(iou), iou, 0.0)


def keypoint_similarity(
    keypoints_a: np.ndarray,
    keypoints_b: np.ndarray,
    areas_b: np.ndarray,
    valid_a: np.ndarray | None = None,
    valid_b: np.ndarray | None = None,
    sigmas: np.ndarray = SIGMAS,
    min_keypoints: int = 3,
) -> np.ndarray:
    """(N, M) object keypoint similarity (OKS, COCO definition) between two sets of poses.

    ``OKS = mean_k exp(-d_k^2 / (2 * area * (2 * sigma_k)^2))`` over the keypoints valid in both poses.

    Args:
        keypoints_a: (N, K, 2+) poses, x and y in pixels (a third column, if any, is ignored).
        keypoints_b: (M, K, 2+) poses.
        areas_b: (M,) object areas in pixels^2 that set the scale (here: box areas of ``b``).
        valid_a: (N, K) bool, keypoints of ``a`` that may be compared; default: finite ones.
        valid_b: (M, K) bool, likewise for ``b``.
        sigmas: (K,) per-keypoint OKS sigmas (AP-10K by default).
        min_keypoints: pairs sharing fewer valid keypoints get NaN (no evidence either way).

    Returns:
        (N, M) float64 similarities in [0, 1], NaN where fewer than ``min_keypoints`` are shared.
    """
    a = np.asarray(keypoints_a, dtype=np.float64)[..., :2]
    b = np.asarray(keypoints_b, dtype=np.float64)[..., :2]
    if a.ndim != 3 or b.ndim != 3 or a.shape[1] != b.shape[1] or a.shape[1] != len(sigmas):
        raise ValueError(
            f"keypoints_a and keypoints_b must have shapes (N, {len(sigmas)}, 2+) and (M, {len(sigmas)}, 2+), "
            f"got {np.shape(keypoints_a)} and {np.shape(keypoints_b)}"
        )
    va, vb = _valid(a, valid_a), _valid(b, valid_b)
    areas = np.asarray(areas_b, dtype=np.float64).reshape(-1)
    return _similarity(a[:, None], b[None, :], va[:, None, :] & vb[None, :, :], areas[None, :, None], sigmas,
                       min_keypoints)


def paired_keypoint_similarity(
    keypoints_a: np.ndarray,
    keypoints_b: np.ndarray,
    areas_b: np.ndarray,
    valid_a: np.ndarray | None = None,
    valid_b: np.ndarray | None = None,
    sigmas: np.ndarray = SIGMAS,
    min_keypoints: int = 3,
) -> np.ndarray:
    """(N,) OKS of each pose of ``keypoints_a`` (N, K, 2+) with its partner in ``keypoints_b`` (N, K, 2+), scaled by
    ``areas_b`` (N,): the diagonal of :func:`keypoint_similarity`, without the pairs off it."""
    a = np.asarray(keypoints_a, dtype=np.float64)[..., :2]
    b = np.asarray(keypoints_b, dtype=np.float64)[..., :2]
    if a.ndim != 3 or a.shape != b.shape or a.shape[1] != len(sigmas):
        raise ValueError(f"keypoints_a and keypoints_b must have one shape (N, {len(sigmas)}, 2+), "
                         f"got {np.shape(keypoints_a)} and {np.shape(keypoints_b)}")
    areas = np.asarray(areas_b, dtype=np.float64).reshape(-1)
    return _similarity(a, b, _valid(a, valid_a) & _valid(b, valid_b), areas[:, None], sigmas, min_keypoints)


def _valid(keypoints: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """(..., K) ``keypoints`` (..., K, 2) that may be compared: finite and ``valid`` (all where None)."""
    finite = np.isfinite(keypoints)
    finite = finite[..., 0] & finite[..., 1]  # x and y (keypoints (..., K, 2)): and-ed, not reduced (half the cost)
    return finite if valid is None else np.asarray(valid, bool) & finite


def _similarity(a: np.ndarray, b: np.ndarray, both: np.ndarray, areas: np.ndarray, sigmas: np.ndarray,
                min_keypoints: int) -> np.ndarray:
    """OKS of broadcast keypoints ``a`` and ``b`` (..., K, 2) over the keypoints ``both`` (..., K) marks, each pair
    scaled by its area (``areas``, broadcast as (..., 1)); NaN where fewer than ``min_keypoints`` are shared."""
    offset = a - b
    d2 = offset[..., 0] ** 2 + offset[..., 1] ** 2  # np.sum's order; written out (called per stage and frame)
    variances = _SIGMA_VARIANCES if sigmas is SIGMAS else (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    count = both.sum(-1)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        per_keypoint = np.exp(-d2 / (2.0 * np.maximum(areas, 1.0) * variances))
        oks = np.where(both, per_keypoint, 0.0).sum(-1) / count
    return np.where(count >= max(min_keypoints, 1), oks, np.nan)


_SIGMA_VARIANCES = (2.0 * np.asarray(SIGMAS, dtype=np.float64)) ** 2


def fuse_similarities(iou: np.ndarray, oks: np.ndarray, oks_weight: float) -> np.ndarray:
    """(N, M) association cost ``1 - ((1 - w) * IoU + w * OKS)``; where OKS is NaN the cost is ``1 - IoU``."""
    if not 0.0 <= oks_weight <= 1.0:
        raise ValueError(f"oks_weight must be in [0, 1], got {oks_weight}")
    iou = np.asarray(iou, dtype=np.float64)
    oks = np.asarray(oks, dtype=np.float64)
    mixed = (1.0 - oks_weight) * iou + oks_weight * oks  # NaN where OKS is: replaced below
    return 1.0 - np.where(np.isnan(oks), iou, mixed)


def linear_assignment(cost: np.ndarray, max_cost: float) -> Assignment:
    """Minimum-cost one-to-one matching of rows to columns that leaves pairs above ``max_cost`` unmatched.

    Solved exactly (Jonker-Volgenant, ``lap.lapjv``). NaN or infinite costs never match.

    Args:
        cost: (N, M) cost matrix.
        max_cost: the highest cost a matched pair may have.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {cost.shape}")
    if not np.isfinite(max_cost):
        raise ValueError(f"max_cost must be finite, got {max_cost}")
    n, m = cost.shape
    if n == 0 or m == 0:
        return Assignment(np.zeros((0, 2), np.int64), np.arange(n, dtype=np.int64), np.arange(m, dtype=np.int64))
    allowed = np.isfinite(cost) & (cost <= max_cost)
    rows, cols = np.nonzero(allowed)
    # Where no row or column has a choice (the animals apart, most frames), every allowed pair is matched (at or
    # under the limit, a pair costs less than leaving both alone); lapjv solves the others.
    if len(set(rows.tolist())) < len(rows) or len(set(cols.tolist())) < len(cols):
        # lapjv takes costs from about 1e7 on for its own infinity and then leaves allowed pairs unmatched: past
        # twice the allowed costs' sum, a higher limit changes no matching (every pair it can add, it adds), so the
        # limit stays there.
        limit = min(max_cost, 2.0 * np.abs(cost[allowed]).sum() + 1.0)
        # Forbidden pairs get a cost above the limit so lapjv leaves them unmatched.
        safe = np.where(allowed, cost, limit + 1.0)
        _, row_to_col, _ = lap.lapjv(safe, extend_cost=True, cost_limit=limit + 1e-9)
        rows = (row_to_col >= 0).nonzero()[0]
        cols = row_to_col[rows].astype(np.int64)
        keep = allowed[rows, cols]
        rows, cols = rows[keep], cols[keep]
    row_free, col_free = np.ones(n, bool), np.ones(m, bool)
    row_free[rows], col_free[cols] = False, False
    matches = np.empty((len(rows), 2), np.int64)
    matches[:, 0], matches[:, 1] = rows, cols
    return Assignment(matches, row_free.nonzero()[0], col_free.nonzero()[0])  # np.flatnonzero: 5x the cost
