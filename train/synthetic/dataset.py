"""Write synthetic quadrupeds as an AP-10K-format keypoint dataset and a YOLO detection dataset.

Layout under ``out_dir`` (formats chosen by :attr:`DatasetSettings.formats`):

- ``ap10k``: ``data/<id:012d>.jpg`` and ``annotations/ap10k-{train,val,test}-split1.json``,
  COCO keypoint files with AP-10K's fields (``info``, ``licenses``, ``images`` with
  ``background``, ``annotations`` with ``num_keypoints``, ``categories`` with species name,
  family as ``supercategory``, keypoint names and the 1-based skeleton). Keypoints with
  ``v = 0`` are written as ``0, 0, 0`` as in AP-10K.
- ``yolo``: ``images/{train,val,test}/*.jpg`` (hard links to ``data/`` where possible),
  ``labels/{train,val,test}/*.txt`` with ``0 cx cy w h`` normalised rows, and ``data.yaml``.
- ``yolo-pose``: the same under ``yolo-pose/``, rows extended by 17 normalised ``x y v``
  triples, and a ``data.yaml`` with ``kpt_shape`` and ``flip_idx``.

Image ``i`` (0-based) is drawn from ``numpy.random.default_rng([seed, i])``, so a dataset is
the same whatever the number of workers; images are assigned to train, then val, then test.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

import cv2
import numpy as np
from tqdm import tqdm

from pose.keypoints import FLIP_INDEX, KEYPOINT_NAMES, NUM_KEYPOINTS, SKELETON
from train.files import link_or_copy
from train.synthetic.background import load_photos
from train.synthetic.scene import SceneLabels, sample_scene
from train.synthetic.species import SPECIES

logger = logging.getLogger(__name__)
T, R = TypeVar("T"), TypeVar("R")

DATASET_FORMATS: tuple[str, ...] = ("ap10k", "yolo", "yolo-pose")
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: The one YOLO class.
YOLO_NAMES: dict[int, str] = {0: "animal"}


@dataclass(frozen=True, kw_only=True)
class OutputSettings:
    """The settings every synthetic dataset shares (keyword-only).

    Attributes:
        val_fraction, test_fraction: shares of the :attr:`split_unit` in the val and test splits.
        formats: any of :data:`DATASET_FORMATS`.
        background_dir: optional folder of photos to crop backgrounds from.
        workers: rendering processes; 1 renders in this process.
        jpeg_quality: JPEG quality, 1..100.
        min_visible_fraction: the annotation rule's uncovered share of the box (:func:`annotated`).
    """

    #: What the splits divide (named in errors).
    split_unit: ClassVar[str] = "images"

    val_fraction: float = 0.1
    test_fraction: float = 0.1
    formats: tuple[str, ...] = ("ap10k", "yolo")
    background_dir: Path | None = None
    workers: int = 1
    jpeg_quality: int = 90
    min_visible_fraction: float = 0.05

    def __post_init__(self) -> None:
        for name in ("val_fraction", "test_fraction", "min_visible_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must leave training {self.split_unit}, "
                f"got {self.val_fraction} + {self.test_fraction}"
            )
        object.__setattr__(self, "formats", tuple(self.formats))
        unknown = set(self.formats) - set(DATASET_FORMATS)
        if not self.formats or unknown:
            raise ValueError(f"formats must be a non-empty subset of {DATASET_FORMATS}, got {self.formats}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.background_dir is not None:
            object.__setattr__(self, "background_dir", Path(self.background_dir))
            if not self.background_dir.is_dir():
                raise ValueError(f"background_dir {self.background_dir} is not a folder")


@dataclass(frozen=True)
class DatasetSettings(OutputSettings):
    """What to generate: still scenes, plus the :class:`OutputSettings` fields.

    Attributes:
        num_images: number of images over all splits.
        width, height: image size in pixels.
        seed: seed of the whole dataset.
        max_animals: at most this many animals per image (fewer are more likely).
    """

    num_images: int = 2000
    width: int = 256
    height: int = 256
    seed: int = 0
    max_animals: int = 3

    def __post_init__(self) -> None:
        if self.num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {self.num_images}")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"width and height must be >= 16 pixels, got {self.width}x{self.height}")
        if self.max_animals < 1:
            raise ValueError(f"max_animals must be >= 1, got {self.max_animals}")
        super().__post_init__()

    def split_sizes(self) -> dict[str, int]:
        """Number of images in each split."""
        return split_sizes(self.num_images, self.val_fraction, self.test_fraction)


def split_sizes(total: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """How many of ``total`` images (or clips) go to each split."""
    val, test = round(total * val_fraction), round(total * test_fraction)
    return {"train": total - val - test, "val": val, "test": test}


def map_in_processes(function: Callable[[T], R], tasks: Iterable[T], workers: int, chunksize: int = 1) -> Iterator[R]:
    """``map(function, tasks)`` in this process (``workers == 1``) or in that many spawned processes,
    results in task order."""
    if workers == 1:
        yield from map(function, tasks)
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from pool.map(function, tasks, chunksize=chunksize)


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`write_dataset` wrote: images and annotated animals per split, and the files."""

    out_dir: Path
    images: dict[str, int]
    annotations: dict[str, int]
    files: tuple[Path, ...] = field(default=())


def render_dataset_image(index: int, settings: DatasetSettings) -> tuple[np.ndarray, SceneLabels, int]:
    """Image ``index`` of the dataset ``settings`` describes: the (H, W, 3) uint8 BGR image,
    the labels of its annotated animals, and its background kind (1-based, AP-10K's
    ``background`` field)."""
    rng = np.random.default_rng([settings.seed, index])
    photos = load_photos(settings.background_dir) if settings.background_dir is not None else ()
    image, labels, kind = sample_scene(rng, settings.width, settings.height, settings.max_animals, photos)
    return image, labels[np.flatnonzero(annotated(labels, settings.min_visible_fraction))], kind + 1


def annotated(labels: SceneLabels, min_visible_fraction: float) -> np.ndarray:
    """(N,) bool: the animals a dataset annotates, those with at least one labelled keypoint, a
    box at least 2 pixels wide and high, and uncovered pixels at least ``min_visible_fraction``
    of their (clipped) box area."""
    extent = labels.boxes[:, 2:] - labels.boxes[:, :2]
    return (
        (labels.num_labelled > 0)
        & (labels.visible_pixels >= min_visible_fraction * np.prod(extent, axis=1))
        & (extent >= 2).all(1)
    )


def image_file_name(index: int) -> str:
    """File name of image ``index``: its 1-based id in twelve digits, as AP-10K names files."""
    return f"{index + 1:012d}.jpg"


def _render_and_save(task: tuple[int, DatasetSettings, Path]) -> tuple[int, SceneLabels, int]:
    index, settings, data_dir = task
    image, labels, kind = render_dataset_image(index, settings)
    path = data_dir / image_file_name(index)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]):
        raise OSError(f"could not write {path}")
    return index, labels, kind


def _rendered(settings: DatasetSettings, data_dir: Path) -> Iterator[tuple[int, SceneLabels, int]]:
    tasks = ((i, settings, data_dir) for i in range(settings.num_images))
    yield from map_in_processes(_render_and_save, tasks, settings.workers, chunksize=32)


def coco_keypoint_names() -> list[str]:
    """AP-10K's annotation-file keypoint names (``left_eye``, ``root_of_tail``, ...), derived
    from :data:`pose.keypoints.KEYPOINT_NAMES`."""
    words = {"L": "left", "R": "right", "F": "front", "B": "back"}
    return ["_".join(words.get(w, w) for w in name.replace(" ", "_").split("_")).lower() for name in KEYPOINT_NAMES]


def coco_categories() -> list[dict]:
    """The ``categories`` table: one entry per species preset, with its AP-10K id."""
    names, skeleton = coco_keypoint_names(), (SKELETON + 1).tolist()
    return [
        {"id": s.category_id, "name": s.name, "supercategory": s.family, "keypoints": names, "skeleton": skeleton}
        for s in sorted(SPECIES, key=lambda s: s.category_id)
    ]


def coco_annotations(labels: SceneLabels, image_id: int, first_id: int) -> list[dict]:
    """AP-10K ``annotations`` entries of one image, ids counting up from ``first_id``."""
    out = []
    for k in range(len(labels)):
        keypoints = labels.keypoints[k].astype(np.float64)
        keypoints[keypoints[:, 2] == 0] = 0.0
        x, y, w, h = coco_bbox(labels.boxes[k])
        out.append({
            "id": first_id + k,
            "image_id": image_id,
            "category_id": int(labels.category_ids[k]),
            "bbox": [x, y, w, h],
            "area": round(w * h, 2),
            "iscrowd": 0,
            "num_keypoints": int(labels.num_labelled[k]),
            "keypoints": [round(v, 2) if i % 3 < 2 else int(v) for i, v in enumerate(keypoints.reshape(-1).tolist())],
        })
    return out


def coco_bbox(box: np.ndarray) -> tuple[float, float, float, float]:
    """``xyxy`` -> ``[x, y, w, h]`` on a 0.01 px grid, rounded outwards so the box keeps its keypoints."""
    x0, y0 = (math.floor(v * 100) / 100 for v in box[:2].tolist())
    x1, y1 = (math.ceil(v * 100) / 100 for v in box[2:].tolist())
    return x0, y0, round(x1 - x0, 2), round(y1 - y0, 2)


def yolo_rows(labels: SceneLabels, width: int, height: int, pose: bool = False) -> str:
    """YOLO label text: ``0 cx cy w h`` per animal normalised by the image size, followed by
    17 ``x y v`` triples when ``pose``."""
    size = np.array([width, height], np.float64)
    lines = []
    for k in range(len(labels)):
        box = labels.boxes[k].astype(np.float64)
        centre, extent = (box[:2] + box[2:]) / 2 / size, (box[2:] - box[:2]) / size
        values = [f"{v:.6f}" for v in (*centre, *extent)]
        if pose:
            kp = labels.keypoints[k].astype(np.float64)
            xy = np.where(kp[:, 2:] > 0, kp[:, :2] / size, 0.0)
            values += [f"{x:.6f} {y:.6f} {int(v)}" for (x, y), v in zip(xy, kp[:, 2])]
        lines.append(" ".join(["0", *values]))
    return "".join(line + "\n" for line in lines)


def _yolo_yaml(root: Path, pose: bool) -> str:
    lines = [f"path: {root.resolve()}", *(f"{split}: images/{split}" for split in SPLITS), "names:"]
    lines += [f"  {k}: {v}" for k, v in YOLO_NAMES.items()]
    if pose:
        lines += [f"kpt_shape: [{NUM_KEYPOINTS}, 3]", f"flip_idx: {FLIP_INDEX.tolist()}"]
    return "\n".join(lines) + "\n"


def write_dataset(out_dir: Path, settings: DatasetSettings) -> DatasetSummary:
    """Render ``settings.num_images`` images into ``out_dir`` in the requested formats.

    Existing files of the same names are overwritten; nothing else in ``out_dir`` is touched.
    With ``settings.workers > 1`` images are rendered in spawned processes, so a calling
    script needs the usual ``if __name__ == "__main__":`` guard.
    """
    out_dir = Path(out_dir)
    data_dir = out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    sizes = settings.split_sizes()
    split_of = np.repeat(np.arange(len(SPLITS)), [sizes[s] for s in SPLITS])
    writer = DatasetWriter(out_dir, settings.formats, settings.width, settings.height)
    logger.info("rendering %d images (%s) into %s", settings.num_images, ", ".join(settings.formats), out_dir)
    for index, labels, kind in tqdm(_rendered(settings, data_dir), total=settings.num_images, desc="synth", unit="img"):
        writer.add(SPLITS[split_of[index]], index, labels, kind)
    files = writer.finish(f"animalpose synthetic quadrupeds in the AP-10K layout, seed {settings.seed}")
    counts = {split: len(writer.coco[split]["annotations"]) for split in SPLITS}
    logger.info("wrote %s images and %s animals to %s", sizes, counts, out_dir)
    return DatasetSummary(out_dir=out_dir, images=sizes, annotations=counts, files=files)


class DatasetWriter:
    """The label files of a dataset whose images are already in ``out_dir/data``
    (named :func:`image_file_name`): AP-10K annotation files and YOLO folders, as the module
    docstring lays them out. :meth:`add` each image, then :meth:`finish` once."""

    def __init__(self, out_dir: Path, formats: tuple[str, ...], width: int, height: int) -> None:
        self.out_dir, self.formats, self.width, self.height = Path(out_dir), tuple(formats), width, height
        self.data_dir = self.out_dir / "data"
        roots = {"yolo": self.out_dir, "yolo-pose": self.out_dir / "yolo-pose"}
        self.yolo_roots = {fmt: root for fmt, root in roots.items() if fmt in self.formats}
        for root in self.yolo_roots.values():
            for split in SPLITS:
                (root / "images" / split).mkdir(parents=True, exist_ok=True)
                (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        self.coco: dict[str, dict[str, list]] = {split: {"images": [], "annotations": []} for split in SPLITS}
        self.next_id = 1

    def add(self, split: str, index: int, labels: SceneLabels, kind: int) -> None:
        """Label image ``index`` (0-based; its 1-based id in the COCO files) of background ``kind`` (1-based)."""
        name = image_file_name(index)
        self.coco[split]["images"].append({
            "license": 1, "id": index + 1, "file_name": name, "width": self.width,
            "height": self.height, "background": kind,
        })
        self.coco[split]["annotations"] += coco_annotations(labels, index + 1, self.next_id)
        self.next_id += len(labels)
        for fmt, root in self.yolo_roots.items():
            link_or_copy(self.data_dir / name, root / "images" / split / name)
            text = yolo_rows(labels, self.width, self.height, pose=fmt == "yolo-pose")
            (root / "labels" / split / name).with_suffix(".txt").write_text(text)

    def finish(self, description: str) -> tuple[Path, ...]:
        """Write the annotation files and ``data.yaml`` files; returns their paths."""
        files: list[Path] = []
        if "ap10k" in self.formats:
            (self.out_dir / "annotations").mkdir(exist_ok=True)
            for split in SPLITS:
                path = self.out_dir / "annotations" / f"ap10k-{split}-split1.json"
                path.write_text(json.dumps(_coco_file(description, **self.coco[split])))
                files.append(path)
        for fmt, root in self.yolo_roots.items():
            path = root / "data.yaml"
            path.write_text(_yolo_yaml(root, pose=fmt == "yolo-pose"))
            files.append(path)
        return tuple(files)


def _coco_file(description: str, images: list[dict], annotations: list[dict]) -> dict:
    return {
        "info": {
            "description": description,
            "url": "",
            "version": "1.0",
            "year": 2025,
            "contributor": "animalpose train.synthetic",
            "date_created": "",
        },
        "licenses": [{"id": 1, "name": "Synthetic images, no restrictions", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(),
    }

