"""COCO keypoint evaluation with the AP-10K sigmas, and mmpose 0.x's evaluation path.

Two ways to score a COCO results list (``image_id``, ``category_id``, ``keypoints``
as 17 x (x, y, confidence) in image pixels, ``score``) against a COCO keypoint file:

* :func:`evaluate_keypoints` runs pycocotools' ``COCOeval(iouType='keypoints')`` with
  ``params.kpt_oks_sigmas`` set to :data:`pose.keypoints.SIGMAS` on the predictions
  as given.
* ``evaluate_keypoints(..., mmpose_nms=True)`` first does what mmpose 0.x's
  ``AnimalAP10KDataset.evaluate`` does (:func:`mmpose_postprocess`): rescore every
  instance from its keypoint confidences (:func:`rescore`), then suppress duplicates
  image by image with OKS-NMS (:func:`oks_nms`).

:func:`per_group_ap` gives the AP of each species or family (a category's
``supercategory``). All AP numbers come from pycocotools, none is computed here.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pose.keypoints import SIGMAS
from pose.transforms import PIXEL_STD, boxes_to_center_scale, clean_boxes_xywh

logger = logging.getLogger(__name__)


_GT_ANNOTATION_KEYS = ("id", "image_id", "category_id", "keypoints", "area", "num_keypoints", "bbox")
_PREDICTION_KEYS = ("image_id", "category_id", "keypoints")

GroundTruth = str | Path | dict
Predictions = Sequence[dict] | str | Path


@dataclass(frozen=True)
class KeypointMetrics:
    """The ten COCO keypoint summary numbers; -1.0 where no GT falls in the area range.

    AP/AR average over OKS thresholds 0.50:0.05:0.95, ``*50``/``*75`` are at one
    threshold, ``*M``/``*L`` restrict GT to medium (32²–96² px²) and large areas.
    """

    AP: float
    AP50: float
    AP75: float
    APM: float
    APL: float
    AR: float
    AR50: float
    AR75: float
    ARM: float
    ARL: float

    def to_dict(self) -> dict[str, float]:
        """The metrics as ``{"AP": ..., ..., "ARL": ...}`` in the COCO stats order."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class Grouping(enum.Enum):
    """How :func:`per_group_ap` groups categories."""

    SPECIES = "species"  # one group per category ``name``
    FAMILY = "family"  # one group per category ``supercategory``


# ---------------------------------------------------------------------------
# Loading and checking inputs
# ---------------------------------------------------------------------------


def _read_json(path: str | Path, what: str) -> object:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} file {path} is not valid JSON: {error}") from error


def load_ground_truth(gt: GroundTruth) -> dict:
    """A checked deep copy of a COCO keypoint annotation file or dict.

    Raises:
        FileNotFoundError: ``gt`` is a path that does not exist.
        ValueError: the file is not JSON or lacks ``images``/``annotations``/``categories``
            or an annotation field that keypoint evaluation reads.
    """
    data = _read_json(gt, "ground-truth") if isinstance(gt, (str, Path)) else copy.deepcopy(gt)
    if not isinstance(data, dict):
        raise ValueError(f"ground truth must be a COCO dict, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"ground truth has no '{key}' list")
    for annotation in data["annotations"]:
        missing = [key for key in _GT_ANNOTATION_KEYS if key not in annotation]
        if missing:
            raise ValueError(f"ground-truth annotation {annotation.get('id')} lacks {missing}")
    return data


def load_predictions(predictions: Predictions, num_keypoints: int | None = len(SIGMAS)) -> list[dict]:
    """Checked copies of a COCO keypoint results list (a list of dicts or a JSON file).

    Each record needs ``image_id``, ``category_id`` and ``keypoints`` (``num_keypoints``
    x (x, y, confidence), flat or nested; any count when ``num_keypoints`` is None);
    ``keypoints`` comes back as a flat list of floats. ``score`` defaults to 1.0; other fields are kept.

    Raises:
        FileNotFoundError: ``predictions`` is a path that does not exist.
        ValueError: not JSON, not a list of dicts, or a record is incomplete.
    """
    if isinstance(predictions, (str, Path)):
        records = _read_json(predictions, "predictions")
    else:
        records = predictions
    if not isinstance(records, (list, tuple)):
        raise ValueError(f"predictions must be a list of dicts, got {type(records).__name__}")
    checked = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"prediction {index} is a {type(record).__name__}, not a dict")
        missing = [key for key in _PREDICTION_KEYS if key not in record]
        if missing:
            raise ValueError(f"prediction {index} lacks {missing}")
        keypoints = np.asarray(record["keypoints"], dtype=np.float64).reshape(-1)
        expected = 3 * num_keypoints if num_keypoints is not None else keypoints.size
        if keypoints.size != expected or keypoints.size % 3 or not keypoints.size:
            raise ValueError(
                f"prediction {index} has {keypoints.size} keypoint values, "
                f"expected {num_keypoints or 'K'} x (x, y, confidence)"
            )
        checked.append({**record, "keypoints": keypoints.tolist(), "score": float(record.get("score", 1.0))})
    return checked


# ---------------------------------------------------------------------------
# pycocotools
# ---------------------------------------------------------------------------


def _quiet(function, *args):
    """Call a pycocotools function, logging what it prints at DEBUG level."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        result = function(*args)
    for line in buffer.getvalue().splitlines():
        logger.debug("pycocotools: %s", line)
    return result


def _coco_ground_truth(gt: dict) -> COCO:
    coco = COCO()
    coco.dataset = gt
    _quiet(coco.createIndex)
    return coco


def _coco_results(coco_gt: COCO, predictions: list[dict]) -> COCO:
    """The results API object for the predictions' COCO fields only.

    Extra fields are dropped on purpose: a ``bbox`` would make ``loadRes`` take its box
    branch and set each detection's ``area`` from it, which changes APM/APL.
    """
    known = set(coco_gt.getImgIds())
    unknown = sorted({p["image_id"] for p in predictions} - known)
    if unknown:
        raise ValueError(f"predictions refer to image ids not in the ground truth: {unknown[:10]}")
    results = [
        {key: p[key] for key in ("image_id", "category_id", "keypoints", "score")} for p in predictions
    ]
    if results:
        return _quiet(coco_gt.loadRes, results)
    empty = COCO()
    empty.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": copy.deepcopy(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    _quiet(empty.createIndex)
    return empty


def _run_cocoeval(
    coco_gt: COCO, coco_dt: COCO, sigmas: np.ndarray, category_ids: Sequence[int] | None = None
) -> np.ndarray:
    """pycocotools' evaluate/accumulate/summarize; returns the 10 keypoint stats."""
    evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
    evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
    if category_ids is not None:
        evaluator.params.catIds = list(category_ids)
    _quiet(evaluator.evaluate)
    _quiet(evaluator.accumulate)
    _quiet(evaluator.summarize)
    return np.asarray(evaluator.stats, dtype=np.float64)


def _metrics(stats: np.ndarray) -> KeypointMetrics:
    return KeypointMetrics(*(float(value) for value in stats))


# ---------------------------------------------------------------------------
# mmpose 0.x: rescoring, boxes, OKS-NMS
# ---------------------------------------------------------------------------


def rescore(predictions: Predictions, vis_threshold: float = 0.2) -> list[dict]:
    """mmpose's rescoring: score = mean keypoint confidence above threshold x box score.

    The mean runs over the confidences strictly greater than ``vis_threshold``; an
    instance with none gets score 0. The box score is the record's ``bbox_score``
    (a detector confidence), 1.0 when absent, as for ground-truth boxes. The incoming
    ``score`` is ignored and replaced. Returns new records; the inputs are not changed.
    """
    records = load_predictions(predictions, num_keypoints=None)
    if not records:
        return []
    confidences = np.array([r["keypoints"][2::3] for r in records], dtype=np.float64)  # (N, K)
    visible = confidences > vis_threshold
    count = visible.sum(axis=1)
    total = np.where(visible, confidences, 0.0).sum(axis=1)
    keypoint_score = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    box_score = np.array([float(r.get("bbox_score", 1.0)) for r in records])
    scores = keypoint_score * box_score
    return [{**r, "score": float(s)} for r, s in zip(records, scores)]


def _image_sizes(gt: dict, image_ids: Sequence[int]) -> np.ndarray:
    """(N, 2) ``width, height`` of the given images, read from the GT ``images``."""
    sizes = {image.get("id"): (image.get("width"), image.get("height")) for image in gt["images"]}
    lacking = sorted({i for i in image_ids if None in sizes.get(i, (None, None))})
    if lacking:
        raise ValueError(f"ground-truth images {lacking[:10]} lack an entry with 'width' and 'height'")
    return np.array([sizes[i] for i in image_ids], dtype=np.float64).reshape(-1, 2)


def _mmpose_gt_instances(gt: dict) -> list[dict]:
    """The GT annotations mmpose's AP-10K test set holds, in file order.

    mmpose skips annotations whose cleaned box is empty or whose keypoints are all zero.
    """
    annotations = [a for a in gt["annotations"] if max(a["keypoints"], default=0) > 0]
    if not annotations:
        return []
    boxes = np.array([a["bbox"] for a in annotations], dtype=np.float64)
    image_sizes = _image_sizes(gt, [a["image_id"] for a in annotations])
    _, valid = clean_boxes_xywh(boxes, image_sizes[:, 0], image_sizes[:, 1])
    has_area = np.array([a["area"] > 0 for a in annotations])
    return [a for a, keep in zip(annotations, valid & has_area) if keep]


def _paired_gt_boxes(gt: dict, predictions: list[dict]) -> np.ndarray:
    """GT boxes for predictions made one per GT instance (mmpose's ``use_gt_bbox``).

    The k-th prediction of an image is paired with the k-th GT instance of that image
    that mmpose evaluates (:func:`_mmpose_gt_instances`); counts and categories must agree.

    Returns:
        (N, 4) ``x, y, w, h`` GT boxes, in the predictions' order.
    """
    by_image: dict[int, list[dict]] = {}
    for annotation in _mmpose_gt_instances(gt):
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    seen: dict[int, int] = {}
    boxes = []
    for index, prediction in enumerate(predictions):
        image_id = prediction["image_id"]
        rank = seen.get(image_id, 0)
        seen[image_id] = rank + 1
        instances = by_image.get(image_id, [])
        if rank >= len(instances) or instances[rank]["category_id"] != prediction["category_id"]:
            raise ValueError(
                f"prediction {index} (image {image_id}) has no 'center'/'scale' or 'bbox', and the "
                "predictions are not one per ground-truth instance in file order, so no box "
                "can be derived for OKS-NMS; add a 'bbox' (x, y, w, h) to each prediction"
            )
        boxes.append(instances[rank]["bbox"])
    short = {i: len(v) for i, v in by_image.items() if seen.get(i, 0) != len(v)}
    if short:
        raise ValueError(f"images {sorted(short)[:10]} have fewer predictions than ground-truth instances")
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def with_center_scale(gt: GroundTruth, predictions: Predictions) -> list[dict]:
    """Add mmpose's box ``center``/``scale`` (pixels / 200) to predictions lacking them.

    Source of the box, per prediction, first that applies:

    1. its own ``center`` and ``scale`` (kept as given);
    2. its ``bbox`` (x, y, w, h in pixels), taken as a detector box: used as is, like
       mmpose's detection-results path;
    3. the paired GT box, when the predictions are one per evaluated GT instance in file
       order (mmpose's ``use_gt_bbox=True`` test setting, as in the reference files),
       cleaned like mmpose's annotation loader.

    Boxes then go through mmpose 0.x's test-time ``_xywh2cs`` (square aspect, 1.25 padding).

    Raises:
        ValueError: a prediction has no box and the predictions cannot be paired with GT.
    """
    data = load_ground_truth(gt)
    records = load_predictions(predictions, num_keypoints=None)
    has_center = np.array([("center" in r and "scale" in r) for r in records], dtype=bool)
    has_bbox = np.array([("bbox" in r) for r in records], dtype=bool)
    if not records or has_center.all():
        return records
    boxes = np.zeros((len(records), 4))
    if not (has_center | has_bbox).all():
        image_sizes = _image_sizes(data, [r["image_id"] for r in records])
        boxes, _ = clean_boxes_xywh(_paired_gt_boxes(data, records), image_sizes[:, 0], image_sizes[:, 1])
    for index in np.flatnonzero(has_bbox):
        boxes[index] = np.asarray(records[index]["bbox"], dtype=np.float64).reshape(4)
    centers, scales = boxes_to_center_scale(boxes)
    return [
        r if done else {**r, "center": c.tolist(), "scale": s.tolist()}
        for r, done, c, s in zip(records, has_center, centers, scales)
    ]


def box_areas(scales: np.ndarray) -> np.ndarray:
    """mmpose's instance area for OKS-NMS: ``prod(scale * 200)``, float32, in pixels².

    Args:
        scales: (N, 2) scales in units of 200 px.
    """
    return np.prod(np.asarray(scales, dtype=np.float32) * np.float32(PIXEL_STD), axis=1)


def oks_matrix(keypoints: np.ndarray, areas: np.ndarray, sigmas: np.ndarray = SIGMAS) -> np.ndarray:
    """Pairwise OKS between instances as mmpose's ``oks_iou`` computes it.

    Every keypoint counts (no visibility test); the scale is the mean of both areas.

    Args:
        keypoints: (N, K, 2+) keypoints in pixels (confidences, if any, are ignored).
        areas: (N,) areas in pixels².
        sigmas: (K,) per-keypoint OKS sigmas.

    Returns:
        (N, N) symmetric OKS in [0, 1].
    """
    xy = np.asarray(keypoints, dtype=np.float64)[..., :2]
    areas = np.asarray(areas, dtype=np.float64)
    variances = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    squared = ((xy[:, None] - xy[None, :]) ** 2).sum(axis=-1)  # (N, N, K)
    mean_area = (areas[:, None] + areas[None, :]) / 2 + np.spacing(1)
    exponent = squared / variances / mean_area[..., None] / 2
    return np.exp(-exponent).mean(axis=-1)


def oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    threshold: float = 0.9,
    sigmas: np.ndarray = SIGMAS,
) -> np.ndarray:
    """Greedy OKS-NMS over the instances of one image, as mmpose 0.x's ``oks_nms``.

    Instances are visited by descending score (equal scores: the later one first, as
    mmpose's reversed ``argsort``); each kept instance removes the remaining ones whose
    OKS with it exceeds ``threshold``.

    Args:
        keypoints: (N, K, 2+) keypoints in pixels.
        scores: (N,) instance scores.
        areas: (N,) instance areas in pixels² (mmpose: :func:`box_areas`).
        threshold: OKS above which the lower-scored instance is dropped.
        sigmas: (K,) per-keypoint OKS sigmas.

    Returns:
        Indices of the kept instances, highest score first.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    overlap = oks_matrix(keypoints, areas, sigmas)
    order = np.argsort(scores, kind="stable")[::-1]
    suppressed = np.zeros(scores.size, dtype=bool)
    keep = []
    for index in order:
        if suppressed[index]:
            continue
        keep.append(index)
        suppressed |= overlap[index] > threshold
    return np.array(keep, dtype=np.int64)


def mmpose_postprocess(
    gt: GroundTruth,
    predictions: Predictions,
    vis_threshold: float = 0.2,
    oks_threshold: float = 0.9,
    sigmas: np.ndarray = SIGMAS,
) -> list[dict]:
    """mmpose 0.x's evaluation front end: boxes, rescoring, then OKS-NMS per image.

    Boxes come from :func:`with_center_scale`, scores from :func:`rescore`. Images are
    taken in order of first appearance, each one's survivors highest score first, as in
    mmpose's ``result_keypoints.json``.

    Returns:
        The kept records with ``center``, ``scale`` and the rescored ``score``.
    """
    records = rescore(with_center_scale(gt, predictions), vis_threshold)
    by_image: dict[int, list[int]] = {}
    for index, record in enumerate(records):
        by_image.setdefault(record["image_id"], []).append(index)
    kept = []
    for indices in by_image.values():
        group = [records[i] for i in indices]
        keypoints = np.array([r["keypoints"] for r in group]).reshape(len(group), -1, 3)
        scores = np.array([r["score"] for r in group])
        areas = box_areas(np.array([r["scale"] for r in group]))
        kept.extend(group[i] for i in oks_nms(keypoints, scores, areas, oks_threshold, sigmas))
    logger.info("OKS-NMS kept %d of %d instances", len(kept), len(records))
    return kept


# ---------------------------------------------------------------------------
# Public evaluation
# ---------------------------------------------------------------------------


def _prepared(
    gt: GroundTruth,
    predictions: Predictions,
    sigmas: np.ndarray,
    mmpose_nms: bool,
    vis_threshold: float,
    oks_threshold: float,
) -> tuple[dict, list[dict]]:
    data = load_ground_truth(gt)
    records = load_predictions(predictions, num_keypoints=len(sigmas))
    if mmpose_nms:
        records = mmpose_postprocess(data, records, vis_threshold, oks_threshold, sigmas)
    return data, records


def evaluate_keypoints(
    gt: GroundTruth,
    predictions: Predictions,
    sigmas: np.ndarray = SIGMAS,
    *,
    mmpose_nms: bool = False,
    vis_threshold: float = 0.2,
    oks_threshold: float = 0.9,
) -> KeypointMetrics:
    """COCO keypoint AP/AR of predictions against a COCO keypoint ground truth.

    Args:
        gt: COCO keypoint annotations (path or dict; a dict is not modified).
        predictions: COCO keypoint results (path or list of dicts).
        sigmas: (K,) per-keypoint OKS sigmas.
        mmpose_nms: first rescore and OKS-NMS as mmpose 0.x does (:func:`mmpose_postprocess`).
        vis_threshold: confidence a keypoint must exceed to count in the rescoring.
        oks_threshold: OKS above which OKS-NMS drops the lower-scored instance.

    Raises:
        FileNotFoundError, ValueError: an input is missing or malformed.
    """
    data, records = _prepared(gt, predictions, sigmas, mmpose_nms, vis_threshold, oks_threshold)
    coco_gt = _coco_ground_truth(data)
    metrics = _metrics(_run_cocoeval(coco_gt, _coco_results(coco_gt, records), sigmas))
    logger.info("keypoint AP %.4f, AR %.4f on %d predictions", metrics.AP, metrics.AR, len(records))
    return metrics


def _category_groups(categories: list[dict], group: Grouping) -> dict[str, list[int]]:
    key = "name" if group is Grouping.SPECIES else "supercategory"
    groups: dict[str, list[int]] = {}
    for category in categories:
        groups.setdefault(str(category.get(key, "?")), []).append(category["id"])
    return groups


def per_group_ap(
    gt: GroundTruth,
    predictions: Predictions,
    group: Grouping = Grouping.FAMILY,
    sigmas: np.ndarray = SIGMAS,
    *,
    mmpose_nms: bool = False,
    vis_threshold: float = 0.2,
    oks_threshold: float = 0.9,
) -> dict[str, float]:
    """AP of each species or family that has ground truth, sorted by name.

    Each group's AP is pycocotools' AP with ``params.catIds`` restricted to the group's
    categories (so a family's AP averages its species' APs). Groups without GT
    annotations are left out; -1.0 means the group has annotations but none evaluable.
    """
    group = Grouping(group)
    data, records = _prepared(gt, predictions, sigmas, mmpose_nms, vis_threshold, oks_threshold)
    coco_gt = _coco_ground_truth(data)
    coco_dt = _coco_results(coco_gt, records)
    present = {a["category_id"] for a in data["annotations"]}
    table = {}
    for name, category_ids in sorted(_category_groups(data["categories"], group).items()):
        if present.intersection(category_ids):
            table[name] = float(_run_cocoeval(coco_gt, coco_dt, sigmas, category_ids)[0])
    return table
