"""train.synthetic: the public names, and ground truth that agrees with the pixels."""

from __future__ import annotations

import numpy as np
import pytest

import train.synthetic as synthetic
from train.synthetic import render_scene, sample_appearance, sample_state


def test_public_names_resolve():
    for name in synthetic.__all__:
        assert getattr(synthetic, name) is not None, name


@pytest.mark.parametrize("seed", range(10))
def test_visible_keypoints_sit_on_drawn_pixels(seed):
    """Every keypoint flagged visible lies on a pixel the animal painted."""
    rng = np.random.default_rng(seed)
    background = np.full((160, 200, 3), (127, 127, 127), np.uint8)
    appearance = sample_appearance(rng)
    state = sample_state(rng, 100, 70, rng.uniform(40, 90))
    image, labels = render_scene(background, [(appearance, state)])
    keypoints = labels.keypoints[0]
    shown = keypoints[keypoints[:, 2] == 2]
    cols, rows = np.round(shown[:, 0]).astype(int), np.round(shown[:, 1]).astype(int)
    assert (image[rows, cols] != 127).any(axis=1).all()
