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
:func:`evaluate_with_groups` gives both from one loading of the inputs (the CLI uses it).

What happens with inputs pycocotools mishandles:

* A predicted keypoint whose x or y is null, NaN or infinite is a miss: its OKS term is 0,
  exactly as for a keypoint far away (pycocotools itself would make the whole OKS NaN,
  and NaN matches every ground truth, so missing keypoints scored as perfect). Such a
  detection's ``area`` (which only decides whether an unmatched detection falls in an
  area range) comes from its finite keypoints, 0 when it has none. One warning says how
  many keypoints were missing. In the mmpose rescoring a missing keypoint, or one whose
  confidence is null/NaN, does not count; in OKS-NMS its term is 0.
* A null or NaN instance ``score`` ranks below every other prediction (as pycocotools
  sorts NaN last); one warning says how many.
* An empty prediction list is a defined result, not an error: AP/AR 0 (-1 where the
  ground truth has nothing in the area range), with a warning. pycocotools' ``loadRes``
  would fail on it.
* Predictions whose ``category_id`` the ground truth does not define are not scored
  (pycocotools ignores them); a warning says how many, and also when no prediction has
  the category of a ground-truth animal on its image.
* Predictions on ``image_id``s absent from the ground truth are an error (pycocotools
  asserts); so are a ground truth without any annotation with labelled keypoints and
  malformed records. Errors are ``ValueError`` (``FileNotFoundError``/other ``OSError``
  for unreadable files) with a one-line message that names the file and what to fix.
* A ground-truth annotation without ``iscrowd`` is taken as ``iscrowd: 0``.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import io
import json
import logging
import math
import os
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
    if path.is_dir():
        raise IsADirectoryError(f"{what} path {path} is a folder, not a JSON file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} file {path} is not UTF-8 text, so not JSON: {error}") from error
    except OSError as error:
        reason = os.strerror(error.errno).lower() if error.errno else str(error)
        raise type(error)(f"cannot read {what} file {path}: {reason}") from error
    if not text.strip():
        raise ValueError(f"{what} file {path} is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} file {path} is not valid JSON: {error}") from error
    except RecursionError as error:
        raise ValueError(f"{what} file {path} is nested too deeply to be a COCO file") from error


def _source(data: object, what: str) -> str:
    """How messages name an input: ``"<what> file PATH"`` for a path, ``what`` otherwise."""
    return f"{what} file {data}" if isinstance(data, (str, Path)) else what


def _is_id(value: object) -> bool:
    """Whether ``value`` can be a COCO id (a number or a string, not a list, null or boolean)."""
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_ground_truth_lists(data: dict, source: str) -> None:
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{source} has no '{key}' list; is it a COCO keypoint annotation file?")
    for key in ("images", "categories"):
        for index, entry in enumerate(data[key]):
            if not isinstance(entry, dict) or not _is_id(entry.get("id")):
                raise ValueError(f"{source}: {key} entry {index} has no 'id' number")
    for index, annotation in enumerate(data["annotations"]):
        if not isinstance(annotation, dict):
            raise ValueError(f"{source}: annotation {index} is a {type(annotation).__name__}, not a dict")
        missing = [key for key in _GT_ANNOTATION_KEYS if key not in annotation]
        if missing:
            raise ValueError(f"{source}: annotation {annotation.get('id')} lacks {missing}")
        if not _is_id(annotation["image_id"]) or not _is_id(annotation["category_id"]):
            raise ValueError(f"{source}: annotation {annotation['id']} has no image_id or category_id number")
        if not all(_is_number(annotation[key]) and math.isfinite(annotation[key]) for key in ("area", "num_keypoints")):
            raise ValueError(f"{source}: annotation {annotation['id']} needs 'area' and 'num_keypoints' as numbers")


def _check_ground_truth_keypoints(data: dict, source: str, num_keypoints: int) -> None:
    for annotation in data["annotations"]:
        try:
            values = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1)
            box = np.asarray(annotation["bbox"], dtype=np.float64).reshape(4)
        except (TypeError, ValueError):
            values, box = np.zeros(0), np.full(4, np.nan)
        if values.size != 3 * num_keypoints or not np.isfinite(values).all() or not np.isfinite(box).all():
            raise ValueError(
                f"{source}: annotation {annotation['id']} needs 'keypoints' as {num_keypoints} x "
                "(x, y, visibility) finite numbers and 'bbox' as 4 numbers"
            )


def load_ground_truth(gt: GroundTruth, num_keypoints: int | None = None) -> dict:
    """A checked deep copy of a COCO keypoint annotation file or dict.

    A missing ``iscrowd`` is set to 0 in the copy (pycocotools needs it). With
    ``num_keypoints``, each annotation's ``keypoints`` must be that many finite
    (x, y, visibility) triples and its ``bbox`` 4 finite numbers.

    Raises:
        FileNotFoundError: ``gt`` is a path that does not exist.
        OSError: ``gt`` is a folder or cannot be read.
        ValueError: the file is not JSON or lacks ``images``/``annotations``/``categories``
            or an annotation field that keypoint evaluation reads.
    """
    source = _source(gt, "ground-truth")
    data = _read_json(gt, "ground-truth") if isinstance(gt, (str, Path)) else copy.deepcopy(gt)
    if not isinstance(data, dict):
        raise ValueError(f"{source} must hold a COCO dict, not a {type(data).__name__}")
    _check_ground_truth_lists(data, source)
    if num_keypoints is not None:
        _check_ground_truth_keypoints(data, source, num_keypoints)
    for annotation in data["annotations"]:
        annotation.setdefault("iscrowd", 0)
    return data


def _prediction_problem(record: object) -> str | None:
    """What is wrong with one prediction record, or None."""
    if not isinstance(record, dict):
        return f"is a {type(record).__name__}, not a dict"
    missing = [key for key in _PREDICTION_KEYS if key not in record]
    if missing:
        return f"lacks {missing}"
    for key in ("image_id", "category_id"):
        if not _is_id(record[key]):
            return f"has {key} {record[key]!r}; expected a number"
    score = record.get("score", 1.0)
    if score is not None and not _is_number(score):
        try:
            float(score)
        except (TypeError, ValueError):
            return f"has score {score!r}; expected a number"
    return None


def _flat_keypoints(record: dict, index: int, num_keypoints: int | None) -> np.ndarray:
    """The record's keypoints as a flat float array; null becomes NaN."""
    try:
        keypoints = np.asarray(record["keypoints"], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(
            f"prediction {index} has keypoints that are not a list of numbers: {str(record['keypoints'])[:60]}"
        ) from None
    expected = 3 * num_keypoints if num_keypoints is not None else keypoints.size
    if keypoints.size != expected or keypoints.size % 3 or not keypoints.size:
        raise ValueError(
            f"prediction {index} has {keypoints.size} keypoint values, "
            f"expected {num_keypoints or 'K'} x (x, y, confidence)"
        )
    return keypoints


def load_predictions(predictions: Predictions, num_keypoints: int | None = len(SIGMAS)) -> list[dict]:
    """Checked copies of a COCO keypoint results list (a list of dicts or a JSON file).

    Each record needs ``image_id``, ``category_id`` and ``keypoints`` (``num_keypoints``
    x (x, y, confidence), flat or nested; any count when ``num_keypoints`` is None);
    ``keypoints`` comes back as a flat list of floats, null values as NaN (missing
    keypoints, see the module docstring). ``score`` defaults to 1.0 (null becomes NaN);
    other fields are kept.

    Raises:
        FileNotFoundError: ``predictions`` is a path that does not exist.
        OSError: ``predictions`` is a folder or cannot be read.
        ValueError: not JSON, not a list of dicts, or a record is incomplete.
    """
    source = _source(predictions, "predictions")
    prefix = f"{source}: " if isinstance(predictions, (str, Path)) else ""
    if isinstance(predictions, (str, Path)):
        records = _read_json(predictions, "predictions")
    else:
        records = predictions
    if not isinstance(records, (list, tuple)):
        hint = " (a COCO annotation file? --pred takes a results list)" if isinstance(records, dict) else ""
        kind = type(records).__name__
        raise ValueError(f"{source} must hold a list of dicts (COCO keypoint results), got a {kind}{hint}")
    checked = []
    for index, record in enumerate(records):
        problem = _prediction_problem(record)
        if problem:
            raise ValueError(f"{prefix}prediction {index} {problem}")
        try:
            keypoints = _flat_keypoints(record, index, num_keypoints)
        except ValueError as error:
            raise ValueError(f"{prefix}{error}") from None
        score = record.get("score", 1.0)
        score = math.nan if score is None else float(score)
        checked.append({**record, "keypoints": keypoints.tolist(), "score": score})
    return checked


def _describe_categories(categories: dict, ids: Sequence, limit: int = 6) -> str:
    """``"1 (antelope), 2 (argali sheep), ..., 54 (bat); 54 in all"`` for the given category ids."""
    ids = sorted(set(ids), key=lambda i: (isinstance(i, str), str(i) if isinstance(i, str) else float(i)))
    named = [f"{i!r} ({categories[i]})" if i in categories else repr(i) for i in ids]
    if len(named) > limit:
        return ", ".join([*named[: limit - 1], "...", named[-1]]) + f"; {len(named)} in all"
    return ", ".join(named)


def _check_image_ids(data: dict, records: list[dict], source: str) -> None:
    """Raise when predictions refer to images the ground truth lacks (pycocotools would assert)."""
    known = {image["id"] for image in data["images"]}
    unknown = [r["image_id"] for r in records if r["image_id"] not in known]
    if not unknown:
        return
    spelled = {str(i): i for i in known}.get(str(unknown[0]))
    hint = f", but the ground truth has {spelled!r}: the types differ" if spelled is not None else ""
    raise ValueError(
        f"{len(unknown)} of {len(records)} predictions in {source} refer to image ids that are not in "
        f"the ground truth's images (e.g. {unknown[0]!r}{hint}); evaluate against the ground truth "
        "the predictions were made on"
    )


def _warn_about_categories(data: dict, records: list[dict]) -> None:
    categories = {c["id"]: c.get("name", "?") for c in data["categories"]}
    unknown = [r["category_id"] for r in records if r["category_id"] not in categories]
    if unknown:
        logger.warning(
            "%d of %d predictions have a category_id the ground truth does not define (%s) and are not "
            "scored; the ground truth's categories are %s: check the category ids",
            len(unknown), len(records), _describe_categories(categories, unknown),
            _describe_categories(categories, list(categories)),
        )
        return
    animals = {(a["image_id"], a["category_id"]) for a in data["annotations"]}
    if animals and not any((r["image_id"], r["category_id"]) in animals for r in records):
        logger.warning(
            "none of the %d predictions has the category of a ground-truth animal on its image "
            "(predictions: %s; ground truth: %s); COCO scores each category apart, so all of them "
            "miss: check the category ids",
            len(records), _describe_categories(categories, [r["category_id"] for r in records]),
            _describe_categories(categories, [a["category_id"] for a in data["annotations"]]),
        )


def _warn_about_values(records: list[dict], mmpose_nms: bool) -> None:
    points = np.array([r["keypoints"] for r in records], dtype=np.float64).reshape(len(records), -1, 3)
    missing = ~np.isfinite(points[..., :2]).all(axis=-1)
    if missing.any():
        logger.warning(
            "%d of %d predicted keypoints (in %d of %d predictions) have null or non-finite coordinates; "
            "they count as misses (OKS term 0, as a keypoint far away)",
            missing.sum(), missing.size, missing.any(axis=1).sum(), len(records),
        )
    no_confidence = ~missing & ~np.isfinite(points[..., 2])
    if mmpose_nms and no_confidence.any():
        logger.warning(
            "%d of %d predicted keypoints have a null or non-finite confidence; the rescoring leaves them out",
            no_confidence.sum(), no_confidence.size,
        )
    no_score = np.isnan([r["score"] for r in records])
    if not mmpose_nms and no_score.any():
        logger.warning(
            "%d of %d predictions have a null or NaN score; they rank below all others",
            no_score.sum(), len(records),
        )


def _check_predictions(data: dict, records: list[dict], source: str, mmpose_nms: bool) -> None:
    """Errors for predictions pycocotools cannot score, warnings for ones it scores silently wrong."""
    if not records:
        logger.warning(
            "%s holds no predictions: AP and AR are 0 (n/a where the ground truth has no animal); "
            "check that it is the right file", source,
        )
        return
    _check_image_ids(data, records, source)
    _warn_about_categories(data, records)
    _warn_about_values(records, mmpose_nms)
    with_animals = {a["image_id"] for a in data["annotations"] if a["num_keypoints"] > 0}
    covered = with_animals.intersection(r["image_id"] for r in records)
    if len(covered) < len(with_animals):
        logger.info(
            "predictions cover %d of the %d ground-truth images with labelled animals; the animals on "
            "the others count as misses", len(covered), len(with_animals),
        )


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


# Where a missing predicted keypoint is put for pycocotools: far enough that its OKS term
# exp(-d^2 / (2 s^2 (2 sigma)^2)) underflows to exactly 0 for any area below 1e16 px^2.
_FAR_PX = 1e9


def _finite_box(points: np.ndarray) -> list[float]:
    """``x, y, w, h`` around the (M, 2) points, all 0 when there are none."""
    if not len(points):
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def _coco_result(prediction: dict) -> tuple[dict, list[float] | None]:
    """The COCO fields of one prediction for ``loadRes``, and its box when keypoints are missing.

    Missing keypoints (non-finite x or y) go to :data:`_FAR_PX`; a NaN score becomes -inf.
    """
    score = prediction["score"]
    result = {
        "image_id": prediction["image_id"],
        "category_id": prediction["category_id"],
        "keypoints": prediction["keypoints"],
        "score": -math.inf if math.isnan(score) else score,
    }
    points = np.asarray(prediction["keypoints"], dtype=np.float64).reshape(-1, 3)
    missing = ~np.isfinite(points[:, :2]).all(axis=1)
    if not missing.any():
        return result, None
    box = _finite_box(points[~missing, :2])
    points[missing, :2] = _FAR_PX
    points[~np.isfinite(points[:, 2]), 2] = 0.0
    return {**result, "keypoints": points.reshape(-1).tolist()}, box


def _coco_results(coco_gt: COCO, predictions: list[dict]) -> COCO:
    """The results API object for the predictions' COCO fields only.

    Extra fields are dropped on purpose: a ``bbox`` would make ``loadRes`` take its box
    branch and set each detection's ``area`` from it, which changes APM/APL. A detection
    with missing keypoints gets the box and area of its finite keypoints afterwards
    (``loadRes`` would take them from the far-away stand-ins). The image ids must be
    the ground truth's (:func:`_check_image_ids`).
    """
    if predictions:
        results, boxes = zip(*(_coco_result(p) for p in predictions))
        coco_dt = _quiet(coco_gt.loadRes, list(results))
        for annotation, box in zip(coco_dt.dataset["annotations"], boxes):
            if box is not None:
                annotation["bbox"], annotation["area"] = box, box[2] * box[3]
        return coco_dt
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


def _box_score(record: dict, index: int) -> float:
    value = record.get("bbox_score", 1.0)
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"prediction {index} has bbox_score {value!r}; expected a finite number")
    return float(value)


def rescore(predictions: Predictions, vis_threshold: float = 0.2) -> list[dict]:
    """mmpose's rescoring: score = mean keypoint confidence above threshold x box score.

    The mean runs over the confidences strictly greater than ``vis_threshold``; an
    instance with none gets score 0. A missing keypoint (x, y or confidence null or not
    finite) does not count. The box score is the record's ``bbox_score`` (a detector
    confidence), 1.0 when absent, as for ground-truth boxes. The incoming ``score`` is
    ignored and replaced. Returns new records; the inputs are not changed.

    Raises:
        ValueError: a ``bbox_score`` is not a finite number.
    """
    records = load_predictions(predictions, num_keypoints=None)
    if not records:
        return []
    points = np.array([r["keypoints"] for r in records], dtype=np.float64).reshape(len(records), -1, 3)
    confidences = points[..., 2]  # (N, K)
    visible = np.isfinite(points).all(axis=-1) & (confidences > vis_threshold)
    count = visible.sum(axis=1)
    total = np.where(visible, confidences, 0.0).sum(axis=1)
    keypoint_score = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    box_score = np.array([_box_score(r, index) for index, r in enumerate(records)])
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


def _prediction_box(record: dict, index: int) -> np.ndarray:
    """The record's ``bbox`` as 4 finite floats."""
    try:
        box = np.asarray(record["bbox"], dtype=np.float64).reshape(4)
    except (TypeError, ValueError):
        box = np.full(4, np.nan)
    if not np.isfinite(box).all():
        raise ValueError(f"prediction {index} has bbox {record['bbox']!r}; expected 4 numbers x, y, w, h in pixels")
    return box


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
        boxes[index] = _prediction_box(records[index], index)
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
    A keypoint that is missing (x or y not finite) in either instance contributes 0.

    Args:
        keypoints: (N, K, 2+) keypoints in pixels (confidences, if any, are ignored).
        areas: (N,) areas in pixels².
        sigmas: (K,) per-keypoint OKS sigmas.

    Returns:
        (N, N) symmetric OKS in [0, 1].
    """
    xy = np.asarray(keypoints, dtype=np.float64)[..., :2]
    present = np.isfinite(xy).all(axis=-1)  # (N, K)
    xy = np.where(present[..., None], xy, 0.0)
    areas = np.asarray(areas, dtype=np.float64)
    variances = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    squared = ((xy[:, None] - xy[None, :]) ** 2).sum(axis=-1)  # (N, N, K)
    mean_area = (areas[:, None] + areas[None, :]) / 2 + np.spacing(1)
    exponent = squared / variances / mean_area[..., None] / 2
    both = present[:, None] & present[None, :]
    return np.where(both, np.exp(-exponent), 0.0).mean(axis=-1)


def oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    threshold: float = 0.9,
    sigmas: np.ndarray = SIGMAS,
) -> np.ndarray:
    """Greedy OKS-NMS over the instances of one image, as mmpose 0.x's ``oks_nms``.

    Instances are visited by descending score (equal scores: the later one first, as
    mmpose's reversed ``argsort``; a NaN score last); each kept instance removes the
    remaining ones whose OKS with it exceeds ``threshold``.

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
    order = np.argsort(np.where(np.isnan(scores), -np.inf, scores), kind="stable")[::-1]
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
    """Loaded, checked inputs (errors raised, warnings logged once), OKS-NMS'd when asked."""
    source = _source(gt, "ground-truth")
    data = load_ground_truth(gt, num_keypoints=len(sigmas))
    if not any(a["num_keypoints"] > 0 and not a["iscrowd"] for a in data["annotations"]):
        raise ValueError(
            f"{source} has no annotation with labelled keypoints (num_keypoints > 0), so there is "
            "nothing to score; use a COCO keypoint annotation file"
        )
    records = load_predictions(predictions, num_keypoints=len(sigmas))
    _check_predictions(data, records, _source(predictions, "predictions"), mmpose_nms)
    if mmpose_nms and records:
        records = mmpose_postprocess(data, records, vis_threshold, oks_threshold, sigmas)
    return data, records


def _group_table(
    data: dict, coco_gt: COCO, coco_dt: COCO, group: Grouping, sigmas: np.ndarray
) -> dict[str, float]:
    present = {a["category_id"] for a in data["annotations"]}
    table = {}
    for name, category_ids in sorted(_category_groups(data["categories"], group).items()):
        if present.intersection(category_ids):
            table[name] = float(_run_cocoeval(coco_gt, coco_dt, sigmas, category_ids)[0])
    return table


def evaluate_with_groups(
    gt: GroundTruth,
    predictions: Predictions,
    groupings: Sequence[Grouping | str] = (),
    sigmas: np.ndarray = SIGMAS,
    *,
    mmpose_nms: bool = False,
    vis_threshold: float = 0.2,
    oks_threshold: float = 0.9,
) -> tuple[KeypointMetrics, dict[Grouping, dict[str, float]]]:
    """:func:`evaluate_keypoints` and :func:`per_group_ap` for each grouping, reading the inputs once.

    Returns:
        The overall metrics, and ``{grouping: {group name: AP}}`` in the order asked.

    Raises:
        FileNotFoundError, OSError, ValueError: an input is missing, unreadable or malformed.
    """
    data, records = _prepared(gt, predictions, sigmas, mmpose_nms, vis_threshold, oks_threshold)
    coco_gt = _coco_ground_truth(data)
    coco_dt = _coco_results(coco_gt, records)
    metrics = _metrics(_run_cocoeval(coco_gt, coco_dt, sigmas))
    logger.info("keypoint AP %.4f, AR %.4f on %d predictions", metrics.AP, metrics.AR, len(records))
    tables = {Grouping(g): _group_table(data, coco_gt, coco_dt, Grouping(g), sigmas) for g in groupings}
    return metrics, tables


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

    Missing keypoints, empty lists, unknown ids: see the module docstring.

    Args:
        gt: COCO keypoint annotations (path or dict; a dict is not modified).
        predictions: COCO keypoint results (path or list of dicts).
        sigmas: (K,) per-keypoint OKS sigmas.
        mmpose_nms: first rescore and OKS-NMS as mmpose 0.x does (:func:`mmpose_postprocess`).
        vis_threshold: confidence a keypoint must exceed to count in the rescoring.
        oks_threshold: OKS above which OKS-NMS drops the lower-scored instance.

    Raises:
        FileNotFoundError, OSError, ValueError: an input is missing, unreadable or malformed.
    """
    metrics, _ = evaluate_with_groups(
        gt, predictions, (), sigmas,
        mmpose_nms=mmpose_nms, vis_threshold=vis_threshold, oks_threshold=oks_threshold,
    )
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
    return _group_table(data, coco_gt, _coco_results(coco_gt, records), group, sigmas)
