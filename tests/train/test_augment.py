"""Crop augmentation: settings, mmpose's random draws, half body, and the folded-in flip."""

from __future__ import annotations

import numpy as np
import pytest

from pose.keypoints import FLIP_INDEX, NUM_KEYPOINTS, UPPER_BODY_IDS
from pose.transforms import apply_affine, get_affine_matrices
from train.augment import (
    AugmentSettings,
    Crop,
    crop_matrix,
    flip_crop_keypoints,
    half_body_box,
    random_scale_rotation,
    sample_crop,
)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("flip_prob", 1.5),
        ("half_body_prob", -0.1),
        ("rotation_prob", 2.0),
        ("shift_prob", -1.0),
        ("scale_factor", 1.0),
        ("rotation_factor", 120.0),
        ("shift_factor", 0.9),
        ("half_body_min_joints", 1),
        ("half_body_padding", 0.0),
    ],
)
def test_settings_reject_bad_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        AugmentSettings(**{field: value})


def test_default_settings_are_the_ap10k_recipe() -> None:
    s = AugmentSettings()
    assert (s.flip_prob, s.half_body_prob, s.half_body_min_joints) == (0.5, 0.3, 8)
    assert (s.scale_factor, s.rotation_factor, s.rotation_prob) == (0.5, 40.0, 0.6)


def test_random_scale_rotation_ranges_and_probability() -> None:
    rng = np.random.default_rng(0)
    draws = np.array([random_scale_rotation(rng, 0.35, 40.0, 0.6) for _ in range(4000)])
    assert draws[:, 0].min() >= 0.65 and draws[:, 0].max() <= 1.35
    assert np.abs(draws[:, 1]).max() <= 80.0
    assert np.mean(draws[:, 1] == 0) == pytest.approx(0.4, abs=0.03)
    # clip(randn * f + 1): about 68% of the multipliers are within one factor of 1.
    assert np.mean(np.abs(draws[:, 0] - 1) < 0.35) == pytest.approx(0.68, abs=0.03)


def _animal() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    keypoints = rng.uniform(50, 150, (NUM_KEYPOINTS, 2)).astype(np.float32)
    return keypoints, np.ones(NUM_KEYPOINTS, np.float32)


def test_half_body_box_upper_only() -> None:
    keypoints, visible = _animal()
    visible[[i for i in range(NUM_KEYPOINTS) if i not in UPPER_BODY_IDS]] = 0
    center, scale = half_body_box(keypoints, visible, aspect_ratio=1.0, rng=np.random.default_rng(0))
    upper = keypoints[list(UPPER_BODY_IDS)]
    np.testing.assert_allclose(center, upper.mean(0), rtol=1e-6)
    side = (upper.max(0) - upper.min(0)).max()
    np.testing.assert_allclose(scale, [side / 200 * 1.5] * 2, rtol=1e-5)


def test_half_body_box_needs_two_points() -> None:
    keypoints, visible = _animal()
    visible[:] = 0
    visible[0] = 1
    assert half_body_box(keypoints, visible, 1.0, np.random.default_rng(0)) is None


def test_disabled_augmentation_keeps_the_box() -> None:
    keypoints, visible = _animal()
    center, scale = np.array([100, 90], np.float32), np.array([0.8, 0.8], np.float32)
    crop = sample_crop(np.random.default_rng(0), center, scale, np.array([120.0, 100.0]), keypoints, visible,
                       300, 1.0, AugmentSettings.disabled())
    np.testing.assert_array_equal(crop.center, center)
    np.testing.assert_array_equal(crop.scale, scale)
    assert crop.rotation == 0 and not crop.flipped


def test_always_flip_mirrors_the_centre() -> None:
    keypoints, visible = _animal()
    settings = AugmentSettings(flip_prob=1.0, half_body_prob=0.0, scale_factor=0.0, rotation_factor=0.0,
                               shift_prob=0.0)
    crop = sample_crop(np.random.default_rng(0), np.array([100, 90], np.float32), np.array([0.8, 0.8], np.float32),
                       np.array([120.0, 100.0]), keypoints, visible, 300, 1.0, settings)
    assert crop.flipped
    np.testing.assert_allclose(crop.center, [300 - 1 - 100, 90])


def test_flip_crop_keypoints_relabels_and_is_an_involution() -> None:
    keypoints, visible = _animal()
    visible[5] = 0  # L_Shoulder: after the flip the unlabelled point is R_Shoulder (8)
    flipped, flipped_visible = flip_crop_keypoints(keypoints, visible, 320)
    np.testing.assert_allclose(flipped[0], [320 - 1 - keypoints[1, 0], keypoints[1, 1]])
    assert FLIP_INDEX[5] == 8 and flipped_visible[8] == 0 and flipped_visible.sum() == NUM_KEYPOINTS - 1
    again, again_visible = flip_crop_keypoints(flipped, flipped_visible, 320)
    np.testing.assert_allclose(again, keypoints, rtol=1e-5)
    np.testing.assert_array_equal(again_visible, visible)


@pytest.mark.parametrize("rotation", [0.0, 25.0, -60.0])
def test_crop_matrix_folds_in_the_flip(rotation: float) -> None:
    width = 333
    crop = Crop(np.array([120.0, 80.0], np.float32), np.array([0.9, 0.9], np.float32), rotation, flipped=True)
    points = np.random.default_rng(2).uniform(0, 300, (1, 10, 2))
    mirrored = points.copy()
    mirrored[..., 0] = width - 1 - mirrored[..., 0]
    plain = get_affine_matrices(crop.center[None], crop.scale[None], (64, 64), rotation)
    np.testing.assert_allclose(apply_affine(points, crop_matrix(crop, width, (64, 64))[None]),
                               apply_affine(mirrored, plain), atol=1e-9)
