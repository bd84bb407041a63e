"""Tests for bench/track_replay.py: the detector cache and the tracker replayed on it."""

from __future__ import annotations

import numpy as np
import pytest

from bench.track_replay import (
    CachedClip,
    cache_clip,
    cached_clips,
    get_args_parser,
    mean_scores,
    replay,
    score_replay,
    track_settings,
)
from pose.structures import Detections
from tracking.smoothing import SmoothingMode
from train.e2e import GroundTruthDetector
from train.synthetic.video import VideoSettings, render_video

SMALL = VideoSettings(num_animals=3, num_frames=40, width=160, height=128, fps=15.0, seed=3)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> CachedClip:
    video = tmp_path_factory.mktemp("replay") / "clip.mp4"
    truth = render_video(video, SMALL)
    return cache_clip(video, truth, GroundTruthDetector(truth, auto_advance=True))


def test_cache_clip_holds_every_frame_and_its_colours(clip: CachedClip) -> None:
    assert len(clip.detections) == SMALL.num_frames
    counts = [len(frame["animals"]) for frame in clip.truth["frames"]]
    assert [len(d) for d in clip.detections] == counts
    own_somewhere = False
    for detections, features in zip(clip.detections, clip.features):
        for colours in (features.whole, features.own):
            assert colours.shape == (len(detections), 128)
            inside = np.isfinite(colours).all(axis=1)
            np.testing.assert_allclose(np.linalg.norm(colours[inside], axis=1), 1.0, atol=1e-5)
        own_somewhere |= bool(np.isfinite(features.own).all(axis=1).any())
    assert own_somewhere


def test_cache_round_trip(clip: CachedClip, tmp_path) -> None:
    clip.save(tmp_path / "clip.npz")
    loaded = CachedClip.load(tmp_path / "clip.npz")
    assert loaded.truth == clip.truth
    for a, b in zip(loaded.detections, clip.detections):
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        np.testing.assert_array_equal(a.scores, b.scores)
    for a, b in zip(loaded.features, clip.features):
        np.testing.assert_array_equal(a.whole, b.whole)
        np.testing.assert_array_equal(a.own, b.own)


def test_an_old_cache_without_own_colours_is_refused(clip: CachedClip, tmp_path) -> None:
    clip.save(tmp_path / "clip.npz")
    with np.load(tmp_path / "clip.npz") as data:
        old = {k: data[k] for k in data.files if k != "own_features"}
    np.savez(tmp_path / "old.npz", **old)
    with pytest.raises(ValueError, match="own colours"):
        CachedClip.load(tmp_path / "old.npz")


def test_cache_rejects_frames_the_truth_lacks(clip: CachedClip) -> None:
    with pytest.raises(ValueError, match="frames"):
        CachedClip(clip.detections[:-1], clip.features[:-1], clip.truth)


@pytest.mark.parametrize("mode", list(SmoothingMode))
def test_true_boxes_keep_identities(clip: CachedClip, mode: SmoothingMode) -> None:
    settings = track_settings(max_lost_frames=75, min_hits=2, appearance=0.6, mode=mode)
    outputs = replay(clip, settings)
    assert len(outputs) == SMALL.num_frames
    scores = score_replay(clip, outputs)
    assert scores["idf1"] > 0.9
    assert scores["idf1_ideal"] >= scores["idf1"] - 1e-9
    assert scores["precision"] > 0.95


def test_a_detector_that_sees_nothing_scores_zero(clip: CachedClip) -> None:
    empty = CachedClip(tuple(Detections.empty() for _ in clip.detections),
                       tuple(np.zeros((0, 128), np.float32) for _ in clip.features), clip.truth)
    scores = mean_scores([empty], track_settings(75, 2, 0.6, SmoothingMode.NONE))
    assert scores["recall"] == 0.0
    assert scores["idf1"] == 0.0


def test_settings_changes_reach_the_tracker() -> None:
    settings = track_settings(30, 4, 0.6, SmoothingMode.CAUSAL, high_score=0.6)
    assert (settings.max_lost_frames, settings.min_hits, settings.appearance_weight) == (30, 4, 0.6)
    assert settings.high_score == 0.6
    assert settings.smoothing.mode is SmoothingMode.CAUSAL


def test_cached_clips_reads_the_cache_without_a_detector(clip: CachedClip, tmp_path) -> None:
    clip.save(tmp_path / "clip_3.npz")
    clips = cached_clips(tmp_path, [3], tmp_path / "no_such_detector.pt", 320, 0.5, 0.25, 40, [160, 128], 15.0)
    assert len(clips) == 1 and clips[0].truth == clip.truth


def test_parser_defaults_are_what_animalpose_track_ships_with() -> None:
    from app.runs import TrackSettings
    from tracking.detector import DetectorSettings

    args = get_args_parser().parse_args(["--det-weights", "d.pt", "--cache", "c"])
    shipped = TrackSettings()
    assert (args.det_iou, args.det_conf, args.min_hits, args.appearance, args.max_lost) == (
        DetectorSettings.iou, DetectorSettings.confidence, shipped.min_hits, shipped.appearance, shipped.max_lost_s)
    assert len(args.seeds) == 31
