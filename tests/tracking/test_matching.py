import numpy as np
import pytest

from pose.keypoints import NUM_KEYPOINTS, SIGMAS
from tracking.matching import (
    box_area,
    box_intersection,
    box_iou,
    fuse_similarities,
    keypoint_similarity,
    linear_assignment,
    paired_keypoint_similarity,
)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges
        ([0, 0, 10, 10], [2, 2, 4, 4], 4 / 100),  # contained
        ([0, 0, 0, 10], [0, 0, 10, 10], 0.0),  # zero width
        ([10, 10, 0, 0], [0, 0, 10, 10], 0.0),  # inverted
        ([np.nan, 0, 10, 10], [0, 0, 10, 10], 0.0),
        ([0, 0, np.inf, 10], [0, 0, 10, 10], 0.0),
        ([-20, -20, -10, -10], [-15, -15, -5, -5], 25 / 175),  # outside the frame is just geometry
    ],
)
def test_box_iou_pairs(a, b, expected):
    iou = box_iou(np.array([a], float), np.array([b], float))
    assert iou.shape == (1, 1)
    assert iou[0, 0] == pytest.approx(expected)
    assert box_iou(np.array([b], float), np.array([a], float))[0, 0] == pytest.approx(expected)


@pytest.mark.parametrize(("n", "m"), [(0, 0), (0, 3), (2, 0), (2, 3)])
def test_box_iou_shapes(n, m):
    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(0, 100, (n, 2, 2)), axis=1).reshape(n, 4)[:, [0, 2, 1, 3]]
    b = np.sort(rng.uniform(0, 100, (m, 2, 2)), axis=1).reshape(m, 4)[:, [0, 2, 1, 3]]
    iou = box_iou(a, b)
    assert iou.shape == (n, m)
    assert ((iou >= 0) & (iou <= 1)).all()


def test_box_intersection_areas():
    a = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    b = np.array([[5.0, 5.0, 15.0, 20.0], [2.0, 3.0, 4.0, 7.0], [10.0, 0.0, 20.0, 10.0]])
    np.testing.assert_allclose(box_intersection(a, b), [[25.0, 8.0, 0.0], [0.0, 0.0, 0.0]])
    assert box_intersection(a, np.zeros((0, 4))).shape == (2, 0)


def test_box_area_degenerate():
    assert box_area(np.array([[0, 0, 2, 3], [5, 5, 1, 1], [0, 0, np.nan, 1]])).tolist() == [6.0, 0.0, 0.0]


def _pose(offset: float = 0.0, conf: float = 1.0) -> np.ndarray:
    xy = np.stack([np.linspace(0, 100, NUM_KEYPOINTS), np.linspace(0, 50, NUM_KEYPOINTS)], 1) + offset
    return np.concatenate([xy, np.full((NUM_KEYPOINTS, 1), conf)], 1)


def test_keypoint_similarity_identical_is_one():
    pose = _pose()
    oks = keypoint_similarity(pose[None], pose[None], np.array([100.0 * 50.0]))
    assert oks[0, 0] == pytest.approx(1.0)


def test_keypoint_similarity_matches_coco_formula():
    a, b = _pose(), _pose(3.0)
    area = 80.0 * 40.0
    d2 = 2 * 3.0**2
    expected = np.mean(np.exp(-d2 / (2 * area * (2 * SIGMAS) ** 2)))
    assert keypoint_similarity(a[None], b[None], np.array([area]))[0, 0] == pytest.approx(expected)


def test_paired_keypoint_similarity_is_the_diagonal_of_the_matrix():
    rng = np.random.default_rng(2)
    a = np.stack([_pose(d) for d in (0.0, 2.0, 10.0, 30.0)])
    a[..., :2] += rng.normal(0, 2, (4, len(SIGMAS), 2))
    b = np.stack([_pose(d) for d in (1.0, 0.0, 12.0, 0.0)])
    valid_a, valid_b = rng.random((4, len(SIGMAS))) > 0.3, rng.random((4, len(SIGMAS))) > 0.3
    valid_b[3, 3:] = False  # fewer than 3 shared: NaN
    areas = np.array([3000.0, 5000.0, 0.5, 8000.0])
    full = keypoint_similarity(a, b, areas, valid_a=valid_a, valid_b=valid_b)
    paired = paired_keypoint_similarity(a, b, areas, valid_a=valid_a, valid_b=valid_b)
    np.testing.assert_array_equal(paired, np.diagonal(full))
    assert np.isnan(paired[3]) and np.isfinite(paired[:3]).all()
    with pytest.raises(ValueError, match="one shape"):
        paired_keypoint_similarity(a, b[:3], areas)


def test_keypoint_similarity_decreases_with_distance():
    a = _pose()
    others = np.stack([_pose(d) for d in (0.0, 2.0, 10.0, 100.0)])
    oks = keypoint_similarity(a[None], others, np.full(4, 5000.0))[0]
    assert np.all(np.diff(oks) < 0)
    assert oks[-1] < 1e-3


@pytest.mark.parametrize("shared", [0, 1, 2])
def test_keypoint_similarity_too_few_shared_is_nan(shared):
    a, b = _pose(), _pose()
    valid = np.zeros(NUM_KEYPOINTS, bool)
    valid[:shared] = True
    oks = keypoint_similarity(a[None], b[None], np.array([5000.0]), valid_a=valid[None], min_keypoints=3)
    assert np.isnan(oks[0, 0])


def test_keypoint_similarity_ignores_nan_keypoints():
    a, b = _pose(), _pose()
    a[:5, :2] = np.nan
    oks = keypoint_similarity(a[None], b[None], np.array([5000.0]))
    assert oks[0, 0] == pytest.approx(1.0)


def test_keypoint_similarity_rejects_wrong_shape():
    with pytest.raises(ValueError, match="keypoints_a"):
        keypoint_similarity(np.zeros((1, 5, 2)), np.zeros((1, 17, 2)), np.ones(1))


@pytest.mark.parametrize(
    ("iou", "oks", "weight", "expected"),
    [
        (0.6, np.nan, 0.5, 0.4),
        (0.6, 1.0, 0.5, 0.2),
        (0.6, 0.0, 0.5, 0.7),
        (0.6, 1.0, 0.0, 0.4),
        (0.6, 0.2, 1.0, 0.8),
    ],
)
def test_fuse_similarities(iou, oks, weight, expected):
    cost = fuse_similarities(np.array([[iou]]), np.array([[oks]]), weight)
    assert cost[0, 0] == pytest.approx(expected)


@pytest.mark.parametrize("weight", [-0.1, 1.5])
def test_fuse_similarities_rejects_weight(weight):
    with pytest.raises(ValueError, match="oks_weight"):
        fuse_similarities(np.zeros((1, 1)), np.zeros((1, 1)), weight)


@pytest.mark.parametrize(
    ("cost", "max_cost", "matches"),
    [
        # the greedy choice (0, 0) would force (1, 1) = 0.9; the optimum is the cross
        ([[0.1, 0.2], [0.15, 0.9]], 1.0, [(0, 1), (1, 0)]),
        # with a limit the expensive pair is dropped and the cheapest single pair kept
        ([[0.1, 0.2], [0.15, 0.9]], 0.12, [(0, 0)]),
        # rectangular: three tracks, two detections
        ([[0.5, 0.1], [0.2, 0.6], [0.3, 0.3]], 1.0, [(0, 1), (1, 0)]),
        # rectangular: one track, three detections
        ([[0.7, 0.2, 0.4]], 1.0, [(0, 1)]),
        # NaN and inf never match, even under a loose limit
        ([[np.nan, 0.3], [np.inf, np.inf]], 10.0, [(0, 1)]),
        # a pair exactly at the limit is allowed
        ([[0.5]], 0.5, [(0, 0)]),
        # nothing below the limit
        ([[0.9, 0.95], [0.99, 0.91]], 0.8, []),
        # no limit (the gates decide): a lone allowed pair is matched, forbidden pairs around it or not
        ([[10.9, np.inf], [np.inf, np.inf]], 1e9, [(0, 0)]),
        ([[10.9, np.inf], [np.inf, 4.0]], 1e9, [(0, 0), (1, 1)]),
        # no limit, with a choice: as many pairs as possible, then the cheapest
        ([[5.0, 4.0, np.inf], [3.0, np.inf, np.inf]], 1e9, [(0, 1), (1, 0)]),
        ([[1.0, 2.0], [1.5, np.inf]], 1e9, [(0, 1), (1, 0)]),
    ],
)
def test_linear_assignment_hand_made(cost, max_cost, matches):
    cost = np.array(cost, float)
    result = linear_assignment(cost, max_cost)
    assert sorted(map(tuple, result.matches.tolist())) == sorted(matches)
    matched_rows = {r for r, _ in matches}
    matched_cols = {c for _, c in matches}
    assert result.unmatched_rows.tolist() == [r for r in range(cost.shape[0]) if r not in matched_rows]
    assert result.unmatched_cols.tolist() == [c for c in range(cost.shape[1]) if c not in matched_cols]


def test_linear_assignment_is_optimal_against_brute_force():
    from itertools import permutations

    rng = np.random.default_rng(3)
    for _ in range(20):
        cost = rng.uniform(0, 1, (4, 4))
        best = min(sum(cost[i, p[i]] for i in range(4)) for p in permutations(range(4)))
        result = linear_assignment(cost, 2.0)
        assert cost[result.matches[:, 0], result.matches[:, 1]].sum() == pytest.approx(best)


def test_linear_assignment_without_limit_matches_most_pairs_then_least_cost():
    from itertools import permutations

    rng = np.random.default_rng(4)
    for _ in range(30):
        cost = np.where(rng.random((4, 4)) < 0.55, np.inf, rng.uniform(0, 20, (4, 4)))
        best = (0, 0.0)  # (pairs, -cost): most pairs, then the least cost
        for p in permutations(range(4)):
            pairs = [(i, p[i]) for i in range(4) if np.isfinite(cost[i, p[i]])]
            best = max(best, (len(pairs), -sum(cost[i, j] for i, j in pairs)))
        result = linear_assignment(cost, 1e9)
        assert len(result.matches) == best[0]
        assert cost[result.matches[:, 0], result.matches[:, 1]].sum() == pytest.approx(-best[1])


@pytest.mark.parametrize("shape", [(0, 0), (0, 4), (3, 0)])
def test_linear_assignment_empty(shape):
    result = linear_assignment(np.zeros(shape), 0.5)
    assert result.matches.shape == (0, 2)
    assert len(result.unmatched_rows) == shape[0]
    assert len(result.unmatched_cols) == shape[1]


@pytest.mark.parametrize(
    ("cost", "max_cost", "message"),
    [(np.zeros(3), 0.5, "2-D"), (np.zeros((2, 2)), np.inf, "max_cost")],
)
def test_linear_assignment_rejects_bad_input(cost, max_cost, message):
    with pytest.raises(ValueError, match=message):
        linear_assignment(cost, max_cost)
