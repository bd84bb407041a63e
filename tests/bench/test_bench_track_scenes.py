"""Tests for bench/track_scenes.py: the tracker driven through update / attach_poses / smooth_tracks_offline on the
simulator's scenes, and the scores pooled over seeds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.track_scenes import (
    HELD_OUT_SEEDS,
    MODES,
    VALIDATION_SEEDS,
    evaluate,
    get_args_parser,
    pool,
    results_table,
    run_scenes,
    run_tracker,
    section_body,
    shipped_settings,
    targets_table,
)
from tracking.smoothing import SmoothingMode
from train.synthetic.tracks import SCENE_NOISE, SCENES, simulate_sequence


def test_splits_do_not_overlap():
    assert not set(VALIDATION_SEEDS) & set(HELD_OUT_SEEDS)


def test_shipped_settings_are_what_animalpose_track_builds():
    from app.runs import TrackSettings, lost_frames, tracker_settings

    expected = tracker_settings(TrackSettings(), SmoothingMode.OFFLINE, lost_frames(TrackSettings().max_lost_s, 30.0))
    assert shipped_settings(SmoothingMode.OFFLINE) == expected
    assert shipped_settings(SmoothingMode.CAUSAL, min_hits=4).min_hits == 4


@pytest.fixture(scope="module")
def short():
    return simulate_sequence(dataclasses.replace(SCENES["close-crossing"], num_frames=60), SCENE_NOISE, seed=1)


@pytest.mark.parametrize("pose_after", [True, False])
@pytest.mark.parametrize("mode", list(SmoothingMode))
def test_run_tracker_reports_every_frame(short, pose_after, mode):
    run = run_tracker(short, shipped_settings(mode), pose_after, pose_seed=1)
    assert len(run.frames) == short.num_frames
    assert run.seconds > 0 and (run.offline_seconds > 0) == (mode is SmoothingMode.OFFLINE)
    reported = [t for frame in run.frames for t in frame]
    assert reported and all(np.isfinite(t.box).all() for t in reported)
    if pose_after or mode is not SmoothingMode.NONE:
        assert any(np.isfinite(t.keypoints[:, 0]).any() for t in reported)


def test_evaluate_scores_every_mode_on_the_same_entries(short):
    rows = evaluate(short)
    assert set(rows) == {m.value for m in MODES}
    counts = {row["count"] for row in rows.values()}
    assert len(counts) == 1 and counts.pop() > 0
    for row in rows.values():
        assert 0 <= row["idf1"] <= row["idf1_ideal"] + 1e-9 <= 1 + 1e-9
        assert 0 < row["rmse_box"] < 1 and row["animal_frames"] == int(short.present.sum())
    assert rows["offline"]["jitter"] < rows["causal"]["jitter"] < rows["none"]["jitter"]


def test_run_scenes_keeps_the_fastest_causal_run_of_passes_over_all_sequences(short, monkeypatch):
    import bench.track_scenes as track_scenes

    other = simulate_sequence(dataclasses.replace(SCENES["runner"], num_frames=40), SCENE_NOISE, seed=2)
    sequences = {("close-crossing", 1): short, ("runner", 1): other}
    calls, times = [], iter([0.5, 0.3, 0.6, 0.4, 0.1, 0.7, 0.2, 0.9, 0.8, 0.35])

    def timed(sequence, settings, *args, **kwargs):
        calls.append((sequence.scenario.name, settings.smoothing.mode))
        return dataclasses.replace(run_tracker(sequence, settings, *args, **kwargs), seconds=next(times))

    monkeypatch.setattr(track_scenes, "run_tracker", timed)
    results = run_scenes(["close-crossing", "runner"], [1], sequences=sequences, cost_runs=3)
    # Each sequence in the three modes (times 0.5, 0.3, 0.6 and 0.4, 0.1, 0.7), then two more causal passes over
    # both (0.2, 0.9 and 0.8, 0.35): the repeats of one sequence are apart.
    names = [short.scenario.name, other.scenario.name]
    causal = SmoothingMode.CAUSAL
    assert calls[6:] == [(names[0], causal), (names[1], causal)] * 2
    frames = {name: seq.present.sum() for name, seq in zip(names, (short, other))}
    assert results["close-crossing"]["causal"]["ms_per_animal_frame"] == pytest.approx(1e3 * 0.2 / frames[names[0]])
    assert results["runner"]["causal"]["ms_per_animal_frame"] == pytest.approx(1e3 * 0.1 / frames[names[1]])
    assert results["runner"]["none"]["ms_per_animal_frame"] == pytest.approx(1e3 * 0.4 / frames[names[1]])
    with pytest.raises(ValueError, match="cost_runs"):
        run_scenes(["close-crossing"], [1], sequences=sequences, cost_runs=0)


def test_pool_weights_keypoints_by_entries():
    rows = [dict(idf1=1.0, idf1_ideal=1.0, num_switches=0, mota=1.0, recall=1.0, precision=1.0, rmse_box=0.1, count=1,
                 jitter=1.0, truth_jitter=1.0, runs=1, lag=1.0, animal_frames=10, seconds=0.01, offline_seconds=0.0),
            dict(idf1=0.5, idf1_ideal=1.0, num_switches=4, mota=0.5, recall=1.0, precision=1.0, rmse_box=0.2, count=3,
                 jitter=3.0, truth_jitter=1.0, runs=3, lag=0.0, animal_frames=30, seconds=0.03, offline_seconds=0.0)]
    pooled = pool(rows)
    assert pooled["idf1"] == pytest.approx(0.75) and pooled["idf1_min"] == 0.5
    assert pooled["switches"] == 2 and pooled["switches_max"] == 4
    assert pooled["rmse_pct"] == pytest.approx(100 * np.sqrt((0.01 + 3 * 0.04) / 4))
    assert pooled["jitter_ratio"] == pytest.approx((1 + 9) / 4)
    assert pooled["lag"] == pytest.approx(0.25)
    assert pooled["ms_per_animal_frame"] == pytest.approx(1.0)


def test_run_scenes_tables(short):
    sequences = {("close-crossing", 1): short}  # the cached short sequence stands in for the scene
    results = run_scenes(["close-crossing"], [1], sequences=sequences)
    assert list(results) == ["close-crossing", "all"]
    table = results_table(results)
    assert "close-crossing" in table and "**all**" in table
    causal, offline = results["close-crossing"]["causal"], results["close-crossing"]["offline"]
    assert f"| {causal['idf1']:.3f} ({causal['idf1_min']:.3f}) / {offline['idf1']:.3f} " in table
    everything = {scene: results["close-crossing"] for scene in SCENES}
    everything["all"] = results["all"]
    targets = targets_table(everything)
    assert f"IDF1 ≥ 0.95 overall, causal (live sources) | {causal['idf1']:.3f} |" in targets
    assert f"IDF1 ≥ 0.95 overall, offline (files) | {offline['idf1']:.3f} |" in targets


def test_parser_defaults():
    args = get_args_parser().parse_args([])
    assert args.split == "validation" and args.max_lost_s is None and args.pose_order is None
    assert args.cost_runs == 1
    assert set(args.scenes) == set(SCENES)


def test_section_body_holds_both_splits_and_the_targets(short):
    results = run_scenes(["close-crossing"], [1], sequences={("close-crossing", 1): short})
    everything = {scene: results["close-crossing"] for scene in SCENES} | {"all": results["all"]}
    body = section_body(everything, everything)
    assert body.index("### Validation seeds") < body.index("### Held-out seeds") < body.index("### Targets of #22")
    assert "pose model after tracking" in body and "| target | measured | met |" in body
