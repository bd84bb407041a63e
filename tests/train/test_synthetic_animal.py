"""train.synthetic.species and train.synthetic.animal: presets, pose model, mirroring."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pose.keypoints import FLIP_INDEX, KEYPOINT_NAMES, NUM_KEYPOINTS
from train.synthetic.animal import (
    AnimalAppearance,
    AnimalState,
    build_animal,
    mirrored,
    sample_appearance,
    standing_height,
)
from train.synthetic.species import SPECIES, BodyShape, species_by_name

K = {name: i for i, name in enumerate(KEYPOINT_NAMES)}


def test_species_borrow_ap10k_categories(samples_dir):
    table = json.loads((samples_dir / "ap10k" / "test_ap10k.json").read_text())["categories"]
    ap10k = {c["id"]: (c["name"], c["supercategory"]) for c in table}
    for species in SPECIES:
        assert ap10k[species.category_id] == (species.name, species.family)
    assert len({s.category_id for s in SPECIES}) == len(SPECIES)


@pytest.mark.parametrize(
    "field, value, message",
    [("leg_length", 0.0, "leg_length must be positive"), ("head_height", -1.0, "head_height must be positive"),
     ("neck_angle", math.nan, "neck_angle must be finite")],
)
def test_body_shape_rejects_bad_values(field, value, message):
    values = dict(vars(SPECIES[0].shape))
    values[field] = value
    with pytest.raises(ValueError, match=message):
        BodyShape(**values)


def test_species_by_name():
    assert species_by_name("horse").category_id == 21
    with pytest.raises(ValueError, match="unknown species 'unicorn'"):
        species_by_name("unicorn")


@pytest.mark.parametrize(
    "kwargs, message",
    [({"scale": 0.0}, "scale must be positive"), ({"stride": -0.1}, "stride must be >= 0"),
     ({"heading": math.inf}, "heading must be finite")],
)
def test_state_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AnimalState(**{"x": 10.0, "y": 10.0, "scale": 50.0, **kwargs})


@pytest.mark.parametrize(
    "kwargs, message",
    [({"pattern": "tartan"}, "pattern must be one of"), ({"body_color": (0, 0, 300)}, "body_color must be three")],
)
def test_appearance_rejects_bad_values(kwargs, message):
    species = SPECIES[0]
    base = {"species": species, "shape": species.shape, "body_color": (1, 2, 3), "pattern_color": (0, 0, 0)}
    with pytest.raises(ValueError, match=message):
        AnimalAppearance(**{**base, **kwargs})


def test_sample_appearance_is_deterministic():
    a = sample_appearance(np.random.default_rng(7))
    b = sample_appearance(np.random.default_rng(7))
    assert a == b


@pytest.mark.parametrize("species", ["horse", "cat", "giraffe", "pig"])
@pytest.mark.parametrize("heading", [0.0, 0.4, math.pi, math.pi + 1.0, math.pi / 2])
def test_mirrored_state_mirrors_keypoints_with_left_right_swapped(species, heading):
    width = 300
    appearance = sample_appearance(np.random.default_rng(1), species_by_name(species))
    state = AnimalState(x=120.3, y=140.0, scale=90.0, heading=heading, gait_phase=0.7, stride=0.5,
                        neck_pitch=-0.2, head_pitch=-0.5, head_yaw=0.3, tail_angle=0.2, body_pitch=0.05)
    original, flipped = build_animal(appearance, state), build_animal(appearance, mirrored(state, width))
    expected = np.stack([width - 1 - original.keypoints[:, 0], original.keypoints[:, 1]], 1)
    np.testing.assert_allclose(flipped.keypoints[FLIP_INDEX], expected, atol=1e-9)
    np.testing.assert_array_equal(flipped.self_hidden[FLIP_INDEX], original.self_hidden)


@pytest.mark.parametrize("heading, far_side", [(0.0, "L"), (math.pi, "R")])
def test_far_side_follows_heading(heading, far_side):
    """Facing right the animal's left side is away from the camera: its eye is hidden and
    its legs appear higher (the camera looks down slightly)."""
    near_side = "R" if far_side == "L" else "L"
    appearance = sample_appearance(np.random.default_rng(2), species_by_name("dog"))
    geometry = build_animal(appearance, AnimalState(x=100, y=100, scale=80, heading=heading))
    assert geometry.self_hidden[K[f"{far_side}_Eye"]] and not geometry.self_hidden[K[f"{near_side}_Eye"]]
    assert geometry.self_hidden.sum() == 1
    for joint in ("Shoulder", "Hip"):
        assert geometry.keypoints[K[f"{far_side}_{joint}"], 1] < geometry.keypoints[K[f"{near_side}_{joint}"], 1]
    nose_x, tail_x = geometry.keypoints[K["Nose"], 0], geometry.keypoints[K["Root of tail"], 0]
    assert (nose_x > tail_x) == (heading == 0.0)


@pytest.mark.parametrize("seed", range(6))
def test_keypoints_lie_inside_the_drawn_box(seed):
    rng = np.random.default_rng(seed)
    appearance = sample_appearance(rng)
    state = AnimalState(x=0.0, y=0.0, scale=float(rng.uniform(30, 200)), heading=float(rng.uniform(-4, 4)),
                        gait_phase=float(rng.uniform(0, 7)), stride=0.6, neck_pitch=-1.5, head_pitch=-1.4)
    geometry = build_animal(appearance, state)
    x0, y0, x1, y1 = geometry.box
    assert geometry.keypoints.shape == (NUM_KEYPOINTS, 2)
    assert (geometry.keypoints >= [x0, y0]).all() and (geometry.keypoints <= [x1, y1]).all()


@pytest.mark.parametrize("species", [s.name for s in SPECIES])
def test_standing_paws_touch_the_ground(species):
    appearance = sample_appearance(np.random.default_rng(0), species_by_name(species))
    state = AnimalState(x=0.0, y=0.0, scale=100.0)
    keypoints = build_animal(appearance, state).keypoints
    for end in ("F_Paw", "B_Paw"):  # far paws appear as much higher as near ones lower
        mean_y = (keypoints[K[f"L_{end}"], 1] + keypoints[K[f"R_{end}"], 1]) / 2
        assert mean_y == pytest.approx(standing_height(appearance.shape) * 100.0, abs=1e-6)
