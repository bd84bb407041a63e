"""SimCC encoding, decoding and flip test (pose.simcc) against mmpose 1.x's rules, its reference logits and
its ``SimCCLabel`` targets (tests/data/reference/simcc_training, made with mmpose 1.3.2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pose.keypoints import FLIP_INDEX
from pose.simcc import decode_simcc, encode_simcc, merge_flip_simcc, merge_flip_simcc_tensor, split_simcc

K = len(FLIP_INDEX)
SIMCC_REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference" / "simcc_training" / "simcc_reference.npz"


def logits(n: int, bins: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, K, bins)).astype(np.float32)


@pytest.mark.parametrize(
    ("x", "y", "ratio", "expected_xy", "expected_score"),
    [
        ([0.1, 3.0, 0.2, 0.0], [1.0, 0.0, 0.0, 2.0], 2.0, (0.5, 1.5), 2.0),  # score: the smaller maximum
        ([0.1, 3.0, 0.2, 0.0], [5.0, 0.0, 0.0, 4.0], 2.0, (0.5, 0.0), 3.0),
        ([1.0, 2.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0], 1.0, (1.0, 3.0), 1.0),  # ties: the first bin
        ([1.0, 2.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0], 4.0, (0.25, 0.75), 1.0),
        ([-1.0, -0.5, -2.0, -3.0], [0.0, 9.0, 0.0, 0.0], 2.0, (-0.5, -0.5), -0.5),  # score <= 0: bin -1 on both
        ([0.0, 0.0, 0.0, 0.0], [0.0, 9.0, 0.0, 0.0], 2.0, (-0.5, -0.5), 0.0),
    ],
)
def test_decode_is_argmax_over_the_split_ratio(x, y, ratio, expected_xy, expected_score):
    keypoints, scores = decode_simcc(np.array([[x]], np.float32), np.array([[y]], np.float32), ratio)
    assert keypoints.dtype == np.float32 and keypoints.shape == (1, 1, 2) and scores.shape == (1, 1)
    np.testing.assert_array_equal(keypoints[0, 0], expected_xy)
    assert scores[0, 0] == np.float32(expected_score)


def test_decode_of_the_reference_logits_gives_mmposes_keypoints(rtmpose_dir, rtmpose_reference):
    """mmpose's keypoints, taken back from image to input pixels, are the decoded bins of its logits."""
    with np.load(rtmpose_dir / "simcc_logits.npz") as saved:
        for case in rtmpose_reference["cases"]:
            for suffix in ("", "_flip"):
                x, y = saved[f"{case['name']}_x{suffix}"], saved[f"{case['name']}_y{suffix}"]
                keypoints, scores = decode_simcc(x[None], y[None])
                np.testing.assert_array_equal(scores[0], np.float32(case["scores" + suffix]))
                assert np.all(keypoints * 2 == np.round(keypoints * 2))  # whole bins of half a pixel


@pytest.mark.parametrize("n", [1, 3])
def test_flip_merge_relabels_and_reverses_x_only(n):
    plain, mirrored = logits(n, 10, seed=1), logits(n, 10, seed=2)
    both = np.concatenate([plain, mirrored], axis=-1)  # x: 10 bins, y: 10 bins
    mirrored_both = np.concatenate([mirrored, plain], axis=-1)
    merged = merge_flip_simcc(both, mirrored_both, FLIP_INDEX, bins_x=10)
    x_back = mirrored[:, FLIP_INDEX, ::-1]
    y_back = plain[:, FLIP_INDEX]
    np.testing.assert_array_equal(merged[..., :10], (plain + x_back) * np.float32(0.5))
    np.testing.assert_array_equal(merged[..., 10:], (mirrored + y_back) * np.float32(0.5))


@pytest.mark.parametrize("n", [1, 2, 5])
def test_flip_merge_on_tensors_equals_numpy_bit_for_bit(n):
    both = logits(2 * n, 20, seed=n)
    expected = merge_flip_simcc(both[:n], both[n:], FLIP_INDEX, bins_x=12)
    merged = merge_flip_simcc_tensor(torch.from_numpy(both), torch.tensor(FLIP_INDEX), bins_x=12)
    assert merged.dtype == torch.float32
    np.testing.assert_array_equal(merged.numpy(), expected)


def test_split_gives_x_then_y():
    x, y = split_simcc(np.arange(2 * K * 7, dtype=np.float32).reshape(2, K, 7), 4)
    assert x.shape == (2, K, 4) and y.shape == (2, K, 3) and y[0, 0, 0] == 4


@pytest.mark.parametrize(
    "call",
    [
        lambda: split_simcc(np.zeros((2, K, 8)), 8),
        lambda: split_simcc(np.zeros((K, 8)), 4),
        lambda: decode_simcc(np.zeros((1, K, 4)), np.zeros((1, 3, 4))),
        lambda: merge_flip_simcc(np.zeros((1, 5, 8)), np.zeros((1, 5, 8)), FLIP_INDEX, 4),
        lambda: merge_flip_simcc(np.zeros((1, K, 8)), np.zeros((2, K, 8)), FLIP_INDEX, 4),
        lambda: merge_flip_simcc_tensor(torch.zeros(3, K, 8), torch.tensor(FLIP_INDEX), 4),
    ],
)
def test_bad_shapes_raise(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize(
    ("case", "input_size", "sigma"),
    [("square", (256, 256), (5.66, 5.66)),  # the RTMPose AP-10K config
     ("tall", (192, 256), (4.9, 5.66))],    # the 256x192 configs' sigma, a non-square input
)
def test_encoding_equals_mmposes_simcc_label(case, input_size, sigma):
    reference = np.load(SIMCC_REFERENCE)
    keypoints = reference[f"{case}_keypoints"]
    target_x, target_y, weights = encode_simcc(keypoints[None, :, :2], keypoints[None, :, 2], input_size, sigma, 2.0)
    assert target_x.shape == reference[f"{case}_x"].shape == (1, len(keypoints), input_size[0] * 2)
    assert target_y.shape == reference[f"{case}_y"].shape == (1, len(keypoints), input_size[1] * 2)
    assert target_x.dtype == target_y.dtype == weights.dtype == np.float32
    np.testing.assert_allclose(target_x, reference[f"{case}_x"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(target_y, reference[f"{case}_y"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(weights, reference[f"{case}_weights"])


def test_encoding_rounds_to_bins_and_handles_the_border():
    # The square reference's keypoints: its peaks, weights and empty rows, stated.
    keypoints = np.load(SIMCC_REFERENCE)["square_keypoints"]
    target_x, target_y, weights = encode_simcc(keypoints[None, :, :2], keypoints[None, :, 2], (256, 256))
    np.testing.assert_array_equal(weights[0], [1, 1, 1, 0, 1, 0, 0, 0, np.float32(0.4)])
    assert (target_x[0, 0].argmax(), target_y[0, 0].argmax()) == (201, 116)  # round(100.3 * 2), round(57.8 * 2)
    assert (target_x[0, 1].argmax(), target_y[0, 1].argmax()) == (20, 402)  # 20.5 and 401.5: halves to even
    assert target_x[0, 0].max() == 1.0  # unnormalised
    assert target_x[0, 2, 0] == pytest.approx(np.exp(-100 / (2 * 5.66**2)), rel=1e-6)  # centred on bin -10
    assert not target_x[0, [3, 5, 6, 7, 8]].any() and not target_y[0, [3, 5, 6, 7, 8]].any()
    normalised = encode_simcc(keypoints[None, :1, :2], np.ones((1, 1)), (256, 256), normalize=True)[0]
    assert normalised.max() == pytest.approx(1 / (5.66 * np.sqrt(2 * np.pi)), rel=1e-6)


def test_decoding_the_encoding_gives_the_bins_back():
    rng = np.random.default_rng(3)
    keypoints = rng.uniform(0, 63.5, (4, K, 2)).astype(np.float32)
    target_x, target_y, _ = encode_simcc(keypoints, np.ones((4, K)), (64, 64), (1.5, 1.5))
    decoded, scores = decode_simcc(target_x, target_y, 2.0)
    np.testing.assert_allclose(decoded, np.around(keypoints * 2) / 2, atol=0)
    assert (scores == 1).all()


@pytest.mark.parametrize(
    ("keypoints", "visible", "kwargs", "match"),
    [
        (np.zeros((2, 3)), np.ones((2,)), {}, "keypoints must be"),
        (np.zeros((1, 3, 2)), np.ones((1, 2)), {}, "keypoints must be"),
        (np.zeros((1, 3, 2)), np.ones((1, 3)), {"sigma": (0.0, 1.0)}, "sigma"),
        (np.zeros((1, 3, 2)), np.ones((1, 3)), {"sigma": (1.0,)}, "sigma"),
        (np.zeros((1, 3, 2)), np.ones((1, 3)), {"split_ratio": 0.0}, "split_ratio"),
    ],
)
def test_encoding_rejects_bad_input(keypoints, visible, kwargs, match):
    with pytest.raises(ValueError, match=match):
        encode_simcc(keypoints, visible, (64, 64), **kwargs)
