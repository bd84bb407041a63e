from dataclasses import replace

import numpy as np
import pytest

from tracking.appearance import (
    BoxColours,
    HistogramSettings,
    appearance_distance,
    box_colours,
    colour_histograms,
)

RED, BLUE, GREEN = (0, 0, 230), (230, 40, 0), (0, 200, 0)


def scene(*patches, size=(120, 200)) -> np.ndarray:
    """A grey BGR image with filled rectangles ``(x0, y0, x1, y1, colour)``."""
    image = np.full((*size, 3), 128, np.uint8)
    for x0, y0, x1, y1, colour in patches:
        image[y0:y1, x0:x1] = colour
    return image


@pytest.mark.parametrize(
    ("field", "value"),
    [("hue_bins", 0), ("saturation_bins", 65), ("value_bins", 2.0), ("margin", 0.5), ("margin", -0.1)],
)
def test_settings_reject_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        HistogramSettings(**{field: value})


def test_features_are_unit_vectors_and_tell_colours_apart():
    image = scene((10, 10, 60, 60, RED), (100, 10, 150, 60, BLUE), (10, 70, 60, 110, RED))
    boxes = np.array([[10, 10, 60, 60], [100, 10, 150, 60], [10, 70, 60, 110]], np.float32)
    features = colour_histograms(image, boxes)
    assert features.shape == (3, HistogramSettings().size) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-6)
    distance = appearance_distance(features, features)
    np.testing.assert_allclose(np.diag(distance), 0.0, atol=1e-6)
    assert distance[0, 2] < 1e-6  # two red boxes
    assert distance[0, 1] > 0.99  # red and blue share no bin


def test_margin_leaves_out_the_box_border():
    # A red animal whose box also holds a ring of green background.
    image = scene((20, 20, 100, 100, GREEN), (35, 35, 85, 85, RED))
    box = np.array([[20, 20, 100, 100]], np.float32)
    red = colour_histograms(image, np.array([[40, 40, 80, 80]], np.float32))
    with_margin = colour_histograms(image, box, HistogramSettings(margin=0.2))
    without = colour_histograms(image, box, HistogramSettings(margin=0.0))
    assert appearance_distance(with_margin, red)[0, 0] < 1e-6
    assert appearance_distance(without, red)[0, 0] > 0.1


def test_boxes_are_clipped_to_the_image_and_empty_ones_get_nan():
    image = scene((0, 0, 40, 120, BLUE))
    boxes = np.array([[-60, 0, 40, 120], [300, 10, 400, 50], [50, 50, 50, 90]], np.float32)
    features = colour_histograms(image, boxes, HistogramSettings(margin=0.0))
    assert np.isfinite(features[0]).all()
    assert appearance_distance(features[:1], colour_histograms(image, np.array([[0, 0, 40, 120]])))[0, 0] < 1e-6
    assert np.isnan(features[1:]).all()


def test_no_boxes():
    assert colour_histograms(scene(), np.zeros((0, 4))).shape == (0, HistogramSettings().size)


@pytest.mark.parametrize("image", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32)])
def test_rejects_images_that_are_not_bgr_uint8(image):
    with pytest.raises(ValueError, match="image_bgr"):
        colour_histograms(image, np.zeros((1, 4)))


def test_distance_normalises_rows_and_propagates_nan():
    a = np.array([[3.0, 0.0], [np.nan, np.nan]])
    b = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    d = appearance_distance(a, b)
    np.testing.assert_allclose(d[0], [0.0, 1.0, 1.0 - np.sqrt(0.5)], atol=1e-12)
    assert np.isnan(d[1]).all()


def test_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same D"):
        appearance_distance(np.ones((2, 3)), np.ones((2, 4)))


@pytest.mark.parametrize("settings", [HistogramSettings(), HistogramSettings(hue_bins=7, saturation_bins=3,
                                                                            value_bins=5, margin=0.0)])
def test_features_bin_every_pixel_as_the_formula_says(settings):
    """The lookup tables give each pixel the bin ``floor(level * bins / range)`` of every channel."""
    import cv2

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    boxes = np.array([[0.0, 0.0, 80.0, 60.0], [10.5, 5.2, 47.9, 33.3]])
    got = colour_histograms(image, boxes, settings)
    for feature, (x0, y0, x1, y1) in zip(got, boxes):
        w, h = x1 - x0, y1 - y0
        xa, ya = int(np.floor(x0 + settings.margin * w)), int(np.floor(y0 + settings.margin * h))
        xb, yb = int(np.ceil(x1 - settings.margin * w)), int(np.ceil(y1 - settings.margin * h))
        hsv = cv2.cvtColor(np.ascontiguousarray(image[ya:yb, xa:xb]), cv2.COLOR_BGR2HSV).reshape(-1, 3)
        bins = np.array([settings.hue_bins, settings.saturation_bins, settings.value_bins])
        index = np.minimum(np.floor(hsv * (bins / np.array([180.0, 256.0, 256.0]))).astype(int), bins - 1)
        flat = (index[:, 0] * bins[1] + index[:, 1]) * bins[2] + index[:, 2]
        counts = np.bincount(flat, minlength=settings.size)
        np.testing.assert_allclose(feature, np.sqrt(counts / counts.sum()), rtol=1e-6)


def test_box_colours_whole_equals_colour_histograms_and_own_leaves_out_other_boxes():
    # A red animal in front of a blue one: the blue box's central part is half red; its own part, outside the
    # red box, is blue.
    image = scene((10, 10, 110, 70, BLUE), (60, 10, 110, 70, RED))
    boxes = np.array([[10, 10, 110, 70], [60, 10, 110, 70]], np.float32)
    colours = box_colours(image, boxes, HistogramSettings(margin=0.0, min_own=0.4))
    np.testing.assert_array_equal(colours.whole, colour_histograms(image, boxes, HistogramSettings(margin=0.0)))
    blue = colour_histograms(image, np.array([[10, 10, 50, 70]], np.float32))
    assert appearance_distance(colours.whole[:1], blue)[0, 0] > 0.2  # mixed
    assert appearance_distance(colours.own[:1], blue)[0, 0] < 1e-6
    # The red box lies inside the blue one: none of it is its own.
    assert np.isnan(colours.own[1]).all() and np.isfinite(colours.whole[1]).all()
    assert len(colours) == 2


def test_own_colours_need_min_own_of_the_box_outside_the_others():
    image = scene((10, 10, 110, 70, BLUE), (70, 10, 130, 70, RED))
    boxes = np.array([[10, 10, 110, 70], [70, 10, 130, 70]], np.float32)  # 60% of the blue box is outside the red
    settings = HistogramSettings(margin=0.0)
    assert np.isfinite(box_colours(image, boxes, replace(settings, min_own=0.6)).own[0]).all()
    assert np.isnan(box_colours(image, boxes, replace(settings, min_own=0.65)).own[0]).all()
    # A lone box's own colours are its whole colours.
    lone = box_colours(image, boxes[:1], settings)
    np.testing.assert_array_equal(lone.own, lone.whole)


def test_box_colours_of_no_boxes_and_of_boxes_outside_the_image():
    colours = box_colours(scene(), np.zeros((0, 4)))
    assert colours.whole.shape == colours.own.shape == (0, HistogramSettings().size)
    colours = box_colours(scene(), np.array([[300, 10, 400, 50], [10, 10, 50, 50]], np.float32))
    assert np.isnan(colours.whole[0]).all() and np.isnan(colours.own[0]).all()
    assert np.isfinite(colours.own[1]).all()


def test_box_colours_reject_arrays_of_two_shapes():
    with pytest.raises(ValueError, match="one shape"):
        BoxColours(np.zeros((2, 4)), np.zeros((3, 4)))


@pytest.mark.parametrize("min_own", [0.0, 1.5])
def test_settings_reject_bad_min_own(min_own):
    with pytest.raises(ValueError, match="min_own"):
        HistogramSettings(min_own=min_own)
