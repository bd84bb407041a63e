"""train.synthetic.dataset: AP-10K-format and YOLO datasets on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from train.synthetic.dataset import SPLITS, DatasetSettings, coco_keypoint_names, write_dataset

SETTINGS = DatasetSettings(num_images=10, width=96, height=80, seed=3, val_fraction=0.2, test_fraction=0.1,
                           formats=("ap10k", "yolo", "yolo-pose"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    write_dataset(out, SETTINGS)
    return out


@pytest.fixture(scope="module")
def ap10k_sample(samples_dir) -> dict:
    return json.loads((samples_dir / "ap10k" / "test_ap10k.json").read_text())


def _load(dataset: Path, split: str) -> dict:
    return json.loads((dataset / "annotations" / f"ap10k-{split}-split1.json").read_text())


def test_layout_and_split_sizes(dataset):
    sizes = {split: len(_load(dataset, split)["images"]) for split in SPLITS}
    assert sizes == SETTINGS.split_sizes() == {"train": 7, "val": 2, "test": 1}
    assert len(list((dataset / "data").glob("*.jpg"))) == 10
    for root in (dataset, dataset / "yolo-pose"):
        assert (root / "data.yaml").is_file()
        for split in SPLITS:
            images = sorted(p.stem for p in (root / "images" / split).glob("*.jpg"))
            labels = sorted(p.stem for p in (root / "labels" / split).glob("*.txt"))
            assert images == labels and len(images) == sizes[split]


@pytest.mark.parametrize("split", SPLITS)
def test_ap10k_json_has_ap10k_fields_and_loads_with_pycocotools(dataset, ap10k_sample, split):
    data = _load(dataset, split)
    assert data.keys() == ap10k_sample.keys()
    assert data["images"][0].keys() == ap10k_sample["images"][0].keys()
    assert data["annotations"][0].keys() == ap10k_sample["annotations"][0].keys()
    assert data["categories"][0].keys() == ap10k_sample["categories"][0].keys()
    assert data["categories"][0]["keypoints"] == ap10k_sample["categories"][0]["keypoints"]
    assert data["categories"][0]["skeleton"] == ap10k_sample["categories"][0]["skeleton"]
    coco = COCO(str(dataset / "annotations" / f"ap10k-{split}-split1.json"))
    assert len(coco.getImgIds()) == len(data["images"])
    for ann in coco.loadAnns(coco.getAnnIds()):
        image = coco.loadImgs(ann["image_id"])[0]
        assert (dataset / "data" / image["file_name"]).is_file()
        kp = np.array(ann["keypoints"]).reshape(-1, 3)
        assert ann["num_keypoints"] == (kp[:, 2] > 0).sum() > 0
        assert (kp[kp[:, 2] == 0] == 0).all()  # unlabelled points are 0, 0, 0 as in AP-10K
        x, y, w, h = ann["bbox"]
        shown = kp[kp[:, 2] > 0]
        assert (shown[:, 0] >= x - 1e-6).all() and (shown[:, 0] <= x + w + 1e-6).all()
        assert (shown[:, 1] >= y - 1e-6).all() and (shown[:, 1] <= y + h + 1e-6).all()
        assert ann["area"] == pytest.approx(w * h, abs=0.05)


def test_keypoint_names_match_ap10k(ap10k_sample):
    assert coco_keypoint_names() == ap10k_sample["categories"][0]["keypoints"]


def test_yolo_labels_match_the_boxes(dataset):
    for split in SPLITS:
        data = _load(dataset, split)
        for image in data["images"]:
            boxes = np.array([a["bbox"] for a in data["annotations"] if a["image_id"] == image["id"]]).reshape(-1, 4)
            stem = Path(image["file_name"]).stem
            rows = np.loadtxt(dataset / "labels" / split / f"{stem}.txt", ndmin=2).reshape(-1, 5)
            pose_rows = np.loadtxt(dataset / "yolo-pose" / "labels" / split / f"{stem}.txt", ndmin=2)
            assert (rows[:, 0] == 0).all() and len(rows) == len(boxes)
            size = np.array([SETTINGS.width, SETTINGS.height] * 2)
            xywh = np.concatenate([rows[:, 1:3] - rows[:, 3:5] / 2, rows[:, 3:5]], 1) * size
            np.testing.assert_allclose(xywh, boxes, atol=0.02)
            assert pose_rows.reshape(len(boxes), -1).shape[1] == 5 + 17 * 3
    text = (dataset / "yolo-pose" / "data.yaml").read_text()
    assert "kpt_shape: [17, 3]" in text and "flip_idx: [1, 0, 2, 3, 4, 8" in text


def test_same_seed_same_bytes_other_seed_differs(dataset, tmp_path):
    again = tmp_path / "again"
    write_dataset(again, SETTINGS)
    for split in SPLITS:
        name = f"ap10k-{split}-split1.json"
        assert (again / "annotations" / name).read_bytes() == (dataset / "annotations" / name).read_bytes()
    for image in (dataset / "data").glob("*.jpg"):
        assert (again / "data" / image.name).read_bytes() == image.read_bytes()
    other = tmp_path / "other"
    write_dataset(other, DatasetSettings(num_images=3, width=96, height=80, seed=4, formats=("ap10k",)))
    assert (other / "data" / "000000000001.jpg").read_bytes() != (dataset / "data" / "000000000001.jpg").read_bytes()


def test_workers_do_not_change_the_dataset(dataset, tmp_path):
    parallel = tmp_path / "parallel"
    write_dataset(parallel, DatasetSettings(**{**vars(SETTINGS), "formats": ("ap10k",), "workers": 2}))
    for split in SPLITS:
        name = f"ap10k-{split}-split1.json"
        assert (parallel / "annotations" / name).read_bytes() == (dataset / "annotations" / name).read_bytes()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_images": 0}, "num_images must be >= 1"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "must leave training images"),
        ({"formats": ("coco",)}, "formats must be a non-empty subset"),
        ({"workers": 0}, "workers must be >= 1"),
        ({"width": 8}, "width and height must be >= 16"),
        ({"background_dir": Path("/no/such/folder")}, "is not a folder"),
    ],
)
def test_settings_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DatasetSettings(**kwargs)
