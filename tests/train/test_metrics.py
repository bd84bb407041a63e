"""COCO keypoint evaluation and mmpose's rescoring + OKS-NMS against the reference metrics."""

from __future__ import annotations

import contextlib
import copy
import errno
import io
import json
import logging
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from pose.keypoints import SIGMAS
from train.metrics import (
    Grouping,
    KeypointMetrics,
    box_areas,
    evaluate_keypoints,
    evaluate_with_groups,
    load_predictions,
    mmpose_postprocess,
    oks_matrix,
    oks_nms,
    per_group_ap,
    rescore,
    with_center_scale,
)

DATA = Path(__file__).resolve().parents[1] / "data"
EVAL_DIR = DATA / "reference" / "eval"
SAMPLE_GT = DATA / "samples" / "ap10k" / "test_ap10k.json"
SYNTHETIC_GT = EVAL_DIR / "gt_synthetic_20.json"
EXPECTED = json.loads((EVAL_DIR / "expected_metrics.json").read_text())
METRIC_NAMES = dict(zip(EXPECTED["stats_order"], KeypointMetrics.__dataclass_fields__))
CASES = sorted(EXPECTED["results"])
METRIC_KEYS = ["AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL"]


def _gt_path(case: str) -> Path:
    return SAMPLE_GT if case.startswith("sample/") else SYNTHETIC_GT


def _pred_path(case: str) -> Path:
    return EVAL_DIR / EXPECTED["results"][case]["predictions"]


def _after_nms(case: str) -> list[dict]:
    path = _pred_path(case)
    return json.loads(path.with_name(path.stem + "_after_mmpose_nms.json").read_text())


def _load(path: Path) -> object:
    return json.loads(path.read_text())


def _expected(case: str, mode: str) -> dict[str, float]:
    return {METRIC_NAMES[name]: value for name, value in EXPECTED["results"][case][mode].items()}


@pytest.mark.parametrize("mode", ["cocoeval_direct", "mmpose_evaluate"])
@pytest.mark.parametrize("case", CASES)
def test_reference_metrics(case: str, mode: str) -> None:
    metrics = evaluate_keypoints(_gt_path(case), _pred_path(case), mmpose_nms=mode == "mmpose_evaluate")
    assert metrics.to_dict() == pytest.approx(_expected(case, mode), abs=1e-9, rel=0)


def test_sigmas_are_the_reference_sigmas() -> None:
    np.testing.assert_array_equal(SIGMAS, EXPECTED["sigmas"])


@pytest.mark.parametrize("case", CASES)
def test_kept_set_matches_mmpose(case: str) -> None:
    kept = mmpose_postprocess(_gt_path(case), _pred_path(case))
    reference = _after_nms(case)
    assert len(kept) == EXPECTED["results"][case]["num_after_oks_nms"] == len(reference)
    for ours, theirs in zip(kept, reference):
        assert (ours["image_id"], ours["category_id"]) == (theirs["image_id"], theirs["category_id"])
        assert ours["center"] == theirs["center"]  # float32 values, exactly
        assert ours["scale"] == theirs["scale"]
        np.testing.assert_allclose(ours["keypoints"], theirs["keypoints"], atol=1e-4)  # theirs: float32
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-7)


def test_oks_nms_drops_one_duplicate_in_synthetic_low() -> None:
    kept = mmpose_postprocess(SYNTHETIC_GT, EVAL_DIR / "pred_synthetic_20_low.json")
    assert [k["image_id"] for k in kept].count(1007) == 1


def test_evaluating_the_reference_kept_file_directly_gives_mmpose_metrics() -> None:
    case = "synthetic_20/low"
    metrics = evaluate_keypoints(SYNTHETIC_GT, _after_nms(case))
    assert metrics.to_dict() == pytest.approx(_expected(case, "mmpose_evaluate"), abs=1e-9, rel=0)


@pytest.mark.parametrize("case", CASES)
def test_rescore_reproduces_reference_scores(case: str) -> None:
    predictions = _load(_pred_path(case))
    rescored = rescore([{**p, "score": 123.0} for p in predictions])
    np.testing.assert_allclose([r["score"] for r in rescored], [p["score"] for p in predictions], atol=1e-12)


@pytest.mark.parametrize(
    ("confidences", "bbox_score", "expected"),
    [
        ([0.5] * 17, None, 0.5),
        ([0.5] * 17, 0.8, 0.4),
        ([0.1] * 16 + [0.9], None, 0.9),
        ([0.2] * 17, None, 0.0),  # strictly above the threshold only; none -> 0
    ],
)
def test_rescore_cases(confidences: list[float], bbox_score: float | None, expected: float) -> None:
    keypoints = np.zeros((17, 3))
    keypoints[:, 2] = confidences
    record = {"image_id": 1, "category_id": 1, "keypoints": keypoints.ravel().tolist(), "score": 7.0}
    if bbox_score is not None:
        record["bbox_score"] = bbox_score
    original = copy.deepcopy(record)
    assert rescore([record])[0]["score"] == pytest.approx(expected, abs=1e-12)
    assert record == original


@pytest.mark.parametrize(
    ("image_id", "bbox", "center", "scale"),
    [  # a 'bbox' is a detector box, used as given (README "preprocess" cleaned GT boxes here)
        (37516, [66, 192, 1091, 511], [611.5, 447.5], 6.81875),
        (4, [408, 197, 428, 340], [622.0, 367.0], 2.675),
        (37516, [66, 192, 1092, 512], [612.0, 448.0], 6.825),  # not cleaned
    ],
)
def test_center_scale_from_bbox(image_id: int, bbox: list[float], center: list[float], scale: float) -> None:
    prediction = {"image_id": image_id, "category_id": 1, "keypoints": [0.0] * 51, "bbox": bbox}
    result = with_center_scale(SAMPLE_GT, [prediction])[0]
    np.testing.assert_array_equal(result["center"], np.float32(center))
    np.testing.assert_allclose(result["scale"], [scale, scale], rtol=1e-7)


def test_center_scale_from_paired_gt_box() -> None:
    """README "preprocess": GT box -> cleaned box -> center/scale of the two sample images."""
    records = with_center_scale(SAMPLE_GT, _load(EVAL_DIR / "pred_sample_low.json"))
    assert [r["image_id"] for r in records] == [37516, 4]
    np.testing.assert_array_equal([r["center"] for r in records], np.float32([[611.5, 447.5], [622.0, 367.0]]))
    np.testing.assert_allclose([r["scale"] for r in records], [[6.81875] * 2, [2.675] * 2], rtol=1e-7)


def test_given_center_scale_are_kept() -> None:
    records = _after_nms("sample/low")
    assert with_center_scale(SAMPLE_GT, records) == load_predictions(records)


def test_box_areas_are_padded_square_areas() -> None:
    np.testing.assert_allclose(box_areas(np.array([[6.81875, 6.81875]])), [(6.81875 * 200) ** 2], rtol=1e-6)


def _instances(offsets: list[float]) -> np.ndarray:
    base = np.stack([np.linspace(0, 160, 17), np.linspace(0, 80, 17), np.ones(17)], axis=1)
    return np.stack([base + [dx, 0.0, 0.0] for dx in offsets])


@pytest.mark.parametrize(
    ("offsets", "scores", "expected"),
    [
        ([0.0, 1.0], [0.9, 0.8], [0]),  # near-duplicate: the lower score goes
        ([0.0, 1.0], [0.7, 0.8], [1]),
        ([0.0, 500.0], [0.7, 0.8], [1, 0]),  # far apart: both stay, best first
        ([0.0, 1.0, 500.0, 501.0], [0.5, 0.6, 0.9, 0.1], [2, 1]),
        ([0.0, 0.0], [0.5, 0.5], [1]),  # tie: the later one first, as mmpose
    ],
)
def test_oks_nms(offsets: list[float], scores: list[float], expected: list[int]) -> None:
    keypoints = _instances(offsets)
    areas = np.full(len(offsets), 100.0 * 100.0)
    np.testing.assert_array_equal(oks_nms(keypoints, np.array(scores), areas), expected)


def test_oks_nms_empty() -> None:
    assert oks_nms(np.zeros((0, 17, 3)), np.zeros(0), np.zeros(0)).shape == (0,)


def test_oks_matrix_is_one_on_the_diagonal_and_symmetric() -> None:
    overlap = oks_matrix(_instances([0.0, 3.0, 40.0]), np.array([1e4, 2e4, 3e4]))
    np.testing.assert_allclose(np.diag(overlap), 1.0)
    np.testing.assert_allclose(overlap, overlap.T)


def test_to_dict_keys() -> None:
    metrics = evaluate_keypoints(SAMPLE_GT, EVAL_DIR / "pred_sample_low.json")
    assert list(metrics.to_dict()) == METRIC_KEYS


def test_inputs_are_not_modified() -> None:
    gt = _load(SYNTHETIC_GT)
    predictions = _load(EVAL_DIR / "pred_synthetic_20_low.json")
    gt_copy, predictions_copy = copy.deepcopy(gt), copy.deepcopy(predictions)
    evaluate_keypoints(gt, predictions, mmpose_nms=True)
    assert gt == gt_copy and predictions == predictions_copy


def test_empty_predictions_score_zero() -> None:
    assert evaluate_keypoints(SYNTHETIC_GT, []).AP == 0.0


def test_extra_bbox_field_does_not_change_metrics() -> None:
    """A 'bbox' must not reach loadRes, which would then take detection areas from it."""
    predictions = _load(EVAL_DIR / "pred_synthetic_20_high.json")
    boxed = [{**p, "bbox": [0, 0, 1, 1]} for p in predictions]
    assert evaluate_keypoints(SYNTHETIC_GT, boxed) == evaluate_keypoints(SYNTHETIC_GT, predictions)


def _malformed(tmp_path: Path) -> Path:
    path = tmp_path / "broken.json"
    path.write_text("[{not json")
    return path


@pytest.mark.parametrize(
    ("make_predictions", "error", "match"),
    [
        (lambda tmp: tmp / "missing.json", FileNotFoundError, "not found"),
        (_malformed, ValueError, "not valid JSON"),
        (lambda tmp: {"image_id": 1}, ValueError, "list of dicts"),
        (lambda tmp: [{"image_id": 1001, "category_id": 1}], ValueError, "lacks"),
        (lambda tmp: [{"image_id": 1001, "category_id": 1, "keypoints": [0.0] * 50}], ValueError, "17 x"),
        (lambda tmp: [{"image_id": 5, "category_id": 1, "keypoints": [0.0] * 51}], ValueError, "image ids"),
    ],
)
def test_bad_predictions(make_predictions, error: type, match: str, tmp_path: Path) -> None:
    with pytest.raises(error, match=match):
        evaluate_keypoints(SYNTHETIC_GT, make_predictions(tmp_path))


@pytest.mark.parametrize(
    ("gt", "match"),
    [
        ({"images": [], "annotations": []}, "categories"),
        ({"images": [], "categories": [], "annotations": [{"id": 1}]}, "lacks"),
    ],
)
def test_bad_ground_truth(gt: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        evaluate_keypoints(gt, [])


def test_mmpose_nms_needs_a_box_source() -> None:
    predictions = _load(EVAL_DIR / "pred_synthetic_20_low.json")[:-1]  # one GT left without prediction
    with pytest.raises(ValueError, match="fewer predictions"):
        evaluate_keypoints(SYNTHETIC_GT, predictions, mmpose_nms=True)
    with pytest.raises(ValueError, match="bbox"):
        evaluate_keypoints(SYNTHETIC_GT, predictions[::-1], mmpose_nms=True)


@pytest.mark.parametrize(
    ("grouping", "expected"),
    [
        (Grouping.FAMILY, {"Bovidae": 0.7, "Felidae": 0.7}),
        (Grouping.SPECIES, {"antelope": 0.7, "jaguar": 0.7}),
        ("family", {"Bovidae": 0.7, "Felidae": 0.7}),
    ],
)
def test_per_group_ap_on_sample(grouping: Grouping | str, expected: dict[str, float]) -> None:
    table = per_group_ap(SAMPLE_GT, EVAL_DIR / "pred_sample_medium.json", grouping)
    assert table == pytest.approx(expected, abs=1e-9)


def test_per_family_ap_averages_species() -> None:
    """Two categories, one per family: the overall AP is the mean of the family APs."""
    pred = EVAL_DIR / "pred_synthetic_20_high.json"
    for mmpose_nms in (False, True):
        table = per_group_ap(SYNTHETIC_GT, pred, mmpose_nms=mmpose_nms)
        overall = evaluate_keypoints(SYNTHETIC_GT, pred, mmpose_nms=mmpose_nms)
        assert sorted(table) == ["Bovidae", "Felidae"]
        assert np.mean(list(table.values())) == pytest.approx(overall.AP, abs=1e-12)


# ---------------------------------------------------------------------------
# Missing (null / NaN / infinite) keypoints and scores, against pycocotools itself
# ---------------------------------------------------------------------------

# Far enough that pycocotools' OKS term underflows to exactly 0 for every synthetic GT
# animal, near enough that the area loadRes derives stays in the "all" range (< 1e10 px²).
FAR_PX = 2e4


def _pycocotools_direct(gt_path: Path, predictions: list[dict], areas: dict[int, float] | None = None) -> dict:
    """The ten stats of pycocotools run by hand (AP-10K sigmas), optionally with some
    detections' areas (index in ``predictions`` -> px²) set after ``loadRes``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        coco_dt = coco_gt.loadRes(copy.deepcopy(predictions))
        for index, area in (areas or {}).items():
            coco_dt.dataset["annotations"][index]["area"] = area
        evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(SIGMAS, dtype=np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return dict(zip(METRIC_KEYS, (float(v) for v in evaluator.stats)))


def _near_gt_predictions(seed: int = 0) -> list[dict]:
    """One prediction per synthetic GT animal, its keypoints moved by a few % of its size."""
    rng = np.random.default_rng(seed)
    predictions = []
    for annotation in _load(SYNTHETIC_GT)["annotations"]:
        points = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(17, 3)
        points[:, :2] += rng.normal(0.0, 0.05 * np.sqrt(annotation["area"]), (17, 2))
        points[:, 2] = rng.uniform(0.1, 1.0, 17)
        predictions.append({
            "image_id": annotation["image_id"],
            "category_id": annotation["category_id"],
            "keypoints": points.reshape(-1).tolist(),
            "score": float(rng.uniform(0.2, 1.0)),
        })
    return predictions


def _with_keypoints(predictions: list[dict], which: dict[int, list[int]], value: float | None) -> list[dict]:
    """Copies with x and y of the keypoints ``which[prediction index]`` set to ``value``."""
    changed = copy.deepcopy(predictions)
    for index, keypoints in which.items():
        for k in keypoints:
            changed[index]["keypoints"][3 * k : 3 * k + 2] = [value, value]
    return changed


# 0..4 keypoints missing on most predictions, all 17 on one, 9 on another
MISSING = {i: list(range(i % 5)) for i in range(20)} | {3: list(range(17)), 7: list(range(8, 17))}


def _finite_areas(predictions: list[dict], which: dict[int, list[int]]) -> dict[int, float]:
    """Area of the box around each changed prediction's remaining keypoints (0 if none remain)."""
    areas = {}
    for index, missing in which.items():
        points = np.asarray(predictions[index]["keypoints"]).reshape(17, 3)[:, :2]
        kept = np.delete(points, missing, axis=0)
        areas[index] = float(np.prod(kept.max(axis=0) - kept.min(axis=0))) if len(kept) else 0.0
    return areas


ALL_AREAS = ["AP", "AP50", "AP75", "AR", "AR50", "AR75"]


@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf])
def test_missing_keypoints_score_as_keypoints_far_away(value: float | None, caplog: pytest.LogCaptureFixture) -> None:
    """pycocotools on the same detections with the missing keypoints put 20000 px away.

    The numbers over all areas are equal as they are; the medium/large ones once each
    detection's area is that of its remaining keypoints, as ours is (pycocotools would
    take it from the far-away stand-ins).
    """
    predictions = _near_gt_predictions()
    ours = evaluate_keypoints(SYNTHETIC_GT, _with_keypoints(predictions, MISSING, value)).to_dict()
    far = _with_keypoints(predictions, MISSING, FAR_PX)
    plain = _pycocotools_direct(SYNTHETIC_GT, far)
    assert {k: ours[k] for k in ALL_AREAS} == {k: plain[k] for k in ALL_AREAS}  # exactly: the same sums
    assert ours == _pycocotools_direct(SYNTHETIC_GT, far, areas=_finite_areas(predictions, MISSING))
    assert ours["AP"] < evaluate_keypoints(SYNTHETIC_GT, predictions).AP
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    missing = sum(len(v) for v in MISSING.values())
    assert warnings == [
        (
            f"{missing} of 340 predicted keypoints (in 16 of 20 predictions) have null or non-finite "
            "coordinates; they count as misses (OKS term 0, as a keypoint far away)"
        )
    ]


def test_nine_null_keypoints_are_not_perfect() -> None:
    """The reported case: 9 of 17 keypoints null scored AP 1 while 5000 px away scored 0."""
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"], "score": 1.0}
        for a in _load(SYNTHETIC_GT)["annotations"]
    ]
    assert evaluate_keypoints(SYNTHETIC_GT, perfect).AP == pytest.approx(1.0)
    nine = {i: list(range(8, 17)) for i in range(len(perfect))}
    null = evaluate_keypoints(SYNTHETIC_GT, _with_keypoints(perfect, nine, None))
    assert null == evaluate_keypoints(SYNTHETIC_GT, _with_keypoints(perfect, nine, 5000.0))
    assert null.to_dict() == _pycocotools_direct(SYNTHETIC_GT, _with_keypoints(perfect, nine, FAR_PX))
    assert null.AP < 0.5


def _spurious_detection(missing: list[int], value: float | None) -> dict:
    """A top-scored detection on an empty part of image 1001, 30 x 40 px: a false positive."""
    points = np.zeros((17, 3))
    points[:, 0] = np.linspace(1200, 1230, 17)
    points[:, 1] = np.linspace(900, 940, 17)
    points[:, 2] = 0.9
    record = {"image_id": 1001, "category_id": 26, "keypoints": points.reshape(-1).tolist(), "score": 1.0}
    return _with_keypoints([record], {0: missing}, value)[0]


def test_missing_keypoints_keep_the_area_of_the_finite_ones() -> None:
    """An unmatched detection's area decides the area ranges it counts in; with missing
    keypoints it is the area of its finite keypoints (here 2 of 17: a small one)."""
    predictions = _near_gt_predictions()
    ours = evaluate_keypoints(SYNTHETIC_GT, [*predictions, _spurious_detection(list(range(2, 17)), None)])
    far = [*predictions, _spurious_detection(list(range(2, 17)), FAR_PX)]
    finite_area = (1200 + 30 / 16 - 1200) * (900 + 40 / 16 - 900)  # its keypoints 0 and 1
    assert ours.to_dict() == _pycocotools_direct(SYNTHETIC_GT, far, areas={len(predictions): finite_area})
    assert ours.AP < evaluate_keypoints(SYNTHETIC_GT, predictions).AP  # a false positive, as it should be
    # pycocotools alone takes the area from the stand-ins, so the same detection is "large";
    # at 1e6 px (area 1e12 > the "all" range's 1e10) it would not count at all.
    assert ours.APL > _pycocotools_direct(SYNTHETIC_GT, far)["APL"]
    at_1e6 = _pycocotools_direct(SYNTHETIC_GT, [*predictions, _spurious_detection(list(range(2, 17)), 1e6)])
    assert at_1e6["AP"] == evaluate_keypoints(SYNTHETIC_GT, predictions).AP


@pytest.mark.parametrize("score", [None, math.nan])
def test_null_score_ranks_last(score: float | None, caplog: pytest.LogCaptureFixture) -> None:
    predictions = _near_gt_predictions()
    best = max(range(len(predictions)), key=lambda i: predictions[i]["score"])
    changed = [{**p, "score": score} if i == best else p for i, p in enumerate(predictions)]
    ours = evaluate_keypoints(SYNTHETIC_GT, changed)
    lowest = [{**p, "score": -1.0} if i == best else p for i, p in enumerate(predictions)]
    assert ours.to_dict() == _pycocotools_direct(SYNTHETIC_GT, lowest)
    assert "1 of 20 predictions have a null or NaN score" in caplog.text


@pytest.mark.parametrize("value", [None, math.nan])
def test_mmpose_path_with_missing_keypoints_and_confidences(value: float | None) -> None:
    predictions = _load(EVAL_DIR / "pred_synthetic_20_low.json")
    changed = _with_keypoints(predictions, MISSING, value)
    for record in changed[::3]:
        record["keypoints"][2] = value  # a null/NaN confidence of a present keypoint
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from NaN arithmetic
        kept = mmpose_postprocess(SYNTHETIC_GT, changed)
        metrics = evaluate_keypoints(SYNTHETIC_GT, changed, mmpose_nms=True)
        table = per_group_ap(SYNTHETIC_GT, changed, mmpose_nms=True)
    assert all(math.isfinite(r["score"]) for r in kept)
    assert all(0.0 <= v <= 1.0 for v in metrics.to_dict().values())
    assert all(0.0 <= v <= 1.0 for v in table.values())
    assert metrics.AP < evaluate_keypoints(SYNTHETIC_GT, predictions, mmpose_nms=True).AP


@pytest.mark.parametrize(
    ("points", "expected"),
    [  # (x, y, confidence) of keypoint 0; the other 16 have confidence 0.5
        ([10.0, 10.0, 0.9], (0.9 + 16 * 0.5) / 17),
        ([None, None, 0.9], 0.5),  # a missing keypoint does not count, whatever its confidence
        ([math.nan, 10.0, 0.9], 0.5),
        ([10.0, 10.0, None], 0.5),
        ([10.0, 10.0, math.nan], 0.5),
        ([10.0, 10.0, math.inf], 0.5),
    ],
)
def test_rescore_skips_missing_keypoints(points: list, expected: float) -> None:
    keypoints = np.full((17, 3), 0.5)
    record = {"image_id": 1, "category_id": 1, "keypoints": [points, *keypoints[1:].tolist()]}
    assert rescore([record])[0]["score"] == pytest.approx(expected, abs=1e-12)


def test_oks_matrix_missing_keypoints_contribute_nothing() -> None:
    keypoints = _instances([0.0, 0.0, 0.0])
    keypoints[1, :3, 0] = np.nan
    keypoints[2, 5, 1] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        overlap = oks_matrix(keypoints, np.full(3, 1e4))
    expected = np.array([[17, 14, 16], [14, 14, 13], [16, 13, 16]]) / 17  # keypoints present in both
    np.testing.assert_allclose(overlap, expected)


def test_oks_nms_nan_score_goes_last() -> None:
    keypoints = _instances([0.0, 1.0])
    np.testing.assert_array_equal(oks_nms(keypoints, np.array([math.nan, 0.1]), np.full(2, 1e4)), [1])


# ---------------------------------------------------------------------------
# Predictions that match nothing: warnings and errors
# ---------------------------------------------------------------------------


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_empty_predictions_warn(caplog: pytest.LogCaptureFixture) -> None:
    metrics = evaluate_keypoints(SYNTHETIC_GT, [])
    assert metrics.to_dict() == {key: 0.0 for key in METRIC_KEYS}  # every range has GT here
    assert _warnings(caplog) == [
        (
            "predictions holds no predictions: AP and AR are 0 (n/a where the ground truth has no animal); "
            "check that it is the right file"
        )
    ]


@pytest.mark.parametrize(
    ("category_id", "count", "expected"),
    [
        (0, 20, "20 of 20 predictions have a category_id the ground truth does not define (0)"),
        ("26", 20, "20 of 20 predictions have a category_id the ground truth does not define ('26')"),
        (0, 3, "3 of 20 predictions have a category_id the ground truth does not define (0)"),
        (5, 20, (
            "none of the 20 predictions has the category of a ground-truth animal on its image "
            "(predictions: 5 (cow); ground truth: 1 (antelope), 26 (jaguar))"
        )),
    ],
)
def test_category_mismatch_warns(
    category_id: int | str, count: int, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    predictions = _load(EVAL_DIR / "pred_synthetic_20_high.json")
    changed = [{**p, "category_id": category_id} if i < count else p for i, p in enumerate(predictions)]
    metrics = evaluate_keypoints(SYNTHETIC_GT, changed)
    (message,) = _warnings(caplog)
    assert message.startswith(expected) and message.endswith("check the category ids")
    if count == 20:
        assert metrics.AP == 0.0
    if "does not define" in expected:
        assert "1 (antelope), 2 (argali sheep), 3 (bison), 4 (buffalo), 5 (cow), ..., 54 (bat); 54 in all" in message


@pytest.mark.parametrize(
    ("image_ids", "match"),
    [
        ([5] * 20, r"20 of 20 predictions .* image ids that are not in the ground truth's images \(e\.g\. 5\)"),
        ([1001] * 19 + [7], r"1 of 20 predictions .* \(e\.g\. 7\)"),
        (["1001"] * 20, r"\(e\.g\. '1001', but the ground truth has 1001: the types differ\)"),
    ],
)
def test_unknown_image_ids_are_an_error(image_ids: list, match: str) -> None:
    predictions = _load(EVAL_DIR / "pred_synthetic_20_high.json")
    changed = [{**p, "image_id": i} for p, i in zip(predictions, image_ids)]
    for mmpose_nms in (False, True):
        with pytest.raises(ValueError, match=match):
            evaluate_keypoints(SYNTHETIC_GT, changed, mmpose_nms=mmpose_nms)


def test_missing_iscrowd_is_zero() -> None:
    gt = _load(SYNTHETIC_GT)
    for annotation in gt["annotations"]:
        del annotation["iscrowd"]
    predictions = EVAL_DIR / "pred_synthetic_20_medium.json"
    assert evaluate_keypoints(gt, predictions) == evaluate_keypoints(SYNTHETIC_GT, predictions)


def _record(**fields: object) -> dict:
    return {"image_id": 1001, "category_id": 1, "keypoints": [0.0] * 51, **fields}


@pytest.mark.parametrize(
    ("predictions", "match"),
    [
        ([_record(image_id=[1001])], "image_id \\[1001\\]; expected a number"),
        ([_record(category_id=None)], "category_id None; expected a number"),
        ([_record(keypoints=["a"] * 51)], "keypoints that are not a list of numbers"),
        ([_record(keypoints=[{}] * 51)], "keypoints that are not a list of numbers"),
        ([_record(keypoints=[[1, 2, 3]] * 16 + [[1, 2]])], "keypoints that are not a list of numbers"),
        ([_record(score="high")], "score 'high'; expected a number"),
        ([7], "prediction 0 is a int, not a dict"),
    ],
)
def test_more_bad_predictions(predictions: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        evaluate_keypoints(SYNTHETIC_GT, predictions)


@pytest.mark.parametrize(
    ("record", "match"),
    [
        (_record(bbox=None), "bbox None; expected 4 numbers"),
        (_record(bbox=[0, 0, 10]), "bbox \\[0, 0, 10\\]; expected 4 numbers"),
        (_record(bbox=[0, 0, 10, 10], bbox_score=None), "bbox_score None; expected a finite number"),
    ],
)
def test_bad_mmpose_fields(record: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        evaluate_keypoints(SYNTHETIC_GT, [record], mmpose_nms=True)


def _gt_with(**changes: object) -> dict:
    gt = _load(SYNTHETIC_GT)
    for annotation in gt["annotations"]:
        annotation.update(changes)
    return gt


@pytest.mark.parametrize(
    ("gt", "match"),
    [
        (_gt_with(num_keypoints=0), "no annotation with labelled keypoints"),
        ({**_load(SYNTHETIC_GT), "annotations": []}, "no annotation with labelled keypoints"),
        (_gt_with(keypoints=[0.0] * 50), "annotation 5001 needs 'keypoints' as 17 x"),
        (_gt_with(keypoints=[None] * 51), "annotation 5001 needs 'keypoints' as 17 x"),
        (_gt_with(area=None), "needs 'area' and 'num_keypoints' as numbers"),
        (_gt_with(area=math.nan), "needs 'area' and 'num_keypoints' as numbers"),
        (_gt_with(image_id=[1]), "no image_id or category_id number"),
        ({**_load(SYNTHETIC_GT), "categories": [{"name": "x"}]}, "categories entry 0 has no 'id'"),
        ({**_load(SYNTHETIC_GT), "images": [7]}, "images entry 0 has no 'id'"),
        ({**_load(SYNTHETIC_GT), "annotations": [7]}, "annotation 0 is a int"),
    ],
)
def test_more_bad_ground_truth(gt: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        evaluate_keypoints(gt, EVAL_DIR / "pred_synthetic_20_high.json")


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        (b"", ValueError, "is empty"),
        (b'[{"image_id": 1001, "category_id": 1, "keypoints": [0.0', ValueError, "not valid JSON"),
        (b'{"a": "\xe9"}', ValueError, "not UTF-8"),
        (b"[" * 100000, ValueError, "nested too deeply"),
    ],
    ids=["empty", "truncated", "latin-1", "deep"],
)
def test_bad_prediction_files(content: bytes, error: type, match: str, tmp_path: Path) -> None:
    path = tmp_path / "pred.json"
    path.write_bytes(content)
    with pytest.raises(error, match=match) as raised:
        evaluate_keypoints(SYNTHETIC_GT, path)
    assert str(path) in str(raised.value)


def test_folder_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="is a folder"):
        evaluate_keypoints(tmp_path, [])


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pred.json"
    path.write_text("[]")
    real = Path.read_bytes

    def refuse(self: Path) -> bytes:
        if self == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(PermissionError, match=f"^cannot read predictions file {path}: permission denied$"):
        evaluate_keypoints(SYNTHETIC_GT, path)


def test_evaluate_with_groups_matches_the_separate_functions() -> None:
    pred = EVAL_DIR / "pred_synthetic_20_high.json"
    for mmpose_nms in (False, True):
        metrics, tables = evaluate_with_groups(
            SYNTHETIC_GT, pred, [Grouping.FAMILY, "species"], mmpose_nms=mmpose_nms
        )
        assert metrics == evaluate_keypoints(SYNTHETIC_GT, pred, mmpose_nms=mmpose_nms)
        assert list(tables) == [Grouping.FAMILY, Grouping.SPECIES]
        assert tables[Grouping.FAMILY] == per_group_ap(SYNTHETIC_GT, pred, Grouping.FAMILY, mmpose_nms=mmpose_nms)
        assert tables[Grouping.SPECIES] == per_group_ap(SYNTHETIC_GT, pred, Grouping.SPECIES, mmpose_nms=mmpose_nms)
