"""Animal detection with any ultralytics YOLO weights file; the only module that imports ultralytics.

Works with a COCO model (``yolo11n.pt`` and friends), a model fine-tuned on AP-10K, or
MegaDetector's ultralytics-format releases (MDv1000-larch, -sorrel). Which classes count as animals:

* named in :class:`DetectorSettings.classes`, if given;
* else, for a COCO model (its names include "person" and the COCO animals): the ten COCO animals;
* else, for a model with an "animal" class (MegaDetector: animal, person, vehicle): "animal";
* else every class of the weights (a model trained on animals only, such as AP-10K species).

Weights are read from a local file. A missing file is an error unless ``allow_download`` lets
ultralytics fetch a released model by name; a failed download is reported as such.

ultralytics' device selection sets torch's CPU thread count to ``cpu_count - 1``, which slows every
other model in the process; the detector restores the caller's thread count after each call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose.structures import Detections
from pose.threads import torch_threads

logger = logging.getLogger(__name__)

#: The animal classes of the COCO detection label set.
COCO_ANIMAL_CLASSES: tuple[str, ...] = (
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
)


class DetectorError(RuntimeError):
    """The detector could not be built or run (missing or unreadable weights, failed download, bad classes)."""


@dataclass(frozen=True)
class DetectorSettings:
    """How to load and run the detector.

    Attributes:
        weights: path of an ultralytics weights file (``.pt``, or an exported format ultralytics loads).
        classes: class names to keep; None for the default rule of the module docstring.
        confidence: lowest detection score kept, in [0, 1].
        iou: IoU threshold of non-maximum suppression, in [0, 1].
        image_size: inference size in pixels (a multiple of 32).
        device: "cpu", "cuda", "cuda:0", "mps"... or None to let ultralytics choose.
        half: FP16 inference (CUDA only; ignored by ultralytics on CPU).
        max_detections: most boxes per image.
        agnostic_nms: suppress overlapping boxes across classes, so one animal is not reported both
            as a dog and as a cat.
        allow_download: let ultralytics download ``weights`` by name when no such file exists.
    """

    weights: str | Path
    classes: tuple[str, ...] | None = None
    confidence: float = 0.25
    iou: float = 0.7
    image_size: int = 640
    device: str | None = None
    half: bool = False
    max_detections: int = 100
    agnostic_nms: bool = True
    allow_download: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.weights, (str, Path)) or not str(self.weights):
            raise ValueError(f"weights must be a non-empty path, got {self.weights!r}")
        if self.classes is not None:
            if isinstance(self.classes, str) or not all(isinstance(c, str) and c for c in self.classes):
                raise ValueError(f"classes must be a tuple of class names or None, got {self.classes!r}")
            object.__setattr__(self, "classes", tuple(self.classes))
        for name in ("confidence", "iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not isinstance(self.image_size, int) or self.image_size < 32 or self.image_size % 32:
            raise ValueError(f"image_size must be a positive multiple of 32, got {self.image_size}")
        if not isinstance(self.max_detections, int) or self.max_detections < 1:
            raise ValueError(f"max_detections must be a positive integer, got {self.max_detections}")


def default_classes(names: Mapping[int, str]) -> tuple[str, ...]:
    """The class names kept by default for a model with these ``names`` (see the module docstring)."""
    values = set(names.values())
    if "person" in values and set(COCO_ANIMAL_CLASSES) <= values:
        return COCO_ANIMAL_CLASSES
    if "animal" in values:
        return ("animal",)
    return tuple(names[i] for i in sorted(names))


def class_ids_for(names: Mapping[int, str], classes: tuple[str, ...]) -> list[int]:
    """Indices of ``classes`` in the model's ``names``; raises DetectorError naming unknown classes."""
    index = {name: i for i, name in names.items()}
    unknown = [c for c in classes if c not in index]
    if unknown:
        raise DetectorError(f"classes {unknown} are not in the model, which has {sorted(index)}")
    return sorted(index[c] for c in classes)


def is_release_name(weights: str | Path) -> bool:
    """True for a bare model name such as ``yolo11n.pt`` (no folder, and no such file here): one that
    ultralytics can download, which is what ``allow_download`` is for."""
    text = str(weights)
    return "/" not in text and "\\" not in text and not Path(text).exists()


def _load_model(settings: DetectorSettings):
    from ultralytics import YOLO

    path = Path(settings.weights)
    if not path.is_file() and not settings.allow_download:
        raise DetectorError(
            f"detector weights file not found: {path}. Give the path of a local YOLO weights file "
            "(e.g. yolo11n.pt, an AP-10K fine-tune or MDV1000-larch), or set allow_download=True to let "
            "ultralytics download a released model by name."
        )
    try:
        model = YOLO(str(path) if path.is_file() else str(settings.weights))
    except Exception as error:  # ultralytics raises many kinds; the user needs the path and the cause
        if path.is_file():
            raise DetectorError(f"could not load YOLO weights from {path}: {error}") from error
        raise DetectorError(
            f"could not download detector weights {settings.weights!r} (offline?): {error}. "
            "Download the file elsewhere and give its local path."
        ) from error
    if model.task not in ("detect", "segment", "pose"):
        raise DetectorError(f"{path} is a YOLO '{model.task}' model; a detect, segment or pose model is needed")
    return model


def _precision_arguments(half: bool) -> dict[str, object]:
    """FP16 flag in the spelling of the installed ultralytics (``quantize`` replaced ``half`` in 8.4)."""
    if not half:
        return {}
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return {"quantize": 16} if "quantize" in DEFAULT_CFG_DICT else {"half": True}


class Detector:
    """``Detector(settings)(frame_bgr) -> Detections`` for one BGR image.

    Raises:
        DetectorError: on a missing or unreadable weights file, a failed download or unknown classes.
    """

    def __init__(self, settings: DetectorSettings) -> None:
        if not isinstance(settings, DetectorSettings):
            raise ValueError(f"settings must be a DetectorSettings, got {settings!r}")
        self.settings = settings
        with torch_threads():  # reading names of an exported model sets up ultralytics' predictor
            self.model = _load_model(settings)
            self.names: dict[int, str] = {int(i): str(n) for i, n in self.model.names.items()}
        self.classes = settings.classes if settings.classes is not None else default_classes(self.names)
        self.class_ids = class_ids_for(self.names, self.classes)
        self._keep_all = len(self.class_ids) == len(self.names)
        logger.info("detector %s: keeping classes %s", settings.weights, ", ".join(self.classes))

    def __call__(self, frame_bgr: np.ndarray) -> Detections:
        """Detect animals in one (H, W, 3) uint8 BGR image; boxes are in its pixels."""
        frame = np.asarray(frame_bgr)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
            raise ValueError(f"frame_bgr must be an (H, W, 3) image, got shape {frame.shape}")
        if frame.dtype != np.uint8:
            raise ValueError(f"frame_bgr must be uint8, got {frame.dtype}")
        s = self.settings
        with torch_threads():
            results = self.model.predict(
                np.ascontiguousarray(frame), conf=s.confidence, iou=s.iou, imgsz=s.image_size, device=s.device,
                max_det=s.max_detections, agnostic_nms=s.agnostic_nms,
                classes=None if self._keep_all else self.class_ids, verbose=False, **_precision_arguments(s.half),
            )
        boxes = results[0].boxes
        if boxes is None or len(boxes) == 0:
            return Detections.empty()
        return Detections(
            boxes.xyxy.float().cpu().numpy(), boxes.conf.float().cpu().numpy(), boxes.cls.long().cpu().numpy()
        )
