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
            or "occluder" (animals walking behind static occluders); or one of the scripted layouts
            (:data:`SCRIPTED_LAYOUTS`, seen by a camera 1.3 m above flat ground, sizes from depths in
            metres): "close-crossing" (pairs at nearly the same depth walking through each other, one of
            a pair sometimes stopping in the middle), "tight-herd" (animals walking together, boxes
            overlapping heavily), "depths" (animals spread over ``depth`` hiding each other, with
            grazing stops, head down), "runner" (a fast runner with abrupt starts, stops and reversals
            among walkers), "exit" (an animal leaves the frame for ``absence`` frames and comes back),
            "hidden" (a small far animal fully hidden about ``absence`` frames behind a large near one
            that grazes). Animals turn round at the frame edges, so paths cross again.
        body_length: range of body lengths in pixels at the bottom of the frame (the first three layouts).
        speed: range of cruising speeds in body lengths per frame (0.03 = a walk at 30 fps).
        stop_rate: chance per frame that a walking animal stops for a while.
        occluders: static occluder boxes as fractions of the frame (x1, y1, x2, y2).
        depth: range of the animals' distances to the camera in metres (scripted layouts).
        body_size: range of body lengths in metres (scripted layouts).
        absence: frames out of the frame ("exit") or fully hidden ("hidden").
        miss_bursts: chance per animal and frame that the detector starts missing it for 2 to 5 frames
            (motion blur, an odd pose), on top of the noise model's independent misses.
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
    depth: tuple[float, float] = (5.0, 11.0)
    body_size: tuple[float, float] = (1.2, 2.0)
    absence: int = 40
    miss_bursts: float = 0.0

    def __post_init__(self) -> None:
        if self.layout not in ("crossing", "herd", "occluder", *SCRIPTED_LAYOUTS):
            raise ValueError(f"layout must be 'crossing', 'herd', 'occluder' or one of {SCRIPTED_LAYOUTS}, "
                             f"got {self.layout!r}")
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
        for name in ("depth", "body_size"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be an increasing positive range, got {getattr(self, name)}")
        if self.layout in SCRIPTED_LAYOUTS and self.depth[0] < 2.0:
            raise ValueError(f"depth must start at 2 m or more (nearer animals leave the frame), got {self.depth}")
        if self.absence < 1:
            raise ValueError(f"absence must be >= 1 frame, got {self.absence}")
        if not 0 <= self.miss_bursts < 1:
            raise ValueError(f"miss_bursts must be in [0, 1), got {self.miss_bursts}")


#: Layouts whose motion is scripted per animal (:func:`_scripted_walk`).
SCRIPTED_LAYOUTS: tuple[str, ...] = ("close-crossing", "tight-herd", "depths", "runner", "exit", "hidden")

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
        low_confidence_error: std of such a keypoint's error (and of a hidden one's), in units of
            ``keypoint_jitter``.
        outlier_rate: chance that a keypoint is confidently wrong (swapped with its left/right partner).
        min_visibility: animals less visible than this are neither detected nor counted as truth.
        detection_ramp: the chance of detecting an animal rises linearly from 0 at ``min_visibility`` to
            ``1 - miss_rate`` at ``min_visibility + detection_ramp``.
    """

    keypoint_jitter: float = 0.03
    box_jitter: float = 0.03
    miss_rate: float = 0.05
    false_positives: float = 0.3
    low_confidence_rate: float = 0.1
    low_confidence_error: float = 5.0
    outlier_rate: float = 0.01
    min_visibility: float = 0.25
    detection_ramp: float = 0.35

    def __post_init__(self) -> None:
        for name in ("keypoint_jitter", "box_jitter", "false_positives", "low_confidence_error"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value}")
        if not 0.0 < self.detection_ramp <= 1.0:
            raise ValueError(f"detection_ramp must be in (0, 1], got {self.detection_ramp}")
        for name in ("miss_rate", "low_confidence_rate", "outlier_rate", "min_visibility"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")


#: Noise of the scenes below: fewer and smaller gross keypoint errors than :class:`NoiseModel`'s defaults (raw
#: keypoints off by some 7% of the box size rather than 10%), and animals half hidden found more often.
SCENE_NOISE = NoiseModel(low_confidence_rate=0.05, low_confidence_error=3.5, detection_ramp=0.15)

#: Scenes of the identity and smoothing benchmark (``bench.track_scenes``): six kinds of trouble for a tracker,
#: 300 frames at 1280x720 and 30 fps each.
SCENES: dict[str, Scenario] = {
    "close-crossing": Scenario("close-crossing", num_animals=4, layout="close-crossing", speed=(0.02, 0.06),
                               depth=(5.0, 9.0)),
    "tight-herd": Scenario("tight-herd", num_animals=3, layout="tight-herd", speed=(0.02, 0.05), depth=(5.0, 8.0)),
    "depths": Scenario("depths", num_animals=5, layout="depths", speed=(0.015, 0.04), depth=(5.0, 11.0)),
    "runner": Scenario("runner", num_animals=3, layout="runner", speed=(0.02, 0.05), depth=(5.0, 10.0),
                       miss_bursts=0.02),
    "exit": Scenario("exit", num_animals=3, layout="exit", speed=(0.02, 0.05), depth=(5.0, 10.0), absence=40),
    "hidden": Scenario("hidden", num_animals=2, layout="hidden", speed=(0.02, 0.04), depth=(5.0, 10.0),
                       absence=20),
}


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


# -- scripted scenes -------------------------------------------------------------------------------

#: Camera of the scripted layouts: focal length (fraction of the frame width), height above the ground
#: (metres) and the horizon's row (fraction of the frame height).
_FOCAL, _CAMERA_HEIGHT, _HORIZON = 0.9, 1.3, 0.25


def ground_row(depth: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Image row (pixels) of the ground at ``depth`` metres from the camera of the scripted layouts."""
    width, height = frame_size
    return _HORIZON * height + _FOCAL * width * _CAMERA_HEIGHT / np.asarray(depth)


def pixel_length(size: np.ndarray, depth: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Length in pixels of ``size`` metres seen at ``depth`` metres by the camera of the scripted layouts."""
    return _FOCAL * frame_size[0] * np.asarray(size) / np.asarray(depth)


@dataclass
class _Plan:
    """What each of A animals does over T frames in a scripted layout.

    Attributes:
        x: (A,) start position along the ground, pixels.
        depth: (A,) start distance to the camera, metres.
        size: (A,) body length, metres.
        direction: (A,) +1 walking right, -1 left.
        cruise: (A,) cruising speed, body lengths per frame.
        drift: (A,) bool, the speed drifts about the cruising speed.
        abrupt: (A,) bool, starts and stops take some five frames, not ten, and turns half as long.
        stop: (T, A) bool, the animal wants to stand still.
        graze: (T, A) bool, standing with the head down.
        flip: (T, A) bool, the animal turns round in that frame.
        exit_wait: (A,) frames the animal stays out once it has left the frame (0: it turns at the edges).
        wander: (A,) std of the per-frame change of depth, metres.
    """

    x: np.ndarray
    depth: np.ndarray
    size: np.ndarray
    direction: np.ndarray
    cruise: np.ndarray
    drift: np.ndarray
    abrupt: np.ndarray
    stop: np.ndarray
    graze: np.ndarray
    flip: np.ndarray
    exit_wait: np.ndarray
    wander: np.ndarray


def _base_plan(scenario: Scenario, rng: np.random.Generator) -> _Plan:
    """Walkers spread over the frame and ``scenario.depth``, with random stops."""
    a, t_count = scenario.num_animals, scenario.num_frames
    stop = np.zeros((t_count, a), bool)
    for i in range(a):
        t = 0
        while t < t_count:
            if rng.random() < scenario.stop_rate:
                length = int(rng.integers(15, 60))
                stop[t:t + length, i] = True
                t += length
            t += 1
    # Depths spread over the range (two animals do not walk through each other), in random order.
    depth = np.linspace(*scenario.depth, a) + rng.uniform(-0.25, 0.25, a) * (scenario.depth[1] - scenario.depth[0]) / a
    return _Plan(
        x=rng.uniform(0.1, 0.9, a) * scenario.frame_size[0], depth=rng.permutation(depth),
        size=rng.uniform(*scenario.body_size, a), direction=rng.choice([-1.0, 1.0], a),
        cruise=rng.uniform(*scenario.speed, a), drift=np.ones(a, bool), abrupt=np.zeros(a, bool), stop=stop,
        graze=np.zeros((t_count, a), bool), flip=np.zeros((t_count, a), bool), exit_wait=np.zeros(a, np.int64),
        wander=np.full(a, 0.005),
    )


def _speed_px(plan: _Plan, i: int, frame_size: tuple[int, int]) -> float:
    return float(plan.cruise[i] * pixel_length(plan.size[i], plan.depth[i], frame_size))


def _meet(plan: _Plan, i: int, x_meet: float, t_meet: float, frame_size: tuple[int, int]) -> None:
    """Start animal ``i`` where, walking at its cruising speed, it reaches ``x_meet`` at frame ``t_meet``."""
    plan.x[i] = np.clip(x_meet - plan.direction[i] * _speed_px(plan, i, frame_size) * t_meet,
                        0.05 * frame_size[0], 0.95 * frame_size[0])


def _plan_close_crossing(scenario: Scenario, rng: np.random.Generator) -> _Plan:
    plan = _base_plan(scenario, rng)
    a, t_count, width = scenario.num_animals, scenario.num_frames, scenario.frame_size[0]
    for first in range(0, a - 1, 2):
        pair = [first, first + 1]
        plan.depth[first + 1] = min(plan.depth[first] + rng.uniform(0.2, 0.8), scenario.depth[1] + 0.8)
        plan.direction[pair] = [1.0, -1.0]
        x_meet, t_meet = rng.uniform(0.3, 0.7) * width, rng.uniform(0.25, 0.65) * t_count
        for i in pair:
            _meet(plan, i, x_meet, t_meet, scenario.frame_size)
        if rng.random() < 0.5:  # one of them stops in the middle of the crossing
            start = int(t_meet + rng.integers(-5, 5))
            plan.stop[max(start, 0):start + int(rng.integers(10, 40)), pair[rng.integers(2)]] = True
    return plan


def _plan_tight_herd(scenario: Scenario, rng: np.random.Generator) -> _Plan:
    plan = _base_plan(scenario, rng)
    a = scenario.num_animals
    plan.depth = plan.depth[0] + rng.uniform(-0.5, 0.5, a)
    plan.direction[:] = plan.direction[0]
    plan.cruise = plan.cruise[0] * (1 + rng.uniform(-0.15, 0.15, a))
    plan.x = plan.x[0] + rng.uniform(-0.5, 0.5, a) * pixel_length(plan.size, plan.depth, scenario.frame_size)
    return plan


def _plan_depths(scenario: Scenario, rng: np.random.Generator) -> _Plan:
    plan = _base_plan(scenario, rng)
    a, t_count = scenario.num_animals, scenario.num_frames
    far = plan.depth > np.mean(scenario.depth)
    for i in range(a):
        for _ in range(int(rng.integers(1, 3)) + int(far[i])):
            start, length = int(rng.integers(0, t_count)), int(rng.integers(30, 90))
            plan.graze[start:start + length, i] = True
    plan.stop |= plan.graze
    return plan


def _plan_runner(scenario: Scenario, rng: np.random.Generator) -> _Plan:
    plan = _base_plan(scenario, rng)
    t_count = scenario.num_frames
    nearest = int(np.argmin(plan.depth))
    plan.depth[[0, nearest]] = plan.depth[[nearest, 0]]  # the runner in front
    plan.cruise[0] = rng.uniform(0.08, 0.14)
    plan.size[0] = rng.uniform(0.8, 1.3)  # a dog, not a horse
    plan.drift[0], plan.abrupt[0] = False, True
    plan.stop[:, 0] = False
    t = int(rng.integers(0, 20))
    while t < t_count:
        t += int(rng.integers(15, 50))  # a run
        if rng.random() < 0.25:
            plan.flip[min(t, t_count - 1), 0] = True  # a reversal at full speed
            continue
        pause = int(rng.integers(4, 20))
        plan.stop[t:t + pause, 0] = True
        if rng.random() < 0.5:
            plan.flip[min(t + pause - 1, t_count - 1), 0] = True
        t += pause
    return plan


def _plan_exit(scenario: Scenario, rng: np.random.Generator) -> _Plan:
    plan = _base_plan(scenario, rng)
    width = scenario.frame_size[0]
    plan.direction[0] = rng.choice([-1.0, 1.0])
    plan.x[0] = width / 2 - plan.direction[0] * rng.uniform(0.15, 0.3) * width
    plan.cruise[0] = rng.uniform(0.03, 0.06)
    nearest = int(np.argmin(plan.depth))
    plan.depth[[0, nearest]] = plan.depth[[nearest, 0]]  # in front, in view
    plan.stop[:, 0] = False
    # Going from a quarter in view to fully out, and back, takes about a body length; turning some 5 frames.
    plan.exit_wait[0] = max(scenario.absence - round(0.9 / plan.cruise[0]) - 5, 1)
    return plan


def _plan_hidden(scenario: Scenario, rng: np.random.Generator) -> _Plan:
    """A small animal far from the camera stands, trots past behind a large one near the camera, fully hidden for
    about ``absence`` frames, and stands again on the other side; the large one grazes, walks slowly the other way
    while the small one passes, and grazes again. Any other animal walks in front of the large one."""
    plan = _base_plan(scenario, rng)
    t_count, width, frame_size = scenario.num_frames, scenario.frame_size[0], scenario.frame_size
    big, small = 0, 1
    plan.size[big], plan.depth[big] = rng.uniform(1.8, 2.2), rng.uniform(4.5, 5.5)
    plan.size[small], plan.depth[small] = rng.uniform(0.5, 0.7), plan.depth[big] * rng.uniform(2.0, 2.2)
    plan.depth[2:] = rng.uniform(3.2, 4.2, scenario.num_animals - 2)
    plan.drift[[big, small]] = plan.abrupt[[big, small]] = False
    plan.wander[[big, small]] = 0.0
    t_meet, x_meet = rng.uniform(0.35, 0.65) * t_count, rng.uniform(0.45, 0.55) * width
    plan.direction[small] = rng.choice([-1.0, 1.0])
    plan.direction[big] = -plan.direction[small]
    # The large one walks for 2 * absence frames about the meeting, at its cruising speed.
    plan.cruise[big] = rng.uniform(0.015, 0.025)
    walk = scenario.absence
    plan.stop[:, big] = True
    plan.stop[max(int(t_meet) - walk, 0):int(t_meet) + walk, big] = False
    plan.graze[:, big] = plan.stop[:, big]
    big_speed = _speed_px(plan, big, frame_size)
    plan.x[big] = x_meet - plan.direction[big] * big_speed * walk
    # Fully hidden while the small box is inside the large one's (about their lengths apart), hidden enough not to
    # be detected a little longer: the small one's speed past the large one sets how long.
    big_px, small_px = (pixel_length(plan.size[i], plan.depth[i], frame_size) for i in (big, small))
    speed = max(1.25 * (big_px - small_px) / scenario.absence - big_speed, 0.05 * small_px)
    plan.cruise[small] = speed / small_px
    run = int((0.6 * big_px + small_px + rng.uniform(30, 120)) / speed)  # frames from where it stands to the middle
    plan.x[small] = x_meet - plan.direction[small] * speed * run
    plan.stop[:, small] = True
    plan.stop[max(int(t_meet) - run, 0):int(t_meet) + run, small] = False
    return plan


_PLANS = {"close-crossing": _plan_close_crossing, "tight-herd": _plan_tight_herd, "depths": _plan_depths,
          "runner": _plan_runner, "exit": _plan_exit, "hidden": _plan_hidden}


def _scripted_walk(scenario: Scenario, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ground points (T, A, 2), facing, body lengths in pixels, gait phase and head pitch (T, A) of a scripted
    layout (:func:`_walk`'s outputs and the head pitch: 0 level, about 1 radian grazing)."""
    plan = _PLANS[scenario.layout](scenario, rng)
    t_count, a = scenario.num_frames, scenario.num_animals
    width, _ = scenario.frame_size
    x, depth, direction = plan.x.astype(float), plan.depth.astype(float), plan.direction.astype(float)
    facing = direction.copy()
    speed_factor, gait = np.ones(a), np.where(plan.stop[0], 0.0, 1.0)
    phase, pitch = rng.uniform(0, 2 * np.pi, a), np.zeros(a)
    waiting, exited = np.zeros(a, np.int64), np.zeros(a, bool)
    turn_rate = np.where(plan.abrupt, 0.15, 0.08)  # a turn round takes some 13 or 25 frames
    gait_rate = np.where(plan.abrupt, 0.35, 0.2)
    ground, facings, lengths, phases, pitches = (np.zeros((t_count, a)) for _ in range(5))
    ground = np.zeros((t_count, a, 2))
    for t in range(t_count):
        length = pixel_length(plan.size, depth, scenario.frame_size)
        ground[t, :, 0], ground[t, :, 1] = x, ground_row(depth, scenario.frame_size)
        facings[t], lengths[t], phases[t], pitches[t] = facing, length, phase, pitch
        drift = np.where(plan.drift, 0.05 * (1.0 - speed_factor) + rng.normal(0, 0.06, a), 0.0)
        speed_factor = np.clip(speed_factor + drift, 0.3, 1.8)
        # An exiting animal waits out of the frame, then turns and comes back.
        outside = (x < -0.7 * length) | (x > width + 0.7 * length)
        leaving = (plan.exit_wait > 0) & ~exited & outside
        waiting = np.where(leaving & (waiting == 0), plan.exit_wait, waiting)
        exited |= leaving
        back = waiting == 1
        waiting = np.maximum(waiting - 1, 0)
        moving = ~plan.stop[t] & (waiting == 0)
        gait += gait_rate * (moving - gait)
        at_edge = ((x < 0.06 * width) & (direction < 0)) | ((x > 0.94 * width) & (direction > 0))
        turn = plan.flip[t] | back | (at_edge & ((plan.exit_wait == 0) | exited) & ~outside)
        direction = np.where(turn, -direction, direction)
        facing += np.clip(direction - facing, -turn_rate, turn_rate)
        facing = np.where(np.abs(facing) < 0.05, 0.05 * direction, facing)  # never exactly edge-on
        speed = plan.cruise * speed_factor * gait * length
        x = x + speed * facing
        depth = np.clip(depth + rng.normal(0, 1, a) * plan.wander * gait, 0.9 * scenario.depth[0],
                        1.1 * scenario.depth[1] + 1.0)
        phase = phase + 2 * np.pi * speed / (_STRIDE * length)
        pitch += 0.15 * (np.where(plan.graze[t], 1.0, 0.0) - pitch)
    return ground, facings, lengths, phases, pitches


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


def _observe_keypoints(truth: np.ndarray, visible: np.ndarray, box_size: np.ndarray, noise: NoiseModel,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """What the pose model reports of n animals: keypoints (n, K, 2) and confidences (n, K), from the true
    keypoints (n, K, 2), which of them are ``visible`` (n, K) and the boxes' (width, height) (n, 2)."""
    n = len(truth)
    scale = np.sqrt(np.prod(np.maximum(box_size, 1), 1))
    weight = np.clip(SIGMAS / SIGMAS.mean(), 0.5, 1.5)
    conf = np.clip(rng.beta(6, 2, (n, NUM_KEYPOINTS)), 0.35, 0.99)
    error_std = noise.keypoint_jitter * scale[:, None] * weight[None] * 0.75 / conf
    low = ~visible | (rng.random((n, NUM_KEYPOINTS)) < noise.low_confidence_rate)
    conf = np.where(low, rng.uniform(0.0, 0.3, (n, NUM_KEYPOINTS)), conf)
    error_std = np.where(low, noise.low_confidence_error * noise.keypoint_jitter * scale[:, None] * weight[None],
                         error_std)
    observed = truth + rng.normal(0, 1, (n, NUM_KEYPOINTS, 2)) * error_std[..., None]
    swapped = (rng.random((n, NUM_KEYPOINTS)) < noise.outlier_rate) & (FLIP_INDEX != np.arange(NUM_KEYPOINTS))
    return np.where(swapped[..., None], truth[:, FLIP_INDEX] + (observed - truth), observed), conf


def _observe(boxes: np.ndarray, keypoints: np.ndarray, visibility: np.ndarray, keypoint_visible: np.ndarray,
             scenario: Scenario, noise: NoiseModel, rng: np.random.Generator,
             missed: np.ndarray | None = None) -> SimulatedFrame:
    """Noisy detections and poses of one frame; animals ``missed`` (A,) bool are not detected."""
    width, height = scenario.frame_size
    detectable = visibility >= noise.min_visibility
    if missed is not None:
        detectable = detectable & ~missed
    p_detect = (1 - noise.miss_rate) * np.clip((visibility - noise.min_visibility) / noise.detection_ramp, 0.0, 1.0)
    found = np.flatnonzero(detectable & (rng.random(len(boxes)) < p_detect))
    n = len(found)
    vis = visibility[found]
    wh = boxes[found, 2:] - boxes[found, :2]
    jitter = noise.box_jitter * (1 + 2 * (1 - vis))[:, None] * np.tile(wh, 2)
    det_boxes = boxes[found] + rng.normal(0, 1, (n, 4)) * jitter
    scores = np.clip(rng.normal(0.82, 0.08, n), 0.3, 0.99) * (0.35 + 0.65 * vis)

    kp_obs, conf = _observe_keypoints(keypoints[found], keypoint_visible[found], wh, noise, rng)

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
    if scenario.layout in SCRIPTED_LAYOUTS:
        ground, facing, length, phase, head_down = _scripted_walk(scenario, rng)
    else:
        ground, facing, length, phase = _walk(scenario, rng)
        head_down = np.zeros_like(phase)
    pitch = np.zeros_like(phase)
    drift = rng.normal(0, 0.04, phase.shape)
    for t in range(1, len(pitch)):
        pitch[t] = 0.95 * pitch[t - 1] + drift[t]
    pitch += head_down
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
    missing = np.zeros(a, np.int64)  # frames left of each animal's burst of misses
    for t in range(t_count):
        visibility[t], keypoint_visible[t] = _visibility(boxes[t], keypoints[t], ground[t, :, 1], occluders,
                                                         scenario.frame_size)
        if scenario.miss_bursts > 0:
            starting = (missing == 0) & (rng.random(a) < scenario.miss_bursts)
            missing = np.where(starting, rng.integers(2, 6, a), missing)
        frames.append(_observe(clipped[t], keypoints[t], visibility[t], keypoint_visible[t], scenario, noise, rng,
                               missed=missing > 0))
        missing = np.maximum(missing - 1, 0)
    return SimulatedSequence(
        scenario=scenario, noise=noise, seed=seed, keypoints=keypoints, boxes=clipped, visibility=visibility,
        present=visibility >= noise.min_visibility, keypoint_visible=keypoint_visible, frames=tuple(frames),
    )


def pose_in_boxes(sequence: SimulatedSequence, frame: int, boxes: np.ndarray, rng: np.random.Generator,
                  min_iou: float = 0.3) -> Poses:
    """What the simulated pose model finds in ``boxes`` (B, 4) of ``frame`` that the detector did not give (a
    tracker's predicted boxes, when the pose model runs after tracking).

    In each box, the animal it overlaps most (IoU >= ``min_iou``, at least ``min_visibility`` visible) is observed
    as the detections' poses are, its keypoints hidden or outside the box coming out with low confidence; a box
    on no animal gets keypoints scattered over it, all with confidences below 0.3.
    """
    from tracking.matching import box_iou

    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    keypoints = np.zeros((len(boxes), NUM_KEYPOINTS, 3))
    iou = box_iou(boxes, sequence.boxes[frame]) * sequence.present[frame][None, :]
    animal = iou.argmax(1) if iou.size else np.zeros(len(boxes), np.int64)
    for i, box in enumerate(boxes):
        wh = np.maximum(box[2:] - box[:2], 1.0)
        if iou.size and iou[i, animal[i]] >= min_iou:
            truth = sequence.keypoints[frame, animal[i]]
            inside = ((truth >= box[:2]) & (truth <= box[2:])).all(-1)
            visible = sequence.keypoint_visible[frame, animal[i]] & inside
            true_box = sequence.boxes[frame, animal[i]]
            xy, conf = _observe_keypoints(truth[None], visible[None], (true_box[2:] - true_box[:2])[None],
                                          sequence.noise, rng)
            keypoints[i, :, :2], keypoints[i, :, 2] = xy[0], conf[0]
        else:
            keypoints[i, :, :2] = box[:2] + rng.random((NUM_KEYPOINTS, 2)) * wh
            keypoints[i, :, 2] = rng.uniform(0.0, 0.3, NUM_KEYPOINTS)
    return Poses(keypoints.astype(np.float32), boxes.astype(np.float32))
