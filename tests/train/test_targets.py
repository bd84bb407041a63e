"""train.targets: the recipe follows the model's codec; SimCC samples are cut as the 1.x inference path cuts
them and their targets sit on the keypoints."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pose import transforms_v1
from pose.estimator import PoseSettings
from pose.keypoints import FLIP_INDEX, NUM_KEYPOINTS
from pose.simcc import decode_simcc, split_simcc
from pose.topdown import HeatmapCodec, SimCCCodec
from train.augment import AugmentSettings
from train.dataset import AP10KDataset, ap10k_paths
from train.engine import JointsMSELoss, KLDiscretLoss
from train.synthetic import DatasetSettings, write_dataset
from train.targets import HeatmapTargets, SimCCTargets, training_targets

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "ap10k"
SAMPLE_ANN = SAMPLES / "test_ap10k.json"
SIMCC_64 = SimCCTargets(SimCCCodec((64, 64)), sigma=(2.0, 2.0))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root, DatasetSettings(num_images=30, width=128, height=128, seed=4, formats=("ap10k",)))
    return root


def test_the_recipe_follows_the_codec() -> None:
    heatmap = training_targets(HeatmapCodec(), (96, 96), (24, 24), 3.0)
    assert heatmap == HeatmapTargets((96, 96), (24, 24), 3.0) and isinstance(heatmap.criterion(), JointsMSELoss)
    simcc = training_targets(SimCCCodec((64, 96)), (64, 96), simcc_sigma=(4.9, 5.66))
    assert simcc == SimCCTargets(SimCCCodec((64, 96)), (4.9, 5.66))
    loss = simcc.criterion()
    assert isinstance(loss, KLDiscretLoss) and loss.bins_x == 128
    assert (loss.beta, loss.label_softmax, loss.label_beta, loss.use_target_weight) == (10.0, True, 10.0, True)
    with pytest.raises(ValueError, match="built for 64x96"):
        training_targets(SimCCCodec((64, 96)), (96, 96))
    with pytest.raises(ValueError, match="sigma"):
        SimCCTargets(sigma=(0.0, 1.0))


def _raw_box(dataset: AP10KDataset, index: int) -> np.ndarray:
    annotation = next(a for a in dataset.coco["annotations"] if a["id"] == dataset.annotation_ids[index])
    return np.asarray(annotation["bbox"], np.float64)


def test_simcc_eval_inputs_equal_the_inference_crops() -> None:
    """A SimCC model is evaluated on the crops its inference path cuts from ground-truth boxes (1.x)."""
    codec = SimCCCodec((256, 256))
    dataset = AP10KDataset(SAMPLE_ANN, SAMPLES, train=False, targets=SimCCTargets(codec))
    assert dataset.input_size == (256, 256)
    for index in range(len(dataset)):
        inputs, target, weight, meta = dataset[index]
        image = cv2.imread(str(dataset.files[index]))
        expected = codec.prepare_xywh(image, _raw_box(dataset, index)[None], PoseSettings(), clean=True)
        np.testing.assert_array_equal(inputs.numpy(), expected.inputs[0])
        np.testing.assert_array_equal(meta["center"], expected.center[0])
        np.testing.assert_array_equal(meta["scale"], expected.scale[0])
        assert tuple(target.shape) == (NUM_KEYPOINTS, 1024) and tuple(weight.shape) == (NUM_KEYPOINTS,)
        # Decoded and mapped back as at inference, the targets give the labelled keypoints to half a bin.
        simcc_x, simcc_y = split_simcc(target.numpy()[None], 512)
        keypoints = transforms_v1.input_to_image(decode_simcc(simcc_x, simcc_y)[0], meta["center"][None],
                                                 meta["scale"][None], (256, 256))[0]
        labelled = dataset.keypoints[index, :, 2] > 0
        assert np.array_equal(weight.numpy() > 0, labelled)
        pixel = float(meta["scale"][0]) / 256
        error = np.abs(keypoints - dataset.keypoints[index, :, :2])[labelled]
        assert error.max() <= 0.25 * pixel + 1e-3, error.max()


@pytest.mark.parametrize("seed", [0, 1])
def test_augmented_simcc_targets_sit_on_the_keypoints(synthetic: Path, seed: int) -> None:
    """Flips, rotations, scales and half bodies: each target's argmax maps back onto its keypoint."""
    ann, images = ap10k_paths(synthetic, "train")
    dataset = AP10KDataset(ann, images, train=True, seed=seed, targets=SIMCC_64,
                           augment=AugmentSettings(rotation_prob=1.0, half_body_prob=0.5))
    checked = flipped = rotated = 0
    for index in range(len(dataset)):
        sample = dataset.sample(index)
        assert sample.image.shape == (64, 64, 3) and sample.target.shape == (NUM_KEYPOINTS, 256)
        simcc_x, simcc_y = split_simcc(sample.target[None], 128)
        bins, _ = decode_simcc(simcc_x, simcc_y, 2.0)
        inside = np.all((sample.keypoints >= 0) & (sample.keypoints <= 63.5), axis=1) & (sample.target_weight > 0)
        np.testing.assert_array_equal(bins[0][inside], np.around(sample.keypoints[inside] * 2) / 2)
        inverse = cv2.invertAffineTransform(sample.matrix)
        back = bins[0] @ inverse[:, :2].T + inverse[:, 2]
        source = FLIP_INDEX if sample.crop.flipped else np.arange(NUM_KEYPOINTS)
        pixel = float(sample.crop.scale[0]) / 64  # SimCC crops: scale in pixels
        errors = np.linalg.norm(back - dataset.keypoints[index, source, :2], axis=1)[inside]
        assert np.all(errors <= 0.25 * np.sqrt(2) * pixel + 1e-3), (index, errors.max())
        checked += int(inside.sum())
        flipped += sample.crop.flipped
        rotated += sample.crop.rotation != 0
    assert checked > 100 and flipped > 0 and rotated > 0


def test_simcc_eval_scale_is_in_pixels_and_heatmap_scale_in_200s(synthetic: Path) -> None:
    ann, images = ap10k_paths(synthetic, "val")
    simcc = AP10KDataset(ann, images, train=False, targets=SIMCC_64)
    heatmap = AP10KDataset(ann, images, (64, 64), (16, 16), train=False)
    boxes = {a["id"]: np.asarray(a["bbox"]) for a in json.loads(ann.read_text())["annotations"]}
    compared = 0
    for index, annotation_id in enumerate(simcc.annotation_ids):
        box = boxes[int(annotation_id)]
        if box[0] < 1 or box[1] < 1 or box[0] + box[2] > 126 or box[1] + box[3] > 126:
            continue  # clipped at the image's border (1.x and 0.x clip differently)
        # 1.x: the box (no w - 1) padded by 1.25 and made square, in pixels; 0.x: w - 1, in units of 200 px.
        np.testing.assert_allclose(simcc.scales[index], [max(box[2:]) * 1.25] * 2, rtol=1e-6)
        np.testing.assert_allclose(heatmap.scales[index], [(max(box[2:]) - 1) * 1.25 / 200] * 2, rtol=1e-6)
        np.testing.assert_allclose(simcc.centers[index], box[:2] + box[2:] / 2, rtol=1e-6)
        compared += 1
    assert compared > 0
