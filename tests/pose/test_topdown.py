"""The two recipes (pose.topdown): each model carries its own, and each one's steps are its mmpose's."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from pose.codec import PostProcess
from pose.estimator import PoseSettings
from pose.keypoints import FLIP_INDEX
from pose.model import ARCHITECTURES, build_model
from pose.topdown import HeatmapCodec, PreparedBatch, SimCCCodec, codec_of, prepare_inputs

FLIP = torch.tensor(FLIP_INDEX)


@pytest.fixture(scope="module")
def jaguar(samples_dir):
    return cv2.imread(str(samples_dir / "ap10k" / "000000037516.jpg"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [("hrnet_tiny", HeatmapCodec()), ("res50", HeatmapCodec()), ("rtmpose_m", SimCCCodec((256, 256), 2.0))],
)
def test_models_and_architectures_carry_their_codec(name, expected):
    with torch.device("meta"):
        model = build_model(ARCHITECTURES[name])
    assert codec_of(model) == ARCHITECTURES[name].codec == expected


def test_a_network_without_a_codec_is_a_heatmap_model():
    assert codec_of(nn.Conv2d(3, 17, 1)) == HeatmapCodec()


def test_heatmap_codec_takes_the_settings_and_simcc_ignores_them():
    settings = PoseSettings(shift_heatmap=False, post_process=PostProcess.DARK, kernel=5)
    assert HeatmapCodec().configured(settings) == HeatmapCodec(False, PostProcess.DARK, 5)
    assert SimCCCodec().configured(settings) == SimCCCodec()


def test_heatmap_codec_detector_boxes_are_inclusive(jaguar):
    settings = PoseSettings()
    by_codec = HeatmapCodec().prepare_xyxy(jaguar, np.array([[66, 192, 1157, 703]]), settings)
    direct = prepare_inputs(jaguar, np.array([[66, 192, 1092, 512]]), settings, clean=False)
    np.testing.assert_array_equal(by_codec.inputs, direct.inputs)
    np.testing.assert_array_equal(by_codec.scale, direct.scale)


@pytest.mark.parametrize("clean", [False, True])
def test_simcc_codec_xywh_is_the_inference_apis_xyxy(jaguar, clean):
    box = np.array([[-50.5, 600.0, 400.0, 400.0]])  # off the left and bottom of the 1200x867 image
    batch = SimCCCodec().prepare_xywh(jaguar, box, PoseSettings(), clean=clean)
    if clean:  # mmpose 1.x's loader: clip to the image, float32
        expected = np.array([[0.0 + 349.5, 600.0 + 866.0]], np.float32) * np.float32(0.5)
        assert batch.center.dtype == np.float32
    else:
        expected = np.array([[(-50.5 + 349.5) / 2, (600 + 1000) / 2]])
        assert batch.center.dtype == np.float64
    np.testing.assert_array_equal(batch.center, expected)
    assert batch.inputs.shape == (1, 3, 256, 256) and batch.inputs.dtype == np.float32


def test_simcc_codec_detector_boxes_stay_float32(jaguar):
    batch = SimCCCodec().prepare_xyxy(jaguar, np.array([[400.3, 190.7, 842.9, 545.1]]), PoseSettings())
    assert batch.center.dtype == batch.scale.dtype == np.float32


def test_degenerate_boxes_still_give_a_crop(jaguar):
    boxes = np.array([[10.0, 10.0, 10.0, 10.0], [5000.0, 5000.0, 5000.5, 5000.0]])
    batch = SimCCCodec().prepare_xyxy(jaguar, boxes, PoseSettings())
    assert np.isfinite(batch.inputs).all() and (batch.scale >= 1.25).all()


@pytest.mark.parametrize("codec", [HeatmapCodec(shift=True), HeatmapCodec(shift=False), SimCCCodec((8, 4), 2.0)],
                         ids=["heatmap-shift", "heatmap", "simcc"])
def test_flip_merge_on_the_host_equals_the_device(codec):
    shape = (4, 17, 24) if isinstance(codec, SimCCCodec) else (4, 17, 6, 5)  # SimCC: 16 x bins, 8 y bins
    both = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    host = codec.merge_flip(both[:2], both[2:])
    np.testing.assert_array_equal(codec.merge_flip_tensor(torch.from_numpy(both), FLIP).numpy(), host)


def test_simcc_decode_maps_bins_to_the_image():
    codec = SimCCCodec((64, 64), 2.0)
    logits = np.full((1, 17, 256), -1.0, np.float32)
    logits[0, :, 64] = 3.0  # x bin 64: input x = 32 (the crop's centre column)
    logits[0, :, 128 + 10] = 2.0  # y bin 10: input y = 5
    batch = PreparedBatch(np.zeros((1, 3, 64, 64), np.float32), np.array([[100.0, 50.0]]), np.array([[32.0, 32.0]]))
    keypoints, scores = codec.decode(logits, batch)
    np.testing.assert_allclose(keypoints[0, 0], [100.0, 50.0 - 16.0 + 5 * 0.5])
    np.testing.assert_array_equal(scores, np.full((1, 17), 2.0, np.float32))


@pytest.mark.parametrize("kwargs", [{"input_size": (256,)}, {"input_size": (0, 256)}, {"split_ratio": 0.0}])
def test_simcc_codec_is_validated(kwargs):
    with pytest.raises(ValueError):
        SimCCCodec(**kwargs)


def test_simcc_codec_bins():
    assert SimCCCodec((192, 256), 2.0).bins == (384, 512)
    assert SimCCCodec((192, 256), 2.0).fixed_input_size == (192, 256) and HeatmapCodec.fixed_input_size is None
