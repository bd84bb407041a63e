"""mmpose 1.x's top-down geometry (pose.transforms_v1) against what mmpose 1.3.2 computed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pose import transforms_v1 as t
from pose.transforms import warp_crops


def _xyxy(case: dict) -> np.ndarray:
    return np.array([case["bbox_xyxy"]], dtype=case["dtype"])


def test_center_scale_and_matrix_are_mmposes(rtmpose_reference):
    for case in rtmpose_reference["cases"]:
        center, scale = t.boxes_to_center_scale(_xyxy(case), padding=1.25)
        scale = t.fix_aspect_ratio(scale, 1.0)
        assert str(center.dtype) == case["center_dtype"], case["name"]
        np.testing.assert_array_equal(center[0], np.asarray(case["input_center"], center.dtype), case["name"])
        np.testing.assert_array_equal(scale[0], np.asarray(case["input_scale"], scale.dtype), case["name"])
        matrix = t.warp_matrices(center, scale, (256, 256))
        np.testing.assert_array_equal(matrix[0], case["warp_matrix"], case["name"])


def test_crops_and_inputs_are_mmposes(rtmpose_reference, rtmpose_dir, samples_dir):
    import hashlib

    for case in rtmpose_reference["cases"]:
        image = cv2.imread(str(samples_dir / "ap10k" / case["image"]))
        center, scale = t.boxes_to_center_scale(_xyxy(case))
        scale = t.fix_aspect_ratio(scale, 1.0)
        crop = warp_crops(image, t.warp_matrices(center, scale, (256, 256)), (256, 256))
        np.testing.assert_array_equal(crop[0], cv2.imread(str(rtmpose_dir / case["crop"])), case["name"])
        inputs = t.normalize_crops(crop[..., ::-1])
        assert hashlib.sha256(inputs[0].astype("<f4").tobytes()).hexdigest() == case["input_sha256"], case["name"]


@pytest.mark.parametrize(
    ("scale", "aspect", "expected"),
    [([[10.0, 4.0]], 1.0, [10.0, 10.0]), ([[4.0, 10.0]], 1.0, [10.0, 10.0]), ([[10.0, 4.0]], 0.75, [10.0, 40 / 3]),
     ([[3.0, 10.0]], 0.75, [7.5, 10.0]), ([[6.0, 8.0]], 0.75, [6.0, 8.0])],
)
def test_aspect_ratio_grows_the_short_side(scale, aspect, expected):
    np.testing.assert_allclose(t.fix_aspect_ratio(np.array(scale), aspect)[0], expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_center_scale_keep_float32_and_widen_the_rest(dtype):
    center, scale = t.boxes_to_center_scale(np.array([[10, 20, 111, 71]], dtype), padding=1.25)
    expected = np.float32 if dtype == np.float32 else np.float64
    assert center.dtype == scale.dtype == expected
    np.testing.assert_allclose(center[0], [60.5, 45.5])
    np.testing.assert_allclose(scale[0], [126.25, 63.75])


def test_the_matrix_maps_the_box_onto_the_crop():
    center, scale = np.array([[300.0, 200.0]]), np.array([[100.0, 100.0]])
    matrix = t.warp_matrices(center, scale, (256, 192))[0]
    corners = np.array([[250.0, 200.0, 1.0], [300.0, 200.0, 1.0], [300.0, 150.0, 1.0]])
    np.testing.assert_allclose(corners @ matrix.T, [[0, 96], [128, 96], [128, 96 - 128]], atol=1e-9)


def test_input_to_image_inverts_the_warp():
    center, scale = np.array([[320.25, 210.5]], np.float32), np.array([[150.0, 150.0]], np.float32)
    matrix = t.warp_matrices(center, scale, (256, 256))[0]
    points = np.array([[[12.5, 40.0], [200.0, 255.5], [128.0, 128.0]]], np.float32)
    image = t.input_to_image(points, center, scale, (256, 256))
    assert image.dtype == np.float32
    back = np.concatenate([image[0], np.ones((3, 1))], axis=1) @ matrix.T
    np.testing.assert_allclose(back, points[0], atol=1e-3)


def test_clip_boxes_is_mmpose_1x_loader_cleaning():
    boxes = np.array([[-5.0, 10.0, 50.0, 1000.0], [90.0, 20.5, 30.0, 10.0]])
    clipped = t.clip_boxes_xywh(boxes, 100, 80)
    assert clipped.dtype == np.float32
    np.testing.assert_array_equal(clipped, [[0, 10, 45, 79], [90, 20.5, 99, 30.5]])


def test_normalisation_is_on_the_255_scale_in_rgb():
    crops = np.zeros((1, 2, 2, 3), np.uint8)
    crops[..., 0] = 255
    out = t.normalize_crops(crops)
    assert out.shape == (1, 3, 2, 2) and out.dtype == np.float32
    expected = [(255 - 123.675) / 58.395, -116.28 / 57.12, -103.53 / 57.375]
    np.testing.assert_allclose(out[0, :, 0, 0], expected, rtol=1e-6)


def test_bad_box_shapes_raise():
    with pytest.raises(ValueError, match="boxes_xyxy"):
        t.boxes_to_center_scale(np.zeros((2, 3)))
