from __future__ import annotations

import numpy as np
import pytest

from pose.structures import Detections, Poses


def test_detections_slicing_and_defaults():
    det = Detections(np.array([[0, 0, 10, 10], [5, 5, 20, 30]]), np.array([0.9, 0.2]))
    assert len(det) == 2
    assert det.class_ids.tolist() == [0, 0]
    kept = det[det.scores > 0.5]
    assert len(kept) == 1 and kept.xyxy.dtype == np.float32
    assert len(det[1]) == 1
    assert len(Detections.empty()) == 0


@pytest.mark.parametrize(
    "xyxy, scores, ids",
    [
        (np.zeros((2, 3)), np.zeros(2), np.zeros(2)),
        (np.zeros((2, 4)), np.zeros(3), np.zeros(2)),
        (np.zeros((2, 4)), np.zeros(2), np.zeros(1)),
    ],
)
def test_detections_reject_bad_shapes(xyxy, scores, ids):
    with pytest.raises(ValueError):
        Detections(xyxy, scores, ids)


def test_poses_views_and_checks():
    kpts = np.random.default_rng(0).random((3, 17, 3))
    poses = Poses(kpts, np.zeros((3, 4)))
    assert poses.xy.shape == (3, 17, 2) and poses.scores.shape == (3, 17)
    assert len(poses[np.array([True, False, True])]) == 2
    assert len(Poses.empty()) == 0
    with pytest.raises(ValueError):
        Poses(kpts, np.zeros((2, 4)))
    with pytest.raises(ValueError):
        Poses(kpts[..., :2], np.zeros((3, 4)))


def test_frame_result_checks_lengths_and_empty():
    from pose.structures import FrameResult

    ok = FrameResult(3, 0.1, [1, 2], np.zeros((2, 4)), [0.9, 0.8], np.zeros((2, 17, 3)), np.ones((2, 17)))
    assert len(ok) == 2 and ok.keypoint_status.dtype == np.uint8
    assert len(FrameResult.empty(0, 0.0)) == 0
    with pytest.raises(ValueError):
        FrameResult(3, 0.1, [1], np.zeros((2, 4)), [0.9, 0.8], np.zeros((2, 17, 3)), np.ones((2, 17)))
    with pytest.raises(ValueError):
        FrameResult(3, 0.1, [1, 2], np.zeros((2, 4)), [0.9, 0.8], np.zeros((2, 17, 3)), np.ones((2, 16)))
