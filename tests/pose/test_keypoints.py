"""pose.keypoints must equal the reference metadata (shared/reference/ap10k_meta.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pose import keypoints as kp


@pytest.fixture(scope="module")
def meta(reference_dir):
    return json.loads((reference_dir / "ap10k_meta.json").read_text())


def test_names_and_count(meta):
    assert kp.NUM_KEYPOINTS == meta["num_keypoints"] == len(kp.KEYPOINT_NAMES)
    assert list(kp.KEYPOINT_NAMES) == meta["keypoint_names"]


@pytest.mark.parametrize(
    "ours, key",
    [
        (kp.FLIP_PAIRS, "flip_pairs"),
        (kp.FLIP_INDEX, "flip_index"),
        (kp.SKELETON, "skeleton"),
        (kp.SIGMAS, "sigmas"),
        (kp.JOINT_WEIGHTS, "joint_weights"),
        (kp.UPPER_BODY_IDS, "upper_body_ids"),
        (kp.LOWER_BODY_IDS, "lower_body_ids"),
        (kp.KEYPOINT_COLORS, "keypoint_colors"),
        (kp.SKELETON_COLORS, "skeleton_colors"),
    ],
)
def test_matches_reference(ours, key, meta):
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(meta[key]))


def test_skeleton_names_follow_indices(meta):
    names = [[kp.KEYPOINT_NAMES[a], kp.KEYPOINT_NAMES[b]] for a, b in kp.SKELETON]
    assert names == meta["skeleton_names"]


def test_flip_index_is_an_involution_and_read_only():
    np.testing.assert_array_equal(kp.FLIP_INDEX[kp.FLIP_INDEX], np.arange(kp.NUM_KEYPOINTS))
    with pytest.raises(ValueError):
        kp.SIGMAS[0] = 1.0
