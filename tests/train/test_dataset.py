"""AP10KDataset: which instances it keeps, filters, and targets that sit on the keypoints."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pose.codec import flip_back
from pose.estimator import PoseSettings, prepare_inputs
from pose.keypoints import FLIP_INDEX, NUM_KEYPOINTS
from train.augment import AugmentSettings
from train.dataset import AP10KDataset, ap10k_paths, select_categories
from train.synthetic import DatasetSettings, write_dataset

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "ap10k"
SAMPLE_ANN = SAMPLES / "test_ap10k.json"
ONLY_FLIP = AugmentSettings(flip_prob=1.0, half_body_prob=0.0, scale_factor=0.0, rotation_factor=0.0,
                            rotation_prob=0.0, shift_prob=0.0)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root, DatasetSettings(num_images=40, width=128, height=128, seed=3, formats=("ap10k",)))
    return root


def _synthetic_set(root: Path, **kwargs) -> AP10KDataset:
    ann, images = ap10k_paths(root, "train")
    kwargs = {"input_size": (64, 64), "heatmap_size": (16, 16), **kwargs}
    return AP10KDataset(ann, images, **kwargs)


def _write_variant(tmp_path: Path, edit) -> Path:
    data = json.loads(SAMPLE_ANN.read_text())
    edit(data)
    path = tmp_path / "variant.json"
    path.write_text(json.dumps(data))
    return path


def test_ap10k_paths() -> None:
    assert ap10k_paths("data/ap10k", "val", 2) == (Path("data/ap10k/annotations/ap10k-val-split2.json"),
                                                   Path("data/ap10k/data"))
    with pytest.raises(ValueError, match="split"):
        ap10k_paths("data/ap10k", "dev")


def test_real_sample_species_and_families() -> None:
    dataset = AP10KDataset(SAMPLE_ANN, SAMPLES, train=False)
    assert len(dataset) == 2
    assert dataset.species == ["antelope", "jaguar"] and dataset.families == ["Bovidae", "Felidae"]
    assert len(dataset.coco["categories"]) == 54


@pytest.mark.parametrize(
    ("families", "species", "expected"),
    [(["Felidae"], None, ["jaguar"]), (None, ["Antelope"], ["antelope"]), (["felidae"], ["antelope"],
                                                                          ["antelope", "jaguar"])],
)
def test_filters_by_family_or_species(families, species, expected) -> None:
    dataset = AP10KDataset(SAMPLE_ANN, SAMPLES, train=False, families=families, species=species)
    assert dataset.species == expected
    gt = dataset.ground_truth()
    assert {a["category_id"] for a in gt["annotations"]} == set(dataset.categories.tolist())
    assert {i["id"] for i in gt["images"]} == set(dataset.image_ids.tolist())


def test_unknown_family_lists_the_known_ones() -> None:
    categories = json.loads(SAMPLE_ANN.read_text())["categories"]
    with pytest.raises(ValueError, match="unknown family 'Dinosauria'.*Felidae"):
        select_categories(categories, families=["Dinosauria"])


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda a: a.update(num_keypoints=0), id="num_keypoints-0"),
        pytest.param(lambda a: a.update(keypoints=[0] * 51), id="no-keypoints"),
        pytest.param(lambda a: a.update(iscrowd=1), id="crowd"),
        pytest.param(lambda a: a.update(area=0), id="zero-area"),
        pytest.param(lambda a: a.update(bbox=[2000, 10, 50, 50]), id="box-outside"),
    ],
)
def test_instances_mmpose_skips(tmp_path: Path, edit) -> None:
    path = _write_variant(tmp_path, lambda d: edit(d["annotations"][0]))
    dataset = AP10KDataset(path, SAMPLES, train=False)
    assert dataset.annotation_ids.tolist() == [6]


def test_boxes_are_cleaned_like_mmpose() -> None:
    dataset = AP10KDataset(SAMPLE_ANN, SAMPLES, train=False)
    # bbox [66, 192, 1092, 512] in a 1200 x 867 image: x2 = min(1199, 66 + 1091).
    np.testing.assert_allclose(dataset.boxes[0], [66, 192, 1091, 511])


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (lambda d: d["annotations"][0].update(keypoints=[1.0] * 30), ValueError, "10 keypoints"),
        (lambda d: d["images"][0].update(file_name="gone.jpg"), FileNotFoundError, "gone.jpg"),
        (lambda d: d.pop("categories"), ValueError, "categories"),
    ],
)
def test_bad_files_are_reported(tmp_path: Path, edit, error, match) -> None:
    with pytest.raises(error, match=match):
        AP10KDataset(_write_variant(tmp_path, edit), SAMPLES)


def test_eval_inputs_equal_the_estimator_preprocessing() -> None:
    """The evaluation crops are exactly the test-time path's (what reproduces mmpose's AP)."""
    dataset = AP10KDataset(SAMPLE_ANN, SAMPLES, train=False)
    for index in range(len(dataset)):
        inputs, _, _, meta = dataset[index]
        image = cv2.imread(str(dataset.files[index]))
        expected = prepare_inputs(image, _raw_box(dataset, index)[None], PoseSettings())
        np.testing.assert_array_equal(inputs.numpy(), expected.inputs[0])
        np.testing.assert_array_equal(meta["center"], expected.center[0])
        np.testing.assert_array_equal(meta["scale"], expected.scale[0])


def _raw_box(dataset: AP10KDataset, index: int) -> np.ndarray:
    annotation = next(a for a in dataset.coco["annotations"] if a["id"] == dataset.annotation_ids[index])
    return np.asarray(annotation["bbox"], np.float64)


def _peaks(target: np.ndarray) -> np.ndarray:
    """(K, 2) integer (x, y) of each map's maximum."""
    flat = target.reshape(len(target), -1).argmax(1)
    return np.stack([flat % target.shape[2], flat // target.shape[2]], axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_target_peaks_sit_on_the_transformed_keypoints(synthetic: Path, seed: int) -> None:
    """Augmented samples: every drawn peak maps back (through the crop's inverse) onto its keypoint."""
    dataset = _synthetic_set(synthetic, train=True, seed=seed)
    stride = 4.0
    checked = flipped = 0
    for index in range(0, len(dataset), 3):
        sample = dataset.sample(index)
        drawn = sample.target.max(axis=(1, 2)) > 0
        # A weighted map can be empty: mmpose keeps the weight of a keypoint whose 3-sigma window
        # just touches the map without covering a pixel. A drawn map is always weighted.
        assert np.all(sample.target_weight[drawn] > 0)
        snapped = np.trunc(sample.keypoints / stride + 0.5)
        # Points off the map have their peak on its border (int() truncates towards zero, as in mmpose).
        drawn &= np.all((sample.keypoints / stride + 0.5 >= 0) & (snapped < 16), axis=1)
        peaks = _peaks(sample.target)
        np.testing.assert_array_equal(peaks[drawn], snapped[drawn])
        inverse = cv2.invertAffineTransform(sample.matrix)
        back = peaks * stride @ inverse[:, :2].T + inverse[:, 2]
        source = FLIP_INDEX if sample.crop.flipped else np.arange(NUM_KEYPOINTS)
        original = dataset.keypoints[index, source, :2]
        # One heatmap pixel is `stride` crop pixels: the snap moves a peak by at most half of it per axis.
        pixel = float(sample.crop.scale[0]) * 200 / dataset.input_size[0]
        errors = np.linalg.norm(back - original, axis=1)[drawn]
        assert np.all(errors <= stride * pixel * 0.75), (index, errors.max())
        checked += int(drawn.sum())
        flipped += sample.crop.flipped
    assert checked > 100 and flipped > 0


def test_flipped_target_is_the_mirrored_target_with_pairs_swapped(synthetic: Path) -> None:
    plain = _synthetic_set(synthetic, train=True, augment=AugmentSettings.disabled())
    mirror = _synthetic_set(synthetic, train=True, augment=ONLY_FLIP)
    compared = 0
    for index in range(len(plain)):
        a, b = plain.sample(index), mirror.sample(index)
        assert b.crop.flipped and not a.crop.flipped
        inside = np.all((a.keypoints > 8) & (a.keypoints < 56), axis=1)
        if not inside[a.target_weight > 0].all():
            continue  # near the border the clipped Gaussian windows differ by a column
        np.testing.assert_array_equal(b.target_weight, a.target_weight[FLIP_INDEX])
        # The mirrored crop is shifted by one pixel (x -> W - x), which flip_back's shift undoes.
        back = flip_back(b.target[None], FLIP_INDEX, shift=True)[0]
        np.testing.assert_allclose(back[..., 1:], a.target[..., 1:], atol=1e-6)
        # Bilinear sampling at mirrored sub-pixel positions rounds differently at sharp edges.
        image_difference = np.abs(b.image[:, 1:].astype(int) - a.image[:, ::-1][:, :-1].astype(int))
        assert image_difference.mean() < 0.5 and image_difference.max() <= 12
        compared += 1
    assert compared >= 5


def test_augmentation_depends_on_seed_epoch_and_index_only(synthetic: Path) -> None:
    first = _synthetic_set(synthetic, train=True, seed=5)
    second = _synthetic_set(synthetic, train=True, seed=5)
    np.testing.assert_array_equal(first.sample(3).image, second.sample(3).image)
    second.set_epoch(1)
    assert not np.array_equal(first.sample(3).image, second.sample(3).image)


def test_loader_batches(synthetic: Path) -> None:
    dataset = _synthetic_set(synthetic, train=True)
    images, targets, weights, meta = next(iter(DataLoader(dataset, batch_size=4)))
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.float32
    assert targets.shape == (4, NUM_KEYPOINTS, 16, 16) and weights.shape == (4, NUM_KEYPOINTS)
    assert meta["center"].shape == (4, 2) and meta["image_id"].shape == (4,)
    assert set(meta) >= {"scale", "rotation", "flipped", "category_id", "bbox_score", "index"}


def test_ground_truth_without_filter_is_the_whole_file() -> None:
    dataset = AP10KDataset(SAMPLE_ANN, SAMPLES, train=False)
    original = json.loads(SAMPLE_ANN.read_text())
    gt = dataset.ground_truth()
    assert gt["annotations"] == original["annotations"] and gt["images"] == original["images"]
    assert copy.deepcopy(gt)["categories"] == original["categories"]
