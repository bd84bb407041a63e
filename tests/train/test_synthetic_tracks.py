import dataclasses

import numpy as np
import pytest

from pose.keypoints import NUM_KEYPOINTS
from train.synthetic.tracks import SCENARIOS, NoiseModel, Scenario, body_keypoints, simulate_sequence
from train.tracking_metrics import (
    FrameOutput,
    estimate_lag,
    ideal_identities,
    identity_metrics,
    keypoint_metrics,
    match_to_truth,
)

K = NUM_KEYPOINTS
SHORT = dataclasses.replace(SCENARIOS["crossing"], num_frames=80)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("layout", "circle", "layout"),
        ("num_animals", 0, "num_animals"),
        ("num_frames", 1, "num_frames"),
        ("frame_size", (32, 32), "frame_size"),
        ("body_length", (200.0, 100.0), "body_length"),
        ("speed", (-0.1, 0.1), "speed"),
        ("stop_rate", 1.0, "stop_rate"),
    ],
)
def test_scenario_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        Scenario("x", **{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [("keypoint_jitter", -0.1), ("false_positives", float("nan")), ("miss_rate", 1.0), ("outlier_rate", -0.5)],
)
def test_noise_model_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        NoiseModel(**{field: value})


def test_same_seed_same_sequence():
    a, b = simulate_sequence(SHORT, seed=3), simulate_sequence(SHORT, seed=3)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    for fa, fb in zip(a.frames, b.frames):
        np.testing.assert_array_equal(fa.detections.xyxy, fb.detections.xyxy)
        np.testing.assert_array_equal(fa.poses.keypoints, fb.poses.keypoints)
    c = simulate_sequence(SHORT, seed=4)
    assert not np.allclose(a.keypoints, c.keypoints)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_sequence_shapes(name):
    scenario = dataclasses.replace(SCENARIOS[name], num_frames=30)
    seq = simulate_sequence(scenario, seed=0)
    t, a = 30, scenario.num_animals
    assert seq.keypoints.shape == (t, a, K, 2)
    assert seq.boxes.shape == (t, a, 4) and seq.visibility.shape == (t, a) and seq.present.shape == (t, a)
    assert seq.keypoint_visible.shape == (t, a, K) and len(seq.frames) == t
    width = scenario.frame_size[0]
    for frame in seq.frames:
        n = len(frame.detections)
        assert len(frame.poses) == n and frame.animal_index.shape == (n,)
        assert ((frame.animal_index >= -1) & (frame.animal_index < a)).all()
        assert len(set(frame.animal_index[frame.animal_index >= 0].tolist())) == (frame.animal_index >= 0).sum()
        boxes = frame.detections.xyxy
        assert ((boxes[:, [0, 2]] >= 0) & (boxes[:, [0, 2]] <= width)).all()
        scores = frame.detections.scores
        assert ((scores > 0) & (scores < 1)).all()


def test_noise_free_observations_equal_the_truth():
    noise = NoiseModel(keypoint_jitter=0.0, box_jitter=0.0, miss_rate=0.0, false_positives=0.0,
                       low_confidence_rate=0.0, outlier_rate=0.0)
    seq = simulate_sequence(SHORT, noise, seed=1)
    for t, frame in enumerate(seq.frames):
        assert (frame.animal_index >= 0).all()
        fully = np.flatnonzero(seq.visibility[t] >= noise.min_visibility + 0.35)
        assert set(fully.tolist()) <= set(frame.animal_index.tolist())
        np.testing.assert_allclose(frame.detections.xyxy, seq.boxes[t, frame.animal_index], atol=1e-3)
        visible = seq.keypoint_visible[t, frame.animal_index]
        np.testing.assert_allclose(frame.poses.keypoints[..., :2][visible],
                                   seq.keypoints[t, frame.animal_index][visible], atol=1e-3)


def test_crossing_scenario_has_occlusions():
    seq = simulate_sequence(SCENARIOS["crossing"], seed=0)
    assert seq.visibility.min() < 0.5  # someone walks behind someone else
    assert seq.present.mean() > 0.8  # but most of the time the animals are in view


def test_body_is_mirrored_when_facing_left():
    ground = np.array([[500.0, 400.0], [500.0, 400.0]])
    kp = body_keypoints(ground, np.array([1.0, -1.0]), np.array([200.0, 200.0]), np.zeros(2), np.zeros(2))
    assert kp.shape == (2, K, 2)
    assert kp[0, 2, 0] > 500 > kp[1, 2, 0]  # nose ahead of the body centre
    np.testing.assert_allclose(kp[0, 2, 0] - 500, 500 - kp[1, 2, 0])
    assert (kp[:, [7, 10, 13, 16], 1] > kp[:, [5, 8, 11, 14], 1]).all()  # paws below shoulders and hips
    assert np.abs(kp[..., 1].max() - 400) < 30  # paws near the ground line


def _perfect_outputs(seq, ids=None):
    outputs = []
    for t in range(seq.num_frames):
        animals = np.flatnonzero(seq.present[t])
        frame_ids = animals if ids is None else ids(t, animals)
        outputs.append(FrameOutput(frame_ids, seq.boxes[t, animals], seq.keypoints[t, animals]))
    return outputs


def test_identity_metrics_of_the_truth():
    seq = simulate_sequence(SHORT, seed=2)
    metrics = identity_metrics(seq, _perfect_outputs(seq))
    assert metrics["idf1"] == pytest.approx(1.0)
    assert metrics["mota"] == pytest.approx(1.0)
    assert metrics["num_switches"] == 0


def test_identity_metrics_count_a_swap():
    seq = simulate_sequence(SHORT, seed=2)
    both = np.flatnonzero(seq.present[40:].all(0))[:2]
    assert len(both) == 2

    def swapped(t, animals):
        ids = animals.copy()
        if t >= 40:
            for a, b in ((both[0], both[1]), (both[1], both[0])):
                ids[animals == a] = b
        return ids

    metrics = identity_metrics(seq, _perfect_outputs(seq, swapped))
    assert metrics["num_switches"] == 2
    assert metrics["idf1"] < 0.95
    assert metrics["mota"] == pytest.approx(1.0 - 2 / seq.present.sum())


def test_ideal_identities_undo_a_swap_but_not_a_false_positive():
    seq = simulate_sequence(SHORT, seed=2)
    both = np.flatnonzero(seq.present[40:].all(0))[:2]

    def swapped(t, animals):
        ids = animals + 100
        if t >= 40:
            ids[animals == both[0]], ids[animals == both[1]] = both[1] + 100, both[0] + 100
        return ids

    outputs = _perfect_outputs(seq, swapped)
    assert identity_metrics(seq, outputs)["idf1"] < 0.95
    ideal = ideal_identities(seq, outputs)
    assert identity_metrics(seq, ideal)["idf1"] == pytest.approx(1.0)
    # a box far from every animal stays a false positive, under an id that is no animal's
    far = np.array([[-500.0, -500.0, -400.0, -400.0]])
    outputs[10] = FrameOutput(np.append(outputs[10].ids, 7), np.vstack([outputs[10].boxes, far]),
                              np.concatenate([outputs[10].keypoints, np.zeros((1, K, 2))]))
    ideal = ideal_identities(seq, outputs)
    assert ideal[10].ids[-1] >= seq.present.shape[1] and len(set(ideal[10].ids)) == len(ideal[10].ids)
    metrics = identity_metrics(seq, ideal)
    assert metrics["num_false_positives"] == 1 and metrics["idf1"] < 1.0


def test_identity_metrics_of_nothing():
    seq = simulate_sequence(SHORT, seed=2)
    metrics = identity_metrics(seq, [FrameOutput.empty()] * seq.num_frames)
    assert metrics["recall"] == 0 and metrics["idf1"] == 0


def test_keypoint_metrics_of_the_truth_and_of_a_delay():
    seq = simulate_sequence(SHORT, seed=5)
    keypoints, ids = match_to_truth(seq, _perfect_outputs(seq))
    mask = np.isfinite(keypoints).all(-1)
    metrics = keypoint_metrics(seq, keypoints, ids, mask)
    assert metrics["rmse"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["lag"] == pytest.approx(0.0)
    assert metrics["jitter"] == pytest.approx(metrics["truth_jitter"])
    delayed = np.full_like(keypoints, np.nan)
    delayed[2:] = seq.keypoints[:-2]  # everything two frames late
    delayed_mask = mask & np.isfinite(delayed).all(-1)
    assert keypoint_metrics(seq, delayed, ids, delayed_mask)["lag"] == pytest.approx(2.0, abs=0.15)


def test_estimate_lag_of_a_ramp():
    t = np.arange(50, dtype=float)
    truth = np.stack([3.0 * t, np.zeros_like(t)], -1)[:, None, :]
    late = truth - np.array([4.5, 0.0])  # 1.5 frames late
    assert estimate_lag(truth, late, np.ones((50, 1), bool)) == pytest.approx(1.5, abs=0.05)


def test_frame_output_checks_lengths():
    with pytest.raises(ValueError, match="same length"):
        FrameOutput(np.arange(2), np.zeros((3, 4)), np.zeros((2, K, 2)))
