"""Simulated quadrupeds for testing the tracker: the truth over time and noisy detections and keypoints (no images).

The simulation has three parts:

* **Motion**: each animal walks on the ground plane seen from the side (image x = along the
  ground, image y = depth), with a speed that drifts, random stops, heading noise and U-turns at the
  frame edges. Its size follows perspective (nearer = lower in the image = bigger). Scenarios place
  the animals so that paths cross (``crossing``), overtake (``herd``) or pass behind static
  occluders (``occluder``).
* **Body**: 17 AP-10K keypoints from a side-view template in body lengths: legs swing with a gait
  phase that advances with the distance walked (diagonal pairs in phase), the head bobs and pitches.
  The animal faces its direction of travel, mirrored when walking left.
* **Noise model** (:class:`NoiseModel`): visibility from occlusion by nearer animals, occluders and
  the frame edge sets detection probability, score and box jitter; keypoint jitter scales with the
  box size and falls with confidence; some keypoints get low confidence and large errors; a few get
  a confident gross error (left/right swap); false positives appear at random.

:mod:`train.tracking_metrics` scores a tracker's per-frame output against the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pose.keypoints import FLIP_INDEX, NUM_KEYPOINTS, SIGMAS
from pose.structures import Detections, Poses

# Side-view template in body lengths: x forward, y down, origin at the body centre. "near"/"far" are
# the sides facing / turned away from the camera; which is left depends on the walking direction.
_HEAD = {"eye_far": (0.49, -0.35), "eye_near": (0.52, -0.33), "nose": (0.62, -0.22)}
_NECK = (0.30, -0.20)
_TAIL = (-0.46, -0.12)
_SHOULDER = (0.27, -0.02)
_HIP = (-0.36, -0.04)
_SIDE_OFFSET = (0.025, 0.03)  # far-side joints are shifted forward/up by this much (x, y)
_UPPER_LEG, _LOWER_LEG = 0.2, 0.22
_STRIDE = 0.8  # body lengths walked per gait cycle
_GROUND = 0.42  # paws are this far below the body centre when standing


@dataclass(frozen=True)
class Scenario:
    """A scene layout.

    Attributes:
        name: label used in reports.
        num_animals: animals in the scene.
        num_frames: sequence length in frames.
        frame_size: (width, height) in pixels.
        layout: "crossing" (pairs walking at each other), "herd" (same direction, different speeds)
            or "occluder" (animals walking behind static occluders). Animals turn round at the
            frame edges, so paths cross again.
        body_length: range of body lengths in pixels at the bottom of the frame.
        speed: range of cruising speeds in body lengths per frame (0.03 = a walk at 30 fps).
        stop_rate: chance per frame that a walking animal stops for a while.
        occluders: static occluder boxes as fractions of the frame (x1, y1, x2, y2).
    """

    name: str
    num_animals: int = 4
    num_frames: int = 300
    frame_size: tuple[int, int] = (1280, 720)
    layout: str = "crossing"
    body_length: tuple[float, float] = (150.0, 240.0)
    speed: tuple[float, float] = (0.02, 0.08)
    stop_rate: float = 0.005
    occluders: tuple[tuple[float, float, float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.layout not in ("crossing", "herd", "occluder"):
            raise ValueError(f"layout must be 'crossing', 'herd' or 'occluder', got {self.layout!r}")
        if self.num_animals < 1:
            raise ValueError(f"num_animals must be >= 1, got {self.num_animals}")
        if self.num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {self.num_frames}")
        if min(self.frame_size) < 64:
            raise ValueError(f"frame_size must be at least 64 x 64, got {self.frame_size}")
        if not 0 < self.body_length[0] <= self.body_length[1]:
            raise ValueError(f"body_length must be an increasing positive range, got {self.body_length}")
        if not 0 <= self.speed[0] <= self.speed[1]:
            raise ValueError(f"speed must be an increasing non-negative range, got {self.speed}")
        if not 0 <= self.stop_rate < 1:
            raise ValueError(f"stop_rate must be in [0, 1), got {self.stop_rate}")


#: Scenarios of the benchmark.
SCENARIOS: dict[str, Scenario] = {
    "crossing": Scenario("crossing", num_animals=4, layout="crossing"),
    "crossing-fast": Scenario("crossing-fast", num_animals=6, layout="crossing", speed=(0.05, 0.14)),
    "herd": Scenario("herd", num_animals=6, layout="herd", body_length=(110.0, 200.0)),
    "occluder": Scenario("occluder", num_animals=3, layout="occluder",
                         occluders=((0.3, 0.0, 0.4, 1.0), (0.62, 0.35, 0.7, 1.0))),
}


@dataclass(frozen=True)
class NoiseModel:
    """How ground truth becomes detector and pose-model output. Lengths are fractions of the box scale.

    Attributes:
        keypoint_jitter: std of a confident keypoint's error, times ``sqrt(w * h)`` of the box.
        box_jitter: std of each box edge, times the box width or height.
        miss_rate: chance that a fully visible animal is not detected.
        false_positives: expected false detections per frame.
        low_confidence_rate: chance that a visible keypoint comes out with low confidence and a
            large error (a confused heatmap).
        outlier_rate: chance that a keypoint is confidently wrong (swapped with its left/right partner).
        min_visibility: animals less visible than this are neither detected nor counted as truth.
    """

    keypoint_jitter: float = 0.03
    box_jitter: float = 0.03
    miss_rate: float = 0.05
    false_positives: float = 0.3
    low_confidence_rate: float = 0.1
    outlier_rate: float = 0.01
    min_visibility: float = 0.25

    def __post_init__(self) -> None:
        for name in ("keypoint_jitter", "box_jitter", "false_positives"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value}")
        for name in ("miss_rate", "low_confidence_rate", "outlier_rate", "min_visibility"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")


@dataclass(frozen=True)
class SimulatedFrame:
    """What the detector and pose model 'saw' in one frame.

    Attributes:
        detections: N detections (true ones first, then false positives).
        poses: N poses aligned with the detections.
        animal_index: (N,) int64 animal each detection came from, -1 for false positives.
    """

    detections: Detections
    poses: Poses
    animal_index: np.ndarray


@dataclass(frozen=True)
class SimulatedSequence:
    """Ground truth and observations of one simulated sequence (A animals, T frames, K = 17).

    Attributes:
        scenario, noise, seed: what made it.
        keypoints: (T, A, K, 2) true keypoints in pixels, every frame, visible or not.
        boxes: (T, A, 4) true boxes (clipped to the frame).
        visibility: (T, A) visible fraction of each box.
        present: (T, A) bool, the animals that count as ground truth (visibility >= min_visibility).
        keypoint_visible: (T, A, K) bool, keypoints inside the frame and not hidden.
        frames: T observations.
    """

    scenario: Scenario
    noise: NoiseModel
    seed: int
    keypoints: np.ndarray
    boxes: np.ndarray
    visibility: np.ndarray
    present: np.ndarray
    keypoint_visible: np.ndarray
    frames: tuple[SimulatedFrame, ...] = field(repr=False)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def num_animals(self) -> int:
        return self.keypoints.shape[1]


# -- motion ----------------------------------------------------------------------------------------


def _perspective(ground_y: np.ndarray, height: float) -> np.ndarray:
    """Size factor of an animal standing at image row ``ground_y``: 1 at the bottom, 0.55 at the top."""
    return 0.55 + 0.45 * np.clip(ground_y / height, 0.0, 1.0)


def _initial_states(scenario: Scenario, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Start positions (ground point), headings (radians, 0 = +x) and cruising speeds of every animal."""
    a = scenario.num_animals
    width, height = scenario.frame_size
    lengths = rng.uniform(*scenario.body_length, a)
    speeds = rng.uniform(*scenario.speed, a)
    rows = np.linspace(0.55, 0.95, a) * height + rng.normal(0, 0.02 * height, a)
    if scenario.layout == "crossing":
        # Pairs walk at each other on nearby rows and meet somewhere in the middle of the sequence.
        direction = np.where(np.arange(a) % 2 == 0, 1.0, -1.0)
        pair_rows = np.repeat(np.linspace(0.6, 0.92, (a + 1) // 2), 2)[:a] * height
        rows = pair_rows + rng.normal(0, 0.03 * height, a)
        meet_x = np.repeat(rng.uniform(0.3, 0.7, (a + 1) // 2), 2)[:a] * width
        meet_t = np.repeat(rng.uniform(0.3, 0.6, (a + 1) // 2), 2)[:a] * scenario.num_frames
        pixel_speed = speeds * lengths * _perspective(rows, height)
        xs = np.clip(meet_x - direction * pixel_speed * meet_t, 0.08 * width, 0.92 * width)
        headings = np.where(direction > 0, 0.0, np.pi) + rng.normal(0, 0.05, a)
    elif scenario.layout == "herd":
        xs = rng.uniform(0.05, 0.5, a) * width
        headings = rng.normal(0, 0.1, a)
    else:
        xs = np.where(np.arange(a) % 2 == 0, rng.uniform(0.05, 0.2, a), rng.uniform(0.8, 0.95, a)) * width
        headings = np.where(np.arange(a) % 2 == 0, 0.0, np.pi) + rng.normal(0, 0.05, a)
    return {"x": xs, "y": rows, "heading": headings, "speed": speeds, "length": lengths}


def _walk(scenario: Scenario, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ground points (T, A, 2), facing (T, A), body lengths (T, A) and gait phase (T, A).

    Facing is the cosine of the heading: +1 walking right, -1 left, near 0 while turning (foreshortened).
    """
    t_count, a = scenario.num_frames, scenario.num_animals
    width, height = scenario.frame_size
    state = _initial_states(scenario, rng)
    x, y, heading = state["x"].copy(), state["y"].copy(), state["heading"].copy()
    cruise, base_length = state["speed"], state["length"]
    preferred = heading.copy()
    speed_factor = np.ones(a)
    gait = np.ones(a)
    stop_left = np.zeros(a, np.int64)
    phase = rng.uniform(0, 2 * np.pi, a)
    ground = np.zeros((t_count, a, 2))
    facings = np.zeros((t_count, a))
    lengths = np.zeros((t_count, a))
    phases = np.zeros((t_count, a))
    for t in range(t_count):
        length = base_length * _perspective(y, height)
        ground[t, :, 0], ground[t, :, 1] = x, y
        facings[t], lengths[t], phases[t] = np.cos(heading), length, phase
        # Speed drifts around the cruise speed (Ornstein-Uhlenbeck); stops and starts take a few frames.
        speed_factor += 0.05 * (1.0 - speed_factor) + rng.normal(0, 0.06, a)
        speed_factor = np.clip(speed_factor, 0.3, 1.8)
        starting = (stop_left == 0) & (rng.random(a) < scenario.stop_rate)
        stop_left[starting] = rng.integers(15, 60, int(starting.sum()))
        gait += 0.2 * ((stop_left == 0) - gait)
        stop_left = np.maximum(stop_left - 1, 0)
        speed = cruise * speed_factor * gait * length
        # At the frame edges the animal turns round over some ten frames, so paths cross again.
        turn = ((x < 0.1 * width) & (np.cos(preferred) < 0)) | ((x > 0.9 * width) & (np.cos(preferred) > 0))
        preferred[turn] = np.pi - preferred[turn]
        heading += rng.normal(0, 0.02, a) + 0.12 * np.angle(np.exp(1j * (preferred - heading)))
        dx, dy = speed * np.cos(heading), 0.3 * speed * np.sin(heading)
        x, y = x + dx, np.clip(y + dy, 0.45 * height, 0.98 * height)
        phase = phase + 2 * np.pi * speed / (_STRIDE * length)
    return ground, facings, lengths, phases


def _leg(root: np.ndarray, swing: np.ndarray, bend: float) -> tuple[np.ndarray, np.ndarray]:
    """Elbow/knee and paw of legs hanging from ``root`` (..., 2) with swing angles (...,), body-length units."""
    upper = np.stack([np.sin(swing), np.cos(swing)], -1) * _UPPER_LEG
    lower_angle = swing + bend * (0.5 + 0.5 * np.sin(swing * 2.0))
    lower = np.stack([np.sin(lower_angle), np.cos(lower_angle)], -1) * _LOWER_LEG
    joint = root + upper
    return joint, joint + lower


def body_keypoints(ground: np.ndarray, facing: np.ndarray, length: np.ndarray, phase: np.ndarray,
                   head_pitch: np.ndarray) -> np.ndarray:
    """(..., 17, 2) AP-10K keypoints in pixels of animals standing at ``ground`` (..., 2).

    Args:
        ground: image point under the body centre where the paws touch the ground.
        facing: cosine of the heading: +1 walking right, -1 walking left; in between the body is
            foreshortened along x.
        length: body length in pixels.
        phase: gait phase in radians.
        head_pitch: head rotation about the neck in radians (positive = nose down).
    """
    shape = np.shape(facing)
    far = np.array(_SIDE_OFFSET) * np.array([1.0, -1.0])
    points = np.zeros((*shape, NUM_KEYPOINTS, 2))
    bob = 0.015 * np.sin(2 * phase)

    def put(index: int, xy) -> None:
        points[..., index, :] = xy

    # Head: rotate the head points about the neck by the pitch.
    neck = np.array(_NECK) + np.stack([np.zeros(shape), bob], -1)
    cos_p, sin_p = np.cos(head_pitch), np.sin(head_pitch)
    head = {}
    for name, (hx, hy) in _HEAD.items():
        rel = np.array([hx, hy]) - np.array(_NECK)
        rotated = np.stack([cos_p * rel[0] - sin_p * rel[1], sin_p * rel[0] + cos_p * rel[1]], -1)
        head[name] = neck + rotated
    # Facing right, the animal's left side is turned away from the camera.
    right = facing[..., None] > 0
    put(0, np.where(right, head["eye_far"], head["eye_near"]))  # L_Eye
    put(1, np.where(right, head["eye_near"], head["eye_far"]))  # R_Eye
    put(2, head["nose"])
    put(3, neck)
    put(4, np.array(_TAIL) + np.stack([np.zeros(shape), 0.5 * bob], -1))
    legs = (
        # (root, keypoint indices (root, joint, paw), left side, phase offset, knee bend)
        (_SHOULDER, (5, 6, 7), True, 0.0, 0.5),
        (_SHOULDER, (8, 9, 10), False, np.pi, 0.5),
        (_HIP, (11, 12, 13), True, np.pi, -0.6),
        (_HIP, (14, 15, 16), False, 0.0, -0.6),
    )
    for root, (i_root, i_joint, i_paw), left, offset, bend in legs:
        is_far = right if left else ~right
        root_xy = np.array(root) + np.where(is_far, far, 0.0)
        root_xy = np.broadcast_to(root_xy, (*shape, 2))
        joint, paw = _leg(root_xy, 0.45 * np.sin(phase + offset), bend)
        put(i_root, root_xy)
        put(i_joint, joint)
        put(i_paw, paw)
    # Body units -> pixels: mirror x when facing left, scale, and place the centre above the ground point.
    points[..., 0] *= facing[..., None]
    points *= length[..., None, None]
    centre = ground - np.stack([np.zeros(shape), _GROUND * length], -1)
    return points + centre[..., None, :]


def _boxes_from_keypoints(keypoints: np.ndarray, length: np.ndarray) -> np.ndarray:
    """(..., 4) boxes around the keypoints, padded for the body outline (back, rump, hooves)."""
    low, high = keypoints.min(-2), keypoints.max(-2)
    pad = length[..., None] * np.array([0.05, 0.08, 0.05, 0.02])
    return np.concatenate([low, high], -1) + pad * np.array([-1, -1, 1, 1])


# -- visibility ------------------------------------------------------------------------------------


def _covered(points: np.ndarray, covers: np.ndarray) -> np.ndarray:
    """(P,) bool, points (P, 2) inside any of the covering boxes (C, 4)."""
    if len(covers) == 0:
        return np.zeros(len(points), bool)
    inside = ((points[:, None, 0] >= covers[None, :, 0]) & (points[:, None, 0] <= covers[None, :, 2])
              & (points[:, None, 1] >= covers[None, :, 1]) & (points[:, None, 1] <= covers[None, :, 3]))
    return inside.any(1)


def _visibility(boxes: np.ndarray, keypoints: np.ndarray, depth: np.ndarray, occluders: np.ndarray,
                frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Visible fraction of each box (A,) and visible keypoints (A, K) in one frame.

    An animal is hidden by nearer animals (larger ground y), by occluders, and by the frame edge.
    A nearer animal hides with its box shrunk to the body (its legs leave gaps).
    """
    width, height = frame_size
    grid = (np.arange(8) + 0.5) / 8
    a = len(boxes)
    visibility = np.zeros(a)
    keypoint_visible = np.zeros(keypoints.shape[:2], bool)
    for i in range(a):
        nearer = boxes[depth > depth[i]]
        body = nearer.copy()
        if len(body):
            h = body[:, 3] - body[:, 1]
            body[:, 1] += 0.05 * h
            body[:, 3] -= 0.35 * h
        covers = np.concatenate([body, occluders])
        x1, y1, x2, y2 = boxes[i]
        gx, gy = np.meshgrid(x1 + grid * (x2 - x1), y1 + grid * (y2 - y1))
        samples = np.stack([gx.ravel(), gy.ravel()], 1)
        in_frame = (samples[:, 0] >= 0) & (samples[:, 0] < width) & (samples[:, 1] >= 0) & (samples[:, 1] < height)
        visibility[i] = np.mean(in_frame & ~_covered(samples, covers))
        kp = keypoints[i]
        kp_in = (kp[:, 0] >= 0) & (kp[:, 0] < width) & (kp[:, 1] >= 0) & (kp[:, 1] < height)
        keypoint_visible[i] = kp_in & ~_covered(kp, covers)
    return visibility, keypoint_visible


# -- observations ----------------------------------------------------------------------------------


def _observe(boxes: np.ndarray, keypoints: np.ndarray, visibility: np.ndarray, keypoint_visible: np.ndarray,
             scenario: Scenario, noise: NoiseModel, rng: np.random.Generator) -> SimulatedFrame:
    """Noisy detections and poses of one frame."""
    width, height = scenario.frame_size
    detectable = visibility >= noise.min_visibility
    p_detect = (1 - noise.miss_rate) * np.clip((visibility - noise.min_visibility) / 0.35, 0.0, 1.0)
    found = np.flatnonzero(detectable & (rng.random(len(boxes)) < p_detect))
    n = len(found)
    vis = visibility[found]
    wh = boxes[found, 2:] - boxes[found, :2]
    jitter = noise.box_jitter * (1 + 2 * (1 - vis))[:, None] * np.tile(wh, 2)
    det_boxes = boxes[found] + rng.normal(0, 1, (n, 4)) * jitter
    scores = np.clip(rng.normal(0.82, 0.08, n), 0.3, 0.99) * (0.35 + 0.65 * vis)

    scale = np.sqrt(np.prod(np.maximum(wh, 1), 1))
    weight = np.clip(SIGMAS / SIGMAS.mean(), 0.5, 1.5)
    kp_true = keypoints[found]
    visible = keypoint_visible[found]
    conf = np.clip(rng.beta(6, 2, (n, NUM_KEYPOINTS)), 0.35, 0.99)
    error_std = noise.keypoint_jitter * scale[:, None] * weight[None] * 0.75 / conf
    low = ~visible | (rng.random((n, NUM_KEYPOINTS)) < noise.low_confidence_rate)
    conf = np.where(low, rng.uniform(0.0, 0.3, (n, NUM_KEYPOINTS)), conf)
    error_std = np.where(low, 5 * noise.keypoint_jitter * scale[:, None] * weight[None], error_std)
    kp_obs = kp_true + rng.normal(0, 1, (n, NUM_KEYPOINTS, 2)) * error_std[..., None]
    swapped = (rng.random((n, NUM_KEYPOINTS)) < noise.outlier_rate) & (FLIP_INDEX != np.arange(NUM_KEYPOINTS))
    kp_obs = np.where(swapped[..., None], kp_true[:, FLIP_INDEX] + (kp_obs - kp_true), kp_obs)

    n_fp = rng.poisson(noise.false_positives)
    fp_size = rng.uniform(*scenario.body_length, n_fp) * rng.uniform(0.6, 1.0, n_fp)
    fp_aspect = rng.uniform(0.6, 1.0, n_fp)
    fp_xy = rng.uniform([0, 0.3 * height], [width, height], (n_fp, 2))
    fp_boxes = np.concatenate([fp_xy, fp_xy + np.stack([fp_size, fp_size * fp_aspect], 1)], 1)
    fp_scores = rng.uniform(0.1, 0.65, n_fp)
    fp_wh = fp_boxes[:, None, 2:] - fp_boxes[:, None, :2]
    fp_kp = fp_boxes[:, None, :2] + rng.random((n_fp, NUM_KEYPOINTS, 2)) * fp_wh
    fp_conf = rng.uniform(0.0, 0.6, (n_fp, NUM_KEYPOINTS))

    all_boxes = np.concatenate([det_boxes, fp_boxes])
    all_boxes[:, [0, 2]] = np.clip(all_boxes[:, [0, 2]], 0, width)
    all_boxes[:, [1, 3]] = np.clip(all_boxes[:, [1, 3]], 0, height)
    pose = np.concatenate([np.concatenate([kp_obs, conf[..., None]], -1),
                           np.concatenate([fp_kp, fp_conf[..., None]], -1)])
    detections = Detections(all_boxes, np.concatenate([scores, fp_scores]), np.zeros(n + n_fp, np.int64))
    return SimulatedFrame(detections, Poses(pose, all_boxes),
                          np.concatenate([found, -np.ones(n_fp, np.int64)]).astype(np.int64))


def simulate_sequence(scenario: Scenario, noise: NoiseModel | None = None, seed: int = 0) -> SimulatedSequence:
    """Simulate one sequence: ground truth of every animal and what a detector and pose model would report.

    Args:
        scenario: scene layout.
        noise: noise model (defaults to :class:`NoiseModel()`).
        seed: random seed; the same arguments give the same sequence.
    """
    noise = noise if noise is not None else NoiseModel()
    rng = np.random.default_rng(seed)
    ground, facing, length, phase = _walk(scenario, rng)
    pitch = np.zeros_like(phase)
    drift = rng.normal(0, 0.04, phase.shape)
    for t in range(1, len(pitch)):
        pitch[t] = 0.95 * pitch[t - 1] + drift[t]
    keypoints = body_keypoints(ground, facing, length, phase, pitch)
    boxes = _boxes_from_keypoints(keypoints, length)
    width, height = scenario.frame_size
    clipped = boxes.copy()
    clipped[..., [0, 2]] = np.clip(clipped[..., [0, 2]], 0, width)
    clipped[..., [1, 3]] = np.clip(clipped[..., [1, 3]], 0, height)
    occluders = np.array(scenario.occluders, dtype=np.float64).reshape(-1, 4) * np.array([width, height, width, height])
    t_count, a = facing.shape
    visibility = np.zeros((t_count, a))
    keypoint_visible = np.zeros((t_count, a, NUM_KEYPOINTS), bool)
    frames = []
    for t in range(t_count):
        visibility[t], keypoint_visible[t] = _visibility(boxes[t], keypoints[t], ground[t, :, 1], occluders,
                                                         scenario.frame_size)
        frames.append(_observe(clipped[t], keypoints[t], visibility[t], keypoint_visible[t], scenario, noise, rng))
    return SimulatedSequence(
        scenario=scenario, noise=noise, seed=seed, keypoints=keypoints, boxes=clipped, visibility=visibility,
        present=visibility >= noise.min_visibility, keypoint_visible=keypoint_visible, frames=tuple(frames),
    )


# -- scoring ---------------------------------------------------------------------------------------
