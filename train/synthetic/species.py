"""Body-shape presets of the synthetic quadrupeds, named after AP-10K species.

Each preset borrows an AP-10K category (its id, species name and family) so that a
synthetic dataset's ``categories`` table reads like AP-10K's. Lengths are in torso
lengths (the torso of every animal is 1 long), angles in radians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

#: Coat patterns the renderer knows.
PATTERNS: tuple[str, ...] = ("plain", "spots", "stripes", "patches")

Color = tuple[int, int, int]


@dataclass(frozen=True)
class BodyShape:
    """Proportions of one animal, in torso lengths (angles in radians).

    Attributes:
        body_height: torso height.
        body_width: torso width (left to right); sets how far apart the far and near legs are.
        leg_length: shoulder-to-paw length of a straight leg.
        leg_thickness: thickness of the upper leg; the lower leg is thinner.
        neck_length: length from the torso to the back of the head.
        neck_thickness: thickness of the neck.
        neck_angle: rest angle of the neck above the horizontal.
        head_length: nose-to-back length of the head.
        head_height: height of the head; its width is 0.85 of this.
        tail_length: length of the tail.
        tail_thickness: thickness of the tail at its root.
        tail_angle: rest angle of the tail above the horizontal (negative hangs down).
        ear_size: height of an ear.
    """

    body_height: float
    body_width: float
    leg_length: float
    leg_thickness: float
    neck_length: float
    neck_thickness: float
    neck_angle: float
    head_length: float
    head_height: float
    tail_length: float
    tail_thickness: float
    tail_angle: float
    ear_size: float

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value):
                raise ValueError(f"{f.name} must be finite, got {value}")
            if f.name not in ("neck_angle", "tail_angle") and value <= 0:
                raise ValueError(f"{f.name} must be positive, got {value}")

    def jittered(self, rng: np.random.Generator, spread: float = 0.12) -> "BodyShape":
        """A copy with every length scaled by a factor in [1 - spread, 1 + spread] and angles nudged."""
        if not 0 <= spread < 1:
            raise ValueError(f"spread must be in [0, 1), got {spread}")
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("neck_angle", "tail_angle"):
                values[f.name] = value + float(rng.uniform(-0.2, 0.2))
            else:
                values[f.name] = value * float(rng.uniform(1 - spread, 1 + spread))
        return replace(self, **values)


@dataclass(frozen=True)
class Species:
    """A body-shape preset borrowing an AP-10K category.

    Attributes:
        category_id: the AP-10K category id of ``name``.
        name: AP-10K species name (the category's ``name``).
        family: AP-10K family (the category's ``supercategory``).
        shape: typical proportions.
        colors: typical coat colours (BGR).
        pattern_colors: typical colours of the coat pattern (BGR).
        patterns: coat patterns this species may have, from :data:`PATTERNS`.
    """

    category_id: int
    name: str
    family: str
    shape: BodyShape
    colors: tuple[Color, ...]
    pattern_colors: tuple[Color, ...]
    patterns: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.category_id < 1:
            raise ValueError(f"category_id must be >= 1, got {self.category_id}")
        if not self.colors or not self.pattern_colors:
            raise ValueError(f"species {self.name!r} needs at least one colour and one pattern colour")
        unknown = set(self.patterns) - set(PATTERNS)
        if not self.patterns or unknown:
            raise ValueError(f"patterns of {self.name!r} must be a non-empty subset of {PATTERNS}, got {self.patterns}")


def _shape(
    body_height: float, leg_length: float, neck_length: float, neck_angle: float, head_length: float,
    head_height: float, tail_length: float, tail_angle: float, *, body_width: float = 0.34,
    leg_thickness: float = 0.09, neck_thickness: float = 0.16, tail_thickness: float = 0.04, ear_size: float = 0.08,
) -> BodyShape:
    return BodyShape(
        body_height=body_height, body_width=body_width, leg_length=leg_length, leg_thickness=leg_thickness,
        neck_length=neck_length, neck_thickness=neck_thickness, neck_angle=neck_angle, head_length=head_length,
        head_height=head_height, tail_length=tail_length, tail_thickness=tail_thickness, tail_angle=tail_angle,
        ear_size=ear_size,
    )


_BROWNS: tuple[Color, ...] = ((40, 70, 120), (30, 50, 90), (60, 100, 150), (20, 30, 50))
_GREYS: tuple[Color, ...] = ((110, 110, 110), (150, 150, 150), (80, 85, 90))
_DARK: tuple[Color, ...] = ((20, 20, 20), (30, 35, 40))
_WHITES: tuple[Color, ...] = ((225, 230, 235), (200, 210, 215))

#: The presets, in category-id order.
SPECIES: tuple[Species, ...] = (
    Species(5, "cow", "Bovidae", _shape(0.55, 0.55, 0.25, 0.3, 0.34, 0.2, 0.55, -1.3, body_width=0.42,
            leg_thickness=0.1, tail_thickness=0.025), _WHITES + _BROWNS[:2], _DARK + _BROWNS[1:2],
            ("patches", "plain")),
    Species(6, "sheep", "Bovidae", _shape(0.62, 0.45, 0.22, 0.5, 0.26, 0.16, 0.15, -1.0, body_width=0.45,
            leg_thickness=0.07, tail_thickness=0.06), ((200, 220, 230), (170, 190, 200)), _DARK, ("plain",)),
    Species(8, "dog", "Canidae", _shape(0.4, 0.6, 0.3, 0.8, 0.32, 0.17, 0.42, 0.4, ear_size=0.1),
            _BROWNS + _WHITES[:1] + _DARK[:1], _DARK + _WHITES[:1], ("plain", "patches", "spots")),
    Species(9, "fox", "Canidae", _shape(0.36, 0.48, 0.24, 0.7, 0.3, 0.15, 0.62, -0.3, leg_thickness=0.07,
            tail_thickness=0.1, ear_size=0.11), ((30, 90, 200), (40, 110, 210)), _WHITES + _DARK, ("plain",)),
    Species(10, "wolf", "Canidae", _shape(0.42, 0.62, 0.3, 0.7, 0.34, 0.18, 0.48, -0.6, tail_thickness=0.08,
            ear_size=0.1), _GREYS + _BROWNS[2:3], _WHITES + _DARK, ("plain", "patches")),
    Species(17, "deer", "Cervidae", _shape(0.42, 0.82, 0.42, 1.0, 0.3, 0.14, 0.12, 0.3, leg_thickness=0.06,
            tail_thickness=0.05, ear_size=0.1), ((50, 100, 160), (40, 80, 130)), _WHITES, ("plain", "spots")),
    Species(20, "elephant", "Elephantidae", _shape(0.75, 0.7, 0.1, 0.2, 0.42, 0.4, 0.3, -1.4, body_width=0.5,
            leg_thickness=0.17, neck_thickness=0.3, tail_thickness=0.03, ear_size=0.2), _GREYS, _GREYS, ("plain",)),
    Species(21, "horse", "Equidae", _shape(0.44, 0.78, 0.46, 0.95, 0.4, 0.16, 0.45, -1.2, leg_thickness=0.08,
            neck_thickness=0.18, tail_thickness=0.07, ear_size=0.07), _BROWNS + _WHITES[1:] + _DARK[:1],
            _WHITES + _DARK, ("plain", "patches")),
    Species(22, "zebra", "Equidae", _shape(0.45, 0.68, 0.42, 0.9, 0.38, 0.17, 0.4, -1.2, leg_thickness=0.08,
            neck_thickness=0.18, tail_thickness=0.04, ear_size=0.08), _WHITES, _DARK, ("stripes",)),
    Species(24, "cat", "Felidae", _shape(0.36, 0.5, 0.18, 0.7, 0.24, 0.2, 0.8, 0.5, leg_thickness=0.07,
            neck_thickness=0.14, tail_thickness=0.035, ear_size=0.09), _GREYS + _BROWNS[2:3] + _DARK[:1],
            _DARK + _WHITES[:1], ("plain", "stripes", "patches")),
    Species(28, "leopard", "Felidae", _shape(0.38, 0.55, 0.22, 0.6, 0.28, 0.22, 0.8, -0.5, tail_thickness=0.05,
            ear_size=0.06), ((60, 160, 210), (80, 180, 220)), _DARK, ("spots",)),
    Species(32, "tiger", "Felidae", _shape(0.4, 0.55, 0.22, 0.6, 0.3, 0.24, 0.75, -0.6, leg_thickness=0.1,
            tail_thickness=0.05, ear_size=0.06), ((20, 110, 220), (30, 130, 230)), _DARK, ("stripes",)),
    Species(33, "giraffe", "Giraffidae", _shape(0.5, 1.1, 1.0, 1.2, 0.3, 0.12, 0.5, -1.3, leg_thickness=0.07,
            neck_thickness=0.14, tail_thickness=0.025, ear_size=0.07), ((90, 170, 220), (100, 190, 230)),
            ((30, 60, 110), (20, 40, 80)), ("patches",)),
    Species(48, "pig", "Suidae", _shape(0.55, 0.35, 0.1, 0.1, 0.32, 0.26, 0.12, 0.6, body_width=0.45,
            leg_thickness=0.09, neck_thickness=0.3, tail_thickness=0.025), ((170, 170, 230), (150, 160, 210)),
            _DARK, ("plain", "patches")),
    Species(51, "brown bear", "Ursidae", _shape(0.55, 0.45, 0.16, 0.3, 0.32, 0.26, 0.06, 0.2, body_width=0.48,
            leg_thickness=0.15, neck_thickness=0.3, tail_thickness=0.05, ear_size=0.06), _BROWNS, _DARK, ("plain",)),
)


def species_by_name(name: str) -> Species:
    """The preset called ``name`` (an AP-10K species name such as ``"horse"``)."""
    for species in SPECIES:
        if species.name == name:
            return species
    raise ValueError(f"unknown species {name!r}; known: {[s.name for s in SPECIES]}")
