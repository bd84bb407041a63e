"""Kalman filters for the box and the 17 keypoints of one track: causal for live streams, RTS for files.

Every tracked point (a keypoint, a box centre, a box size) is an independent 2-D point whose x and y
follow the same kinematic model (constant velocity, or constant acceleration). Because x and y of a
point see the same noise and the same measurements, they share one covariance: a batch of ``n``
points is a mean of shape (n, order, 2) and a covariance of shape (n, order, order). Prediction and
update are the textbook equations, vectorised over the batch with numpy; the matrices come from
filterpy (``kinematic_state_transition``, ``Q_discrete_white_noise``) and
``tests/tracking/test_smoothing.py`` checks the batched steps against ``filterpy.kalman.predict`` /
``update`` run point by point. Measured on the development machine (2 shared cores): the bare
predict + update of 17 keypoints costs about 18 us batched, against 150 us for one 68-state
``filterpy.kalman.KalmanFilter``.

The keypoint model, per keypoint (:class:`SmoothingSettings`):

* measurement noise grows with the box scale and with ``1 / confidence``, weighted by the AP-10K
  OKS sigmas (eyes are found more precisely than hips); a keypoint below the confidence threshold,
  or not finite, is predicted, not updated;
* the keypoint's velocity decays towards the box velocity (limbs swing about the moving body), so a
  keypoint that goes unseen drifts with the animal instead of flying off along its last swing;
* process noise is larger for elbows, knees and paws, lower while the body stands still (the
  keypoints of a grazing animal hardly move: less jitter there, none of the lag of a stiff filter
  while it walks), and raised while the keypoint's innovations are larger than the filter expects
  (a turn, a start, a stop), then falls back;
* a pose that moved as a whole unlike the filter expects (the animal turned round) is followed at
  once, its keypoints' position variance raised by their squared innovations; optionally, a single
  keypoint far from its prediction is dropped once as an outlier (``outlier_nis``).

The offline mode records the forward pass compactly (float32, the covariances' upper triangles, the
process noise as one variance per point: about 0.6 KiB per tracked animal and frame) and runs
``filterpy.kalman.rts_smoother`` over the whole track (the batch becomes one block-diagonal state).
With a :class:`Spill` the record's full blocks go to one anonymous temporary file, so that memory holds at
most one block per log of each live track however long the video.
The recorded forward pass is the causal filter's, frame for frame: frames of a track before its first
pose are logged, not run through the filter.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from functools import cache
from pathlib import Path

import numpy as np
from filterpy.common import Q_discrete_white_noise, kinematic_state_transition
from filterpy.kalman import rts_smoother

from pose.keypoints import NUM_KEYPOINTS, SIGMAS


class SmoothingMode(Enum):
    """What a track reports: raw pose (NONE), a causal filter (CAUSAL) or, for files, RTS (OFFLINE)."""

    NONE = "none"
    CAUSAL = "causal"
    OFFLINE = "offline"


class MotionModel(Enum):
    """Kinematic model of each point; the value is the state size per coordinate."""

    CONSTANT_VELOCITY = 2
    CONSTANT_ACCELERATION = 3


class KeypointStatus(IntEnum):
    """Where an output keypoint comes from.

    MISSING: no estimate (never observed, or predicted too long); coordinates are NaN, confidence 0.
    OBSERVED: the raw measurement of this frame, unfiltered (mode NONE).
    PREDICTED: a filter estimate without a measurement in this frame (extrapolated causally,
        interpolated offline).
    SMOOTHED: a filter estimate that used this frame's measurement (causal filter or RTS).
    """

    MISSING = 0
    OBSERVED = 1
    PREDICTED = 2
    SMOOTHED = 3


#: Relative measurement noise of each keypoint: the AP-10K OKS sigmas (per-keypoint localisation
#: spread of human annotators) over their mean. Eyes are pinpointed, hips are not.
MEASUREMENT_WEIGHTS: tuple[float, ...] = tuple(float(w) for w in SIGMAS / SIGMAS.mean())

#: Relative process noise of each keypoint: a prior that distal limb joints accelerate more than
#: the head and trunk (elbows and knees twice, paws three times as much).
PROCESS_WEIGHTS: tuple[float, ...] = (
    1.0, 1.0, 1.0, 1.0, 1.0,  # eyes, nose, neck, root of tail
    1.0, 2.0, 3.0, 1.0, 2.0, 3.0,  # shoulders, elbows, front paws
    1.0, 2.0, 3.0, 1.0, 2.0, 3.0,  # hips, knees, back paws
)


def _check_weights(name: str, weights: tuple[float, ...]) -> None:
    values = np.asarray(weights, dtype=np.float64)
    if values.shape != (NUM_KEYPOINTS,) or not (np.isfinite(values).all() and (values > 0).all()):
        raise ValueError(f"{name} must be {NUM_KEYPOINTS} positive numbers, got {weights!r}")


@dataclass(frozen=True)
class SmoothingSettings:
    """Keypoint smoothing of each track. Noise levels are fractions of the box scale ``sqrt(w * h)``.

    Attributes:
        mode: NONE, CAUSAL or OFFLINE (OFFLINE reports causal estimates live and keeps the history
            that ``tracking.tracker.smooth_tracks_offline`` smooths).
        motion: kinematic model of each keypoint.
        keypoint_threshold: keypoints with a lower confidence are predicted, not updated.
        measurement_noise: position error (std) of a keypoint with confidence 1 and weight 1; it
            grows as ``1 / confidence``.
        process_noise: std of the random acceleration (CV) or jerk (CA) per frame, weight 1.
        measurement_weights, process_weights: per-keypoint factors on the two noises.
        velocity_damping: per-frame factor by which a keypoint's own velocity decays towards the
            box velocity (1: plain constant velocity). Limbs swing about the moving body, so an
            unobserved keypoint drifts with the body instead of flying off along its last swing.
        adaptation: weight of the newest frame in each keypoint's running mean of the normalised
            innovation squared (0: off). Where that mean exceeds its expected value, the keypoint
            is manoeuvring (turning, starting, stopping) and its process variance is raised by the
            same factor, at most ``max_noise_boost``; steady motion keeps the base noise.
        max_noise_boost: upper bound of that factor on the process variance.
        outlier_nis: a keypoint whose squared innovation, over its expected variance per coordinate, passes this
            is not used the first time (an outlier: a left/right swap, a misplaced keypoint); the second time in a
            row its uncertainty is raised so that the filter jumps to it (a manoeuvre: a turn; another animal's
            pose). 0: off.
        pose_surprise: when the median of that normalised squared innovation over a pose's observed keypoints passes
            this, the whole pose moved as the filter did not expect (the animal turned round, put its head down):
            each keypoint's position variance grows by its squared innovation and the filter follows the pose at
            once. 0: off.
        still_noise: factor on the process noise while the body (the box centre) stands still (1: the same as
            walking); it rises linearly to 1 at ``walking_speed``.
        walking_speed: body speed, as a fraction of the box scale per frame, from which a keypoint has its full
            process noise.
        max_predicted_frames: a keypoint unobserved for longer is reported MISSING.
        confidence_decay: a predicted keypoint's confidence is its last observed confidence times
            ``confidence_decay ** frames_since_observed``.
    """

    mode: SmoothingMode = SmoothingMode.CAUSAL
    motion: MotionModel = MotionModel.CONSTANT_VELOCITY
    keypoint_threshold: float = 0.3
    measurement_noise: float = 0.03
    process_noise: float = 0.01
    measurement_weights: tuple[float, ...] = MEASUREMENT_WEIGHTS
    process_weights: tuple[float, ...] = PROCESS_WEIGHTS
    velocity_damping: float = 0.6
    adaptation: float = 0.3
    max_noise_boost: float = 25.0
    outlier_nis: float = 0.0
    pose_surprise: float = 2.0
    still_noise: float = 0.2
    walking_speed: float = 0.03
    max_predicted_frames: int = 2
    confidence_decay: float = 0.9

    def __post_init__(self) -> None:
        if not isinstance(self.mode, SmoothingMode):
            raise ValueError(f"mode must be a SmoothingMode, got {self.mode!r}")
        if not isinstance(self.motion, MotionModel):
            raise ValueError(f"motion must be a MotionModel, got {self.motion!r}")
        if not 0.0 <= self.keypoint_threshold <= 1.0:
            raise ValueError(f"keypoint_threshold must be in [0, 1], got {self.keypoint_threshold}")
        for name in ("measurement_noise", "process_noise"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        _check_weights("measurement_weights", self.measurement_weights)
        _check_weights("process_weights", self.process_weights)
        if not 0.0 <= self.adaptation <= 1.0:
            raise ValueError(f"adaptation must be in [0, 1], got {self.adaptation}")
        if not (np.isfinite(self.max_noise_boost) and self.max_noise_boost >= 1.0):
            raise ValueError(f"max_noise_boost must be a number >= 1, got {self.max_noise_boost}")
        for name in ("outlier_nis", "pose_surprise"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a number >= 0, got {value}")
        if not 0.0 < self.still_noise <= 1.0:
            raise ValueError(f"still_noise must be in (0, 1], got {self.still_noise}")
        if not (np.isfinite(self.walking_speed) and self.walking_speed > 0):
            raise ValueError(f"walking_speed must be a positive number, got {self.walking_speed}")
        if not 0.0 <= self.velocity_damping <= 1.0:
            raise ValueError(f"velocity_damping must be in [0, 1], got {self.velocity_damping}")
        if self.max_predicted_frames < 0:
            raise ValueError(f"max_predicted_frames must be >= 0, got {self.max_predicted_frames}")
        if not 0.0 < self.confidence_decay <= 1.0:
            raise ValueError(f"confidence_decay must be in (0, 1], got {self.confidence_decay}")


def transition_matrix(motion: MotionModel, damping: float = 1.0, dt: float = 1.0) -> np.ndarray:
    """(d, d) state transition of one coordinate, d = ``motion.value`` (position, velocity[, acceleration]).

    With ``damping`` < 1 the derivatives decay by that factor per frame (towards a reference velocity
    added as a control term by :meth:`PointFilter.predict`): the velocity becomes an
    Ornstein-Uhlenbeck process.
    """
    transition = np.asarray(kinematic_state_transition(motion.value - 1, dt), dtype=np.float64)
    transition[1:] *= damping
    return transition


@cache  # never evicted: filters made apart, with the same model and dampings, must get the same array
def _shared_transition(motion: MotionModel, damping: tuple[float, ...]) -> np.ndarray:
    """(n, d, d) read-only transitions of points with these dampings, one array per model and dampings: filters
    that share it can be predicted together (:func:`predict_together`)."""
    transition = np.stack([transition_matrix(motion, k) for k in damping])
    transition.setflags(write=False)
    return transition


@cache
def _unit_noise(d: int) -> np.ndarray:
    """(d, d) read-only process noise of a unit random acceleration (or jerk) over one frame, one array per order."""
    noise = np.asarray(Q_discrete_white_noise(dim=d, dt=1.0, var=1.0), dtype=np.float64)
    noise.setflags(write=False)
    return noise


def kalman_predict(
    mean: np.ndarray, cov: np.ndarray, transition: np.ndarray, noise: np.ndarray, drift: np.ndarray | float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Batched prediction ``x = F x + B u``, ``P = F P F^T + Q``.

    Args:
        mean: (n, d, 2) states, one column per image axis.
        cov: (n, d, d) covariances shared by both axes.
        transition: (d, d) or (n, d, d) ``F``.
        noise: (n, d, d) or (d, d) ``Q``.
        drift: (n, d, 2) known control term ``B u`` (0 for none).
    """
    return transition @ mean + drift, transition @ cov @ np.swapaxes(transition, -1, -2) + noise


def kalman_update(
    mean: np.ndarray, cov: np.ndarray, measured: np.ndarray, variance: np.ndarray, observed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Batched update with a position measurement (``H = [1, 0, ...]``) for the ``observed`` points.

    Args:
        mean: (n, d, 2) predicted states.
        cov: (n, d, d) predicted covariances.
        measured: (n, 2) measured positions in pixels (ignored, may be NaN, where not observed).
        variance: (n,) measurement variance in pixels^2.
        observed: (n,) bool, which points to update; the others keep their prediction. None: all (the same numbers,
            without the masking).
    """
    if observed is None:
        gain = cov[:, :, 0] * (1.0 / (cov[:, 0, 0] + variance))[:, None]
        innovation = measured - mean[:, 0, :]
    else:
        observed = np.asarray(observed, bool)[:, None]
        gain = cov[:, :, 0] * (observed / (cov[:, 0, 0] + variance)[:, None])
        innovation = np.where(observed, measured - mean[:, 0, :], 0.0)
    mean = mean + gain[:, :, None] * innovation[:, None, :]
    cov = cov - gain[:, :, None] * cov[:, None, 0, :]
    return mean, 0.5 * (cov + np.swapaxes(cov, 1, 2))


def predict_together(filters: Sequence[PointFilter], process_std: np.ndarray,
                     reference_velocity: np.ndarray | None = None) -> None:
    """Advance ``filters`` one frame, each exactly as its :meth:`PointFilter.predict` would, in one batch (numpy's
    cost per call, not per point, is what a few points cost).

    Args:
        filters: F filters of one motion model, size and damping (ValueError otherwise).
        process_std: (F, n) per-frame random acceleration (CV) or jerk (CA) std of each filter's points.
        reference_velocity: (F, 2) velocity that each filter's damped derivatives decay towards (None: zero).
    """
    if not filters:
        return
    if any(f.transition is not filters[0].transition for f in filters):
        raise ValueError("predict_together needs filters of one motion model, size and damping")
    variance = np.asarray(process_std, dtype=np.float64) ** 2
    if reference_velocity is not None:
        reference_velocity = np.asarray(reference_velocity, dtype=np.float64).reshape(len(filters), 2)
    _predict(filters, variance.reshape(len(filters), len(filters[0])), reference_velocity)


def _predict(filters: Sequence[PointFilter], variance: np.ndarray, reference_velocity: np.ndarray | None) -> None:
    """:func:`predict_together` with (F, n) process variances and (F, 2) reference velocities (or None)."""
    first = filters[0]
    noise = first._unit_noise * variance[..., None, None]
    mean = np.array([f.mean for f in filters])
    cov = np.array([f.cov for f in filters])
    drift: np.ndarray | float = 0.0
    if reference_velocity is not None:
        drift = np.zeros_like(mean)
        drift[:, :, 1, :] = first._pull[None, :, None] * reference_velocity[:, None, :]
    for i, f in enumerate(filters):
        if f._log is not None:
            f._log.append(f.mean, f.cov, variance[i], None if reference_velocity is None else reference_velocity[i])
    mean, cov = kalman_predict(mean, cov, first.transition, noise, drift)
    for f, m, c in zip(filters, mean, cov):
        f.mean, f.cov = m, c


def _per_point(std: np.ndarray | float, n: int) -> np.ndarray:
    """(n,) variances of a std given as a scalar or per point."""
    variance = np.asarray(std, dtype=np.float64) ** 2
    if variance.shape == (n,):
        return variance
    return np.full(n, variance) if variance.ndim == 0 else variance * np.ones(n)


class PointFilter:
    """A batch of ``n`` independent 2-D points under one kinematic model; optionally records its forward pass.

    Args:
        positions: (n, 2) initial positions in pixels.
        position_std: initial position std, scalar or (n,).
        velocity_std: initial std of the velocity (and acceleration), scalar or (n,).
        motion: kinematic model.
        damping: per-frame decay of each point's derivatives towards the reference velocity given
            to :meth:`predict` (1: plain constant velocity / acceleration), scalar or (n,).
        record: keep what :func:`rts_smooth` needs (posteriors, process noise, control terms).
        spill: where the record's full blocks go (None: they stay in memory).
    """

    def __init__(
        self,
        positions: np.ndarray,
        position_std: np.ndarray | float,
        velocity_std: np.ndarray | float,
        motion: MotionModel = MotionModel.CONSTANT_VELOCITY,
        damping: np.ndarray | float = 1.0,
        record: bool = False,
        spill: Spill | None = None,
    ) -> None:
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        n, d = len(positions), motion.value
        damping = np.broadcast_to(np.asarray(damping, dtype=np.float64), (n,)).copy()
        if not ((damping >= 0) & (damping <= 1)).all():
            raise ValueError(f"damping must be in [0, 1], got {damping}")
        self.motion = motion
        self.damping = damping
        self.transition = _shared_transition(motion, tuple(damping.tolist()))
        self._pull = 1.0 - damping
        self.mean = np.zeros((n, d, 2))
        self.mean[:, 0, :] = np.nan_to_num(positions)
        variances = np.ones((n, d))
        variances[:, 0] = np.asarray(position_std, dtype=np.float64) ** 2
        variances[:, 1:] = (np.asarray(velocity_std, dtype=np.float64) ** 2 * np.ones(n))[:, None]
        self.cov = variances[:, :, None] * np.eye(d)[None]
        self._unit_noise = _unit_noise(d)
        self._log = _ForwardLog(n, d, spill) if record else None

    def __len__(self) -> int:
        return len(self.mean)

    @property
    def positions(self) -> np.ndarray:
        """(n, 2) current position estimates in pixels."""
        return self.mean[:, 0, :]

    @property
    def velocities(self) -> np.ndarray:
        """(n, 2) current velocity estimates in pixels per frame."""
        return self.mean[:, 1, :]

    @property
    def position_variance(self) -> np.ndarray:
        """(n,) variance of each position (per axis) in pixels^2."""
        return self.cov[:, 0, 0]

    def predict(self, process_std: np.ndarray | float, reference_velocity: np.ndarray | None = None) -> None:
        """Advance one frame.

        Args:
            process_std: per-frame random acceleration (CV) or jerk (CA) std, scalar or (n,).
            reference_velocity: (2,) velocity, in pixels per frame, that the damped derivatives of every
                point decay towards (None: zero).
        """
        _predict([self], _per_point(process_std, len(self))[None],
                 None if reference_velocity is None else np.asarray(reference_velocity, np.float64).reshape(1, 2))

    def kick(self, variance: np.ndarray) -> None:
        """Add ``variance`` (n,) pixels^2 to the predicted position variance (a jump that the process noise of the last
        prediction did not foresee); the record counts it as part of that prediction's noise."""
        variance = np.asarray(variance, dtype=np.float64) * np.ones(len(self))
        self.cov = self.cov.copy()
        self.cov[:, 0, 0] += variance
        if self._log is not None and self._log.size:
            self._log.kick(variance)

    def pad(self, frames: int, process_std: np.ndarray | float) -> None:
        """Record ``frames`` frames before this filter's first one (a track seen before its points were), the
        filter itself unchanged: each holds the initial state, and ``process_std`` took it to the next.

        RTS smoothing then extrapolates the first estimates back over those frames, while the forward pass
        from the first frame on stays exactly what an unrecorded filter computes.
        """
        if self._log is None:
            raise RuntimeError("this PointFilter was created with record=False and has no history")
        variance = np.asarray(process_std, dtype=np.float64) ** 2 * np.ones(len(self))
        for _ in range(frames):
            self._log.append(self.mean, self.cov, variance, None)

    def update(self, measured: np.ndarray, measurement_std: np.ndarray | float, observed: np.ndarray) -> None:
        """Correct the ``observed`` points with (n, 2) measured positions of std ``measurement_std`` pixels."""
        variance = _per_point(measurement_std, len(self))
        self.mean, self.cov = kalman_update(self.mean, self.cov, measured, variance, observed)

    def history(self) -> FilterHistory:
        """The recorded forward pass, the current posterior as its last frame."""
        if self._log is None:
            raise RuntimeError("this PointFilter was created with record=False and has no history")
        return self._log.history(self.mean, self.cov, self._unit_noise, self._pull, self.transition)

    @property
    def recorded_bytes(self) -> int:
        """Bytes of the recorded forward pass held in memory (0 when not recording)."""
        return 0 if self._log is None else self._log.nbytes

    def flush(self) -> None:
        """Move what the record holds in memory to its spill (nothing without one)."""
        if self._log is not None:
            self._log.flush()


class SpillError(OSError):
    """The temporary file of a recorded history could not be made, written or read (a full or unwritable
    temporary folder); the message says where and what to do."""


class Spill:
    """One anonymous temporary file that logs move their full blocks to (:class:`Rows`): the file is made on
    the first write, in ``directory`` (None: the system's temporary folder, ``TMPDIR``), and has no name, so
    the system removes it when it is closed or the process ends, whatever the ending. Written blocks are read
    back whole. Not thread-safe (one tracker's logs, from one thread)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self._directory = None if directory is None else str(directory)
        self._file = None
        self.nbytes = 0

    def write(self, block: np.ndarray) -> int:
        """Append ``block``'s bytes; returns their offset for :meth:`read`.

        Raises:
            SpillError: the file could not be made or written.
        """
        offset = self.nbytes
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="animalpose-history-", dir=self._directory)
            self._file.seek(offset)
            self._file.write(np.ascontiguousarray(block).data.cast("B"))
        except OSError as exc:
            folder = self._directory or tempfile.gettempdir()
            raise SpillError(f"cannot keep the tracking history for offline smoothing in {folder} "
                             f"({exc.strerror or exc}): free space there, set TMPDIR to another folder, or smooth "
                             "causally") from exc
        self.nbytes += block.nbytes
        return offset

    def read(self, offset: int, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """The block of ``shape`` and ``dtype`` written at ``offset``.

        Raises:
            SpillError: the file could not be read, or holds less than that.
        """
        out = np.empty(shape, dtype)
        try:
            self._file.seek(offset)
            complete = self._file.readinto(out.data.cast("B")) == out.nbytes
        except OSError as exc:
            raise SpillError(f"cannot read back the tracking history for offline smoothing ({exc.strerror or exc})"
                             ) from exc
        if not complete:
            raise SpillError(f"the tracking history file ended early (at byte {offset}): was it truncated?")
        return out

    def close(self) -> None:
        """Close (and so remove) the file; later reads fail."""
        if self._file is not None:
            self._file.close()


class Rows:
    """Rows of one shape and dtype appended one at a time (a per-frame log), kept in blocks of ``block`` rows so
    that appending never copies what is already there and at most one block is allocated ahead. With a
    ``spill`` each full block goes there (:class:`Spill`), so that at most one block is in memory."""

    def __init__(self, shape: tuple[int, ...], dtype: type, block: int = 256, spill: Spill | None = None) -> None:
        self._shape, self._dtype, self._block, self._spill = shape, dtype, block, spill
        self._parts: list[np.ndarray | tuple[int, int]] = []  # blocks in memory, or (offset, rows) spilled
        self._current: np.ndarray | None = None
        self._filled = 0
        self.size = 0

    def append(self, row) -> None:
        """Add one row (broadcast to the row shape)."""
        if self._current is None or self._filled == self._block:
            self._retire()
            self._current = np.empty((self._block, *self._shape), self._dtype)
        self._current[self._filled] = row
        self._filled += 1
        self.size += 1

    def _retire(self) -> None:
        """The block being filled joins the finished ones (in the spill, when there is one)."""
        if self._current is None or not self._filled:
            return
        rows = self._current[:self._filled]
        self._parts.append(rows if self._spill is None else (self._spill.write(rows), self._filled))
        self._current, self._filled = None, 0

    def flush(self) -> None:
        """Move the rows held in memory to the spill (nothing without one); appending goes on in a new block."""
        if self._spill is not None:
            self._retire()

    def _part(self, part: np.ndarray | tuple[int, int]) -> np.ndarray:
        if isinstance(part, np.ndarray):
            return part
        offset, rows = part
        return self._spill.read(offset, (rows, *self._shape), self._dtype)

    @property
    def array(self) -> np.ndarray:
        """(size, *shape) a copy of the rows so far."""
        parts = [self._part(p) for p in self._parts]
        if self._current is not None:
            parts.append(self._current[:self._filled])
        if not parts:
            return np.empty((0, *self._shape), self._dtype)
        return np.concatenate(parts)

    @property
    def nbytes(self) -> int:
        """Bytes held in memory, the block being filled included."""
        held = sum(p.nbytes for p in self._parts if isinstance(p, np.ndarray))
        return held + (0 if self._current is None else self._current.nbytes)


class _ForwardLog:
    """The recorded forward pass of a :class:`PointFilter`, compactly: per frame the posterior mean and the upper
    triangle of its covariance, the process variance of each point and the reference velocity, all float32. The
    process noise and the control term are rebuilt from them (``Q = unit_noise * variance``,
    ``B u = pull * reference``) by :meth:`history`."""

    def __init__(self, n: int, d: int, spill: Spill | None = None) -> None:
        self._upper = np.triu_indices(d)
        self._means = Rows((n, d, 2), np.float32, spill=spill)
        self._covs = Rows((n, len(self._upper[0])), np.float32, spill=spill)
        self._variances = Rows((n,), np.float32, spill=spill)
        self._references = Rows((2,), np.float32, spill=spill)
        # Position variances added to the noise of a step (sparse: the frame of each and its (n,) variances).
        self._kick_frames = Rows((), np.int32, block=16, spill=spill)
        self._kicks = Rows((n,), np.float32, block=16, spill=spill)

    def flush(self) -> None:
        for rows in (self._means, self._covs, self._variances, self._references, self._kick_frames, self._kicks):
            rows.flush()

    @property
    def nbytes(self) -> int:
        return (sum(r.nbytes for r in (self._means, self._covs, self._variances, self._references))
                + self._kick_frames.nbytes + self._kicks.nbytes)

    @property
    def size(self) -> int:
        return self._means.size

    def kick(self, variance: np.ndarray) -> None:
        """Position variances (n,) added to the noise of the last step (rare, kept apart: sparse)."""
        self._kick_frames.append(self.size - 1)
        self._kicks.append(variance)

    def append(self, mean: np.ndarray, cov: np.ndarray, variance: np.ndarray, reference: np.ndarray | None) -> None:
        self._means.append(mean)
        self._covs.append(cov[:, self._upper[0], self._upper[1]])
        self._variances.append(variance)
        self._references.append(0.0 if reference is None else reference)

    def history(self, mean: np.ndarray, cov: np.ndarray, unit_noise: np.ndarray, pull: np.ndarray,
                transition: np.ndarray) -> FilterHistory:
        """The log with the current posterior (``mean``, ``cov``) as its last frame, in float64."""
        rows, cols = self._upper
        means = np.concatenate([self._means.array, mean[None]]).astype(np.float64)
        covs = np.empty((len(means), *cov.shape))
        covs[:-1, :, rows, cols] = self._covs.array
        covs[:-1, :, cols, rows] = self._covs.array
        covs[-1] = cov
        variances = np.concatenate([self._variances.array.astype(np.float64), np.zeros((1, len(mean)))])
        drifts = np.zeros_like(means)
        drifts[:-1, :, 1, :] = pull[None, :, None] * self._references.array[:, None, :]
        noises = unit_noise[None, None] * variances[:, :, None, None]
        np.add.at(noises[:, :, 0, 0], self._kick_frames.array, self._kicks.array)
        return FilterHistory(means=means, covs=covs, noises=noises, drifts=drifts, transitions=transition.copy())


@dataclass(frozen=True)
class FilterHistory:
    """Forward pass of a :class:`PointFilter` over T frames (n points, d states per coordinate).

    Attributes:
        means: (T, n, d, 2) posterior means.
        covs: (T, n, d, d) posterior covariances.
        noises: (T, n, d, d) process noise that took frame t to t + 1 (zero for the last frame).
        drifts: (T, n, d, 2) control terms ``B u`` that took frame t to t + 1.
        transitions: (n, d, d) state transition of each point.
    """

    means: np.ndarray
    covs: np.ndarray
    noises: np.ndarray
    drifts: np.ndarray
    transitions: np.ndarray


def _block_diagonal(blocks: np.ndarray) -> np.ndarray:
    """(T, n, d, d) -> (T, n*d, n*d) block-diagonal matrices."""
    t, n, d, _ = blocks.shape
    out = np.zeros((t, n, d, n, d))
    index = np.arange(n)
    out[:, index, :, index, :] = np.moveaxis(blocks, 1, 0)
    return out.reshape(t, n * d, n * d)


def rts_smooth(history: FilterHistory) -> tuple[np.ndarray, np.ndarray]:
    """Rauch-Tung-Striebel smoothing of a recorded forward pass with ``filterpy.kalman.rts_smoother``.

    The batch of points becomes one block-diagonal state. filterpy's smoother has no control
    input, so the known drift is taken out first: ``m[t+1] = F m[t] + drift[t]`` is subtracted from the
    means, the remainder follows ``x[t+1] = F x[t] + noise`` exactly, and ``m`` is added back.

    Returns:
        Smoothed means (T, n, d, 2) and covariances (T, n, d, d).
    """
    means, covs = history.means, history.covs
    t, n, d, _ = means.shape
    if t < 2:
        return means.copy(), covs.copy()
    transitions = history.transitions
    offset = np.zeros_like(means)
    for k in range(1, t):
        offset[k] = transitions @ offset[k - 1] + history.drifts[k - 1]
    big_f = _block_diagonal(transitions[None])[0]
    xs = (means - offset).reshape(t, n * d, 2)
    smoothed, big_p, _, _ = rts_smoother(
        xs, _block_diagonal(covs), np.repeat(big_f[None], t, 0), _block_diagonal(history.noises)
    )
    diag = big_p.reshape(t, n, d, n, d)[:, np.arange(n), :, np.arange(n), :]
    return smoothed.reshape(t, n, d, 2) + offset, np.moveaxis(diag, 0, 1)


def _row_medians(values: np.ndarray, selected: np.ndarray, at_least: int = 1) -> np.ndarray:
    """(S,) ``np.median`` of each row of ``values`` (S, K) over its ``selected`` (S, K) entries (finite), all rows
    at once (numpy's median is slow on a few values); NaN for a row with fewer than ``at_least`` of them."""
    count = selected.sum(axis=1)
    ordered = np.sort(np.where(selected, values, np.inf), axis=1)
    rows, half = np.arange(len(values)), count // 2
    upper = ordered[rows, np.minimum(half, values.shape[1] - 1)]
    lower = ordered[rows, np.maximum(half - 1, 0)]
    medians = np.where(count % 2 == 1, upper, (lower + upper) / 2.0)
    return np.where(count >= max(at_least, 1), medians, np.nan)


def keypoint_measurement_std(confidence: np.ndarray, scale: float, settings: SmoothingSettings) -> np.ndarray:
    """(K,) measurement std in pixels: ``measurement_noise * weight * scale / max(confidence, 0.05)``."""
    weights = _weights(settings.measurement_weights)
    return settings.measurement_noise * weights * scale / np.minimum(np.maximum(confidence, 0.05), 1.0)


def _weights(values: tuple[float, ...]) -> np.ndarray:
    """(K,) float64 per-keypoint weights of a settings object, one read-only array per tuple (made once: converting
    the tuple cost as much as the arithmetic it weighs)."""
    try:
        return _weight_array(values)
    except TypeError:  # a list or an array given for the tuple
        return np.asarray(values, dtype=np.float64)


@cache
def _weight_array(values: tuple[float, ...]) -> np.ndarray:
    weights = np.asarray(values, dtype=np.float64)
    weights.setflags(write=False)
    return weights


@dataclass(frozen=True)
class KeypointHistory:
    """Forward pass of one track's keypoint filter (T frames, K keypoints).

    Attributes:
        filter: the filter's record.
        observed: (T, K) bool, keypoints updated with a measurement in each frame.
        confidence: (T, K) confidence of those measurements (0 elsewhere).
    """

    filter: FilterHistory
    observed: np.ndarray
    confidence: np.ndarray


class KeypointSmoother:
    """Kalman filter of one track's keypoints, with the bookkeeping the output statuses need.

    Call :meth:`predict` once per frame (not in the track's first frame), then :meth:`update` with
    the frame's pose if there is one.

    Args:
        settings: smoothing settings.
        num_keypoints: K.
        record: keep the forward pass for offline smoothing.
        spill: where the record's full blocks go (None: they stay in memory).
    """

    def __init__(self, settings: SmoothingSettings, num_keypoints: int = NUM_KEYPOINTS, record: bool = False,
                 spill: Spill | None = None) -> None:
        self.settings = settings
        self.filter: PointFilter | None = None
        self.num_keypoints = num_keypoints
        self._record = record
        self._spill = spill
        self.maneuver = np.ones(num_keypoints)
        self.strikes = np.zeros(num_keypoints, np.int64)
        self.ever_observed = np.zeros(num_keypoints, bool)
        self.frames_since_observed = np.zeros(num_keypoints, np.int64)
        self.last_confidence = np.zeros(num_keypoints)
        self.observed_now = np.zeros(num_keypoints, bool)
        self.raw_now: np.ndarray | None = None
        self._observed_log = Rows((num_keypoints,), bool, spill=spill)
        self._confidence_log = Rows((num_keypoints,), np.float32, spill=spill)
        self._frames = 0

    def _start(self, keypoints: np.ndarray, scale: float) -> None:
        positions = np.nan_to_num(keypoints[:, :2])
        # A wide prior: the first accepted measurement of each keypoint sets it almost entirely.
        self.filter = PointFilter(positions, 10.0 * scale, 0.1 * scale, self.settings.motion,
                                  damping=self.settings.velocity_damping, record=self._record, spill=self._spill)
        if self._record:
            # The record lines up with the track's frames: the frames before the first pose are logged, not run
            # through the filter, so that its forward pass is the causal filter's.
            self.filter.pad(self._frames, _process_std(self.settings, self.maneuver[None], np.array([scale]))[0])

    def predict(self, scale: float, body_velocity: np.ndarray | None = None) -> None:
        """Advance one frame.

        Args:
            scale: box scale ``sqrt(w * h)`` in pixels.
            body_velocity: (2,) velocity of the box centre in pixels per frame, which damped
                keypoint velocities decay towards.
        """
        predict_smoothers([self], np.array([scale], np.float64),
                          None if body_velocity is None else np.asarray(body_velocity, np.float64).reshape(1, 2))

    def _tick(self) -> None:
        """A new frame's bookkeeping (no pose in it yet), the record's row for the frame before."""
        if self._record:
            self._observed_log.append(self.observed_now)
            self._confidence_log.append(np.where(self.observed_now, self.last_confidence, 0.0))
        self._frames += 1
        self.observed_now = np.zeros(self.num_keypoints, bool)
        self.raw_now = None
        self.frames_since_observed += 1

    def update(self, keypoints: np.ndarray, scale: float, trusted: bool = True) -> None:
        """Correct with one pose (K, 3) of this frame; keypoints below threshold or not finite are only predicted, and
        so is a keypoint far from where it was expected the first time (see ``SmoothingSettings.outlier_nis``).

        A pose that moved as a whole unlike the filter expects (``SmoothingSettings.pose_surprise``) is followed at
        once when ``trusted`` (found in the box of this frame's detection of the animal), and dropped when not (found
        in a predicted box, where the animal may not be: the box may hold another animal or none).
        """
        update_smoothers([self], np.asarray(keypoints, dtype=np.float64).reshape(1, self.num_keypoints, 3),
                         np.array([scale], np.float64), np.array([trusted]))

    def forget(self, scale: float) -> None:
        """Forget where every keypoint is (the track took another animal): each is predicted no more, and its
        position variance grows by twice the box, so that the next pose sets it."""
        self.frames_since_observed[:] = self.settings.max_predicted_frames + 1
        if self.filter is not None:
            self.filter.kick(np.full(self.num_keypoints, (2.0 * scale) ** 2))

    def valid(self) -> np.ndarray:
        """(K,) keypoints with an estimate: observed once and not predicted longer than allowed."""
        return _estimated(self.ever_observed, self.frames_since_observed, self.settings)

    def positions(self) -> np.ndarray:
        """(K, 2) current estimates, NaN where :meth:`valid` is False."""
        return smoother_positions([self])[0]

    def carried(self) -> np.ndarray:
        """(K, 2) where the filter has carried each keypoint ever observed, those predicted for too long (no longer in
        :meth:`positions`) included; NaN for the others. Unseen, the keypoints move with the box (the reference
        velocity of :meth:`predict`): a rough pose of a track unseen for a while."""
        if self.filter is None:
            return np.full((self.num_keypoints, 2), np.nan)
        return np.where(self.ever_observed[:, None], self.filter.positions, np.nan)

    def output(self, limits: tuple[float, float, float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (K, 3) as x, y, confidence and their (K,) :class:`KeypointStatus` codes for this frame; with
        ``limits`` (x min, y min, x max, y max), the keypoints outside them are MISSING too (not in the raw mode,
        ``SmoothingMode.NONE``, whose keypoints are the pose's)."""
        keypoints, status = smoother_outputs([self], None if limits is None else np.asarray(limits, np.float64)[None])
        return keypoints[0], status[0]

    def flush(self) -> None:
        """Move what the record holds in memory to its spill (nothing without one)."""
        for rows in (self._observed_log, self._confidence_log):
            rows.flush()
        if self.filter is not None:
            self.filter.flush()

    def history(self) -> KeypointHistory | None:
        """The recorded forward pass; None if the track never had a pose."""
        if not self._record:
            raise RuntimeError("this KeypointSmoother was created with record=False and has no history")
        if self.filter is None:
            return None
        observed = np.concatenate([self._observed_log.array, self.observed_now[None]])
        confidence = np.concatenate([self._confidence_log.array.astype(np.float64),
                                     np.where(self.observed_now, self.last_confidence, 0.0)[None]])
        return KeypointHistory(self.filter.history(), observed, confidence)


def update_smoothers(smoothers: Sequence[KeypointSmoother], keypoints: np.ndarray, scales: np.ndarray,
                     trusted: np.ndarray) -> None:
    """Correct each of ``smoothers`` (of one settings object) with its pose of this frame, exactly as its
    :meth:`KeypointSmoother.update` would, in one batch.

    A fresh keypoint (observed within ``max_predicted_frames``) whose normalised innovation passes ``outlier_nis`` is
    an outlier the first time (a swapped or misplaced keypoint: predicted, not updated); the second time in a row it
    is a manoeuvre (the animal turned round, the pose is another animal's): its position variance grows by the
    squared innovation (at most twice the box), so the update all but takes the measurement. A pose whose fresh
    keypoints' median innovation passes ``pose_surprise`` moved as a whole: followed at once where ``trusted`` (the
    keypoints not seen now forgotten until seen), dropped where not.

    Args:
        smoothers: S smoothers.
        keypoints: (S, K, 3) one pose each.
        scales: (S,) box scales ``sqrt(w * h)`` in pixels.
        trusted: (S,) bool, the poses found in the box of this frame's detection of the animal.
    """
    if not smoothers:
        return
    settings = smoothers[0].settings
    if any(smoother.settings is not settings for smoother in smoothers):
        raise ValueError("update_smoothers needs smoothers of one settings object")
    count, k = len(smoothers), smoothers[0].num_keypoints
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(count, k, 3)
    finite = np.isfinite(keypoints).all(-1)
    for smoother, pose, scale in zip(smoothers, keypoints, scales.tolist()):
        if smoother.filter is None:
            smoother._start(pose, scale)
    # Twice the box, squared, as Python computes it for one track (a float's own power).
    limit = np.array([(2.0 * scale) ** 2 for scale in scales.tolist()])
    confidence = np.where(finite, keypoints[..., 2], 0.0)
    observed = confidence >= settings.keypoint_threshold
    std = keypoint_measurement_std(confidence, scales[:, None], settings)
    measured = np.where(finite[..., None], keypoints[..., :2], 0.0)
    filters = [smoother.filter for smoother in smoothers]
    mean, cov = np.array([f.mean for f in filters]), np.array([f.cov for f in filters])  # copies: kicked below
    innovation = measured - mean[:, :, 0, :]
    distance2 = innovation[..., 0] ** 2 + innovation[..., 1] ** 2
    nis = distance2 / (cov[:, :, 0, 0] + std**2) / 2.0
    ever = np.array([smoother.ever_observed for smoother in smoothers])
    unseen = np.array([smoother.frames_since_observed for smoother in smoothers])
    strikes = np.array([smoother.strikes for smoother in smoothers])
    kicks = []  # (rows, variances) added to the predicted position variances, in order
    if settings.outlier_nis > 0:
        fresh = ever & (unseen <= settings.max_predicted_frames)
        surprise = observed & fresh & (nis > settings.outlier_nis)
        first = surprise & (strikes == 0)
        again = surprise & ~first
        strikes = np.where(observed & first, 1, np.where(observed, 0, strikes))
        rows = again.any(axis=1).nonzero()[0]
        if len(rows):
            jump = np.minimum(np.sum(innovation[rows] ** 2, axis=-1), limit[rows, None])
            kicks.append((rows, np.where(again[rows], jump, 0.0)))
        observed = observed & ~first
    if settings.pose_surprise > 0:
        fresh = observed & ever
        for i in (_row_medians(nis, fresh, at_least=3) > settings.pose_surprise).nonzero()[0]:
            if trusted[i]:  # a turn, the head going down, another animal taken over: follow it now
                jump = np.minimum(distance2[i], limit[i])
                # The keypoints not seen now are no longer where they were predicted: forgotten until seen.
                stale = ~observed[i] & ever[i]
                kicks.append((np.array([i]), np.where(fresh[i], jump, np.where(stale, limit[i], 0.0))[None]))
                unseen[i][stale] = settings.max_predicted_frames + 1
            else:
                observed[i] = False
    for rows, variance in kicks:
        cov[rows, :, 0, 0] += variance
        for i, row in zip(rows, variance):
            if filters[i]._log is not None and filters[i]._log.size:
                filters[i]._log.kick(row)
    maneuver = np.array([smoother.maneuver for smoother in smoothers])
    if settings.adaptation > 0:
        rate = settings.adaptation
        maneuver = np.where(observed, (1 - rate) * maneuver + rate * nis, maneuver)
    d = mean.shape[2]
    mean, cov = kalman_update(mean.reshape(-1, d, 2), cov.reshape(-1, d, d), measured.reshape(-1, 2),
                              (std**2).reshape(-1), observed.reshape(-1))
    mean, cov = mean.reshape(count, k, d, 2), cov.reshape(count, k, d, d)
    observed_now = np.array([smoother.observed_now for smoother in smoothers]) | observed
    last_confidence = np.where(observed, confidence, np.array([smoother.last_confidence for smoother in smoothers]))
    unseen[observed] = 0
    ever |= observed
    for i, (smoother, f) in enumerate(zip(smoothers, filters)):
        f.mean, f.cov = mean[i], cov[i]
        smoother.maneuver, smoother.strikes = maneuver[i], strikes[i]
        smoother.raw_now = keypoints[i]
        smoother.observed_now, smoother.ever_observed = observed_now[i], ever[i]
        smoother.frames_since_observed, smoother.last_confidence = unseen[i], last_confidence[i]


def smoother_outputs(smoothers: Sequence[KeypointSmoother], limits: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (S, K, 3) and status codes (S, K) of ``smoothers`` (of one settings object) for this frame, each
    row as its :meth:`KeypointSmoother.output` (with ``limits`` (S, 4), one row per smoother) gives it, in one batch;
    at least one smoother (its K sets the shapes)."""
    settings, count = smoothers[0].settings, len(smoothers)
    if settings.mode is SmoothingMode.NONE:
        rows = [raw_output(smoother.raw_now, smoother.num_keypoints) for smoother in smoothers]
        return np.array([k for k, _ in rows]), np.array([s for _, s in rows])
    means, unseen, valid = _estimates(smoothers)
    keypoints = np.empty((count, smoothers[0].num_keypoints, 3), np.float32)
    keypoints[..., :2] = means
    keypoints[..., 2] = np.array([s.last_confidence for s in smoothers]) * settings.confidence_decay ** unseen
    # SMOOTHED where observed now, PREDICTED elsewhere: a bool's byte added to PREDICTED, SMOOTHED the next code.
    status = np.array([s.observed_now for s in smoothers]).view(np.int8) + _PREDICTED
    invalid = ~valid
    if limits is not None:
        # Compared as float64, as the limits are: a keypoint on the limit is inside. Both axes' tests in one array,
        # and its two columns or-ed, not reduced (numpy's cost per call, on a few keypoints).
        xy = keypoints[..., :2].astype(np.float64)
        outside = xy < limits[:, None, :2]
        outside |= xy > limits[:, None, 2:]
        invalid |= outside[..., 0] | outside[..., 1]
    keypoints[invalid] = (np.nan, np.nan, 0.0)
    status[invalid] = _MISSING
    return keypoints, status


def smoother_positions(smoothers: Sequence[KeypointSmoother]) -> np.ndarray:
    """(S, K, 2) each of ``smoothers``' (of one settings object, at least one) :meth:`KeypointSmoother.positions`,
    in one batch."""
    means, _, valid = _estimates(smoothers)
    return np.where(valid[..., None], means, np.nan)


def _estimates(smoothers: Sequence[KeypointSmoother]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of ``smoothers`` (of one settings object, at least one): (S, K, 2) their filters' positions (0 without a
    filter: valid is all False then), (S, K) frames since each keypoint was observed, and (S, K) which keypoints have
    an estimate (:func:`_estimated`)."""
    k = smoothers[0].num_keypoints
    means = np.array([np.zeros((k, 2)) if s.filter is None else s.filter.mean[:, 0, :] for s in smoothers])
    unseen = np.array([s.frames_since_observed for s in smoothers])
    return means, unseen, _estimated(np.array([s.ever_observed for s in smoothers]), unseen, smoothers[0].settings)


def _estimated(ever_observed: np.ndarray, frames_since_observed: np.ndarray, settings: SmoothingSettings
               ) -> np.ndarray:
    """Keypoints with an estimate (:meth:`KeypointSmoother.valid`), of any shape: observed once and not predicted
    longer than ``max_predicted_frames``."""
    return ever_observed & (frames_since_observed <= settings.max_predicted_frames)


def predict_smoothers(smoothers: Sequence[KeypointSmoother], scales: np.ndarray,
                      body_velocities: np.ndarray | None = None) -> None:
    """Advance ``smoothers`` one frame, each exactly as its :meth:`KeypointSmoother.predict` would, their filters in
    one batch (:func:`predict_together`).

    Args:
        smoothers: S smoothers of one settings object (one tracker's tracks; ValueError otherwise).
        scales: (S,) box scales ``sqrt(w * h)`` in pixels.
        body_velocities: (S, 2) velocities of the box centres in pixels per frame, which damped keypoint velocities
            decay towards (None: zero).
    """
    if any(smoother.settings is not smoothers[0].settings for smoother in smoothers):
        raise ValueError("predict_smoothers needs smoothers of one settings object")
    for smoother in smoothers:
        smoother._tick()
    running = [i for i, smoother in enumerate(smoothers) if smoother.filter is not None]
    if not running:
        return
    velocities = None if body_velocities is None else body_velocities.take(running, 0)
    std = _process_std(smoothers[0].settings, np.array([smoothers[i].maneuver for i in running]),
                       scales.take(running), velocities)
    predict_together([smoothers[i].filter for i in running], std, velocities)


def _process_std(settings: SmoothingSettings, maneuver: np.ndarray, scale: np.ndarray,
                 body_velocity: np.ndarray | None = None) -> np.ndarray:
    """(S, K) std of each keypoint's random acceleration this frame, in pixels, for S tracks of these (S, K)
    manoeuvre levels, (S,) box scales and (S, 2) body velocities: the base noise, lowered to ``still_noise`` of it
    while the body stands (keypoints of a standing animal hardly move), raised while the keypoint manoeuvres."""
    boost = np.sqrt(np.minimum(np.maximum(maneuver, 1.0), settings.max_noise_boost))
    motion: np.ndarray | float = 1.0
    if body_velocity is not None and settings.still_noise < 1.0:
        # Per track on Python floats (numpy's cost per call, on a few tracks), as numpy computed it: the squares as
        # x * x, the square root correctly rounded by both.
        still, walking = settings.still_noise, settings.walking_speed
        motion = np.array([still + (1.0 - still) * min(math.sqrt(vx * vx + vy * vy) / max(size, 1.0) / walking, 1.0)
                           for (vx, vy), size in zip(body_velocity.tolist(), scale.tolist())])[:, None]
    return (settings.process_noise * scale)[:, None] * _weights(settings.process_weights) * boost * motion


_MISSING, _PREDICTED, _SMOOTHED = (np.int8(code) for code in (KeypointStatus.MISSING, KeypointStatus.PREDICTED,
                                                               KeypointStatus.SMOOTHED))


def raw_output(raw: np.ndarray | None, num_keypoints: int = NUM_KEYPOINTS) -> tuple[np.ndarray, np.ndarray]:
    """Unfiltered pose as output: OBSERVED where finite, MISSING elsewhere (or everywhere without a pose)."""
    if raw is None:
        return _mask_invalid(np.zeros((num_keypoints, 2)), np.zeros(num_keypoints),
                             np.zeros(num_keypoints, np.int8), np.zeros(num_keypoints, bool))
    valid = np.isfinite(raw).all(-1)
    status = np.full(num_keypoints, KeypointStatus.OBSERVED, np.int8)
    return _mask_invalid(raw[:, :2], np.nan_to_num(raw[:, 2]), status, valid)


def _mask_invalid(
    positions: np.ndarray, confidence: np.ndarray, status: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    keypoints = np.empty((len(positions), 3), np.float32)
    keypoints[:, :2] = positions
    keypoints[:, 2] = confidence
    status = np.asarray(status).astype(np.int8)  # a copy: the caller's array stays as it is
    invalid = ~valid
    keypoints[invalid] = (np.nan, np.nan, 0.0)
    status[invalid] = _MISSING
    return keypoints, status


def smooth_keypoints_offline(history: KeypointHistory, settings: SmoothingSettings) -> tuple[np.ndarray, np.ndarray]:
    """RTS-smoothed keypoints of one whole track.

    Args:
        history: what :meth:`KeypointSmoother.history` returned.
        settings: the settings of the forward pass.

    Returns:
        keypoints (T, K, 3) and status (T, K). A keypoint is SMOOTHED where it was observed,
        PREDICTED where it lies in a gap of at most ``max_predicted_frames`` frames from an
        observation on either side, MISSING (NaN, confidence 0) elsewhere; a predicted
        keypoint's confidence decays with the distance to the nearer observation.
    """
    observed, confidence = history.observed, history.confidence
    smoothed, _ = rts_smooth(history.filter)
    gap_before, conf_before = _frames_since_observation(observed, confidence)
    gap_after, conf_after = (a[::-1] for a in _frames_since_observation(observed[::-1], confidence[::-1]))
    decay = settings.confidence_decay
    limit = settings.max_predicted_frames
    # Edges (before the first or after the last observation) are extrapolations: allowed only within
    # the limit of the side that has an observation. Inside a gap, the nearer observation counts.
    near = np.minimum(gap_before, gap_after)
    valid = near <= limit
    conf = np.maximum(conf_before * decay ** np.minimum(gap_before, 10**6),
                      conf_after * decay ** np.minimum(gap_after, 10**6))
    status = np.where(observed, KeypointStatus.SMOOTHED, KeypointStatus.PREDICTED).astype(np.int8)
    out = np.empty((*observed.shape, 3), np.float32)
    out[..., :2] = np.where(valid[..., None], smoothed[:, :, 0, :], np.nan)
    out[..., 2] = np.where(valid, conf, 0.0)
    return out, np.where(valid, status, KeypointStatus.MISSING).astype(np.int8)


def _frames_since_observation(observed: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, K) frames since the last observation (a large number before the first) and that observation's confidence."""
    t = np.arange(len(observed))[:, None]
    last = np.maximum.accumulate(np.where(observed, t, -1), axis=0)
    gap = np.where(last >= 0, t - last, np.iinfo(np.int64).max // 4)
    columns = np.arange(observed.shape[1])[None, :]
    conf = np.where(last >= 0, confidence[np.maximum(last, 0), columns], 0.0)
    return gap, conf
