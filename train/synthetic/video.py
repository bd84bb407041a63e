"""Synthetic videos of several quadrupeds with exact ground truth, for tracking tests.

Animals walk along the ground at different depths (farther is higher in the frame and
smaller), graze, look around, turn, cross each other and walk out of the frame; an animal
that has left turns back after a short while and re-enters. Foreground trunks and bushes
occlude them. The first two animals start on opposite sides in nearby lanes, so they cross.

Ground-truth JSON (``render_video``)::

    {"fps", "width", "height", "num_frames", "seed",
     "animals": [{"track_id", "category_id", "species"}],
     "frames": [{"frame": i, "animals": [{"track_id", "bbox": [x, y, w, h],
                                          "keypoints": [[x, y, v] x 17]}]}]}

An animal is listed in a frame when its box overlaps the image. Boxes are clipped to the
image; keypoints keep their true coordinates even when ``v = 0`` (outside the image, or the
far eye), flags as in :mod:`train.synthetic.scene`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from train.synthetic.animal import (
    AnimalAppearance,
    AnimalState,
    Shape,
    build_animal,
    sample_appearance,
    standing_height,
)
from train.synthetic.background import load_photos, sample_background
from train.synthetic.dataset import coco_bbox
from train.synthetic.scene import SceneLabels, render_scene

logger = logging.getLogger(__name__)

_HORIZON = 0.3  # fraction of the height where the ground plane meets the sky


@dataclass(frozen=True)
class VideoSettings:
    """What to render.

    Attributes:
        num_animals: animals in the clip (each keeps one track id, 1-based).
        num_frames: frames to render.
        width, height: frame size in pixels.
        fps: frames per second, used for motion speeds and the container.
        seed: seed of the whole clip.
        background_dir: optional folder of photos for the background.
        num_occluders: foreground trunks and bushes.
    """

    num_animals: int = 3
    num_frames: int = 300
    width: int = 640
    height: int = 360
    fps: float = 30.0
    seed: int = 0
    background_dir: Path | None = None
    num_occluders: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.num_animals <= 254:
            raise ValueError(f"num_animals must be in [1, 254], got {self.num_animals}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.width < 32 or self.height < 32:
            raise ValueError(f"width and height must be >= 32 pixels, got {self.width}x{self.height}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.num_occluders < 0:
            raise ValueError(f"num_occluders must be >= 0, got {self.num_occluders}")
        if self.background_dir is not None:
            object.__setattr__(self, "background_dir", Path(self.background_dir))
            if not self.background_dir.is_dir():
                raise ValueError(f"background_dir {self.background_dir} is not a folder")


@dataclass(frozen=True)
class VideoFrame:
    """One rendered frame.

    Attributes:
        index: frame number, from 0.
        image: (H, W, 3) uint8 BGR frame.
        track_ids: (N,) int64 track ids of the animals in ``labels``.
        labels: ground truth of the animals whose box overlaps the frame.
        background_kind: the clip's background, an index into
            :data:`train.synthetic.background.BACKGROUND_KINDS`.
    """

    index: int
    image: np.ndarray
    track_ids: np.ndarray
    labels: SceneLabels
    background_kind: int = 0


class _Walker:
    """One animal's behaviour: a small state machine advanced once per frame."""

    def __init__(self, rng: np.random.Generator, appearance: AnimalAppearance, settings: VideoSettings,
                 x: float, ground: float, heading: float) -> None:
        self.appearance, self.settings = appearance, settings
        self.size = settings.height * rng.uniform(0.28, 0.4)  # torso length at the bottom of the frame
        self.speed = rng.uniform(1.0, 1.8)  # torso lengths per second
        self.x, self.ground, self.lane = x, ground, ground
        self.heading, self.target_heading = heading, heading
        self.phase, self.stride = rng.uniform(0, 2 * math.pi), 0.4
        self.mode, self.timer = "walk", rng.uniform(2, 5) * settings.fps
        self.neck, self.head, self.yaw, self.yaw_target = 0.0, -0.3, 0.0, 0.0
        self.outside_for, self.return_after = 0, rng.uniform(0.3, 1.2) * settings.fps

    def scale(self) -> float:
        h = self.settings.height
        depth = (self.ground - _HORIZON * h) / ((1 - _HORIZON) * h)
        return self.size * max(0.3, 0.4 + 0.6 * depth)

    def state(self, t: float) -> AnimalState:
        scale = self.scale()
        return AnimalState(
            x=self.x, y=self.ground - standing_height(self.appearance.shape) * scale, scale=scale,
            heading=self.heading, gait_phase=self.phase, stride=self.stride, neck_pitch=self.neck,
            head_pitch=self.head, head_yaw=self.yaw, tail_angle=0.25 * math.sin(0.5 * self.phase + t),
        )

    def step(self, rng: np.random.Generator, in_frame: bool) -> None:
        """Advance one frame; ``in_frame`` says whether any of the animal overlaps the frame."""
        fps = self.settings.fps
        right_side = self.x > self.settings.width / 2
        moving_out = (math.cos(self.heading) > 0) == right_side
        self.outside_for = 0 if in_frame else self.outside_for + 1
        turning = abs(self.target_heading - self.heading) > 1e-6
        if not in_frame:
            self.mode = "walk"
            if moving_out and not turning and self.outside_for > self.return_after:
                self._turn(rng)
        else:
            self.timer -= 1
            if self.timer <= 0:
                self._next_mode(rng)
            elif self.mode == "walk" and not turning and rng.random() < 1 / (10 * fps):
                self._turn(rng)
        if turning:  # half a turn in about 0.7 s
            step = math.pi / (0.7 * fps)
            delta = self.target_heading - self.heading
            if abs(delta) <= step:  # done: keep the angles small
                self.heading = self.target_heading = math.remainder(self.target_heading, 2 * math.pi)
            else:
                self.heading += math.copysign(step, delta)
        self._move()

    def _turn(self, rng: np.random.Generator) -> None:
        self.target_heading = self.heading + (math.pi if rng.random() < 0.5 else -math.pi)
        self.return_after = rng.uniform(0.3, 1.2) * self.settings.fps

    def _next_mode(self, rng: np.random.Generator) -> None:
        fps, r = self.settings.fps, rng.random()
        if r < 0.7:
            self.mode, self.timer = "walk", rng.uniform(2, 5) * fps
            self.lane = float(np.clip(self.lane + rng.normal(0, 0.1) * self.settings.height,
                                      0.5 * self.settings.height, 0.98 * self.settings.height))
        elif r < 0.85:
            self.mode, self.timer = "graze", rng.uniform(1, 2) * fps
        else:
            self.mode, self.timer = "look", rng.uniform(0.5, 1.5) * fps
            self.yaw_target = rng.choice([-0.6, 0.6])

    def _move(self) -> None:
        fps, walking = self.settings.fps, self.mode == "walk"

        def ease(value: float, target: float, rate: float = 0.15) -> float:
            return value + (target - value) * rate

        self.stride = ease(self.stride, 0.4 if walking else 0.0)
        speed_px = self.speed * self.scale() / fps * (self.stride / 0.4)
        self.x += math.cos(self.heading) * speed_px
        self.ground -= 0.3 * math.sin(self.heading) * speed_px  # walking away climbs the frame
        if walking:
            self.ground = ease(self.ground, self.lane, 0.02)
        self.ground = min(max(self.ground, 0.45 * self.settings.height), self.settings.height)
        self.phase += 2 * math.pi * self.speed / (1.3 * self.appearance.shape.leg_length) / fps * (self.stride / 0.4)
        grazing = self.mode == "graze"
        self.neck = ease(self.neck, -1.5 if grazing else 0.1 * math.sin(self.phase / 3), 0.1)
        self.head = ease(self.head, -1.4 if grazing else -0.3 + 0.15 * math.sin(self.phase / 2), 0.1)
        self.yaw = ease(self.yaw, self.yaw_target if self.mode == "look" else 0.0, 0.1)


def _foreground_occluder(rng: np.random.Generator, width: int, height: int) -> tuple[Shape, ...]:
    """A tree trunk across the whole height or a bush at the bottom of the frame."""
    x = rng.uniform(0.15, 0.85) * width
    shade = rng.uniform(0.6, 1.3)
    if rng.random() < 0.5:
        thickness = rng.uniform(0.03, 0.07) * width
        color = tuple(int(c) for c in np.clip(np.array([40, 70, 100]) * shade, 0, 255))
        points = np.array([[x, -thickness], [x + rng.normal(0, 0.02 * width), height + thickness]])
        return (Shape("line", points, (thickness,), color),)
    n = int(rng.integers(4, 9))
    centres = np.stack([x + rng.normal(0, 0.06 * width, n), height * (1 - rng.uniform(0, 0.12, n))], 1)
    radii = rng.uniform(0.06, 0.13, n) * height
    greens = np.clip(np.array([40, 130, 50]) * shade * rng.uniform(0.7, 1.2, (n, 1)), 0, 255).astype(int)
    return tuple(Shape("circle", c[None], (r,), tuple(int(v) for v in g)) for c, r, g in zip(centres, radii, greens))


def _start(rng: np.random.Generator, k: int, settings: VideoSettings) -> tuple[float, float, float]:
    """Start x, ground line and heading of animal ``k``: 0 and 1 face each other in nearby lanes."""
    width, height = settings.width, settings.height
    if k < 2:
        ground = height * (0.72 + (0.1 if k == 1 else 0.0) + rng.normal(0, 0.02))
        x = width * (rng.uniform(0.05, 0.25) if k == 0 else rng.uniform(0.75, 0.95))
        return x, ground, 0.0 if k == 0 else math.pi
    x = width * rng.uniform(-0.2, 1.2)
    heading = 0.0 if x < width / 2 else math.pi
    return x, height * rng.uniform(0.5, 0.98), heading


def _cast(settings: VideoSettings
          ) -> tuple[np.random.Generator, np.ndarray, int, list[tuple[Shape, ...]], list[_Walker]]:
    """The random generator after setup, the background and its kind, the occluders and the animals."""
    rng = np.random.default_rng(settings.seed)
    width, height = settings.width, settings.height
    photos = load_photos(settings.background_dir) if settings.background_dir is not None else ()
    background, kind = sample_background(rng, width, height, photos)
    occluders = [_foreground_occluder(rng, width, height) for _ in range(settings.num_occluders)]
    walkers = [
        _Walker(rng, sample_appearance(rng), settings, *_start(rng, k, settings)) for k in range(settings.num_animals)
    ]
    return rng, background, kind, occluders, walkers


def iter_video(settings: VideoSettings, every: int = 1) -> Iterator[VideoFrame]:
    """Render the clip ``settings`` describes frame by frame, with its ground truth.

    With ``every > 1`` only frames ``0, every, 2 * every, ...`` are drawn and yielded; the animals
    move through the others all the same (those frames are the clip's own, not a faster clip).
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    rng, background, kind, occluders, walkers = _cast(settings)
    size = np.array([settings.width, settings.height] * 2)
    for index in range(settings.num_frames):
        t = index / settings.fps
        order = np.argsort([w.ground for w in walkers], kind="stable")  # farthest first
        animals = [(walkers[i].appearance, walkers[i].state(t)) for i in order]
        drawn = index % every == 0
        if drawn:
            image, labels = render_scene(background, animals, occluders)
            boxes = labels.boxes
        else:  # only where the animals are, for their behaviour at the frame edge
            boxes = np.clip(np.stack([build_animal(*animal).box for animal in animals]), 0, size)
        visible = (boxes[:, 2:] - boxes[:, :2] > 0).all(1)
        if drawn:
            in_frame = np.flatnonzero(visible)
            yield VideoFrame(index=index, image=image, track_ids=order[in_frame] + 1, labels=labels[in_frame],
                             background_kind=kind)
        for walker, seen in zip(walkers, visible[np.argsort(order)]):
            walker.step(rng, bool(seen))


def frame_record(frame: VideoFrame) -> dict:
    """The ground-truth JSON entry of one frame."""
    animals = []
    for track_id, box, keypoints in zip(frame.track_ids, frame.labels.boxes, frame.labels.keypoints):
        animals.append({
            "track_id": int(track_id),
            "bbox": list(coco_bbox(box)),
            "keypoints": [[round(float(x), 2), round(float(y), 2), int(v)] for x, y, v in keypoints],
        })
    animals.sort(key=lambda a: a["track_id"])
    return {"frame": frame.index, "animals": animals}


def render_video(out_path: Path, settings: VideoSettings, gt_path: Path | None = None) -> dict:
    """Write the clip to ``out_path`` (mp4v) and its ground truth to ``gt_path`` (default:
    ``out_path`` with a ``.json`` suffix). Returns the ground truth as written."""
    out_path = Path(out_path)
    gt_path = out_path.with_suffix(".json") if gt_path is None else Path(gt_path)
    if gt_path == out_path:
        raise ValueError(f"the ground-truth path must differ from the video path {out_path}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    gt_path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    writer = cv2.VideoWriter(str(out_path), fourcc, settings.fps, (settings.width, settings.height))
    if not writer.isOpened():
        raise OSError(f"OpenCV could not open a mp4v video writer for {out_path}")
    frames = []
    try:
        for frame in tqdm(iter_video(settings), total=settings.num_frames, desc="synth video", unit="frame"):
            writer.write(frame.image)
            frames.append(frame_record(frame))
    finally:
        writer.release()
    appearances = [walker.appearance for walker in _cast(settings)[4]]
    truth = {
        "fps": settings.fps, "width": settings.width, "height": settings.height,
        "num_frames": settings.num_frames, "seed": settings.seed,
        "animals": [{"track_id": k + 1, "category_id": a.species.category_id, "species": a.species.name}
                    for k, a in enumerate(appearances)],
        "frames": frames,
    }
    gt_path.write_text(json.dumps(truth))
    logger.info("wrote %d frames to %s and ground truth to %s", settings.num_frames, out_path, gt_path)
    return truth
