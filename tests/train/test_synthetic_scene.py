"""train.synthetic.scene and train.synthetic.background: drawing, visibility flags, scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pose.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS
from train.synthetic.animal import AnimalState, Shape, build_animal, sample_appearance
from train.synthetic.background import BACKGROUND_KINDS, load_photos, sample_background
from train.synthetic.scene import SceneLabels, render_scene, sample_scene
from train.synthetic.species import species_by_name

K = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
W, H = 200, 160


@pytest.fixture(scope="module")
def horse():
    return sample_appearance(np.random.default_rng(0), species_by_name("horse"))


def _background() -> np.ndarray:
    return np.full((H, W, 3), 127, np.uint8)


def test_single_animal_is_visible_except_the_far_eye(horse):
    image, labels = render_scene(_background(), [(horse, AnimalState(x=100, y=70, scale=70))])
    flags = labels.keypoints[0, :, 2]
    assert flags[K["L_Eye"]] == 0  # facing right: the left eye is behind the head
    assert (np.delete(flags, K["L_Eye"]) == 2).all()  # legs behind the own body stay visible
    assert labels.num_labelled.tolist() == [NUM_KEYPOINTS - 1]
    drawn = (image != 127).any(axis=2).sum()  # includes the anti-aliased rim the mask leaves out
    assert 0.8 * drawn <= labels.visible_pixels[0] <= drawn


def test_keypoint_outside_the_image_is_unlabelled(horse):
    state = AnimalState(x=20, y=70, scale=70, heading=math.pi)  # facing left, head beyond the border
    _, labels = render_scene(_background(), [(horse, state)])
    keypoints = labels.keypoints[0]
    outside = keypoints[:, 0] < 0
    assert outside[K["Nose"]]
    assert (keypoints[outside, 2] == 0).all()
    assert labels.boxes[0, 0] == 0  # the box is clipped to the image


def test_keypoint_covered_by_a_nearer_animal_is_occluded(horse):
    far = AnimalState(x=100, y=70, scale=70)
    near = AnimalState(x=100, y=75, scale=70, heading=math.pi)  # drawn later, torso over the far one's
    _, labels = render_scene(_background(), [(horse, far), (horse, near)])
    far_flags, near_flags = labels.keypoints[:, :, 2]
    for name in ("R_Shoulder", "R_Hip", "L_Shoulder", "L_Hip"):
        assert far_flags[K[name]] == 1, name
    assert near_flags[K["L_Shoulder"]] == 2 and near_flags[K["R_Eye"]] == 0
    assert labels.visible_pixels[0] < labels.visible_pixels[1]


def test_keypoint_covered_by_an_occluder_is_occluded(horse):
    state = AnimalState(x=100, y=70, scale=70)
    nose = build_animal(horse, state).keypoints[K["Nose"]]
    rock = (Shape("circle", nose[None], (6.0,), (50, 60, 70)),)
    _, labels = render_scene(_background(), [(horse, state)], [rock])
    flags = labels.keypoints[0, :, 2]
    assert flags[K["Nose"]] == 1
    assert flags[K["R_Eye"]] == 2 and flags[K["Root of tail"]] == 2


@pytest.mark.parametrize("seed", range(20))
def test_random_scenes_keep_labelled_keypoints_inside_boxes_and_image(seed):
    image, labels, kind = sample_scene(np.random.default_rng(seed), 128, 96, max_animals=4)
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8
    assert 0 <= kind < len(BACKGROUND_KINDS)
    assert 1 <= len(labels) <= 4
    boxes = labels.boxes
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= [128, 96]).all()
    for keypoints, (x0, y0, x1, y1) in zip(labels.keypoints, boxes):
        shown = keypoints[keypoints[:, 2] > 0]
        assert ((shown[:, 0] >= x0) & (shown[:, 0] <= x1) & (shown[:, 1] >= y0) & (shown[:, 1] <= y1)).all()
        assert ((shown[:, 0] >= 0) & (shown[:, 0] <= 127) & (shown[:, 1] >= 0) & (shown[:, 1] <= 95)).all()


def test_scenes_are_deterministic_by_seed():
    a_image, a_labels, a_kind = sample_scene(np.random.default_rng(5), 96, 96)
    b_image, b_labels, b_kind = sample_scene(np.random.default_rng(5), 96, 96)
    c_image, _, _ = sample_scene(np.random.default_rng(6), 96, 96)
    assert a_image.tobytes() == b_image.tobytes() and a_kind == b_kind
    np.testing.assert_array_equal(a_labels.keypoints, b_labels.keypoints)
    assert a_image.tobytes() != c_image.tobytes()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"boxes": np.zeros((2, 4))}, "boxes must have 1 rows"),
        ({"keypoints": np.full((1, NUM_KEYPOINTS, 3), 3.0)}, "visibility flags"),
    ],
)
def test_scene_labels_reject_inconsistent_arrays(kwargs, message):
    base = {"keypoints": np.zeros((1, NUM_KEYPOINTS, 3)), "boxes": np.zeros((1, 4)),
            "category_ids": [1], "visible_pixels": [0]}
    with pytest.raises(ValueError, match=message):
        SceneLabels(**{**base, **kwargs})


def test_backgrounds_from_photos(samples_dir):
    photos = load_photos(samples_dir / "ap10k")
    assert len(photos) == 2
    kinds = {sample_background(np.random.default_rng(seed), 64, 48, photos)[1] for seed in range(12)}
    assert BACKGROUND_KINDS.index("photo") in kinds
    with pytest.raises(FileNotFoundError):
        load_photos(samples_dir / "missing")
