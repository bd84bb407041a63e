import dataclasses

import numpy as np
import pytest
from filterpy.common import Q_discrete_white_noise
from filterpy.kalman import KalmanFilter
from filterpy.kalman import predict as filterpy_predict
from filterpy.kalman import update as filterpy_update

from pose.keypoints import NUM_KEYPOINTS
from tracking.smoothing import (
    KeypointSmoother,
    KeypointStatus,
    MotionModel,
    PointFilter,
    SmoothingMode,
    SmoothingSettings,
    _row_medians,
    kalman_predict,
    kalman_update,
    predict_smoothers,
    predict_together,
    rts_smooth,
    smooth_keypoints_offline,
    smoother_outputs,
    smoother_positions,
    transition_matrix,
    update_smoothers,
)

K = NUM_KEYPOINTS


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mode", "causal", "mode"),
        ("motion", 2, "motion"),
        ("keypoint_threshold", 1.5, "keypoint_threshold"),
        ("measurement_noise", 0.0, "measurement_noise"),
        ("process_noise", float("nan"), "process_noise"),
        ("measurement_weights", (1.0,) * 5, "measurement_weights"),
        ("process_weights", (0.0,) * K, "process_weights"),
        ("velocity_damping", 1.2, "velocity_damping"),
        ("adaptation", -0.1, "adaptation"),
        ("max_noise_boost", 0.5, "max_noise_boost"),
        ("max_predicted_frames", -1, "max_predicted_frames"),
        ("confidence_decay", 0.0, "confidence_decay"),
        ("outlier_nis", -1.0, "outlier_nis"),
        ("pose_surprise", float("inf"), "pose_surprise"),
        ("still_noise", 0.0, "still_noise"),
        ("walking_speed", 0.0, "walking_speed"),
    ],
)
def test_settings_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        SmoothingSettings(**{field: value})


@pytest.mark.parametrize("motion", list(MotionModel))
@pytest.mark.parametrize("damping", [1.0, 0.7])
def test_batched_steps_equal_filterpy(motion, damping):
    """Our batched predict/update equals filterpy's predict/update run on each point and axis."""
    rng = np.random.default_rng(0)
    n, d = 5, motion.value
    mean = rng.normal(0, 10, (n, d, 2))
    a = rng.normal(0, 1, (n, d, d))
    cov = a @ np.swapaxes(a, 1, 2) + np.eye(d)
    transition = transition_matrix(motion, damping)
    noise = np.stack([Q_discrete_white_noise(dim=d, dt=1.0, var=v) for v in rng.uniform(0.5, 2, n)])
    drift = rng.normal(0, 1, (n, d, 2))
    measured = rng.normal(0, 10, (n, 2))
    variance = rng.uniform(1, 4, n)
    observed = np.array([True, False, True, True, False])

    got_mean, got_cov = kalman_predict(mean, cov, transition, noise, drift)
    got_mean, got_cov = kalman_update(got_mean, got_cov, measured, variance, observed)

    h = np.zeros((1, d))
    h[0, 0] = 1.0
    for i in range(n):
        for axis in range(2):
            x, p = filterpy_predict(mean[i, :, axis], cov[i], transition, noise[i], u=1.0, B=drift[i, :, axis])
            if observed[i]:
                x, p = filterpy_update(x, p, measured[i, axis], variance[i], h)
            np.testing.assert_allclose(got_mean[i, :, axis], x, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(got_cov[i], p, rtol=1e-9, atol=1e-9)


def test_row_medians_are_numpys_to_the_bit():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(40, K)) * 10.0 ** rng.integers(-3, 4, size=(40, 1))
    values[0, 3] = np.nan  # not selected: ignored
    selected = rng.random((40, K)) < rng.random((40, 1))
    selected[0], selected[1], selected[2] = np.arange(K) != 3, True, False
    medians = _row_medians(values, selected, at_least=3)
    for row, chosen, median in zip(values, selected, medians):
        if chosen.sum() >= 3:
            assert median == np.median(row[chosen])
        else:
            assert np.isnan(median)
    assert np.isnan(medians[2]) and (selected.sum(axis=1) < 3).any() and (selected.sum(axis=1) % 2 == 0).any()


def test_update_ignores_nan_where_not_observed():
    mean, cov = np.zeros((2, 2, 2)), np.tile(np.eye(2), (2, 1, 1))
    new_mean, new_cov = kalman_update(mean, cov, np.array([[1.0, 1.0], [np.nan, np.nan]]), np.ones(2),
                                      np.array([True, False]))
    assert np.isfinite(new_mean).all()
    np.testing.assert_array_equal(new_mean[1], mean[1])
    np.testing.assert_array_equal(new_cov[1], cov[1])


def test_update_of_all_points_is_the_masked_update_of_all():
    rng = np.random.default_rng(2)
    mean, cov = rng.normal(0, 50, (6, 2, 2)), rng.normal(0, 3, (6, 2, 2))
    cov = cov @ np.swapaxes(cov, 1, 2) + np.eye(2)
    measured, variance = rng.normal(0, 50, (6, 2)), rng.uniform(1, 30, 6)
    for got, want in zip(kalman_update(mean, cov, measured, variance, None),
                         kalman_update(mean, cov, measured, variance, np.ones(6, bool))):
        np.testing.assert_array_equal(got, want)


def test_constant_velocity_target_is_tracked_with_vanishing_error():
    rng = np.random.default_rng(1)
    start, velocity = np.array([[100.0, 50.0], [0.0, 0.0]]), np.array([[3.0, -1.5], [-2.0, 4.0]])
    noise_std = 2.0
    filt = PointFilter(start + rng.normal(0, noise_std, (2, 2)), noise_std, 10.0)
    errors = []
    for t in range(1, 200):
        filt.predict(0.01)
        truth = start + velocity * t
        filt.update(truth + rng.normal(0, noise_std, (2, 2)), noise_std, np.ones(2, bool))
        errors.append(np.sqrt(np.mean((filt.positions - truth) ** 2)))
    assert np.mean(errors[-100:]) < 0.35 * noise_std  # far below the measurement noise
    np.testing.assert_allclose(filt.velocities, velocity, atol=0.1)


def test_noiseless_constant_velocity_converges_exactly():
    filt = PointFilter(np.zeros((1, 2)), 1.0, 10.0)
    for t in range(1, 60):
        filt.predict(1e-3)
        filt.update(np.array([[2.0 * t, -t]]), 0.01, np.ones(1, bool))
    np.testing.assert_allclose(filt.positions, [[2.0 * 59, -59.0]], atol=1e-3)


def _moving_pose(t: float, conf: float = 0.9) -> np.ndarray:
    base = np.stack([np.linspace(0, 160, K), np.linspace(0, 80, K)], 1)
    xy = base + np.array([4.0, 1.0]) * t
    return np.concatenate([xy, np.full((K, 1), conf)], 1)


def test_missing_keypoint_is_predicted_then_missing():
    settings = SmoothingSettings(max_predicted_frames=3, confidence_decay=0.5)
    smoother = KeypointSmoother(settings)
    for t in range(20):
        if t:
            smoother.predict(100.0, np.array([4.0, 1.0]))
        smoother.update(_moving_pose(t), 100.0)
    hidden = 7
    for step in range(1, 6):
        t = 19 + step
        smoother.predict(100.0, np.array([4.0, 1.0]))
        pose = _moving_pose(t)
        pose[hidden, 2] = 0.1  # below the threshold: predicted, not updated
        smoother.update(pose, 100.0)
        keypoints, status = smoother.output()
        assert status[0] == KeypointStatus.SMOOTHED
        if step <= 3:
            assert status[hidden] == KeypointStatus.PREDICTED
            np.testing.assert_allclose(keypoints[hidden, :2], _moving_pose(t)[hidden, :2], atol=1.0)
            assert keypoints[hidden, 2] == pytest.approx(0.9 * 0.5**step)
        else:
            assert status[hidden] == KeypointStatus.MISSING
            assert np.isnan(keypoints[hidden, :2]).all() and keypoints[hidden, 2] == 0


def test_carried_keeps_expired_keypoints_moving_with_the_box():
    """Unseen longer than max_predicted_frames, a track's keypoints leave positions() but carried() still has them,
    moved on with the box's velocity; a keypoint never observed is NaN in both."""
    smoother = KeypointSmoother(SmoothingSettings(max_predicted_frames=2))
    assert np.isnan(smoother.carried()).all()  # no pose yet
    for t in range(20):
        if t:
            smoother.predict(100.0, np.array([4.0, 1.0]))
        pose = _moving_pose(t)
        pose[5, 2] = 0.0  # never seen
        smoother.update(pose, 100.0)
    np.testing.assert_array_equal(smoother.carried(), smoother.positions())  # all fresh: the same estimates
    for t in range(20, 25):
        smoother.predict(100.0, np.array([4.0, 1.0]))
    assert np.isnan(smoother.positions()).all()
    carried = smoother.carried()
    assert np.isnan(carried[5]).all()
    seen = np.arange(K) != 5
    np.testing.assert_allclose(carried[seen], _moving_pose(24)[seen, :2], atol=1.0)


def test_forget_drops_every_keypoint_until_the_next_pose_sets_it():
    """A track that took another animal forgets its keypoints: none is reported, and the next pose, wherever it is,
    sets them rather than being screened out as an outlier."""
    smoother = KeypointSmoother(SmoothingSettings())
    for t in range(10):
        if t:
            smoother.predict(100.0)
        smoother.update(_moving_pose(t), 100.0)
    smoother.forget(100.0)
    keypoints, status = smoother.output()
    assert (status == KeypointStatus.MISSING).all() and np.isnan(keypoints[:, :2]).all()
    assert np.isnan(smoother.positions()).all()
    smoother.predict(100.0)
    elsewhere = _moving_pose(10)
    elsewhere[:, 0] += 150.0  # another animal, one and a half boxes away
    smoother.update(elsewhere, 100.0)
    keypoints, status = smoother.output()
    assert (status == KeypointStatus.SMOOTHED).all()
    np.testing.assert_allclose(keypoints[:, :2], elsewhere[:, :2], atol=5.0)


def test_forget_before_any_pose_is_harmless():
    smoother = KeypointSmoother(SmoothingSettings())
    smoother.forget(100.0)
    smoother.update(_moving_pose(0), 100.0)
    assert (smoother.output()[1] == KeypointStatus.SMOOTHED).all()


def test_never_observed_keypoint_is_missing_not_invented():
    smoother = KeypointSmoother(SmoothingSettings())
    pose = _moving_pose(0)
    pose[3, 2] = 0.05
    pose[4, :2] = np.nan
    smoother.update(pose, 100.0)
    keypoints, status = smoother.output()
    assert status[3] == status[4] == KeypointStatus.MISSING
    assert np.isnan(keypoints[[3, 4], :2]).all()
    assert (keypoints[[3, 4], 2] == 0).all()
    assert (status[[0, 1, 2]] == KeypointStatus.SMOOTHED).all()


def test_mode_none_passes_raw_pose_through():
    smoother = KeypointSmoother(SmoothingSettings(mode=SmoothingMode.NONE))
    pose = _moving_pose(0)
    pose[2, 2] = 0.1
    smoother.update(pose, 100.0)
    keypoints, status = smoother.output()
    np.testing.assert_allclose(keypoints, pose, rtol=1e-6)
    assert (status == KeypointStatus.OBSERVED).all()
    smoother.predict(100.0)
    keypoints, status = smoother.output()
    assert (status == KeypointStatus.MISSING).all()


def test_adaptation_follows_a_reversal_faster():
    """A keypoint that turns round at once: the adaptive filter catches up sooner, and is as good after."""

    def errors(adaptation: float) -> tuple[float, float]:
        rng = np.random.default_rng(0)
        settings = SmoothingSettings(adaptation=adaptation, velocity_damping=1.0, process_noise=0.002,
                                     pose_surprise=0.0)
        smoother = KeypointSmoother(settings)
        errors = []
        for t in range(60):
            x = 5.0 * t if t < 30 else 5.0 * (60 - t)
            pose = np.zeros((K, 3))
            pose[:, 0], pose[:, 2] = x + rng.normal(0, 2.0, K), 0.9
            if t:
                smoother.predict(100.0)
            smoother.update(pose, 100.0)
            if t > 30:
                errors.append(np.abs(smoother.filter.positions[:, 0] - x).mean())
        return float(np.mean(errors[:10])), float(np.mean(errors[-10:]))

    (adaptive_turn, adaptive_after), (fixed_turn, fixed_after) = errors(0.3), errors(0.0)
    assert adaptive_turn < 0.9 * fixed_turn
    assert adaptive_after < 1.2 * fixed_after


def _rts_reference(zs, r, q, motion):
    """One point, one axis, with filterpy's KalmanFilter and its rts_smoother."""
    d = motion.value
    kf = KalmanFilter(dim_x=d, dim_z=1)
    kf.F = transition_matrix(motion)
    kf.H = np.eye(1, d)
    kf.R = np.array([[r]])
    kf.Q = Q_discrete_white_noise(dim=d, dt=1.0, var=q)
    kf.x = np.zeros((d, 1))
    kf.x[0, 0] = zs[0]
    kf.P = np.diag([r] + [100.0] * (d - 1))
    kf.update(zs[0])
    means, covs = [kf.x.copy()], [kf.P.copy()]
    for z in zs[1:]:
        kf.predict()
        kf.update(z)
        means.append(kf.x.copy())
        covs.append(kf.P.copy())
    xs, _, _, _ = kf.rts_smoother(np.array(means), np.array(covs))
    return xs[:, :, 0]


@pytest.mark.parametrize("motion", list(MotionModel))
def test_rts_smooth_equals_filterpy_kalman_filter(motion):
    rng = np.random.default_rng(2)
    zs = np.cumsum(rng.normal(0, 1, 40)) + 0.5 * np.arange(40)
    r, q = 4.0, 0.3
    filt = PointFilter(np.array([[zs[0], -zs[0]]]), np.sqrt(r), 10.0, motion=motion, record=True)
    filt.update(np.array([[zs[0], -zs[0]]]), np.sqrt(r), np.ones(1, bool))
    for z in zs[1:]:
        filt.predict(np.sqrt(q))
        filt.update(np.array([[z, -z]]), np.sqrt(r), np.ones(1, bool))
    smoothed, _ = rts_smooth(filt.history())
    expected = _rts_reference(zs, r, q, motion)
    # The forward pass is recorded in float32: equal up to its rounding.
    np.testing.assert_allclose(smoothed[:, 0, :, 0], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(smoothed[:, 0, :, 1], -expected, rtol=1e-5, atol=1e-5)


def test_rts_smooth_handles_the_control_term():
    """A known drift must not bias the smoother: a point pulled along a known path is smoothed onto it."""
    velocity = np.array([3.0, -2.0])
    filt = PointFilter(np.zeros((1, 2)), 1.0, 1.0, damping=0.5, record=True)
    filt.update(np.zeros((1, 2)), 0.5, np.ones(1, bool))
    for t in range(1, 30):
        filt.predict(0.05, velocity)
        observed = np.array([t % 5 == 0])  # mostly predicted: the drift carries the point
        filt.update((velocity * t)[None], 0.5, observed)
    smoothed, _ = rts_smooth(filt.history())
    truth = velocity * np.arange(30)[:, None]
    assert np.abs(smoothed[10:, 0, 0, :] - truth[10:]).max() < 1.0


def test_offline_is_more_accurate_than_causal():
    rng = np.random.default_rng(4)
    settings = SmoothingSettings(mode=SmoothingMode.OFFLINE)
    smoother = KeypointSmoother(settings, record=True)
    truth, causal = [], []
    for t in range(120):
        pose = _moving_pose(t)
        pose[:, 1] += 20 * np.sin(t / 6.0)  # a swing the constant-velocity model does not know
        truth.append(pose[:, :2].copy())
        noisy = pose.copy()
        noisy[:, :2] += rng.normal(0, 3.0, (K, 2))
        if t:
            smoother.predict(100.0, np.array([4.0, 1.0]))
        smoother.update(noisy, 100.0)
        causal.append(smoother.output()[0][:, :2])
    offline, status = smooth_keypoints_offline(smoother.history(), settings)
    truth, causal = np.array(truth), np.array(causal)
    causal_rmse = np.sqrt(np.mean(np.sum((causal - truth) ** 2, -1)))
    offline_rmse = np.sqrt(np.mean(np.sum((offline[..., :2] - truth) ** 2, -1)))
    raw_rmse = 3.0 * np.sqrt(2)
    assert offline_rmse < causal_rmse < raw_rmse
    assert (status == KeypointStatus.SMOOTHED).all()


def test_offline_statuses_and_confidences():
    settings = SmoothingSettings(mode=SmoothingMode.OFFLINE, max_predicted_frames=2, confidence_decay=0.5)
    smoother = KeypointSmoother(settings, record=True)
    # keypoint 0 seen at 0..4, hidden 5..6 (short gap), seen 7..9, hidden 10..19 (long), seen 20.
    seen = np.zeros(21, bool)
    seen[[*range(0, 5), *range(7, 10), 20]] = True
    for t in range(21):
        pose = _moving_pose(t, conf=0.8)
        pose[0, 2] = 0.8 if seen[t] else 0.0
        if t:
            smoother.predict(100.0, np.array([4.0, 1.0]))
        smoother.update(pose, 100.0)
    keypoints, status = smooth_keypoints_offline(smoother.history(), settings)
    assert keypoints.shape == (21, K, 3) and status.shape == (21, K)
    assert (status[seen, 0] == KeypointStatus.SMOOTHED).all()
    assert (status[[5, 6], 0] == KeypointStatus.PREDICTED).all()
    assert (status[[10, 11, 18, 19], 0] == KeypointStatus.PREDICTED).all()  # within 2 of an observation
    assert (status[12:18, 0] == KeypointStatus.MISSING).all()
    assert np.isnan(keypoints[12:18, 0, :2]).all() and (keypoints[12:18, 0, 2] == 0).all()
    assert keypoints[5, 0, 2] == pytest.approx(0.4)  # one frame from an observation of 0.8
    np.testing.assert_allclose(keypoints[6, 0, :2], _moving_pose(6)[0, :2], atol=1.0)


def test_history_needs_record():
    smoother = KeypointSmoother(SmoothingSettings())
    smoother.update(_moving_pose(0), 100.0)
    with pytest.raises(RuntimeError, match="record"):
        smoother.history()


def test_history_pads_frames_before_the_first_pose():
    smoother = KeypointSmoother(SmoothingSettings(mode=SmoothingMode.OFFLINE), record=True)
    smoother.predict(100.0)
    smoother.predict(100.0)
    smoother.update(_moving_pose(2), 100.0)
    smoother.predict(100.0)
    history = smoother.history()
    assert history.filter.means.shape[0] == 4
    assert history.observed.shape == (4, K)
    assert not history.observed[:2].any() and history.observed[2].all()


def _filters(rng: np.random.Generator, record: bool) -> list[PointFilter]:
    filters = []
    for i in range(3):
        f = PointFilter(rng.uniform(0, 500, (4, 2)), 5.0, 2.0, damping=np.array([1.0, 0.9, 0.9, 0.5]), record=record)
        for _ in range(i + 1):  # different states
            f.predict(rng.uniform(0.5, 2.0, 4), rng.normal(0, 3, 2))
            f.update(rng.uniform(0, 500, (4, 2)), rng.uniform(1, 4, 4), rng.random(4) > 0.3)
        filters.append(f)
    return filters


@pytest.mark.parametrize("record", [False, True])
def test_filters_predicted_together_are_each_predicted_alone(record):
    together, alone = _filters(np.random.default_rng(3), record), _filters(np.random.default_rng(3), record)
    rng = np.random.default_rng(4)
    for step in range(3):
        std, velocity = rng.uniform(0.5, 3.0, (3, 4)), rng.normal(0, 4, (3, 2))
        predict_together(together, std, None if step == 1 else velocity)
        for f, s, v in zip(alone, std, velocity):
            f.predict(s, None if step == 1 else v)
    for a, b in zip(together, alone):
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.cov, b.cov)
        if record:
            np.testing.assert_array_equal(a.history().noises, b.history().noises)
            np.testing.assert_array_equal(a.history().drifts, b.history().drifts)


def test_filters_of_other_dampings_are_not_predicted_together():
    filters = [PointFilter(np.zeros((2, 2)), 1.0, 1.0), PointFilter(np.zeros((2, 2)), 1.0, 1.0, damping=0.5)]
    with pytest.raises(ValueError, match="damping"):
        predict_together(filters, np.ones((2, 2)))


def _smoothers(settings: SmoothingSettings) -> list[KeypointSmoother]:
    smoothers = [KeypointSmoother(settings) for _ in range(3)]
    for i, smoother in enumerate(smoothers[:2]):  # the last one never has a pose
        for t in range(4 + 3 * i):
            if t:
                smoother.predict(100.0, np.array([4.0, 1.0]))
            pose = _moving_pose(t + 10 * i)
            pose[i::5, 2] = 0.1  # some keypoints unseen
            smoother.update(pose, 100.0)
    return smoothers


def test_smoothers_predicted_together_are_each_predicted_alone():
    settings = SmoothingSettings(still_noise=0.3)
    together, alone = _smoothers(settings), _smoothers(settings)
    scales, velocities = np.array([80.0, 120.0, 60.0]), np.array([[0.0, 0.0], [6.0, -2.0], [1.0, 1.0]])
    for _ in range(2):
        predict_smoothers(together, scales, velocities)
        for smoother, scale, velocity in zip(alone, scales, velocities):
            smoother.predict(float(scale), velocity)
    for a, b in zip(together, alone):
        for batched, single in zip(a.output(), b.output()):  # keypoints, then status
            np.testing.assert_array_equal(batched, single)
        np.testing.assert_array_equal(a.frames_since_observed, b.frames_since_observed)


@pytest.mark.parametrize("record", [False, True])
def test_smoothers_updated_together_are_each_updated_alone(record):
    """The batch takes every branch of the single update: outliers (twice: a manoeuvre), a pose that moved as a whole
    (trusted: followed; not trusted: dropped), keypoints not seen, a smoother's first pose."""
    settings = SmoothingSettings(mode=SmoothingMode.OFFLINE if record else SmoothingMode.CAUSAL)

    def smoothers():
        out = [KeypointSmoother(settings, record=record) for _ in range(4)]
        for smoother in out[:3]:
            for t in range(5):
                if t:
                    smoother.predict(100.0, np.array([4.0, 1.0]))
                smoother.update(_moving_pose(t), 100.0)
        return out

    together, alone = smoothers(), smoothers()
    rng = np.random.default_rng(7)
    for t in range(5, 9):
        poses = np.stack([_moving_pose(t) for _ in range(4)])
        poses[0, 2:4, :2] += 60.0  # two keypoints far off, frame after frame
        poses[1, :, :2] += 80.0 if t == 6 else 0.0  # the whole pose moved
        poses[2, :, :2] += 80.0 if t == 7 else 0.0
        poses[:, :, 2] = np.where(rng.random((4, K)) < 0.2, 0.1, poses[:, :, 2])
        poses[3, 5] = np.nan
        trusted = np.array([True, True, False, True])
        scales = np.array([100.0, 90.0, 110.0, 80.0])
        for smoothers_now in (together, alone):
            for smoother, scale in zip(smoothers_now, scales):
                if smoother.filter is not None:
                    smoother.predict(float(scale), np.array([4.0, 1.0]))
        update_smoothers(together, poses, scales, trusted)
        for smoother, pose, scale, trust in zip(alone, poses, scales, trusted):
            smoother.update(pose, float(scale), trusted=bool(trust))
        for a, b in zip(together, alone):
            for batched, single in zip(a.output(), b.output()):
                np.testing.assert_array_equal(batched, single)
            for name in ("maneuver", "strikes", "frames_since_observed", "ever_observed", "last_confidence"):
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
            np.testing.assert_array_equal(a.filter.cov, b.filter.cov)
    if record:
        for a, b in zip(together, alone):
            np.testing.assert_array_equal(a.history().filter.noises, b.history().filter.noises)
    with pytest.raises(ValueError, match="settings"):
        update_smoothers([KeypointSmoother(SmoothingSettings()), KeypointSmoother(SmoothingSettings())],
                         np.zeros((2, K, 3)), np.ones(2), np.ones(2, bool))
    update_smoothers([], np.zeros((0, K, 3)), np.zeros(0), np.zeros(0, bool))  # nothing to do


def test_smoother_outputs_are_each_smoothers_output_with_its_limits():
    smoothers = _smoothers(SmoothingSettings())
    limits = np.array([[0.0, 0.0, 200.0, 100.0], [50.0, 20.0, 120.0, 60.0], [0.0, 0.0, 1.0, 1.0]])
    keypoints, status = smoother_outputs(smoothers, limits)
    for smoother, row, kpts, codes in zip(smoothers, limits, keypoints, status):
        alone = smoother.output(tuple(row))
        np.testing.assert_array_equal(kpts, alone[0])
        np.testing.assert_array_equal(codes, alone[1])
    free, _ = smoothers[1].output()
    x = free[:, 0]
    outside = (x < 50.0) | (x > 120.0) | (free[:, 1] < 20.0) | (free[:, 1] > 60.0)
    assert outside.any() and (~outside & np.isfinite(x)).any()
    assert (status[1][outside] == KeypointStatus.MISSING).all() and np.isnan(keypoints[1][outside, :2]).all()
    assert (keypoints[1][outside, 2] == 0.0).all()
    np.testing.assert_array_equal(keypoints[1][~outside], free[~outside])
    assert (status[2] == KeypointStatus.MISSING).all()  # never had a pose


def test_smoother_outputs_status_codes_follow_the_observed_keypoints():
    smoothers = _smoothers(SmoothingSettings(max_predicted_frames=2))
    for i, smoother in enumerate(smoothers[:2]):  # keypoints seen before, not now
        smoother.predict(100.0)
        pose = _moving_pose(4 + 13 * i)  # its next frame (_smoothers)
        pose[i::5, 2] = 0.1
        pose[2 + i::4, 2] = 0.1
        smoother.update(pose, 100.0)
    _, status = smoother_outputs(smoothers)
    assert status.dtype == np.int8
    for smoother, codes in zip(smoothers[:2], status):
        valid = smoother.valid()
        assert smoother.observed_now.any() and (valid & ~smoother.observed_now).any()
        np.testing.assert_array_equal(codes[valid & smoother.observed_now], KeypointStatus.SMOOTHED)
        np.testing.assert_array_equal(codes[valid & ~smoother.observed_now], KeypointStatus.PREDICTED)
        np.testing.assert_array_equal(codes[~valid], KeypointStatus.MISSING)
    smoothers[0].predict(100.0)  # nothing observed in the new frame
    _, status = smoother_outputs(smoothers[:1])
    assert set(status[0].tolist()) <= {KeypointStatus.PREDICTED, KeypointStatus.MISSING}


def test_smoother_positions_are_each_smoothers_estimates():
    smoothers = _smoothers(SmoothingSettings(max_predicted_frames=2))
    for _ in range(2):  # the second smoother's unseen keypoints pass max_predicted_frames
        smoothers[1].predict(100.0)
    positions = smoother_positions(smoothers)
    assert positions.shape == (3, K, 2)
    for smoother, rows in zip(smoothers[:2], positions):
        valid = smoother.ever_observed & (smoother.frames_since_observed <= 2)
        assert valid.any() and not valid.all()
        np.testing.assert_array_equal(rows[valid], smoother.filter.mean[valid, 0, :])
        assert np.isnan(rows[~valid]).all()
        np.testing.assert_array_equal(smoother.positions(), rows)
    assert np.isnan(positions[2]).all()  # never had a pose


def test_smoothers_of_other_settings_are_not_predicted_together():
    with pytest.raises(ValueError, match="settings"):
        predict_smoothers([KeypointSmoother(SmoothingSettings()), KeypointSmoother(SmoothingSettings())],
                          np.ones(2))


def test_point_filter_rejects_bad_damping():
    with pytest.raises(ValueError, match="damping"):
        PointFilter(np.zeros((2, 2)), 1.0, 1.0, damping=np.array([1.0, 1.5]))


def test_settings_are_frozen():
    settings = SmoothingSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.mode = SmoothingMode.NONE


def _drive(smoother: KeypointSmoother, frames_before_pose: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Predict ``frames_before_pose`` frames without a pose, then 20 noisy poses; the causal output of each frame."""
    outputs = []
    for t in range(frames_before_pose + 20):
        if t:
            smoother.predict(100.0, np.array([4.0, 1.0]))
        if t >= frames_before_pose:
            pose = _moving_pose(t)
            pose[:, :2] += rng.normal(0, 3.0, (K, 2))
            pose[::4, 2] = 0.1  # some keypoints below the threshold: predicted, not updated
            smoother.update(pose, 100.0)
        outputs.append(smoother.output()[0])
    return outputs


@pytest.mark.parametrize("motion", list(MotionModel))
@pytest.mark.parametrize("frames_before_pose", [0, 1, 3])
def test_recorded_forward_pass_is_the_causal_pass(motion, frames_before_pose):
    causal = KeypointSmoother(SmoothingSettings(mode=SmoothingMode.CAUSAL, motion=motion))
    recorded = KeypointSmoother(SmoothingSettings(mode=SmoothingMode.OFFLINE, motion=motion), record=True)
    expected = _drive(causal, frames_before_pose, np.random.default_rng(5))
    got = _drive(recorded, frames_before_pose, np.random.default_rng(5))
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
    history = recorded.history()
    assert history.filter.means.shape[0] == frames_before_pose + 20
    forward = history.filter.means[frames_before_pose:, :, 0, :]
    valid = np.isfinite(np.stack(expected[frames_before_pose:])[..., 0])
    np.testing.assert_allclose(forward[valid], np.stack(expected[frames_before_pose:])[..., :2][valid], atol=1e-3)


def _standing_or_walking(settings: SmoothingSettings, speed: float, trusted: bool = True,
                         frames: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """A pose moving at ``speed`` px/frame with the body, noisy; the causal estimates and the truth (T, K, 2)."""
    rng = np.random.default_rng(11)
    smoother = KeypointSmoother(settings)
    base = np.stack([np.linspace(0, 160, K), np.linspace(0, 80, K)], 1)
    estimates, truth = [], []
    for t in range(frames):
        xy = base + np.array([speed * t, 0.0])
        pose = np.concatenate([xy + rng.normal(0, 3.0, (K, 2)), np.full((K, 1), 0.9)], 1)
        if t:
            smoother.predict(100.0, np.array([speed, 0.0]))
        smoother.update(pose, 100.0, trusted)
        estimates.append(smoother.output()[0][:, :2])
        truth.append(xy)
    return np.array(estimates), np.array(truth)


def _jitter(xy: np.ndarray) -> float:
    return float(np.linalg.norm(xy[2:] - 2 * xy[1:-1] + xy[:-2], axis=-1)[20:].mean())


@pytest.mark.parametrize(("speed", "stiffer"), [(0.0, True), (10.0, False)])
def test_still_noise_stiffens_standing_animals_only(speed, stiffer):
    loose, _ = _standing_or_walking(SmoothingSettings(still_noise=1.0), speed)
    stiff, _ = _standing_or_walking(SmoothingSettings(still_noise=0.2, walking_speed=0.03), speed)
    if stiffer:
        assert _jitter(stiff) < 0.7 * _jitter(loose)
    else:
        np.testing.assert_allclose(stiff, loose)  # walking at 0.1 box per frame: the full process noise


def _turning_pose(t: int, turn_at: int) -> np.ndarray:
    """17 keypoints along a body facing right, mirrored about its centre from frame ``turn_at`` on."""
    u = np.linspace(-80, 80, K)
    x = 300.0 + (u if t < turn_at else -u)
    return np.stack([x, np.full(K, 200.0) + np.linspace(-40, 40, K), np.full(K, 0.9)], 1)


@pytest.mark.parametrize(("pose_surprise", "trusted", "follows"), [(3.0, True, True), (0.0, True, False),
                                                                  (3.0, False, False)])
def test_a_pose_that_turns_round_is_followed_at_once_when_trusted(pose_surprise, trusted, follows):
    smoother = KeypointSmoother(SmoothingSettings(pose_surprise=pose_surprise))
    for t in range(12):
        if t:
            smoother.predict(100.0, np.zeros(2))
        smoother.update(_turning_pose(t, 10), 100.0, trusted=trusted or t < 10)
    error = np.abs(smoother.filter.positions[:, 0] - _turning_pose(11, 10)[:, 0]).max()
    assert (error < 10.0) == follows


@pytest.mark.parametrize("trusted", [True, False])
def test_a_pose_that_moved_as_a_whole_is_dropped_where_not_trusted(trusted):
    smoother = KeypointSmoother(SmoothingSettings(pose_surprise=3.0, outlier_nis=0.0))
    for t in range(10):
        if t:
            smoother.predict(100.0)
        smoother.update(_moving_pose(t), 100.0)
    moved = _moving_pose(10)
    moved[:, 0] += 80.0  # the pose of an animal beside it, in a box predicted there
    smoother.predict(100.0)
    smoother.update(moved, 100.0, trusted=trusted)
    smoothed = smoother.output()[1] == KeypointStatus.SMOOTHED
    assert smoothed.all() if trusted else not smoothed.any()


def test_outlier_is_dropped_once_then_a_jump_is_followed():
    smoother = KeypointSmoother(SmoothingSettings(outlier_nis=6.0, pose_surprise=0.0))
    pose = _moving_pose(0)
    for t in range(10):
        if t:
            smoother.predict(100.0)
        smoother.update(pose, 100.0)
    jumped = pose.copy()
    jumped[3, :2] += 80.0  # one keypoint far off (a swap, a confused heatmap)
    smoother.predict(100.0)
    smoother.update(jumped, 100.0)
    assert np.abs(smoother.filter.positions[3] - pose[3, :2]).max() < 1.0
    assert not smoother.output()[1][3] == KeypointStatus.SMOOTHED  # not used this frame
    smoother.predict(100.0)
    smoother.update(jumped, 100.0)  # again: it moved
    assert np.abs(smoother.filter.positions[3] - jumped[3, :2]).max() < 10.0


@pytest.mark.parametrize("kicked", [False, True])
def test_rts_smooth_sees_the_kicks(kicked):
    """A kick (extra position variance) is recorded as process noise of that step: the smoother lets the track jump
    there instead of bending the frames before it."""
    filt = PointFilter(np.zeros((1, 2)), 1.0, 1.0, record=True)
    for t in range(1, 30):
        filt.predict(0.05)
        position = 0.0 if t < 15 else 100.0
        if t == 15 and kicked:
            filt.kick(np.array([100.0**2]))
        filt.update(np.array([[position, 0.0]]), 1.0, np.ones(1, bool))
    history = filt.history()
    assert (history.noises[14, 0, 0, 0] > 1000.0) == kicked
    smoothed, _ = rts_smooth(history)
    assert (abs(smoothed[12, 0, 0, 0]) < 2.0) == kicked


def test_forward_record_is_compact():
    """float32, the covariance's upper triangle, one process variance per point, the reference velocity."""
    filt = PointFilter(np.zeros((K, 2)), 1.0, 1.0, record=True)
    for _ in range(512):  # two whole blocks of rows
        filt.predict(0.1, np.array([1.0, 0.0]))
    assert filt.recorded_bytes / 512 == 4 * (K * 2 * 2 + K * 3 + K + 2)  # 138 float32 (float64, all: 544 float64)


def test_rows_grow_by_blocks():
    from tracking.smoothing import Rows

    rows = Rows((3,), np.float32, block=4)
    for i in range(10):
        rows.append(np.full(3, i))
    assert rows.size == 10 and rows.nbytes == 3 * 4 * 3 * 4
    np.testing.assert_array_equal(rows.array[:, 0], np.arange(10))
    assert Rows((2,), bool).array.shape == (0, 2)


def test_rows_spill_their_full_blocks_and_read_them_back(tmp_path):
    from tracking.smoothing import Rows, Spill

    spill = Spill(tmp_path)
    kept, spilled = Rows((3,), np.float32, block=4), Rows((3,), np.float32, block=4, spill=spill)
    other = Rows((), np.int8, block=4, spill=spill)  # two logs share one file
    for i in range(10):
        for rows in (kept, spilled):
            rows.append(np.full(3, i))
        other.append(-i)
    assert spilled.nbytes == 4 * 3 * 4  # one block in memory: the two full ones are in the file
    assert spill.nbytes == 2 * (4 * 3 * 4) + 2 * 4
    np.testing.assert_array_equal(spilled.array, kept.array)
    spilled.flush()  # the partial block too (an ended track)
    assert spilled.nbytes == 0 and spilled.size == 10
    for i in range(10, 13):
        spilled.append(np.full(3, i))
        kept.append(np.full(3, i))
    np.testing.assert_array_equal(spilled.array, kept.array)
    np.testing.assert_array_equal(other.array, -np.arange(10))
    assert list(tmp_path.iterdir()) == []  # the file has no name: nothing to leave behind
    spill.close()
    with pytest.raises(ValueError):
        spilled.array


def test_a_spill_that_cannot_be_written_says_where_and_what_to_do(tmp_path):
    from tracking.smoothing import Rows, Spill, SpillError

    rows = Rows((2,), np.float32, block=2, spill=Spill(tmp_path / "no such folder"))
    rows.append(np.zeros(2))
    rows.append(np.zeros(2))
    with pytest.raises(SpillError, match=r"cannot keep the tracking history .*no such folder.* set TMPDIR"):
        rows.append(np.zeros(2))  # the full block goes to the file


def test_a_spill_that_cannot_be_read_back_says_so():
    from tracking.smoothing import Spill, SpillError

    spill = Spill()
    offset = spill.write(np.arange(8, dtype=np.float32))
    spill._file.truncate(16)  # half of it lost
    with pytest.raises(SpillError, match="ended early"):
        spill.read(offset, (8,), np.float32)


def test_a_spilled_record_smooths_as_one_kept_in_memory(tmp_path):
    from tracking.smoothing import Spill

    rng = np.random.default_rng(3)
    settings = SmoothingSettings(mode=SmoothingMode.OFFLINE)
    smoothers = [KeypointSmoother(settings, record=True), KeypointSmoother(settings, record=True, spill=Spill())]
    truth = rng.uniform(100, 300, (K, 2))
    for t in range(700):  # more than two blocks of 256 frames
        measured = np.concatenate([truth + t * 0.5 + rng.normal(0, 2, (K, 2)), rng.uniform(0.2, 1.0, (K, 1))], 1)
        for smoother in smoothers:
            smoother.predict(100.0)
            if t % 7:
                smoother.update(measured, 100.0)
        if t == 400:
            smoothers[1].flush()
    assert smoothers[1].filter.recorded_bytes < smoothers[0].filter.recorded_bytes / 2
    kept, spilled = (smooth_keypoints_offline(s.history(), settings) for s in smoothers)
    np.testing.assert_array_equal(spilled[0], kept[0])
    np.testing.assert_array_equal(spilled[1], kept[1])


@pytest.mark.parametrize(("pose_surprise", "forgotten"), [(3.0, True), (0.0, False)])
def test_keypoints_unseen_when_the_pose_jumps_are_forgotten(pose_surprise, forgotten):
    """The track took another animal 150 px away, half of whose keypoints are hidden: those are not reported where
    the first animal's were."""
    smoother = KeypointSmoother(SmoothingSettings(pose_surprise=pose_surprise))
    pose = _turning_pose(0, 100)
    for t in range(10):
        if t:
            smoother.predict(100.0, np.zeros(2))
        smoother.update(pose, 100.0)
    other = pose.copy()
    other[:, 0] += 150.0
    other[K // 2:, 2] = 0.1  # hidden: below the threshold
    smoother.predict(100.0, np.zeros(2))
    smoother.update(other, 100.0)
    keypoints, status = smoother.output()
    hidden = np.arange(K) >= K // 2
    assert (status[hidden] == KeypointStatus.MISSING).all() == forgotten
    assert np.isnan(keypoints[hidden, 0]).all() == forgotten
    assert np.abs(keypoints[~hidden, 0] - other[~hidden, 0]).max() < (10.0 if forgotten else 200.0)
    # Seen again, they are taken where they are now.
    smoother.predict(100.0, np.zeros(2))
    smoother.update(np.concatenate([other[:, :2], np.full((K, 1), 0.9)], 1), 100.0)
    assert (np.abs(smoother.output()[0][hidden, 0] - other[hidden, 0]).max() < 10.0) == forgotten


def test_process_std_per_track_is_numpys_formula_to_the_bit():
    from tracking.smoothing import _process_std

    settings = SmoothingSettings(still_noise=0.3)
    rng = np.random.default_rng(4)
    maneuver = rng.uniform(0.5, 30.0, (5, K))
    scale = np.array([0.5, 40.0, 90.0, 130.0, 300.0])
    velocity = rng.normal(0.0, 3.0, (5, 2))
    velocity[0] = 0.0
    speed = np.sqrt(velocity[:, 0] ** 2 + velocity[:, 1] ** 2) / np.maximum(scale, 1.0)
    motion = 0.3 + 0.7 * np.minimum(speed / settings.walking_speed, 1.0)
    want = ((settings.process_noise * scale)[:, None] * np.asarray(settings.process_weights)
            * np.sqrt(np.minimum(np.maximum(maneuver, 1.0), settings.max_noise_boost)) * motion[:, None])
    np.testing.assert_array_equal(_process_std(settings, maneuver, scale, velocity), want)
    listed = SmoothingSettings(still_noise=0.3, process_weights=list(settings.process_weights))  # not hashable
    np.testing.assert_array_equal(_process_std(listed, maneuver, scale, velocity), want)
