import dataclasses

import numpy as np
import pytest

from pose.keypoints import NUM_KEYPOINTS
from train.synthetic.tracks import (
    SCENARIOS,
    SCENE_NOISE,
    SCENES,
    SCRIPTED_LAYOUTS,
    NoiseModel,
    Scenario,
    body_keypoints,
    ground_row,
    pixel_length,
    pose_in_boxes,
    simulate_sequence,
)
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


# -- the scripted scenes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("depth", (0.0, 5.0), "depth"),
        ("depth", (1.0, 5.0), "depth"),  # scripted layouts need 2 m or more
        ("body_size", (2.0, 1.0), "body_size"),
        ("absence", 0, "absence"),
        ("miss_bursts", 1.0, "miss_bursts"),
    ],
)
def test_scripted_scenario_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        Scenario("x", layout="depths", **{field: value})


@pytest.mark.parametrize(("field", "value"), [("low_confidence_error", -1.0), ("detection_ramp", 0.0)])
def test_noise_model_rejects_bad_new_values(field, value):
    with pytest.raises(ValueError, match=field):
        NoiseModel(**{field: value})


def test_every_scripted_layout_has_a_scene():
    assert {s.layout for s in SCENES.values()} == set(SCRIPTED_LAYOUTS)
    for scene in SCENES.values():
        assert scene.num_frames == 300 and scene.frame_size == (1280, 720) and 2 <= scene.num_animals <= 5


def test_camera_puts_far_animals_higher_and_smaller():
    size = (1280, 720)
    assert ground_row(11.0, size) < ground_row(5.0, size) < 720
    assert pixel_length(1.5, 11.0, size) < pixel_length(1.5, 5.0, size)


@pytest.fixture(scope="module")
def scenes():
    return {name: [simulate_sequence(scenario, SCENE_NOISE, seed=seed) for seed in (0, 1)]
            for name, scenario in SCENES.items()}


def _longest_absence(present: np.ndarray) -> int:
    seen = np.flatnonzero(present)
    return int((np.diff(seen) - 1).max()) if len(seen) > 1 else 0


def test_scenes_are_deterministic_and_well_formed(scenes):
    again = simulate_sequence(SCENES["depths"], SCENE_NOISE, seed=0)
    np.testing.assert_array_equal(again.keypoints, scenes["depths"][0].keypoints)
    for name, sequences in scenes.items():
        for seq in sequences:
            assert seq.keypoints.shape == (300, SCENES[name].num_animals, K, 2)
            assert np.isfinite(seq.keypoints).all() and seq.present.mean() > 0.7


def test_depths_scene_hides_animals_behind_nearer_ones(scenes):
    for seq in scenes["depths"]:
        rows = seq.boxes[0, :, 3]
        assert rows.max() - rows.min() > 100  # from 5 to 11 m
        assert (seq.visibility < 0.25).any(axis=0).sum() >= 2  # several animals hidden for a while


def test_hidden_scene_hides_the_small_animal_about_twenty_frames(scenes):
    for seq in scenes["hidden"]:
        height = seq.boxes[..., 3] - seq.boxes[..., 1]
        assert height[:, 1].max() < 0.35 * height[:, 0].min()  # small far, large near
        assert 15 <= _longest_absence(seq.present[:, 1]) <= 28


def test_exit_scene_has_an_animal_out_of_the_frame_about_forty_frames(scenes):
    for seq in scenes["exit"]:
        assert 30 <= _longest_absence(seq.present[:, 0]) <= 55
        out = seq.visibility[:, 0] == 0
        assert out.sum() >= 20


def test_runner_is_fast_and_turns(scenes):
    for seq in scenes["runner"]:
        centre = 0.5 * (seq.boxes[:, 0, 0] + seq.boxes[:, 0, 2])
        length = seq.boxes[:, 0, 2] - seq.boxes[:, 0, 0]
        step = np.diff(centre)
        assert np.percentile(np.abs(step) / np.median(length), 90) > 0.05  # runs
        assert (np.sign(step[np.abs(step) > 2.0])[1:] != np.sign(step[np.abs(step) > 2.0])[:-1]).any()  # reverses


def test_miss_bursts_take_detections_away():
    scenario = dataclasses.replace(SCENES["runner"], num_frames=120)
    found = [sum(len(f.detections) - (f.animal_index < 0).sum()
                 for f in simulate_sequence(dataclasses.replace(scenario, miss_bursts=rate), SCENE_NOISE, 3).frames)
             for rate in (0.0, 0.1)]
    assert found[1] < 0.85 * found[0]


def test_pose_in_boxes_finds_the_animal_in_its_box_and_nothing_elsewhere(scenes):
    seq = scenes["close-crossing"][0]
    t = int(np.flatnonzero(seq.present[:, 0])[10])
    rng = np.random.default_rng(0)
    poses = pose_in_boxes(seq, t, np.stack([seq.boxes[t, 0], [0.0, 0.0, 40.0, 30.0]]), rng)
    assert poses.keypoints.shape == (2, K, 3)
    confident = poses.keypoints[0, :, 2] >= 0.3
    error = np.linalg.norm(poses.keypoints[0, confident, :2] - seq.keypoints[t, 0, confident], axis=-1)
    size = np.sqrt(np.prod(seq.boxes[t, 0, 2:] - seq.boxes[t, 0, :2]))
    assert confident.sum() >= 8 and np.median(error) < 0.1 * size
    assert (poses.keypoints[1, :, 2] < 0.3).all()
