"""Tests for pose.transforms against the mmpose 0.x preprocessing fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pose.keypoints import FLIP_INDEX
from pose.transforms import (
    apply_affine,
    boxes_to_center_scale,
    clean_boxes_xywh,
    flip_keypoints,
    get_affine_matrices,
    get_udp_warp_matrices,
    heatmap_coords_to_image,
    normalize_crops,
    warp_crops,
    xywh_to_xyxy,
    xyxy_to_xywh,
)

INPUT_SIZE = (256, 256)
RECORD_INDICES = (0, 1)


@pytest.fixture(scope="module")
def records(reference_dir: Path) -> list[dict]:
    return json.loads((reference_dir / "preprocess" / "preprocess.json").read_text())


@pytest.fixture(scope="module")
def annotations(samples_dir: Path) -> dict:
    return json.loads((samples_dir / "ap10k" / "test_ap10k.json").read_text())


def _gt_box(annotations: dict, annotation_id: int) -> np.ndarray:
    (ann,) = [a for a in annotations["annotations"] if a["id"] == annotation_id]
    return np.array([ann["bbox"]], dtype=np.float64)


def _center_scale(record: dict, annotations: dict) -> tuple[np.ndarray, np.ndarray]:
    clean, _ = clean_boxes_xywh(
        _gt_box(annotations, record["annotation_id"]), record["image_width"], record["image_height"]
    )
    return boxes_to_center_scale(clean)


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# --- reference fixtures -------------------------------------------------------------------


@pytest.mark.parametrize("index", RECORD_INDICES)
def test_gt_box_matches_reference(records: list[dict], annotations: dict, index: int) -> None:
    record = records[index]
    box = _gt_box(annotations, record["annotation_id"])
    np.testing.assert_array_equal(box[0], record["gt_bbox_xywh"])
    clean, valid = clean_boxes_xywh(box, record["image_width"], record["image_height"])
    np.testing.assert_array_equal(clean[0], record["clean_bbox_xywh"])
    assert valid.tolist() == [True]


@pytest.mark.parametrize("index", RECORD_INDICES)
def test_center_scale_match_reference(records: list[dict], annotations: dict, index: int) -> None:
    record = records[index]
    center, scale = _center_scale(record, annotations)
    assert center.dtype == np.float32 and scale.dtype == np.float32
    np.testing.assert_array_equal(center[0], np.array(record["center"], dtype=np.float32))
    np.testing.assert_array_equal(scale[0], np.array(record["scale"], dtype=np.float32))


@pytest.mark.parametrize("index", RECORD_INDICES)
def test_affine_matrix_matches_reference(
    records: list[dict], annotations: dict, index: int
) -> None:
    record = records[index]
    center, scale = _center_scale(record, annotations)
    matrices = get_affine_matrices(center, scale, INPUT_SIZE)
    assert matrices.shape == (1, 2, 3) and matrices.dtype == np.float64
    np.testing.assert_array_equal(matrices[0], np.array(record["affine_matrix_2x3"]))


@pytest.mark.parametrize("index", RECORD_INDICES)
def test_crop_and_input_are_bit_exact(
    records: list[dict], annotations: dict, reference_dir: Path, samples_dir: Path, index: int
) -> None:
    record = records[index]
    image = _read_rgb(samples_dir / "ap10k" / Path(record["image"]).name)
    center, scale = _center_scale(record, annotations)
    crops = warp_crops(image, get_affine_matrices(center, scale, INPUT_SIZE), INPUT_SIZE)
    expected_crop = np.asarray(Image.open(reference_dir / "preprocess" / record["crop_png"]))
    assert crops.shape == (1, 256, 256, 3) and crops.dtype == np.uint8
    np.testing.assert_array_equal(crops[0], expected_crop)
    assert int(crops.sum()) == record["crop_sum"]

    inputs = normalize_crops(crops)
    expected_input = np.load(reference_dir / "preprocess" / record["input_npy"])
    assert inputs.dtype == np.float32 and inputs.shape == expected_input.shape
    np.testing.assert_array_equal(inputs, expected_input)


def test_batched_preprocessing_equals_single(records: list[dict], annotations: dict) -> None:
    record = records[0]
    center, scale = _center_scale(record, annotations)
    centers = np.concatenate([center, center + 10])
    scales = np.concatenate([scale, scale * 0.5])
    batched = get_affine_matrices(centers, scales, INPUT_SIZE)
    for i in range(2):
        np.testing.assert_array_equal(
            batched[i], get_affine_matrices(centers[i : i + 1], scales[i : i + 1], INPUT_SIZE)[0]
        )


# --- boxes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "expected", "valid"),
    [
        ((5, 6, 20, 30), (5, 6, 19, 29), True),
        ((-10, -5, 50, 40), (0, 0, 49, 39), True),
        ((90, 50, 30, 30), (90, 50, 9, 29), True),  # clipped at W - 1 = 99
        ((10, 10, 0, 20), (10, 10, 0, 19), False),  # zero width
        ((10, 10, 1, 20), (10, 10, 0, 19), False),  # effective width w - 1 = 0
        ((120, 10, 30, 20), (120, 10, -21, 19), False),  # right of the image
    ],
)
def test_clean_boxes(box: tuple, expected: tuple, valid: bool) -> None:
    clean, mask = clean_boxes_xywh(np.array([box]), 100, 80)
    np.testing.assert_array_equal(clean[0], expected)
    assert mask.tolist() == [valid]


def test_box_conversions_round_trip() -> None:
    xyxy = np.array([[10.5, 20.0, 30.5, 60.0], [0.0, 0.0, 1.0, 1.0]])
    xywh = xyxy_to_xywh(xyxy)
    np.testing.assert_array_equal(xywh, [[10.5, 20.0, 20.0, 40.0], [0.0, 0.0, 1.0, 1.0]])
    np.testing.assert_array_equal(xywh_to_xyxy(xywh), xyxy)


@pytest.mark.parametrize(
    ("box", "aspect_ratio", "center", "scale"),
    [
        ((0, 0, 400, 200), 1.0, (200, 100), (2.5, 2.5)),  # wide: h = w
        ((0, 0, 200, 400), 1.0, (100, 200), (2.5, 2.5)),  # tall: w = h
        ((0, 0, 150, 400), 0.75, (75, 200), (1.875, 2.5)),  # 192x256 input
        ((0, 0, 400, 400), 0.75, (200, 200), (2.5, 400 / 0.75 / 200 * 1.25)),
    ],
)
def test_center_scale_aspect_ratio(
    box: tuple, aspect_ratio: float, center: tuple, scale: tuple
) -> None:
    c, s = boxes_to_center_scale(np.array([box]), aspect_ratio=aspect_ratio)
    np.testing.assert_array_equal(c[0], np.array(center, dtype=np.float32))
    np.testing.assert_allclose(s[0], scale, rtol=1e-6)


def test_empty_batch() -> None:
    center, scale = boxes_to_center_scale(np.zeros((0, 4)))
    assert center.shape == (0, 2) and scale.shape == (0, 2)
    assert get_affine_matrices(center, scale, INPUT_SIZE).shape == (0, 2, 3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: boxes_to_center_scale(np.zeros((3, 3))), "boxes_xywh"),
        (lambda: boxes_to_center_scale(np.zeros((1, 4)), aspect_ratio=0.0), "aspect_ratio"),
        (lambda: xyxy_to_xywh(np.zeros(4)), "boxes_xyxy"),
        (lambda: get_affine_matrices(np.zeros((2, 2)), np.ones((1, 2)), INPUT_SIZE), "same length"),
        (lambda: get_affine_matrices(np.zeros((2, 3)), np.ones((2, 2)), INPUT_SIZE), "center"),
        (lambda: warp_crops(np.zeros((8, 8), np.uint8), np.zeros((1, 2, 3)), (4, 4)), "image_rgb"),
        (lambda: normalize_crops(np.zeros((4, 4, 3), np.uint8)), "crops"),
    ],
)
def test_invalid_arguments(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# --- matrices -----------------------------------------------------------------------------

CENTER = np.array([[611.5, 447.5], [100.0, 50.0]], dtype=np.float32)
SCALE = np.array([[6.81875, 6.81875], [1.0, 1.5]], dtype=np.float32)


@pytest.mark.parametrize("rotation", [0.0, 30.0, -90.0])
def test_affine_center_and_inverse(rotation: float) -> None:
    forward = get_affine_matrices(CENTER, SCALE, INPUT_SIZE, rotation=rotation)
    inverse = get_affine_matrices(CENTER, SCALE, INPUT_SIZE, rotation=rotation, inverse=True)
    np.testing.assert_allclose(apply_affine(CENTER[:, None], forward)[:, 0], 128.0, atol=1e-9)
    points = np.array([[[0.0, 0.0], [255.0, 17.0]]] * 2)
    round_trip = apply_affine(apply_affine(points, inverse), forward)
    np.testing.assert_allclose(round_trip, points, atol=1e-6)
    # The crop's width spans scale_x * 200 image pixels whatever the rotation.
    span = apply_affine(np.array([[[0.0, 128.0], [256.0, 128.0]]] * 2), inverse)
    width = np.linalg.norm(span[:, 1] - span[:, 0], axis=-1)
    np.testing.assert_allclose(width, SCALE[:, 0] * 200, rtol=1e-6)


def test_affine_rotation_direction() -> None:
    # The crop's top middle comes from center + (sin r, -cos r) * scale_x * 100 (y down):
    # above the center unrotated, right of it at r = 90 (content turns counter-clockwise).
    offset = SCALE[0, 0] * 100
    for rotation, point in [(0.0, (0.0, -offset)), (90.0, (offset, 0.0)), (-90.0, (-offset, 0.0))]:
        matrices = get_affine_matrices(CENTER[:1], SCALE[:1], INPUT_SIZE, rotation=rotation)
        source = CENTER[:1, None] + np.array([[point]])
        np.testing.assert_allclose(apply_affine(source, matrices)[0, 0], (128.0, 0.0), atol=1e-4)


@pytest.mark.parametrize("output_size", [(256, 256), (192, 256)])
def test_udp_matrix_maps_box_to_pixel_grid(output_size: tuple[int, int]) -> None:
    matrices = get_udp_warp_matrices(CENTER, SCALE, output_size)
    half = SCALE.astype(np.float64) * 100
    corners = np.stack([CENTER - half, CENTER, CENTER + half], axis=1)
    mapped = apply_affine(corners, matrices)
    w, h = output_size
    np.testing.assert_allclose(mapped[:, 0], 0.0, atol=1e-3)
    np.testing.assert_allclose(mapped[:, 1], [((w - 1) / 2, (h - 1) / 2)] * 2, atol=1e-3)
    np.testing.assert_allclose(mapped[:, 2], [(w - 1, h - 1)] * 2, atol=1e-3)


@pytest.mark.parametrize("use_udp", [False, True])
def test_heatmap_coords_to_image(use_udp: bool) -> None:
    middle = 31.5 if use_udp else 32.0
    coords = np.array([[[middle, middle], [0.0, 0.0]]] * 2, dtype=np.float32)
    out = heatmap_coords_to_image(coords, CENTER, SCALE, (64, 64), use_udp=use_udp)
    assert out.dtype == np.float32 and out.shape == (2, 2, 2)
    np.testing.assert_allclose(out[:, 0], CENTER, rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], CENTER - SCALE * 100, rtol=1e-6)


def test_heatmap_coords_agree_with_inverse_affine() -> None:
    coords = np.random.default_rng(0).uniform(0, 63, (2, 17, 2)).astype(np.float32)
    inverse = get_affine_matrices(CENTER[:1].repeat(2, 0), SCALE[[0, 0]], INPUT_SIZE, inverse=True)
    expected = apply_affine(coords * 4.0, inverse)
    out = heatmap_coords_to_image(coords, CENTER[[0, 0]], SCALE[[0, 0]], (64, 64))
    np.testing.assert_allclose(out, expected, atol=1e-3)


def test_flip_keypoints() -> None:
    keypoints = np.random.default_rng(1).uniform(0, 99, (3, 17, 3))
    flipped = flip_keypoints(keypoints, 100, FLIP_INDEX)
    np.testing.assert_array_equal(flipped[:, 1, 0], 99 - keypoints[:, 0, 0])
    np.testing.assert_array_equal(flipped[:, 1, 1:], keypoints[:, 0, 1:])
    np.testing.assert_allclose(flip_keypoints(flipped, 100, FLIP_INDEX), keypoints)


def test_inputs_are_not_mutated() -> None:
    boxes = np.array([[-5.0, 3.0, 40.0, 20.0]])
    keypoints = np.ones((1, 17, 2))
    before = boxes.copy(), keypoints.copy()
    clean_boxes_xywh(boxes, 30, 30)
    boxes_to_center_scale(boxes)
    flip_keypoints(keypoints, 10, FLIP_INDEX)
    np.testing.assert_array_equal(boxes, before[0])
    np.testing.assert_array_equal(keypoints, before[1])


def test_normalisation_by_table_equals_the_arithmetic_bit_for_bit():
    """normalize_crops looks up uint8 values; the table is the float32 formula of every value."""
    from pose.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_crops

    crops = np.random.default_rng(3).integers(0, 256, (2, 16, 24, 3), dtype=np.uint8)
    crops[0, 0, :3] = [[0, 0, 0], [255, 255, 255], [128, 64, 32]]
    mean = np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, np.float32)[:, None, None]
    expected = (crops.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255) - mean) / std
    got = normalize_crops(crops)
    assert got.dtype == np.float32 and got.flags.c_contiguous and np.array_equal(got, expected)
    assert np.array_equal(normalize_crops(crops.astype(np.float32)), expected)  # the arithmetic path
