"""AP-10K -> YOLO conversion, and a one-epoch offline ultralytics fine-tune the detector then loads."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import app.cli.training as cli_train
from train.synthetic import DatasetSettings, write_dataset
from train.train_detector import ClassMode, DetectorTrainSettings, YoloDatasetSettings, convert_to_yolo

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "tests" / "data" / "samples" / "ap10k"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root, DatasetSettings(num_images=24, width=128, height=128, seed=2, val_fraction=0.25,
                                        test_fraction=0.0, formats=("ap10k",)))
    return root


def _settings(root: Path, out: Path, **kwargs) -> YoloDatasetSettings:
    return YoloDatasetSettings(root / "annotations" / "ap10k-train-split1.json",
                               root / "annotations" / "ap10k-val-split1.json", root / "data", out, **kwargs)


def _names(yaml_path: Path) -> list[str]:
    lines = yaml_path.read_text().splitlines()
    return [json.loads(line.split(": ", 1)[1]) for line in lines[lines.index("names:") + 1:]]


def test_one_animal_class_with_normalised_boxes(synthetic: Path, tmp_path: Path) -> None:
    data = convert_to_yolo(_settings(synthetic, tmp_path))
    assert _names(data) == ["animal"]
    gt = json.loads((synthetic / "annotations" / "ap10k-train-split1.json").read_text())
    image = gt["images"][0]
    rows = np.loadtxt(tmp_path / "labels" / "train" / Path(image["file_name"]).with_suffix(".txt"), ndmin=2)
    x, y, w, h = next(a["bbox"] for a in gt["annotations"] if a["image_id"] == image["id"])
    expected = [0, (x + w / 2) / 128, (y + h / 2) / 128, w / 128, h / 128]
    assert any(np.allclose(row, expected, atol=1e-5) for row in rows)
    linked = tmp_path / "images" / "train" / image["file_name"]
    assert linked.stat().st_size == (synthetic / "data" / image["file_name"]).stat().st_size
    labelled = len(list((tmp_path / "labels" / "val").glob("*.txt")))
    assert labelled == len(list((tmp_path / "images" / "val").glob("*.jpg"))) > 0


def test_species_classes_on_real_ap10k(tmp_path: Path) -> None:
    settings = YoloDatasetSettings(SAMPLES / "test_ap10k.json", SAMPLES / "test_ap10k.json", SAMPLES, tmp_path,
                                   classes=ClassMode.SPECIES)
    names = _names(convert_to_yolo(settings))
    assert len(names) == 54 and names[0] == "antelope"
    row = np.loadtxt(tmp_path / "labels" / "train" / "000000037516.txt", ndmin=2)[0]
    assert names[int(row[0])] == "jaguar"
    # bbox [66, 192, 1092, 512] in a 1200 x 867 image.
    np.testing.assert_allclose(row[1:], [(66 + 546) / 1200, (192 + 256) / 867, 1092 / 1200, 512 / 867], atol=1e-6)


def test_family_classes_and_filters(synthetic: Path, tmp_path: Path) -> None:
    names = _names(convert_to_yolo(_settings(synthetic, tmp_path / "all", classes=ClassMode.FAMILY)))
    assert names == sorted(names) and "Felidae" in names
    only = _names(convert_to_yolo(_settings(synthetic, tmp_path / "cats", classes=ClassMode.SPECIES,
                                            families=("Felidae",))))
    assert set(only) <= {"cat", "tiger", "leopard", "lion", "jaguar", "panther", "bobcat", "cheetah"}
    with pytest.raises(ValueError, match="unknown species"):
        convert_to_yolo(_settings(synthetic, tmp_path / "x", species=("unicorn",)))


@pytest.mark.parametrize(("field", "value"), [("image_size", 100), ("epochs", 0), ("workers", -1), ("minutes", 0.0),
                                             ("minutes", float("nan"))])
def test_train_settings_are_validated(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field.split("_")[0]):
        DetectorTrainSettings(data=Path("data.yaml"), **{field: value})


def test_one_epoch_offline_fine_tune_plugs_into_the_detector(synthetic: Path, tmp_path: Path) -> None:
    """``animalpose train detector`` from a model YAML (no download), then ``--det-weights`` loads it."""
    from tracking.detector import Detector, DetectorSettings

    data = convert_to_yolo(_settings(synthetic, tmp_path / "yolo"))
    parser = argparse.ArgumentParser(prog="animalpose")
    cli_train.register(parser.add_subparsers(dest="command", required=True))
    threads, before = torch.get_num_threads(), set(os.listdir(REPO))
    args = parser.parse_args(["train", "detector", "--data", str(data), "--model", "yolo11n.yaml", "--epochs", "1",
                              "--imgsz", "64", "--batch", "4", "--device", "cpu", "--workers", "0",
                              "--output-dir", str(tmp_path / "runs"), "--no-amp"])
    assert args.func(args) == 0
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()
    assert set(os.listdir(REPO)) == before  # nothing written to the working directory
    weights = tmp_path / "runs" / "train" / "weights" / "best.pt"
    assert weights.is_file()
    detector = Detector(DetectorSettings(weights=weights, confidence=0.0, image_size=64, device="cpu"))
    image = cv2.imread(str(next((synthetic / "data").glob("*.jpg"))))
    detections = detector(image)
    assert detections.xyxy.shape[1] == 4


def test_training_for_a_time_plans_its_epochs_and_runs_callbacks(synthetic: Path, tmp_path: Path) -> None:
    """``minutes`` (ultralytics ``time``) stops a run asking for 1000 epochs after a few; extra callbacks run."""
    from train.train_detector import train_detector

    data = convert_to_yolo(_settings(synthetic, tmp_path / "yolo"))
    started: list[int] = []
    settings = DetectorTrainSettings(data=data, model="yolo11n.yaml", epochs=1000, minutes=0.05, image_size=64,
                                     batch=4, device="cpu", workers=0, output_dir=tmp_path / "runs", amp=False)
    weights = train_detector(settings, {"on_train_epoch_start": lambda trainer: started.append(trainer.epoch)})
    assert weights.is_file()
    rows = (tmp_path / "runs" / "train" / "results.csv").read_text().strip().splitlines()[1:]
    assert 1 <= len(rows) < 1000 and started == list(range(len(rows)))


def test_cpu_training_runs_in_channels_last_memory_order() -> None:
    from types import SimpleNamespace

    from train.train_detector import _channels_last_on_cpu

    for device, channels_last in (("cpu", True), ("meta", False)):
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3)).to(device)
        parameters = list(model.parameters())
        _channels_last_on_cpu(SimpleNamespace(device=torch.device(device), model=model))
        weight = model[0].weight
        assert weight.is_contiguous(memory_format=torch.channels_last) is channels_last
        assert weight.is_contiguous() is not channels_last
        assert all(a is b for a, b in zip(model.parameters(), parameters))  # the optimizer keeps its tensors


def test_yolo11_yaml_narrows_yolo11n(tmp_path: Path) -> None:
    from ultralytics.nn.tasks import DetectionModel

    from train.train_detector import YOLO11N_WIDTH, yolo11_yaml

    def parameters(model: str) -> int:
        return sum(p.numel() for p in DetectionModel(model, nc=1, verbose=False).parameters())

    same = yolo11_yaml(tmp_path, YOLO11N_WIDTH)
    narrow = yolo11_yaml(tmp_path, 0.125)
    assert (same.name, narrow.name) == ("yolo11-w0.25.yaml", "yolo11-w0.125.yaml")
    yolo11n = DetectionModel("yolo11n.yaml", nc=1, verbose=False)
    assert str(DetectionModel(str(same), nc=1, verbose=False)) == str(yolo11n)
    first_conv = DetectionModel(str(narrow), nc=1, verbose=False).model[0].conv
    assert first_conv.out_channels == 8  # 64 * 0.125
    assert parameters(str(narrow)) < parameters(str(same)) / 2
    with pytest.raises(ValueError, match="width"):
        yolo11_yaml(tmp_path, 0.0)
