"""The detector wrapper, run on tiny randomly initialised YOLO models built offline from a model yaml."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")  # never reach for the network from the tests

import torch  # noqa: E402

from pose.structures import Detections  # noqa: E402
from tracking.detector import (  # noqa: E402
    COCO_ANIMAL_CLASSES,
    Detector,
    DetectorError,
    DetectorSettings,
    class_ids_for,
    default_classes,
)

COCO_NAMES = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
              "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", *COCO_ANIMAL_CLASSES]
MEGADETECTOR_NAMES = {0: "animal", 1: "person", 2: "vehicle"}


def _save_tiny_yolo(path: Path, names: dict[int, str]) -> Path:
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = YOLO("yolo11n.yaml")  # built from the yaml: random weights, no download
    model.model = DetectionModel("yolo11n.yaml", nc=len(names), verbose=False)
    model.model.names = names
    model.save(str(path))
    return path


@pytest.fixture(scope="module")
def megadetector_like(tmp_path_factory) -> Path:
    return _save_tiny_yolo(tmp_path_factory.mktemp("yolo") / "tiny_md.pt", MEGADETECTOR_NAMES)


@pytest.fixture(scope="module")
def md_detector(megadetector_like) -> Detector:
    return Detector(DetectorSettings(megadetector_like, confidence=0.0, image_size=160, device="cpu",
                                     max_detections=20))


@pytest.fixture(scope="module")
def coco_like(tmp_path_factory) -> Path:
    return _save_tiny_yolo(tmp_path_factory.mktemp("yolo") / "tiny_coco.pt", dict(enumerate(COCO_NAMES)))


@pytest.fixture(scope="module")
def frame(samples_dir) -> np.ndarray:
    import cv2

    image = cv2.imread(str(samples_dir / "ap10k" / "000000037516.jpg"))
    assert image is not None
    return image


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (dict(enumerate(COCO_NAMES)), COCO_ANIMAL_CLASSES),
        (MEGADETECTOR_NAMES, ("animal",)),
        ({0: "antelope", 1: "dog", 2: "horse"}, ("antelope", "dog", "horse")),  # an AP-10K species model
        ({0: "cat", 1: "dog"}, ("cat", "dog")),
    ],
)
def test_default_classes(names, expected):
    assert default_classes(names) == expected


def test_class_ids_for_names_unknown_classes():
    assert class_ids_for(MEGADETECTOR_NAMES, ("vehicle", "animal")) == [0, 2]
    with pytest.raises(DetectorError, match="unicorn"):
        class_ids_for(MEGADETECTOR_NAMES, ("animal", "unicorn"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": ""}, "weights"),
        ({"weights": "m.pt", "classes": "dog"}, "classes"),
        ({"weights": "m.pt", "confidence": 1.5}, "confidence"),
        ({"weights": "m.pt", "iou": -0.1}, "iou"),
        ({"weights": "m.pt", "image_size": 100}, "image_size"),
        ({"weights": "m.pt", "max_detections": 0}, "max_detections"),
    ],
)
def test_settings_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DetectorSettings(**kwargs)


def test_missing_weights_name_the_path(tmp_path):
    missing = tmp_path / "no_such_model.pt"
    with pytest.raises(DetectorError, match="no_such_model.pt"):
        Detector(DetectorSettings(missing))


def test_unreadable_weights_are_reported(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(DetectorError, match="broken.pt"):
        Detector(DetectorSettings(broken))


def test_detects_with_a_tiny_random_model(md_detector, frame):
    threads = torch.get_num_threads()
    detector = md_detector
    assert detector.classes == ("animal",) and detector.class_ids == [0]
    detections = detector(frame)
    assert torch.get_num_threads() == threads  # ultralytics' device selection is undone
    assert isinstance(detections, Detections)
    assert 0 < len(detections) <= 20  # random weights, but confidence 0 keeps boxes
    assert detections.xyxy.dtype == np.float32 and detections.scores.dtype == np.float32
    assert detections.class_ids.dtype == np.int64 and set(detections.class_ids.tolist()) == {0}
    height, width = frame.shape[:2]
    assert (detections.xyxy[:, [0, 2]] >= 0).all() and (detections.xyxy[:, [0, 2]] <= width).all()
    assert (detections.xyxy[:, [1, 3]] >= 0).all() and (detections.xyxy[:, [1, 3]] <= height).all()


def test_class_filter_keeps_only_the_asked_classes(coco_like, frame):
    detector = Detector(DetectorSettings(coco_like, confidence=0.0, image_size=160, device="cpu"))
    assert detector.classes == COCO_ANIMAL_CLASSES
    assert detector.class_ids == list(range(14, 24))
    assert set(detector(frame).class_ids.tolist()) <= set(detector.class_ids)  # may be empty: random weights
    people = Detector(DetectorSettings(coco_like, classes=("person",), confidence=0.0, image_size=160, device="cpu"))
    assert set(people(frame).class_ids.tolist()) <= {0}


def test_unknown_class_is_an_error(megadetector_like):
    with pytest.raises(DetectorError, match="dog"):
        Detector(DetectorSettings(megadetector_like, classes=("dog",)))


@pytest.mark.parametrize(
    "bad_frame",
    [np.zeros((10, 10), np.uint8), np.zeros((0, 10, 3), np.uint8), np.zeros((10, 10, 3), np.float32)],
)
def test_rejects_bad_frames(md_detector, bad_frame):
    with pytest.raises(ValueError, match="frame_bgr"):
        md_detector(bad_frame)
