"""A parametric quadruped: appearance + state -> 17 AP-10K keypoints and drawable shapes.

Frames and units:

- **Body frame**: origin at the torso centre, x forward (towards the nose), y up, z towards the
  animal's *left*; lengths in torso lengths.
- **World**: the body frame turned about the vertical by the heading psi. psi = 0 faces image
  right, which puts the animal's left side away from the camera (the far side); psi = pi faces
  left (left side near). Depth Z grows away from the camera.
- **Image**: orthographic with the camera slightly above, ``u = x + scale * X``,
  ``v = y - scale * (Y + ELEVATION * Z)``: farther parts appear a little higher, so far legs
  peek out above the near ones. Pixel centres sit at integer coordinates (OpenCV's and
  mmpose's convention).

Mirroring the image about its vertical centre line equals the state of :func:`mirrored`
with left and right keypoints swapped (``keypoints[FLIP_INDEX]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from pose.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS
from train.synthetic.species import PATTERNS, SPECIES, BodyShape, Color, Species

#: How much farther parts rise in the image per unit of depth (camera elevation).
ELEVATION: float = 0.3
#: An eye is drawn (and labelled) when its surface normal's depth component is below this.
EYE_VISIBLE_DEPTH: float = 0.15

_K = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
#: Legs in the order front-left, front-right, hind-left, hind-right: (top, middle, paw) indices.
_LEGS = np.array(
    [
        [_K["L_Shoulder"], _K["L_Elbow"], _K["L_F_Paw"]],
        [_K["R_Shoulder"], _K["R_Elbow"], _K["R_F_Paw"]],
        [_K["L_Hip"], _K["L_Knee"], _K["L_B_Paw"]],
        [_K["R_Hip"], _K["R_Knee"], _K["R_B_Paw"]],
    ]
)
_LEG_SIDE = np.array([1.0, -1.0, 1.0, -1.0])  # +1 left (z > 0), -1 right
_LEG_FRONT = np.array([True, True, False, False])
#: Lateral-sequence walk: hind-left, front-left, hind-right, front-right a quarter cycle apart.
#: Left and right legs of a pair are half a cycle apart, which makes mirroring exact.
_LEG_PHASE = 2 * math.pi * np.array([0.25, 0.75, 0.0, 0.5])
#: Rest angles from straight down (positive swings the lower end forward).
_FRONT_UPPER, _FRONT_BEND = 0.05, -0.1
_HIND_UPPER, _HIND_BEND = 0.3, -0.6
_ATTACH_HEIGHT = -0.12  # shoulder/hip height, in body heights below the torso centre
_PAW_RADIUS = 0.6  # in leg thicknesses


@dataclass(frozen=True)
class AnimalAppearance:
    """What an animal looks like; constant over a video.

    Attributes:
        species: the preset it was drawn from (gives the category id).
        shape: its own proportions.
        body_color: coat colour (BGR).
        pattern_color: colour of the coat pattern (BGR).
        pattern: one of :data:`PATTERNS`.
        marks: pattern marks as (u, v, size) on the torso's near surface, u and v in [-1, 1]
            along its length and height, size in torso lengths.
    """

    species: Species
    shape: BodyShape
    body_color: Color
    pattern_color: Color
    pattern: str = "plain"
    marks: tuple[tuple[float, float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}, got {self.pattern!r}")
        for name in ("body_color", "pattern_color"):
            color = getattr(self, name)
            if len(color) != 3 or not all(0 <= c <= 255 for c in color):
                raise ValueError(f"{name} must be three values in [0, 255], got {color}")


@dataclass(frozen=True)
class AnimalState:
    """Where an animal is and how it stands in one image; angles in radians.

    Attributes:
        x, y: torso centre in image pixels.
        scale: torso length in pixels.
        heading: 0 faces image right, pi faces left, pi/2 walks away from the camera.
        gait_phase: walking cycle phase.
        stride: leg swing amplitude (0 stands still, about 0.4 walks, 0.7 runs).
        neck_pitch: added to the species' neck angle (negative lowers the head to graze).
        head_pitch: direction of the head above the horizontal.
        head_yaw: head turned towards the animal's left (positive) or right.
        tail_angle: added to the species' tail angle.
        body_pitch: torso tilt, nose up positive.
    """

    x: float
    y: float
    scale: float
    heading: float = 0.0
    gait_phase: float = 0.0
    stride: float = 0.0
    neck_pitch: float = 0.0
    head_pitch: float = -0.4
    head_yaw: float = 0.0
    tail_angle: float = 0.0
    body_pitch: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if not math.isfinite(getattr(self, f.name)):
                raise ValueError(f"{f.name} must be finite, got {getattr(self, f.name)}")
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if self.stride < 0:
            raise ValueError(f"stride must be >= 0, got {self.stride}")


@dataclass(frozen=True, slots=True)
class Shape:
    """One OpenCV drawing call in image pixels.

    Attributes:
        kind: ``"ellipse"``, ``"line"`` (rounded ends), ``"polyline"``, ``"polygon"`` (convex)
            or ``"circle"``.
        points: (n, 2) float coordinates: the centre for ellipses and circles.
        size: ellipse ``(semi_axis_1, semi_axis_2, angle_deg)``; line and polyline
            ``(thickness,)``; circle ``(radius,)``; polygon ``()``.
        color: BGR.
        solid: whether it belongs to the silhouette (drawn into occlusion masks).
    """

    kind: str
    points: np.ndarray
    size: tuple[float, ...]
    color: Color
    solid: bool = True


#: A group of shapes drawn together: (depth used to sort groups, shapes in drawing order).
Part = tuple[float, list[Shape]]


@dataclass(frozen=True)
class AnimalGeometry:
    """An animal laid out in the image.

    Attributes:
        keypoints: (17, 2) float64 keypoint coordinates in image pixels, AP-10K order.
        self_hidden: (17,) bool, keypoints hidden by the animal's own head (only the far eye).
        shapes: drawing calls, farthest first.
        box: (4,) float64 ``xyxy`` box around all shapes (not clipped to any image).
    """

    keypoints: np.ndarray
    self_hidden: np.ndarray
    shapes: tuple[Shape, ...]
    box: np.ndarray


def sample_appearance(rng: np.random.Generator, species: Species | None = None) -> AnimalAppearance:
    """A random animal: a species preset (random if None) with jittered proportions and coat."""
    if species is None:
        species = SPECIES[int(rng.integers(len(SPECIES)))]
    if rng.random() < 0.15:  # off-palette coats keep models from learning colour alone
        body_color = tuple(int(c) for c in rng.integers(0, 256, 3))
    else:
        base = np.array(species.colors[int(rng.integers(len(species.colors)))], np.float64)
        body_color = tuple(int(c) for c in np.clip(base * rng.uniform(0.8, 1.2) + rng.normal(0, 10, 3), 0, 255))
    pattern_color = species.pattern_colors[int(rng.integers(len(species.pattern_colors)))]
    pattern = species.patterns[int(rng.integers(len(species.patterns)))]
    return AnimalAppearance(
        species=species,
        shape=species.shape.jittered(rng),
        body_color=body_color,
        pattern_color=pattern_color,
        pattern=pattern,
        marks=_sample_marks(rng, pattern),
    )


def _sample_marks(rng: np.random.Generator, pattern: str) -> tuple[tuple[float, float, float], ...]:
    if pattern == "spots":
        n, size = int(rng.integers(14, 30)), (0.02, 0.045)
    elif pattern == "patches":
        n, size = int(rng.integers(2, 6)), (0.07, 0.14)
    elif pattern == "stripes":
        n, size = int(rng.integers(6, 13)), (0.015, 0.035)
    else:
        return ()
    if pattern == "stripes":  # u positions along the torso; v is unused
        u, v = np.sort(rng.uniform(-0.85, 0.75, n)), np.zeros(n)
    else:  # uniform over the central part of the torso's side
        radius, angle = np.sqrt(rng.uniform(0, 0.7, n)), rng.uniform(0, 2 * math.pi, n)
        u, v = radius * np.cos(angle), radius * np.sin(angle)
    sizes = rng.uniform(*size, n)
    return tuple((float(a), float(b), float(c)) for a, b, c in zip(u, v, sizes))


def standing_height(shape: BodyShape) -> float:
    """Height of the torso centre above the paws of a standing animal, in torso lengths."""
    return -_ATTACH_HEIGHT * shape.body_height + shape.leg_length * math.cos(_FRONT_UPPER)


def mirrored(state: AnimalState, width: int) -> AnimalState:
    """The state whose rendering is ``state``'s mirrored about the vertical centre line of an
    image ``width`` pixels wide, its left and right keypoints swapped."""
    return AnimalState(
        x=width - 1 - state.x, y=state.y, scale=state.scale, heading=math.pi - state.heading,
        gait_phase=state.gait_phase + math.pi, stride=state.stride, neck_pitch=state.neck_pitch,
        head_pitch=state.head_pitch, head_yaw=-state.head_yaw, tail_angle=state.tail_angle,
        body_pitch=state.body_pitch,
    )


class _Camera:
    """Body frame -> image for one animal state."""

    def __init__(self, state: AnimalState) -> None:
        c, s = math.cos(state.heading), math.sin(state.heading)
        # rows: image u, image v, world depth Z; columns: body x, y, z
        self.matrix = np.array([[c, 0.0, -s], [-ELEVATION * s, -1.0, -ELEVATION * c], [s, 0.0, c]])
        self.matrix[:2] *= state.scale
        self.origin = np.array([state.x, state.y])

    def image(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) body points -> (n, 2) image pixels."""
        return points @ self.matrix[:2].T + self.origin

    def depth(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) body points -> (n,) depth away from the camera, in torso lengths."""
        return points @ self.matrix[2]

    def ellipse(self, center: np.ndarray, axes: np.ndarray, color: Color) -> Shape:
        """The outline of the ellipsoid with semi-axis vectors ``axes`` (3 columns), as a Shape."""
        m = self.matrix[:2] @ axes
        cov = m @ m.T
        p, q, r = cov[0, 0], cov[0, 1], cov[1, 1]
        half, root = (p + r) / 2, math.hypot((p - r) / 2, q)
        angle = 0.5 * math.degrees(math.atan2(2 * q, p - r))
        major, minor = math.sqrt(half + root), math.sqrt(max(half - root, 0.0))
        return Shape("ellipse", self.image(center[None])[0:1], (major, minor, angle), color)


def _shade(color: Color, factor: float) -> Color:
    return tuple(int(min(255, c * factor)) for c in color)


def _far_side(color: Color) -> Color:
    """Far-side legs: darker, or lighter on a very dark coat, so that they stand apart."""
    return _shade(color, 0.7) if sum(color) > 210 else tuple(c + 45 for c in color)


def _rot_z(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def _head_basis(pitch: float, yaw: float) -> np.ndarray:
    """Rows: forward, up and left unit vectors of the head, in the body frame."""
    cp, sp, cy, sy = math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw)
    return np.array([[cp * cy, sp, cp * sy], [-sp * cy, cp, -sp * sy], [-sy, 0.0, cy]])


def _legs(shape: BodyShape, state: AnimalState) -> np.ndarray:
    """(4, 3, 3) body-frame points (top, middle, paw) of the legs FL, FR, HL, HR."""
    attach = np.zeros((4, 3))
    attach[:, 0] = np.where(_LEG_FRONT, 0.3, -0.32)
    attach[:, 1] = _ATTACH_HEIGHT * shape.body_height
    attach[:, 2] = _LEG_SIDE * 0.3 * shape.body_width
    attach = _rot_z(attach, state.body_pitch)
    phase = state.gait_phase + _LEG_PHASE
    swing = state.stride * np.sin(phase)
    lift = np.maximum(0.0, np.cos(phase))
    upper = np.where(_LEG_FRONT, _FRONT_UPPER, _HIND_UPPER) + swing
    lower = upper + np.where(_LEG_FRONT, _FRONT_BEND, _HIND_BEND) - 1.5 * state.stride * lift
    # hind legs are longer so that both pairs reach the ground at rest
    length = shape.leg_length * np.where(_LEG_FRONT, 1.0, math.cos(_FRONT_UPPER) / math.cos(_HIND_UPPER))
    knee = attach + 0.5 * length[:, None] * np.stack([np.sin(upper), -np.cos(upper), np.zeros(4)], 1)
    paw = knee + 0.5 * length[:, None] * np.stack([np.sin(lower), -np.cos(lower), np.zeros(4)], 1)
    return np.stack([attach, knee, paw], 1)


def build_animal(appearance: AnimalAppearance, state: AnimalState) -> AnimalGeometry:
    """Lay out one animal: its 17 keypoints and the shapes that draw it, farthest first.

    Parts are drawn back to front by depth: far legs, tail, torso, neck and head, near legs.
    The head and tail keep their usual side of the torso unless the animal faces well away
    from or towards the camera.
    """
    cam = _Camera(state)
    keypoints = np.zeros((NUM_KEYPOINTS, 3))
    legs, leg_parts = _leg_parts(appearance, state, cam)
    keypoints[_LEGS.reshape(-1)] = legs.reshape(-1, 3)
    head_points, self_hidden, head_part = _head_part(appearance, state, cam)
    for name, point in head_points.items():
        keypoints[_K[name]] = point
    keypoints[_K["Root of tail"]], tail_part = _tail_part(appearance, state, cam)
    parts = [*leg_parts, tail_part, _torso_part(appearance, state, cam), head_part]
    parts.sort(key=lambda part: -part[0])  # stable: equal depths keep the order above
    shapes = tuple(shape for _, group in parts for shape in group)
    return AnimalGeometry(
        keypoints=cam.image(keypoints), self_hidden=self_hidden, shapes=shapes, box=shapes_box(shapes)
    )


def _on_torso(x: float, y: float, state: AnimalState) -> np.ndarray:
    """Body-frame point (x, y, 0) of the torso, tilted with it."""
    return _rot_z(np.array([[x, y, 0.0]]), state.body_pitch)[0]


def _torso_part(appearance: AnimalAppearance, state: AnimalState, cam: _Camera) -> Part:
    shape = appearance.shape
    axes = _rot_z(np.diag([0.5, 0.5 * shape.body_height, 0.5 * shape.body_width]), state.body_pitch).T
    torso = [cam.ellipse(np.zeros(3), axes, appearance.body_color)]
    return 0.0, torso + _pattern_shapes(appearance, cam, axes, state.scale)


def _leg_parts(appearance: AnimalAppearance, state: AnimalState, cam: _Camera) -> tuple[np.ndarray, list[Part]]:
    """(4, 3, 3) body-frame leg points and one part per leg: thigh, shin and paw."""
    legs = _legs(appearance.shape, state)
    pixels = cam.image(legs.reshape(-1, 3)).reshape(4, 3, 2)
    depths = cam.depth(legs[:, 0])
    thick = appearance.shape.leg_thickness * state.scale
    parts = []
    for leg, depth in zip(pixels, depths):
        color = _far_side(appearance.body_color) if depth > 0 else appearance.body_color
        parts.append((float(depth), [
            Shape("line", leg[:2], (1.3 * thick,), color),
            Shape("line", leg[1:], (0.8 * thick,), color),
            Shape("circle", leg[2:], (_PAW_RADIUS * thick,), _shade(color, 0.45)),
        ]))
    return legs, parts


def _head_part(
    appearance: AnimalAppearance, state: AnimalState, cam: _Camera
) -> tuple[dict[str, np.ndarray], np.ndarray, Part]:
    """Body-frame neck, nose and eye keypoints, which keypoints the head hides, and the part
    (neck, far ear, head, near ear, eyes, nose)."""
    shape, color = appearance.shape, appearance.body_color
    neck_base = _on_torso(0.4, 0.15 * shape.body_height, state)
    neck_angle = shape.neck_angle + state.neck_pitch
    neck_end = neck_base + shape.neck_length * np.array([math.cos(neck_angle), math.sin(neck_angle), 0.0])
    forward, up, left = _head_basis(state.head_pitch, state.head_yaw)
    hl, hh, hw = shape.head_length, shape.head_height, 0.85 * shape.head_height
    centre = neck_end + 0.3 * hl * forward
    points = {"Neck": neck_base + 0.3 * (neck_end - neck_base), "Nose": centre + 0.44 * hl * forward - 0.05 * hh * up}
    hidden = np.zeros(NUM_KEYPOINTS, bool)
    ears: dict[bool, list[Shape]] = {True: [], False: []}  # keyed by "is on the far side"
    for side, eye in ((1.0, "L_Eye"), (-1.0, "R_Eye")):
        points[eye] = centre + 0.1 * hl * forward + 0.2 * hh * up + side * 0.42 * hw * left
        normal = (0.2 / hl) * forward + (0.4 / hh) * up + side * (0.84 / hw) * left  # ellipsoid gradient
        hidden[_K[eye]] = cam.depth(normal[None])[0] / np.linalg.norm(normal) >= EYE_VISIBLE_DEPTH
        base = centre - 0.25 * hl * forward + 0.38 * hh * up + side * 0.3 * hw * left
        es = shape.ear_size
        ear = np.stack([base - 0.35 * es * forward, base + 0.35 * es * forward, base + es * up - 0.4 * es * forward])
        is_far = bool(cam.depth(base[None])[0] > cam.depth(centre[None])[0])
        ears[is_far].append(Shape("polygon", cam.image(ear), (), _shade(color, 0.8)))
    head_axes = np.stack([0.5 * hl * forward, 0.5 * hh * up, 0.5 * hw * left], 1)
    eye_radius = max(1.0, 0.1 * hh * state.scale)
    shapes = [
        Shape("line", cam.image(np.stack([neck_base, neck_end])), (shape.neck_thickness * state.scale,), color),
        *ears[True],
        cam.ellipse(centre, head_axes, _shade(color, 1.05)),
        *ears[False],
        *(Shape("circle", cam.image(points[eye][None]), (eye_radius,), (15, 15, 15), solid=False)
          for eye in ("L_Eye", "R_Eye") if not hidden[_K[eye]]),
        Shape("circle", cam.image(points["Nose"][None]), (1.2 * eye_radius,), (25, 25, 35), solid=False),
    ]
    depth = float(cam.depth(centre[None])[0]) - 0.5 * shape.body_width
    return points, hidden, (depth, shapes)


def _tail_part(appearance: AnimalAppearance, state: AnimalState, cam: _Camera) -> tuple[np.ndarray, Part]:
    """Body-frame root of the tail and the tail: four tapering segments curling down."""
    shape = appearance.shape
    root = _on_torso(-0.47, 0.12 * shape.body_height, state)
    angles = shape.tail_angle + state.tail_angle - 0.15 * np.arange(4)
    steps = 0.25 * shape.tail_length * np.stack([-np.cos(angles), np.sin(angles), np.zeros(4)], 1)
    pixels = cam.image(np.concatenate([root[None], root + np.cumsum(steps, 0)]))
    thick, color = shape.tail_thickness * state.scale, _shade(appearance.body_color, 0.85)
    tail = [Shape("line", pixels[i : i + 2], (thick * (1 - 0.2 * i),), color) for i in range(4)]
    return root, (float(cam.depth(root[None])[0]) + 0.5 * shape.body_width, tail)


def _pattern_shapes(appearance: AnimalAppearance, cam: _Camera, torso_axes: np.ndarray, scale: float) -> list[Shape]:
    """Coat marks on the torso surface facing the camera; ``scale`` is pixels per torso length."""
    if not appearance.marks:
        return []
    marks = np.asarray(appearance.marks)
    near = -1.0 if cam.depth(torso_axes[:, 2][None])[0] > 0 else 1.0  # sign of z on the near surface
    color = appearance.pattern_color
    if appearance.pattern == "stripes":
        v = np.linspace(-0.85, 0.85, 5)
        out = []
        for u, _, size in marks:
            w = near * np.sqrt(np.maximum(0.0, 1 - u**2 - v**2))
            pts = cam.image(np.stack([np.full(5, u), v, w], 1) @ torso_axes.T)
            out.append(Shape("polyline", pts, (size * scale,), color, solid=False))
        return out
    u, v = marks[:, 0], marks[:, 1]
    w = near * np.sqrt(np.maximum(0.0, 1 - u**2 - v**2))
    pts = cam.image(np.stack([u, v, w], 1) @ torso_axes.T)
    return [Shape("circle", p[None], (size * scale,), color, solid=False) for p, size in zip(pts, marks[:, 2])]


def shapes_box(shapes: tuple[Shape, ...] | list[Shape]) -> np.ndarray:
    """(4,) ``xyxy`` box around the drawn extent of ``shapes``."""
    points = np.concatenate([s.points for s in shapes])
    pads = np.repeat(np.array([_half_extent(s) for s in shapes]), [len(s.points) for s in shapes], axis=0)
    return np.concatenate([(points - pads).min(0), (points + pads).max(0)])


def _half_extent(shape: Shape) -> tuple[float, float]:
    """How far ``shape`` reaches beyond its points in x and y."""
    if shape.kind == "ellipse":
        a, b, angle = shape.size
        t = math.radians(angle)
        c2, s2 = math.cos(t) ** 2, math.sin(t) ** 2
        return math.sqrt(a * a * c2 + b * b * s2), math.sqrt(a * a * s2 + b * b * c2)
    if shape.kind == "polygon":
        return 0.0, 0.0
    pad = shape.size[0] / 2 if shape.kind in ("line", "polyline") else shape.size[0]
    return pad, pad
