"""AP-10K (or any 17-keypoint COCO file) as a top-down dataset: one sample per annotated animal.

Layout of the AP-10K release::

    data/ap10k/annotations/ap10k-{train,val,test}-split{1,2,3}.json
    data/ap10k/data/000000000001.jpg ...

Instances are read as mmpose 0.x's ``AnimalAP10KDataset`` reads them: crowd annotations and
annotations without a labelled keypoint (``max(keypoints) == 0`` or ``num_keypoints == 0``)
are skipped, boxes are cleaned with :func:`pose.transforms.clean_boxes_xywh` and dropped when
empty or of zero ``area``. What a sample is (its crop geometry, normalisation and targets) follows
the model's codec through a :mod:`train.targets` recipe: 0.x heatmaps by default, 1.x SimCC for
RTMPose (its ground-truth boxes clipped as 1.x's loader clips them). Species are the categories'
``name``, families their ``supercategory``; ``families`` / ``species`` keep the categories that match either list.

A training sample is augmented (:mod:`train.augment`) from a generator seeded with
``(seed, epoch, index)``, so it does not depend on the worker that draws it and a resumed
run sees the same samples as an uninterrupted one; call :meth:`AP10KDataset.set_epoch`
before each epoch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pose.keypoints import FLIP_INDEX, NUM_KEYPOINTS
from pose.transforms import PIXEL_STD, apply_affine, clean_boxes_xywh, warp_crops
from train.augment import AugmentSettings, Crop, fold_flip, sample_crop
from train.targets import HeatmapTargets, Targets

__all__ = ["AP10KDataset", "Sample", "ap10k_paths", "select_categories", "worker_init"]

logger = logging.getLogger(__name__)


def ap10k_paths(root: str | Path, split: str = "train", number: int = 1) -> tuple[Path, Path]:
    """``(annotation file, image folder)`` of an AP-10K split under ``root`` (``data/ap10k``)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if number not in (1, 2, 3):
        raise ValueError(f"AP-10K has splits 1, 2 and 3, got {number}")
    root = Path(root)
    return root / "annotations" / f"ap10k-{split}-split{number}.json", root / "data"


def select_categories(
    categories: Sequence[dict], families: Sequence[str] | None = None, species: Sequence[str] | None = None
) -> set[int]:
    """Ids of the categories whose ``supercategory`` is in ``families`` or ``name`` in ``species``.

    Names compare case-insensitively. With neither list every category is selected.

    Raises:
        ValueError: a requested name matches no category (the message lists the known ones).
    """
    if not families and not species:
        return {int(c["id"]) for c in categories}
    selected: set[int] = set()
    for key, wanted, what in (("supercategory", families, "family"), ("name", species, "species")):
        known = {str(c.get(key, "")).lower(): str(c.get(key, "")) for c in categories}
        for name in wanted or ():
            if name.lower() not in known:
                listing = ", ".join(sorted(known.values()))
                raise ValueError(f"unknown {what} {name!r}; the annotation file has: {listing}")
            selected |= {int(c["id"]) for c in categories if str(c.get(key, "")).lower() == name.lower()}
    return selected


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one OpenCV thread per worker (the workers are the parallelism)."""
    cv2.setNumThreads(1)


@dataclass(frozen=True)
class Sample:
    """One prepared instance, before conversion to tensors.

    Attributes:
        image: (H, W, 3) uint8 RGB crop of the model input size.
        keypoints: (K, 2) keypoints in crop pixels (relabelled when the crop is mirrored).
        visible: (K,) float32 labelled flags, relabelled likewise.
        target: (K, h, w) float32 Gaussian heatmaps, or (K, Wx + Wy) SimCC targets (the recipe's).
        target_weight: (K,) float32 loss weights (0 for unlabelled or far-outside keypoints).
        crop: where the crop was cut (:class:`train.augment.Crop`; ``scale`` in the recipe's unit:
            200 pixels for heatmap models, pixels for SimCC models).
        matrix: (2, 3) image -> crop matrix (the flip folded in).
    """

    image: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    target: np.ndarray
    target_weight: np.ndarray
    crop: Crop
    matrix: np.ndarray


class AP10KDataset(Dataset):
    """Top-down samples of a COCO keypoint file with the AP-10K 17 keypoints.

    Args:
        ann_file: COCO keypoint JSON.
        image_root: folder the images' ``file_name`` are relative to.
        input_size: model input ``(width, height)`` in pixels.
        heatmap_size: target ``(width, height)``.
        sigma: Gaussian sigma in heatmap pixels.
        train: augment (else the test-time crop of the box).
        augment: augmentation settings, used when ``train``.
        families, species: keep only these categories (either list matching).
        seed: seed of the augmentation.
        targets: the recipe of the model to train (:func:`train.targets.training_targets`); when given,
            ``input_size``, ``heatmap_size`` and ``sigma`` are its own. Default: heatmaps of those three.

    ``dataset[i]`` is ``(image (3, H, W) float32, target, target_weight (K,), meta)``, the target
    (K, h, w) heatmaps or (K, Wx + Wy) SimCC targets, with ``meta`` holding ``center`` (2,), ``scale``
    (2,) (in the recipe's unit, as the model's codec decodes with them), ``rotation``, ``flipped``, ``image_id``,
    ``category_id``, ``annotation_id``, ``bbox_score`` and ``index``.
    """

    def __init__(
        self,
        ann_file: str | Path,
        image_root: str | Path,
        input_size: tuple[int, int] = (256, 256),
        heatmap_size: tuple[int, int] = (64, 64),
        sigma: float = 2.0,
        train: bool = True,
        augment: AugmentSettings = AugmentSettings(),
        families: Sequence[str] | None = None,
        species: Sequence[str] | None = None,
        seed: int = 0,
        targets: Targets | None = None,
    ) -> None:
        if targets is not None:
            input_size = targets.input_size
            if isinstance(targets, HeatmapTargets):
                heatmap_size, sigma = targets.heatmap_size, targets.sigma
        if len(input_size) != 2 or min(input_size) < 8:
            raise ValueError(f"input_size must be (width, height) >= 8 pixels, got {input_size}")
        if len(heatmap_size) != 2 or min(heatmap_size) < 1:
            raise ValueError(f"heatmap_size must be (width, height) >= 1, got {heatmap_size}")
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.ann_file = Path(ann_file)
        self.image_root = Path(image_root)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.sigma = float(sigma)
        self.targets: Targets = targets or HeatmapTargets(self.input_size, self.heatmap_size, self.sigma)
        self.train = train
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self.coco = _read_coco(self.ann_file)
        self.category_ids = select_categories(self.coco["categories"], families, species)
        self._load_instances()
        self._check_images()
        logger.info(
            "%s: %d instances in %d images, %d species of %d families",
            self.ann_file.name, len(self), len(set(self.image_ids.tolist())), len(self.species), len(self.families),
        )

    # ------------------------------------------------------------------ loading

    def _load_instances(self) -> None:
        images = {int(image["id"]): image for image in self.coco["images"]}
        kept = []
        for annotation in self.coco["annotations"]:
            keypoints = annotation.get("keypoints")
            if (
                int(annotation["category_id"]) not in self.category_ids
                or annotation.get("iscrowd", 0)
                or "bbox" not in annotation
                or not keypoints
                or max(keypoints) <= 0
                or annotation.get("num_keypoints", 1) == 0
            ):
                continue
            if len(keypoints) != 3 * NUM_KEYPOINTS:
                raise ValueError(
                    f"{self.ann_file}: annotation {annotation.get('id')} has {len(keypoints) // 3} keypoints, "
                    f"expected the {NUM_KEYPOINTS} of AP-10K"
                )
            if int(annotation["image_id"]) not in images:
                raise ValueError(f"{self.ann_file}: annotation {annotation.get('id')} refers to a missing image")
            kept.append(annotation)
        sizes = np.array([_image_size(images[int(a["image_id"])], self.ann_file) for a in kept], np.float64)
        boxes = np.array([a["bbox"] for a in kept], np.float64).reshape(-1, 4)
        clean, valid = clean_boxes_xywh(boxes, sizes[:, 0], sizes[:, 1]) if kept else (boxes, np.zeros(0, bool))
        valid &= np.array([a.get("area", 1) > 0 for a in kept], bool)
        rows = np.flatnonzero(valid)
        kept = [kept[i] for i in rows]
        self.boxes = clean[rows]
        self.keypoints = np.array([a["keypoints"] for a in kept], np.float32).reshape(-1, NUM_KEYPOINTS, 3)
        self.image_ids = np.array([int(a["image_id"]) for a in kept], np.int64)
        self.annotation_ids = np.array([int(a.get("id", -1)) for a in kept], np.int64)
        self.categories = np.array([int(a["category_id"]) for a in kept], np.int64)
        self.files = [self.image_root / images[int(a["image_id"])]["file_name"] for a in kept]
        self.image_widths = sizes[rows, 0].astype(np.int64)
        self.centers, self.scales = self.targets.centers_scales(boxes[rows], self.boxes, sizes[rows])

    def _check_images(self) -> None:
        missing = sorted({str(f) for f in self.files if not f.is_file()})
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} images of {self.ann_file} are missing under {self.image_root}, e.g. {missing[0]}"
            )

    # ------------------------------------------------------------------ metadata

    @property
    def species(self) -> list[str]:
        """Names of the species that have instances, sorted."""
        present = set(self.categories.tolist())
        return sorted({str(c["name"]) for c in self.coco["categories"] if int(c["id"]) in present})

    @property
    def families(self) -> list[str]:
        """Names of the families (``supercategory``) that have instances, sorted."""
        present = set(self.categories.tolist())
        return sorted({str(c.get("supercategory", "")) for c in self.coco["categories"] if int(c["id"]) in present})

    def ground_truth(self) -> dict:
        """The COCO dict to evaluate predictions on this dataset against.

        Holds the selected categories' annotations (keypoint-less ones included: COCO
        evaluation ignores them) and the images they are in.
        """
        annotations = [a for a in self.coco["annotations"] if int(a["category_id"]) in self.category_ids]
        image_ids = {int(a["image_id"]) for a in annotations}
        return {
            **{key: value for key, value in self.coco.items() if key not in ("images", "annotations")},
            "images": [image for image in self.coco["images"] if int(image["id"]) in image_ids],
            "annotations": annotations,
        }

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (call before iterating a new epoch)."""
        self.epoch = int(epoch)

    # ------------------------------------------------------------------ samples

    def __len__(self) -> int:
        return len(self.files)

    def read_image(self, index: int) -> np.ndarray:
        """The BGR uint8 image of instance ``index``."""
        image = cv2.imread(str(self.files[index]), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read image {self.files[index]} (corrupt or not an image)")
        return image

    def sample(self, index: int) -> Sample:
        """Instance ``index`` cropped, augmented when training, with its targets."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} instances")
        image_bgr = self.read_image(index)
        keypoints = self.keypoints[index, :, :2]
        visible = np.minimum(self.keypoints[index, :, 2], 1.0)
        width = int(image_bgr.shape[1])
        if self.train:
            crop = self._augmented_crop(index, keypoints, visible, width)
        else:
            crop = Crop(center=self.centers[index], scale=self.scales[index])
        # Pixels as mmpose cuts them: mirror the image, then warp (bit-exact); keypoints go
        # straight from the unflipped image through the matrix with the flip folded in.
        source = np.ascontiguousarray(image_bgr[:, ::-1]) if crop.flipped else image_bgr
        warp = self.targets.warp_matrix(crop.center, crop.scale, crop.rotation)
        image = warp_crops(source, warp[None], self.input_size)[0, :, :, ::-1]
        matrix = fold_flip(warp, width) if crop.flipped else warp
        crop_keypoints = apply_affine(keypoints[None], matrix[None])[0].astype(np.float32)
        if crop.flipped:
            crop_keypoints, visible = crop_keypoints[FLIP_INDEX], visible[FLIP_INDEX]
        target, weight = self.targets.encode(crop_keypoints[None], visible[None])
        return Sample(np.ascontiguousarray(image), crop_keypoints, visible.astype(np.float32), target[0], weight[0],
                      crop, matrix)

    def _augmented_crop(self, index: int, keypoints: np.ndarray, visible: np.ndarray, width: int) -> Crop:
        """A random training crop (:func:`train.augment.sample_crop`, drawn in units of 200 pixels), its
        ``scale`` in the recipe's unit."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        aspect = self.input_size[0] / self.input_size[1]
        to_200 = self.targets.scale_unit / PIXEL_STD
        scale = self.scales[index] if to_200 == 1 else (self.scales[index] * to_200).astype(np.float32)
        crop = sample_crop(rng, self.centers[index], scale, self.boxes[index, 2:], keypoints, visible, width,
                           aspect, self.augment)
        if to_200 == 1:
            return crop
        return Crop(crop.center, (crop.scale / to_200).astype(np.float32), crop.rotation, crop.flipped)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        sample = self.sample(index)
        inputs = self.targets.normalize(sample.image[None])[0]
        meta = {
            "center": sample.crop.center.astype(np.float32),
            "scale": sample.crop.scale.astype(np.float32),
            "rotation": float(sample.crop.rotation),
            "flipped": bool(sample.crop.flipped),
            "image_id": int(self.image_ids[index]),
            "category_id": int(self.categories[index]),
            "annotation_id": int(self.annotation_ids[index]),
            "bbox_score": 1.0,
            "index": int(index),
        }
        return (torch.from_numpy(inputs), torch.from_numpy(sample.target), torch.from_numpy(sample.target_weight),
                meta)


def _read_coco(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations",
                                                                                         "categories")):
        raise ValueError(f"{path} is not a COCO keypoint file (needs 'images', 'annotations' and 'categories')")
    return data


def _image_size(image: dict, path: Path) -> tuple[float, float]:
    if "width" not in image or "height" not in image:
        raise ValueError(f"{path}: image {image.get('id')} has no 'width'/'height'")
    return float(image["width"]), float(image["height"])
