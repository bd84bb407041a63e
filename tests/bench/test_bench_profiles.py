"""bench.profiles: the steps from the full profile to the real-time one, the keypoint change, and a tiny run."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

import bench.profiles as bench
from app.profiles import FULL_CHOICES, REALTIME_CHOICES


def test_the_speed_steps_go_from_full_to_realtime_one_choice_at_a_time():
    steps = [choices for _, choices in bench.speed_steps()]
    assert steps[0] == FULL_CHOICES and REALTIME_CHOICES in steps
    for before, after in zip(steps, steps[1:steps.index(REALTIME_CHOICES) + 1]):
        changed = [name for name in ("pose_weights", "flip_test", "det_image_size", "det_every")
                   if getattr(before, name) != getattr(after, name)]
        assert len(changed) == 1
    assert {c.det_image_size for c in steps[steps.index(REALTIME_CHOICES) + 1:]} >= set(bench.SMALLER_DETECTOR_SIZES)


def test_the_accuracy_variants_scale_the_detector_as_the_profile_does():
    variants = bench.accuracy_variants(320)
    assert variants[0].flip_test and variants[0].det_imgsz == 320 and variants[0].det_every == 1
    realtime = bench.scaled_size(320, REALTIME_CHOICES.det_image_size)
    assert variants[-1] == bench.Variant(variants[-1].label, False, realtime, REALTIME_CHOICES.det_every)
    assert all(v.det_imgsz % 32 == 0 for v in variants)
    assert {v.det_imgsz for v in variants} == {320, 160, 256} and {v.det_every for v in variants} == {1, 2, 3}
    assert bench.scaled_size(640, 320) == 320 and bench.scaled_size(320, 384) == 192


def test_a_realtime_pose_model_adds_its_rows_side_by_side(tmp_path):
    from pose.checkpoint import save_checkpoint
    from pose.model import ARCHITECTURES, build_model

    path = tmp_path / "rtm.pth"
    save_checkpoint(build_model(replace(ARCHITECTURES["rtmpose_tiny"], input_size=(96, 96))), path)
    assert bench._architecture_name(path) == "rtmpose_tiny"
    own = bench.accuracy_variants(320)
    variants = bench.accuracy_variants(320, path, "rtmpose_tiny")
    assert variants[:len(own)] == own and all(v.pose is None for v in own)
    full, realtime = variants[len(own):]
    assert (full.pose, full.flip_test, full.det_imgsz, full.det_every) == (path, True, 320, 1)
    assert (realtime.pose, realtime.flip_test, realtime.det_every) == (path, False, REALTIME_CHOICES.det_every)
    assert realtime.det_imgsz == own[-1].det_imgsz and "rtmpose_tiny" in realtime.label


def test_the_realtime_pose_note_says_how_the_model_was_trained(tmp_path):
    import json

    weights = tmp_path / "pose" / "best.pth"
    info = {"realtime_arch": "rtmpose_tiny", "pose_arch": "hrnet_tiny_s2", "pose_ap": 0.66}
    assert bench._realtime_pose_note(None, info) == []
    bare = " ".join(bench._realtime_pose_note(weights, info))
    assert "rtmpose_tiny" in bare and "trained" not in bare
    (tmp_path / "pose_summary.json").write_text(json.dumps(
        {"epochs": 160, "seconds": 960.0, "AP": 0.61, "command": "python -m bench.e2e_synthetic --pose-only"}))
    note = " ".join(bench._realtime_pose_note(weights, info))
    assert "trained 160 epochs in 16 min, test AP 0.610" in note and "hrnet_tiny_s2's 0.660" in note


def _frame(index: int, boxes: list[list[float]], keypoints: list[np.ndarray]) -> dict:
    return {"frame": index, "animals": [{"bbox": b, "keypoints": k.tolist()} for b, k in zip(boxes, keypoints)]}


def test_keypoint_change_matches_animals_by_box_and_counts_confident_keypoints():
    rng = np.random.default_rng(0)
    a = np.column_stack([rng.uniform(0, 100, (17, 2)), np.full(17, 0.9)])
    b = np.column_stack([rng.uniform(200, 300, (17, 2)), np.full(17, 0.9)])
    reference = [_frame(0, [[0, 0, 100, 100], [200, 200, 300, 300]], [a, b])]
    moved = a.copy()
    moved[:, 0] += 5.0  # 5 px on a 100 px box: 5%
    moved[0, 2] = 0.1  # not confident: not counted
    moved[1, 0] += 1000.0
    moved[1, 2] = 0.0
    # listed in the other order: matched by the boxes, not by position in the list
    assert bench.keypoint_change(reference, [_frame(0, [[200, 200, 300, 300], [1, 1, 101, 101]], [b, moved])]) == \
        pytest.approx(100 * 5.0 / 100 * 15 / 32)  # 15 keypoints moved 5% beside 17 unmoved
    assert math.isnan(bench.keypoint_change(reference, [_frame(0, [[500, 500, 600, 600]], [a])]))  # no match
    assert math.isnan(bench.keypoint_change(reference, [_frame(3, [[0, 0, 100, 100]], [a])]))  # no such frame


def test_paired_difference_is_the_mean_of_clip_differences_with_its_standard_error():
    reference = np.array([0.9, 0.5, 0.7, np.nan])
    values = np.array([0.8, 0.5, 0.9, 0.4])  # the last clip has no reference score: left out
    diff, se = bench.paired_difference(values, reference)
    assert diff == pytest.approx(np.mean([-0.1, 0.0, 0.2]))
    assert se == pytest.approx(np.std([-0.1, 0.0, 0.2], ddof=1) / math.sqrt(3))
    assert all(math.isnan(x) for x in bench.paired_difference(np.array([np.nan]), np.array([1.0])))


def test_accuracy_verdicts_judge_the_realtime_row_against_the_target():
    variants = bench.accuracy_variants(320)
    full = {"variant": variants[0], "idf1_diff": 0.0, "idf1_se": 0.0, "oks_ap_diff": 0.0, "oks_ap_se": 0.0}
    realtime = {"variant": variants[-1], "idf1_diff": -0.02, "idf1_se": 0.01, "oks_ap_diff": -0.05, "oks_ap_se": 0.01}
    lines = bench.accuracy_verdicts([full, realtime])
    assert len(lines) == 2
    assert "IDF1: -0.020" in lines[0] and lines[0].endswith("met on this run.") and "not met" not in lines[0]
    assert "OKS AP: -0.050" in lines[1] and "not met" in lines[1]
    assert bench.accuracy_verdicts([full]) == []
    assert bench._versus(full, "idf1") == "" and bench._versus(realtime, "idf1") == "-0.020 (0.010)"


@pytest.mark.timeout(600)
def test_a_tiny_speed_run_times_every_step(tmp_path, monkeypatch, one_torch_thread):
    tiny = replace(FULL_CHOICES, pose_weights="hrnet_tiny", det_image_size=64)
    steps = [("full", tiny), ("no flip", replace(tiny, flip_test=False)),
             ("every 2nd", replace(tiny, flip_test=False, det_every=2))]
    monkeypatch.setattr(bench, "speed_steps", lambda: steps)
    rows = bench.measure_speed(frames=4, animals=[2], height=72, folder=tmp_path)
    assert [row["step"] for row in rows] == ["full", "no flip", "every 2nd"]
    assert all(row["frames"] == 4 and row["fps"] > 0 and row["cpu_ms"] > 0 for row in rows)
    table = bench.speed_table(rows)
    assert sum(line.startswith("| 2 | ") for line in table.splitlines()) == 3 and "hrnet_tiny" in table
