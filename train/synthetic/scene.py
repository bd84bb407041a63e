"""Scenes of synthetic animals: drawing, occluders and AP-10K-style visibility labels.

Visibility flags follow AP-10K:

- ``v = 0`` the keypoint is outside the image, or it is the far eye hidden behind the head
  (AP-10K leaves an eye it cannot see unlabelled); its coordinates are still the true ones here,
  writers zero them where the format asks.
- ``v = 1`` inside the image but covered by a nearer animal or by an occluder.
- ``v = 2`` otherwise. Legs hidden behind the animal's *own* body stay ``v = 2``, as AP-10K
  annotators label them by their evident position; only other objects change a flag.

Occlusion is read off an owner mask: every animal is drawn, farthest first, into a uint8 mask
with its draw index + 1 (occluders with 255), and a keypoint is occluded when the pixel under it
belongs to something drawn later.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pose.keypoints import NUM_KEYPOINTS
from train.synthetic.animal import (
    AnimalAppearance,
    AnimalState,
    Shape,
    build_animal,
    sample_appearance,
    standing_height,
)
from train.synthetic.background import sample_background

#: Owner-mask value of occluders.
OCCLUDER_ID: int = 255
_SHIFT = 4
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class SceneLabels:
    """Ground truth of the animals in one image, in drawing order (farthest first).

    Attributes:
        keypoints: (N, 17, 3) float32 rows of (x, y, v), x and y in image pixels, v in {0, 1, 2}.
        boxes: (N, 4) float32 ``xyxy`` boxes around each whole animal, clipped to the image.
        category_ids: (N,) int64 AP-10K category ids.
        visible_pixels: (N,) int64 pixels of each animal's silhouette that nothing covers.
    """

    keypoints: np.ndarray
    boxes: np.ndarray
    category_ids: np.ndarray
    visible_pixels: np.ndarray

    def __post_init__(self) -> None:
        keypoints = np.asarray(self.keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 3)
        n = len(keypoints)
        arrays = {
            "boxes": np.asarray(self.boxes, np.float32).reshape(-1, 4),
            "category_ids": np.asarray(self.category_ids, np.int64).reshape(-1),
            "visible_pixels": np.asarray(self.visible_pixels, np.int64).reshape(-1),
        }
        for name, array in arrays.items():
            if len(array) != n:
                raise ValueError(f"{name} must have {n} rows like keypoints, got {len(array)}")
            object.__setattr__(self, name, array)
        if not np.isin(keypoints[..., 2], (0, 1, 2)).all():
            raise ValueError("visibility flags keypoints[..., 2] must be 0, 1 or 2")
        object.__setattr__(self, "keypoints", keypoints)

    def __len__(self) -> int:
        return len(self.keypoints)

    def __getitem__(self, index: np.ndarray | slice | int) -> "SceneLabels":
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return SceneLabels(
            self.keypoints[index], self.boxes[index], self.category_ids[index], self.visible_pixels[index]
        )

    @property
    def num_labelled(self) -> np.ndarray:
        """(N,) number of keypoints with v > 0 (AP-10K's ``num_keypoints``)."""
        return (self.keypoints[..., 2] > 0).sum(1)


def draw_shapes(
    image: np.ndarray, shapes: Sequence[Shape], owner: np.ndarray | None = None, owner_id: int = 0
) -> None:
    """Draw ``shapes`` in order onto ``image`` (anti-aliased) and their solid ones onto the
    uint8 ``owner`` mask with value ``owner_id``. Both are modified in place."""
    for shape in shapes:
        targets = [(image, shape.color, cv2.LINE_AA)]
        if owner is not None and shape.solid:
            targets.append((owner, owner_id, cv2.LINE_8))
        pts = np.round(shape.points * _ONE).astype(np.int32)
        for target, color, line_type in targets:
            _draw(target, shape, pts, color, line_type)


def _draw(target: np.ndarray, shape: Shape, pts: np.ndarray, color: object, line_type: int) -> None:
    if shape.kind == "ellipse":
        a, b, angle = shape.size
        axes = (max(1, round(a * _ONE)), max(1, round(b * _ONE)))
        cv2.ellipse(target, pts[0].tolist(), axes, angle, 0, 360, color, -1, line_type, _SHIFT)
    elif shape.kind == "line":
        cv2.line(target, pts[0].tolist(), pts[1].tolist(), color, max(1, round(shape.size[0])), line_type, _SHIFT)
    elif shape.kind == "polyline":
        cv2.polylines(target, [pts], False, color, max(1, round(shape.size[0])), line_type, _SHIFT)
    elif shape.kind == "circle":
        cv2.circle(target, pts[0].tolist(), max(1, round(shape.size[0] * _ONE)), color, -1, line_type, _SHIFT)
    elif shape.kind == "polygon":
        cv2.fillConvexPoly(target, pts, color, line_type, _SHIFT)
    else:
        raise ValueError(f"unknown shape kind {shape.kind!r}")


def render_scene(
    background: np.ndarray,
    animals: Sequence[tuple[AnimalAppearance, AnimalState]],
    occluders: Sequence[Sequence[Shape]] = (),
) -> tuple[np.ndarray, SceneLabels]:
    """Draw ``animals`` (farthest first) and then ``occluders`` over a copy of ``background``.

    Args:
        background: (H, W, 3) uint8 BGR image.
        animals: (appearance, state) pairs in drawing order, at most 254.
        occluders: groups of shapes drawn in front of every animal.

    Returns:
        The (H, W, 3) uint8 image and the labels of ``animals`` in the same order.
    """
    if len(animals) >= OCCLUDER_ID:
        raise ValueError(f"at most {OCCLUDER_ID - 1} animals per scene, got {len(animals)}")
    image = np.ascontiguousarray(background).copy()
    owner = np.zeros(image.shape[:2], np.uint8)
    geometries = [build_animal(appearance, state) for appearance, state in animals]
    for i, geometry in enumerate(geometries):
        draw_shapes(image, geometry.shapes, owner, i + 1)
    for occluder in occluders:
        draw_shapes(image, occluder, owner, OCCLUDER_ID)
    if not geometries:
        return image, SceneLabels(np.zeros((0, NUM_KEYPOINTS, 3)), np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    xy = np.stack([g.keypoints for g in geometries])
    hidden = np.stack([g.self_hidden for g in geometries])
    flags = visibility_flags(xy, hidden, owner)
    height, width = owner.shape
    boxes = np.clip(np.stack([g.box for g in geometries]), 0, [width, height, width, height])
    visible = [cv2.countNonZero((owner == i + 1).view(np.uint8)) for i in range(len(geometries))]
    labels = SceneLabels(
        keypoints=np.concatenate([xy, flags[..., None]], -1),
        boxes=boxes,
        category_ids=[appearance.species.category_id for appearance, _ in animals],
        visible_pixels=visible,
    )
    return image, labels


def visibility_flags(xy: np.ndarray, self_hidden: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """AP-10K flags (N, 17) of keypoints ``xy`` (N, 17, 2) of animals drawn with owner ids
    1..N into ``owner`` (H, W); ``self_hidden`` (N, 17) marks keypoints the animal hides itself."""
    height, width = owner.shape
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= width - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= height - 1)
    cols = np.clip(np.round(xy[..., 0]), 0, width - 1).astype(np.intp)
    rows = np.clip(np.round(xy[..., 1]), 0, height - 1).astype(np.intp)
    occluded = owner[rows, cols] > np.arange(1, len(xy) + 1)[:, None]
    return np.where(~inside | self_hidden, 0, np.where(occluded, 1, 2)).astype(np.float32)


def sample_state(rng: np.random.Generator, x: float, y: float, scale: float) -> AnimalState:
    """A random pose at torso centre (x, y) px with torso length ``scale`` px: mostly side
    views facing either way, sometimes turned, standing, walking, running or grazing."""
    heading = (0.0 if rng.random() < 0.5 else math.pi) + (
        rng.normal(0, 0.25) if rng.random() < 0.8 else rng.uniform(-1.2, 1.2)
    )
    stride = 0.0 if rng.random() < 0.25 else rng.uniform(0.1, 0.65)
    if rng.random() < 0.15:  # grazing
        neck_pitch, head_pitch = rng.uniform(-1.9, -1.0), rng.uniform(-1.7, -1.0)
    else:
        neck_pitch, head_pitch = rng.normal(0, 0.2), rng.uniform(-0.9, 0.2)
    return AnimalState(
        x=float(x), y=float(y), scale=float(scale), heading=float(heading),
        gait_phase=float(rng.uniform(0, 2 * math.pi)), stride=float(stride), neck_pitch=float(neck_pitch),
        head_pitch=float(head_pitch), head_yaw=float(rng.normal(0, 0.25)), tail_angle=float(rng.normal(0, 0.3)),
        body_pitch=float(rng.normal(0, 0.05)),
    )


def sample_occluder(rng: np.random.Generator, target: np.ndarray, image_size: tuple[int, int]) -> tuple[Shape, ...]:
    """A post, bush, rock or branch placed over part of the ``xyxy`` box ``target``.
    ``image_size`` is (width, height)."""
    width, height = image_size
    x0, y0, x1, y1 = target
    bw, bh = max(x1 - x0, 4.0), max(y1 - y0, 4.0)
    cx, cy = rng.uniform(x0, x1), rng.uniform(y0 + 0.3 * bh, y1)
    shade = rng.uniform(0.5, 1.3)
    kind = int(rng.integers(4))
    if kind == 0:  # post or trunk
        color = tuple(int(c) for c in np.clip(np.array([40, 70, 100]) * shade, 0, 255))
        top = rng.uniform(-0.1, 0.6) * height
        thickness = rng.uniform(0.06, 0.25) * bw
        ends = np.array([[cx, top], [cx + rng.normal(0, 0.05 * bw), height + thickness]])
        return (Shape("line", ends, (thickness,), color),)
    if kind == 1:  # bush: a cluster of leafy circles
        n = int(rng.integers(3, 8))
        centres = np.stack([cx + rng.normal(0, 0.2 * bw, n), cy + rng.normal(0, 0.12 * bh, n)], 1)
        radii = rng.uniform(0.08, 0.2, n) * max(bw, bh)
        greens = np.clip(np.array([40, 130, 50]) * shade * rng.uniform(0.7, 1.2, (n, 1)), 0, 255).astype(int)
        return tuple(
            Shape("circle", c[None], (r,), tuple(int(v) for v in g)) for c, r, g in zip(centres, radii, greens)
        )
    if kind == 2:  # rock
        color = tuple(int(c) for c in np.clip(np.array([120, 120, 115]) * shade, 0, 255))
        axes = (rng.uniform(0.15, 0.4) * bw, rng.uniform(0.1, 0.3) * bh, rng.uniform(-20, 20))
        return (Shape("ellipse", np.array([[cx, y1 - 0.5 * axes[1]]]), axes, color),)
    color = tuple(int(c) for c in np.clip(np.array([30, 60, 80]) * shade, 0, 255))  # branch
    angle = rng.uniform(-0.8, 0.8)
    half = np.array([math.cos(angle), math.sin(angle)]) * 0.8 * max(bw, bh)
    return (Shape("line", np.array([[cx, cy] - half, [cx, cy] + half]), (rng.uniform(0.03, 0.1) * bh,), color),)


def sample_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    max_animals: int = 3,
    photos: Sequence[np.ndarray] = (),
) -> tuple[np.ndarray, SceneLabels, int]:
    """One random dataset image: background, 1..``max_animals`` animals (often overlapping,
    sometimes cut by the border), maybe occluders, then photometric jitter.

    Returns:
        The (height, width, 3) uint8 BGR image, the labels of every animal drawn, and the
        background kind index (see :data:`train.synthetic.background.BACKGROUND_KINDS`).
    """
    if max_animals < 1:
        raise ValueError(f"max_animals must be >= 1, got {max_animals}")
    background, kind = sample_background(rng, width, height, photos)
    weights = 0.5 ** np.arange(max_animals)
    count = int(rng.choice(max_animals, p=weights / weights.sum())) + 1
    size = min(width, height)
    animals: list[tuple[AnimalAppearance, AnimalState]] = []
    grounds: list[float] = []
    for i in range(count):
        appearance = sample_appearance(rng)
        scale = size * rng.uniform(0.22, 0.5)
        if i == 0:
            x, ground = rng.uniform(0.25, 0.75) * width, rng.uniform(0.55, 1.0) * height
        elif rng.random() < 0.5:  # next to the previous animal, so that they overlap
            x = animals[-1][1].x + rng.choice([-1, 1]) * rng.uniform(0.2, 0.8) * scale
            ground = grounds[-1] + rng.normal(0, 0.08) * height
        else:
            x, ground = rng.uniform(-0.1, 1.1) * width, rng.uniform(0.4, 1.1) * height
        y = ground - standing_height(appearance.shape) * scale
        animals.append((appearance, sample_state(rng, x, y, scale)))
        grounds.append(ground)
    order = np.argsort(grounds, kind="stable")  # higher on the ground = farther
    animals = [animals[i] for i in order]
    occluders = []
    if rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 3))):
            appearance, state = animals[int(rng.integers(len(animals)))]
            occluders.append(sample_occluder(rng, build_animal(appearance, state).box, (width, height)))
    image, labels = render_scene(background, animals, occluders)
    return photometric_jitter(rng, image), labels, kind


def photometric_jitter(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Random contrast, brightness and sometimes a slight blur."""
    out = cv2.convertScaleAbs(image, alpha=float(rng.uniform(0.75, 1.25)), beta=float(rng.uniform(-25, 25)))
    if rng.random() < 0.2:
        out = cv2.GaussianBlur(out, (3, 3), 0)
    return out
