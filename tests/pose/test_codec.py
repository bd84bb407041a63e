"""Tests for pose.codec against mmpose 0.x decode and flip-test fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pose.codec import (
    PostProcess,
    decode_heatmaps,
    encode_heatmaps,
    flip_back,
    get_max_preds,
    merge_flip,
)
from pose.keypoints import FLIP_INDEX, FLIP_PAIRS, NUM_KEYPOINTS
from pose.transforms import (
    apply_affine,
    boxes_to_center_scale,
    clean_boxes_xywh,
    get_affine_matrices,
)

CASES = ("case1_interior", "case2_border", "case3_mixed")
TAGS = {
    "none": (PostProcess.NONE, 1e-3),
    "default": (PostProcess.DEFAULT, 1e-3),
    "unbiased": (PostProcess.DARK, 1e-2),
    "udp": (PostProcess.UDP, 1e-2),
}
NETS = ("hrnet_small", "resnet_small")


# --- decoding against mmpose ----------------------------------------------------------------


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("case", CASES)
def test_decode_matches_mmpose(reference_dir: Path, case: str, tag: str) -> None:
    data = np.load(reference_dir / "decode" / f"{case}.npz")
    post_process, atol = TAGS[tag]
    heatmaps = data["heatmaps"]
    before = heatmaps.copy()
    keypoints, scores = decode_heatmaps(
        heatmaps, data["center"], data["scale"], post_process, kernel=int(data["kernel"])
    )
    np.testing.assert_array_equal(heatmaps, before)
    assert keypoints.shape == (2, NUM_KEYPOINTS, 2) and keypoints.dtype == np.float32
    assert scores.shape == (2, NUM_KEYPOINTS) and scores.dtype == np.float32
    expected_scores = data[f"maxvals_{tag}"][..., 0]
    np.testing.assert_array_equal(scores, expected_scores)
    # mmpose refines non-positive maps under UDP with wrapped-around indices; ignore them.
    mask = np.ones(expected_scores.shape, dtype=bool)
    if post_process is PostProcess.UDP:
        mask = expected_scores > 0
    np.testing.assert_allclose(keypoints[mask], data[f"preds_{tag}"][mask], rtol=0, atol=atol)


@pytest.mark.parametrize("net", NETS)
def test_merge_flip_matches_mmpose(reference_dir: Path, net: str) -> None:
    folder = reference_dir / net
    merged = merge_flip(
        np.load(folder / "heatmaps.npy"), np.load(folder / "heatmaps_flipped_branch.npy")
    )
    np.testing.assert_allclose(merged, np.load(folder / "heatmaps_flip.npy"), rtol=0, atol=1e-6)


@pytest.mark.parametrize("net", NETS)
def test_end_to_end_decode_matches_mmpose(reference_dir: Path, net: str) -> None:
    folder = reference_dir / net
    expected = json.loads((folder / "keypoints_e2e.json").read_text())
    records = json.loads((reference_dir / "preprocess" / "preprocess.json").read_text())
    record = next(r for r in records if Path(r["image"]).name == Path(expected["image"]).name)
    clean, _ = clean_boxes_xywh(
        np.array([record["gt_bbox_xywh"]]), record["image_width"], record["image_height"]
    )
    center, scale = boxes_to_center_scale(clean)
    heatmaps = merge_flip(
        np.load(folder / "heatmaps.npy"), np.load(folder / "heatmaps_flipped_branch.npy")
    )
    keypoints, scores = decode_heatmaps(heatmaps, center, scale, PostProcess.DEFAULT, kernel=11)
    reference = np.array(expected["keypoints_xy_score"])
    np.testing.assert_allclose(keypoints[0], reference[:, :2], rtol=0, atol=1e-3)
    np.testing.assert_allclose(scores[0], reference[:, 2], rtol=1e-6)


# --- argmax and refinements on synthetic maps -----------------------------------------------


def test_get_max_preds_ties_and_non_positive() -> None:
    heatmaps = np.zeros((1, 3, 4, 5), dtype=np.float32)
    heatmaps[0, 0, 1, 3] = heatmaps[0, 0, 2, 1] = 0.5  # tie: first in row-major order wins
    heatmaps[0, 1] = -1.0
    heatmaps[0, 1, 3, 4] = -0.5  # max < 0
    coords, maxvals = get_max_preds(heatmaps)
    np.testing.assert_array_equal(coords[0], [[3, 1], [-1, -1], [-1, -1]])
    np.testing.assert_array_equal(maxvals[0], [0.5, -0.5, 0.0])


@pytest.mark.parametrize(
    ("peak", "shifted"),
    [
        ((10, 20), True),
        ((1, 20), False),  # column 1: no shift
        ((62, 20), True),
        ((63, 20), False),
        ((10, 1), False),  # row 1 blocks the x shift too
        ((10, 62), True),
    ],
)
def test_default_shift_only_inside(peak: tuple[int, int], shifted: bool) -> None:
    x, y = peak
    heatmaps = np.zeros((1, 1, 64, 64), dtype=np.float32)
    heatmaps[0, 0, y, x] = 1.0
    heatmaps[0, 0, y, x - 1] = 0.5  # left neighbour higher than right
    heatmaps[0, 0, y - 1, x] = 0.25
    heatmaps[0, 0, y + 1, x] = 0.75
    center = np.array([[32.0, 32.0]], np.float32)
    scale = np.array([[64 / 200, 64 / 200]], np.float32)  # one heatmap pixel = one image pixel
    keypoints, _ = decode_heatmaps(heatmaps, center, scale, PostProcess.DEFAULT)
    expected = np.array([x - 0.25, y + 0.25]) if shifted else np.array([x, y], float)
    np.testing.assert_allclose(keypoints[0, 0], expected, atol=1e-4)


@pytest.mark.parametrize("post_process", [PostProcess.DARK, PostProcess.UDP])
def test_subpixel_refinement_recovers_gaussian_centre(post_process: PostProcess) -> None:
    ys, xs = np.mgrid[0:64, 0:64]
    truth = np.array([[20.3, 40.7], [33.6, 12.2]])
    squared = (xs - truth[:, 0, None, None]) ** 2 + (ys - truth[:, 1, None, None]) ** 2
    heatmaps = np.exp(-squared / 8.0)
    heatmaps = heatmaps[None].astype(np.float32)
    use_udp = post_process is PostProcess.UDP
    scale = np.array([[(63 if use_udp else 64) / 200] * 2], np.float32)
    center = scale * 100
    keypoints, _ = decode_heatmaps(heatmaps, center, scale, post_process)
    np.testing.assert_allclose(keypoints[0], truth, atol=0.05)


@pytest.mark.parametrize("post_process", list(PostProcess))
def test_decode_empty_batch(post_process: PostProcess) -> None:
    empty = np.zeros((0, 2), np.float32)
    keypoints, scores = decode_heatmaps(np.zeros((0, 17, 64, 64)), empty, empty, post_process)
    assert keypoints.shape == (0, 17, 2) and scores.shape == (0, 17)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(kernel=4), "kernel"),
        (dict(kernel=0), "kernel"),
        (dict(post_process="default"), "post_process"),
        (dict(center=np.zeros((2, 2))), "center"),
        (dict(heatmaps=np.zeros((17, 64, 64))), "heatmaps"),
    ],
)
def test_decode_invalid_arguments(kwargs: dict, match: str) -> None:
    arguments = dict(
        heatmaps=np.ones((1, 17, 64, 64), np.float32),
        center=np.zeros((1, 2), np.float32),
        scale=np.ones((1, 2), np.float32),
    )
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        decode_heatmaps(**arguments)


# --- flip test ------------------------------------------------------------------------------


def test_flip_back_semantics() -> None:
    rng = np.random.default_rng(0)
    flipped = rng.standard_normal((2, NUM_KEYPOINTS, 4, 6)).astype(np.float32)
    back = flip_back(flipped, FLIP_INDEX, shift=False)
    for left, right in FLIP_PAIRS:
        np.testing.assert_array_equal(back[:, left], flipped[:, right, :, ::-1])
        np.testing.assert_array_equal(back[:, right], flipped[:, left, :, ::-1])
    np.testing.assert_array_equal(back[:, 2], flipped[:, 2, :, ::-1])  # nose is unpaired
    np.testing.assert_array_equal(flip_back(back, FLIP_INDEX, shift=False), flipped)

    shifted = flip_back(flipped, FLIP_INDEX, shift=True)
    np.testing.assert_array_equal(shifted[..., 1:], back[..., :-1])
    np.testing.assert_array_equal(shifted[..., 0], back[..., 0])


def test_flip_back_of_a_mirrored_peak_lands_one_column_right() -> None:
    heatmaps = np.zeros((1, NUM_KEYPOINTS, 8, 8), dtype=np.float32)
    heatmaps[0, 0, 3, 2] = 1.0  # left eye at x = 2 in the flipped frame -> right eye at x = 5
    back = flip_back(heatmaps, FLIP_INDEX, shift=True)
    assert back[0, 1, 3, 6] == 1.0 and back.sum() == 1.0


@pytest.mark.parametrize("flip_index", [np.arange(5), np.arange(NUM_KEYPOINTS)[None]])
def test_flip_back_rejects_wrong_index(flip_index: np.ndarray) -> None:
    with pytest.raises(ValueError, match="flip_index"):
        flip_back(np.zeros((1, NUM_KEYPOINTS, 4, 4), np.float32), flip_index)


def test_merge_flip_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        merge_flip(np.zeros((1, 17, 4, 4)), np.zeros((1, 17, 4, 5)))


# --- encoding -------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [2.0, 3.0])
@pytest.mark.parametrize("point", [(100.0, 120.0), (3.0, 250.0), (130.1, 1.9)])
def test_encode_msra_gaussian(point: tuple[float, float], sigma: float) -> None:
    keypoints = np.array([[point]], dtype=np.float32)
    targets, weights = encode_heatmaps(keypoints, np.ones((1, 1)), sigma=sigma)
    assert targets.shape == (1, 1, 64, 64) and targets.dtype == np.float32
    mu = np.floor(np.array(point) / 4 + 0.5)
    ys, xs = np.mgrid[0:64, 0:64]
    window = (np.abs(xs - mu[0]) <= 3 * sigma) & (np.abs(ys - mu[1]) <= 3 * sigma)
    gaussian = np.exp(-((xs - mu[0]) ** 2 + (ys - mu[1]) ** 2) / (2 * sigma**2))
    expected = np.where(window, gaussian, 0)
    np.testing.assert_allclose(targets[0, 0], expected, rtol=1e-6, atol=0)
    assert targets[0, 0, int(mu[1]), int(mu[0])] == 1.0
    assert weights.tolist() == [[1.0]]


@pytest.mark.parametrize(
    ("point", "visible", "weight"),
    [
        ((100.0, 100.0), 0.0, 0.0),  # unlabelled
        ((-40.0, 100.0), 1.0, 0.0),  # window entirely left of the map
        ((100.0, 290.0), 1.0, 0.0),  # entirely below
        ((-20.0, 100.0), 1.0, 1.0),  # centre outside, tail inside
    ],
)
def test_encode_weights(point: tuple[float, float], visible: float, weight: float) -> None:
    targets, weights = encode_heatmaps(np.array([[point]]), np.array([[visible]]))
    assert weights.tolist() == [[weight]]
    assert (targets.max() > 0) == (weight > 0)


def test_encode_udp_peak_is_subpixel() -> None:
    keypoints = np.array([[[100.0, 60.0]]])
    targets, _ = encode_heatmaps(keypoints, np.ones((1, 1)), use_udp=True)
    exact = keypoints[0, 0] * 63 / 255
    ys, xs = np.mgrid[0:64, 0:64]
    mu = np.floor(exact + 0.5)
    window = (np.abs(xs - mu[0]) <= 6) & (np.abs(ys - mu[1]) <= 6)
    expected = np.where(window, np.exp(-((xs - exact[0]) ** 2 + (ys - exact[1]) ** 2) / 8.0), 0)
    np.testing.assert_allclose(targets[0, 0], expected, rtol=1e-5, atol=1e-7)


def test_encode_real_keypoints_peak_on_transformed_keypoint(samples_dir: Path) -> None:
    data = json.loads((samples_dir / "ap10k" / "test_ap10k.json").read_text())
    images = {image["id"]: image for image in data["images"]}
    annotations = data["annotations"]
    boxes = np.array([a["bbox"] for a in annotations], dtype=np.float64)
    sizes = [(images[a["image_id"]]["width"], images[a["image_id"]]["height"]) for a in annotations]
    clean = np.concatenate([clean_boxes_xywh(b[None], *size)[0] for b, size in zip(boxes, sizes)])
    center, scale = boxes_to_center_scale(clean)
    raw = np.array([a["keypoints"] for a in annotations], dtype=np.float64)
    raw = raw.reshape(len(annotations), -1, 3)
    visible = (raw[..., 2] > 0).astype(np.float32)
    assert (visible == 0).any(), "the sample should include an unlabelled keypoint"
    in_crop = apply_affine(raw[..., :2], get_affine_matrices(center, scale, (256, 256)))
    before = in_crop.copy()

    targets, weights = encode_heatmaps(in_crop, visible)
    np.testing.assert_array_equal(in_crop, before)
    np.testing.assert_array_equal(weights, visible)
    assert not targets[visible == 0].any()
    coords, maxvals = get_max_preds(targets)
    labelled = visible > 0
    np.testing.assert_array_equal(maxvals[labelled], 1.0)
    np.testing.assert_array_equal(coords[labelled], np.floor(in_crop[labelled] / 4 + 0.5))
    # Decoding the targets lands within half a heatmap pixel (2 crop px) of the keypoint.
    keypoints, _ = decode_heatmaps(targets, center, scale, PostProcess.NONE)
    crop_pixel = scale[:, 0] * 200 / 256  # image pixels per crop pixel
    error = np.abs(keypoints - raw[..., :2])
    assert (error <= 2 * crop_pixel[:, None, None] + 1e-3)[labelled].all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(keypoints=np.zeros((1, 17))), "keypoints"),
        (dict(visible=np.ones((1, 16))), "visible"),
        (dict(sigma=0.0), "sigma"),
    ],
)
def test_encode_invalid_arguments(kwargs: dict, match: str) -> None:
    arguments = dict(keypoints=np.zeros((1, 17, 2)), visible=np.ones((1, 17)))
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        encode_heatmaps(**arguments)
