"""Fine-tune an ultralytics YOLO detector on AP-10K boxes; the weights plug into ``--det-weights``.

Two steps:

1. :func:`convert_to_yolo` writes an ultralytics detection dataset from COCO keypoint files::

       OUT/images/{train,val}/<file_name>   hard links to the AP-10K images (copies across disks)
       OUT/labels/{train,val}/<stem>.txt    "class cx cy w h" rows, normalised to [0, 1]
       OUT/data.yaml

   with one class ``animal`` (the detector then keeps it as its animal class), or the families
   or species as classes. ultralytics' ``convert_coco`` is not used: it fixes the class to
   ``category_id - 1`` and neither filters categories nor places the images.
2. :func:`train_detector` trains with ultralytics (plots off, so nothing is downloaded for
   them) and returns the path of ``best.pt``.

:func:`yolo11_yaml` writes the model YAML of a YOLO11 narrower than YOLO11n, for training from
scratch where time is short (the synthetic end-to-end benchmark).

This is the training-side counterpart of :mod:`tracking.detector`; both import ultralytics,
here only inside :func:`train_detector` and :func:`yolo11_yaml`.
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from train.dataset import ap10k_paths, select_categories
from train.files import link_or_copy

__all__ = [
    "ClassMode",
    "DetectorTrainSettings",
    "YoloDatasetSettings",
    "convert_to_yolo",
    "get_args_parser",
    "main",
    "train_detector",
]

logger = logging.getLogger(__name__)


class ClassMode(enum.Enum):
    """What the detector's classes are."""

    ANIMAL = "animal"  # one class
    FAMILY = "family"  # the categories' supercategory, sorted by name
    SPECIES = "species"  # the categories' name, in category id order


@dataclass(frozen=True)
class YoloDatasetSettings:
    """What :func:`convert_to_yolo` writes.

    Attributes:
        train_ann, val_ann: COCO keypoint (or detection) files.
        image_root: folder the files' image names are relative to.
        out_dir: the YOLO dataset folder.
        classes: class layout.
        families, species: keep only these categories (either list matching); images are kept
            when they hold a kept animal, and only kept animals are labelled.
    """

    train_ann: Path
    val_ann: Path
    image_root: Path
    out_dir: Path
    classes: ClassMode = ClassMode.ANIMAL
    families: tuple[str, ...] = ()
    species: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("train_ann", "val_ann", "image_root", "out_dir"):
            object.__setattr__(self, name, Path(getattr(self, name)))
        object.__setattr__(self, "classes", ClassMode(self.classes))
        object.__setattr__(self, "families", tuple(self.families))
        object.__setattr__(self, "species", tuple(self.species))


def _class_names(categories: Sequence[dict], mode: ClassMode) -> tuple[list[str], dict[int, int]]:
    """Class names and the category id -> class index map."""
    if mode is ClassMode.ANIMAL:
        return ["animal"], {int(c["id"]): 0 for c in categories}
    if mode is ClassMode.FAMILY:
        names = sorted({str(c.get("supercategory", "")) for c in categories})
        return names, {int(c["id"]): names.index(str(c.get("supercategory", ""))) for c in categories}
    ordered = sorted(categories, key=lambda c: int(c["id"]))
    return [str(c["name"]) for c in ordered], {int(c["id"]): i for i, c in enumerate(ordered)}


def _yolo_rows(annotations: Sequence[dict], width: float, height: float, class_of: dict[int, int]) -> list[str]:
    rows = []
    for annotation in annotations:
        x, y, w, h = (float(v) for v in annotation["bbox"])
        x1, y1 = max(0.0, x), max(0.0, y)
        x2, y2 = min(width, x + w), min(height, y + h)
        if x2 <= x1 or y2 <= y1:
            continue
        box = np.array([(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height])
        rows.append(f"{class_of[int(annotation['category_id'])]} " + " ".join(f"{v:.6f}" for v in box))
    return rows


def _convert_split(ann_file: Path, split: str, settings: YoloDatasetSettings, class_of: dict[int, int],
                   keep: set[int]) -> tuple[int, int]:
    data = json.loads(ann_file.read_text(encoding="utf-8"))
    by_image: dict[int, list[dict]] = {}
    for annotation in data["annotations"]:
        if int(annotation["category_id"]) in keep and not annotation.get("iscrowd", 0) and "bbox" in annotation:
            by_image.setdefault(int(annotation["image_id"]), []).append(annotation)
    images = labels = 0
    for image in data["images"]:
        annotations = by_image.get(int(image["id"]))
        if not annotations:
            continue
        rows = _yolo_rows(annotations, float(image["width"]), float(image["height"]), class_of)
        if not rows:
            continue
        source = settings.image_root / image["file_name"]
        if not source.is_file():
            raise FileNotFoundError(f"image {source} of {ann_file} not found")
        link_or_copy(source, settings.out_dir / "images" / split / image["file_name"])
        label = (settings.out_dir / "labels" / split / image["file_name"]).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("\n".join(rows) + "\n", encoding="utf-8")
        images, labels = images + 1, labels + len(rows)
    return images, labels


def convert_to_yolo(settings: YoloDatasetSettings) -> Path:
    """Write the YOLO dataset; returns the path of its ``data.yaml``.

    Raises:
        FileNotFoundError: an annotation file or image is missing.
        ValueError: an unknown family/species, or no labelled image in a split.
    """
    for path in (settings.train_ann, settings.val_ann):
        if not path.is_file():
            raise FileNotFoundError(f"annotation file not found: {path}")
    categories = json.loads(settings.train_ann.read_text(encoding="utf-8"))["categories"]
    keep = select_categories(categories, settings.families, settings.species)
    names, class_of = _class_names([c for c in categories if int(c["id"]) in keep], settings.classes)
    for split, ann_file in (("train", settings.train_ann), ("val", settings.val_ann)):
        images, labels = _convert_split(ann_file, split, settings, class_of, keep)
        if images == 0:
            raise ValueError(f"{ann_file}: no image with a kept animal for the {split} split")
        logger.info("YOLO %s split: %d images, %d boxes", split, images, labels)
    yaml_path = settings.out_dir / "data.yaml"
    lines = [f"path: {json.dumps(str(settings.out_dir.resolve()))}", "train: images/train", "val: images/val",
             "names:"] + [f"  {i}: {json.dumps(name)}" for i, name in enumerate(names)]
    yaml_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.info("Wrote %s with %d classes (%s)", yaml_path, len(names), settings.classes.value)
    return yaml_path


#: Channel width multiplier of YOLO11n (ultralytics' ``yolo11.yaml``, scale ``n``).
YOLO11N_WIDTH: float = 0.25


def yolo11_yaml(out_dir: Path, width: float) -> Path:
    """Write the model YAML of YOLO11n's layers at channel width multiplier ``width`` (YOLO11n: 0.25)
    into ``out_dir``; returns its path, for ``DetectorTrainSettings.model``.

    The layers come from ultralytics' own ``yolo11.yaml``, with scale ``n``'s depth. The file is
    named ``yolo11-w<width>.yaml``, a name from which ultralytics guesses no scale, so that it takes
    the width from the file.
    """
    from ultralytics.utils import ROOT, YAML

    if not 0 < width <= 1:
        raise ValueError(f"width must be in (0, 1], got {width}")
    config = YAML.load(ROOT / "cfg" / "models" / "11" / "yolo11.yaml")
    depth, _, max_channels = config.pop("scales")["n"]
    channels = [arguments[0] for *_, arguments in config["backbone"] + config["head"]
                if arguments and isinstance(arguments[0], int)]
    if max(channels) > max_channels:  # a plain width multiplier applies no channel cap
        raise ValueError(f"ultralytics' yolo11.yaml has layers wider than scale n's cap {max_channels}")
    config.update(depth_multiple=depth, width_multiple=float(width))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"yolo11-w{width:g}.yaml"
    YAML.save(path, config)
    return path


@dataclass(frozen=True)
class DetectorTrainSettings:
    """An ultralytics training run.

    Attributes:
        data: the dataset's ``data.yaml``.
        model: weights to fine-tune (``yolo11n.pt``: downloaded by ultralytics when missing)
            or a model YAML to train from scratch (``yolo11n.yaml``).
        epochs, image_size, batch: ultralytics ``epochs``, ``imgsz``, ``batch``.
        minutes: train for this long instead of ``epochs`` (ultralytics ``time``, in hours there): after
            each epoch ultralytics plans the number of epochs that fit from their mean duration so far
            (learning-rate schedule and the last epochs without mosaics follow the plan) and it stops
            when the time is up, if need be inside an epoch. None: ``epochs``.
        device: ``cpu``, ``0``, ``0,1``... (None: ultralytics chooses).
        workers: data loading workers.
        output_dir, name: ultralytics ``project`` and ``name``; weights land in
            ``output_dir/name/weights/best.pt``.
        seed: ultralytics seed.
        amp: mixed precision (CUDA; ultralytics' AMP check downloads a small model once).
        plots: let ultralytics draw plots (needs its font, downloaded when missing).
        cpu_channels_last: train in channels-last memory order on the CPU too (ultralytics does so on
            CUDA only). On this project's 2-core CPU it made YOLO11n's forward and backward passes 1.5x
            and whole epochs (data loading included) 1.2-1.3x faster.
    """

    data: Path
    model: str = "yolo11n.pt"
    epochs: int = 100
    minutes: float | None = None
    image_size: int = 640
    batch: int = 16
    device: str | None = None
    workers: int = 8
    output_dir: Path = Path("runs/detector")
    name: str = "train"
    seed: int = 0
    amp: bool = True
    plots: bool = False
    cpu_channels_last: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", Path(self.data))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.epochs < 1 or self.batch < 1 or self.workers < 0:
            raise ValueError(f"epochs and batch must be >= 1 and workers >= 0, got {self.epochs}, {self.batch}, "
                             f"{self.workers}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes}")
        if self.image_size < 32 or self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {self.image_size}")


def train_detector(settings: DetectorTrainSettings,
                   callbacks: Mapping[str, Callable[[Any], None]] | None = None) -> Path:
    """Train with ultralytics; returns ``best.pt`` (usable as ``--det-weights``).

    ``callbacks`` maps ultralytics events (``on_train_epoch_start``...) to functions of the trainer,
    added to the model before training.

    Raises:
        FileNotFoundError: ``data`` or a local ``model`` file is missing.
    """
    import torch
    from ultralytics import YOLO

    from pose.threads import torch_threads

    if not settings.data.is_file():
        raise FileNotFoundError(f"dataset file not found: {settings.data}")
    # ultralytics changes these for the whole process; they are put back afterwards.
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        with torch_threads():
            model = YOLO(settings.model)
            if settings.cpu_channels_last:
                model.add_callback("on_pretrain_routine_end", _channels_last_on_cpu)
            for event, callback in (callbacks or {}).items():
                model.add_callback(event, callback)
            model.train(
                data=str(settings.data), epochs=settings.epochs, imgsz=settings.image_size, batch=settings.batch,
                device=settings.device, workers=settings.workers, project=str(settings.output_dir.resolve()),
                name=settings.name, exist_ok=True, seed=settings.seed, amp=settings.amp, plots=settings.plots,
                verbose=False, time=None if settings.minutes is None else settings.minutes / 60,
            )
        best = Path(model.trainer.best)
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
    if not best.is_file():
        best = Path(model.trainer.last)
    logger.info("Detector weights: %s (use --det-weights %s)", best, best)
    return best


def _channels_last_on_cpu(trainer) -> None:
    """ultralytics callback: the model being trained goes to channels-last memory order on the CPU (the
    parameters keep their identity, so the optimizer and the EMA copy are unaffected)."""
    import torch

    if trainer.device.type == "cpu":
        trainer.model.to(memory_format=torch.channels_last)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """Options of ``python -m train.train_detector`` and ``animalpose train detector``."""
    d = DetectorTrainSettings(data=Path("data.yaml"))
    parser = argparse.ArgumentParser(description="Fine-tune a YOLO detector on AP-10K boxes (ultralytics).",
                                     add_help=add_help)
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, help="an existing YOLO data.yaml (skips the conversion)")
    data.add_argument("--data-root", type=Path, default=Path("data/ap10k"), help="AP-10K folder")
    data.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="AP-10K split number")
    data.add_argument("--train-ann", type=Path, help="training COCO file (default: the split's)")
    data.add_argument("--val-ann", type=Path, help="validation COCO file (default: the split's)")
    data.add_argument("--image-root", type=Path, help="image folder (default: DATA_ROOT/data)")
    data.add_argument("--classes", choices=[m.value for m in ClassMode], default=ClassMode.ANIMAL.value,
                      help="one class 'animal' (default), or families or species as classes")
    data.add_argument("--families", nargs="+", default=[], metavar="F", help="keep only these families")
    data.add_argument("--species", nargs="+", default=[], metavar="S", help="keep only these species")
    data.add_argument("--dataset-dir", type=Path, help="where to write the YOLO dataset (default: OUTPUT/dataset)")
    train = parser.add_argument_group("training")
    train.add_argument("--model", default=d.model, help="weights to fine-tune or a model YAML (from scratch)")
    train.add_argument("--epochs", type=int, default=d.epochs)
    train.add_argument("--minutes", type=float, default=None,
                       help="train for this long instead of --epochs (ultralytics fits the epochs to it)")
    train.add_argument("--imgsz", type=int, default=d.image_size, help="training image size (pixels)")
    train.add_argument("--batch", type=int, default=d.batch)
    train.add_argument("--device", default=None, help="cpu, 0, 0,1 ... (default: ultralytics chooses)")
    train.add_argument("--workers", type=int, default=d.workers)
    train.add_argument("--output-dir", type=Path, default=d.output_dir)
    train.add_argument("--name", default=d.name, help="run name under the output folder")
    train.add_argument("--seed", type=int, default=d.seed)
    train.add_argument("--no-amp", action="store_true", help="train in float32")
    train.add_argument("--plots", action="store_true", help="let ultralytics draw plots (downloads a font)")
    return parser


def main(args: argparse.Namespace) -> int:
    """Convert (unless ``--data``) and train; 0 on success."""
    data = args.data
    if data is None:
        train_ann, image_root = ap10k_paths(args.data_root, "train", args.split)
        val_ann, _ = ap10k_paths(args.data_root, "val", args.split)
        data = convert_to_yolo(YoloDatasetSettings(
            train_ann=args.train_ann or train_ann, val_ann=args.val_ann or val_ann,
            image_root=args.image_root or image_root, out_dir=args.dataset_dir or args.output_dir / "dataset",
            classes=ClassMode(args.classes), families=tuple(args.families), species=tuple(args.species),
        ))
    train_detector(DetectorTrainSettings(
        data=data, model=args.model, epochs=args.epochs, minutes=args.minutes, image_size=args.imgsz, batch=args.batch,
        device=args.device, workers=args.workers, output_dir=args.output_dir, name=args.name, seed=args.seed,
        amp=not args.no_amp, plots=args.plots,
    ))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main(get_args_parser().parse_args()))
