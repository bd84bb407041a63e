"""The flip test on tensors equals the numpy flip test of pose.codec bit for bit in float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose.codec import flip_back, merge_flip
from pose.device_flip import flip_back_tensor, merge_flip_tensor, with_mirrored
from pose.keypoints import FLIP_INDEX


def heatmaps(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, len(FLIP_INDEX), 8, 6)).astype(np.float32)


@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("index_as_tensor", [False, True])
def test_flip_back_tensor_equals_the_numpy_flip_back(shift, index_as_tensor):
    flipped = heatmaps(3)
    index = torch.tensor(FLIP_INDEX) if index_as_tensor else FLIP_INDEX
    out = flip_back_tensor(torch.from_numpy(flipped), index, shift=shift)
    np.testing.assert_array_equal(out.numpy(), flip_back(flipped, FLIP_INDEX, shift=shift))


@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("n", [1, 3, 32])
def test_merge_on_the_device_equals_flip_back_and_average_on_the_host(shift, n):
    both = heatmaps(2 * n, seed=n)
    expected = merge_flip(both[:n], flip_back(both[n:], FLIP_INDEX, shift=shift))
    merged = merge_flip_tensor(torch.from_numpy(both), FLIP_INDEX, shift=shift)
    assert merged.dtype == torch.float32 and merged.shape == (n, len(FLIP_INDEX), 8, 6)
    np.testing.assert_array_equal(merged.numpy(), expected)
    # and as the estimator's host path writes it
    np.testing.assert_array_equal(merged.numpy(), (both[:n] + flip_back(both[n:], FLIP_INDEX, shift=shift))
                                  * np.float32(0.5))


def test_mirrored_crops_equal_the_host_copies():
    crops = np.random.default_rng(1).standard_normal((2, 3, 5, 7)).astype(np.float32)
    both = with_mirrored(torch.from_numpy(crops))
    np.testing.assert_array_equal(both.numpy(), np.concatenate([crops, crops[..., ::-1]]))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: flip_back_tensor(torch.zeros(17, 8, 6), FLIP_INDEX), "shape"),
        (lambda: flip_back_tensor(torch.zeros(1, 5, 8, 6), FLIP_INDEX), "flip_index"),
        (lambda: merge_flip_tensor(torch.zeros(3, 17, 8, 6), FLIP_INDEX), "2N"),
        (lambda: merge_flip_tensor(torch.zeros(17, 8, 6), FLIP_INDEX), "2N"),
    ],
)
def test_bad_shapes_are_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
