"""COCO keypoint evaluation and mmpose's rescoring + OKS-NMS against the reference metrics."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from pose.keypoints import SIGMAS
from train.metrics import (
    Grouping,
    KeypointMetrics,
    box_areas,
    evaluate_keypoints,
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
