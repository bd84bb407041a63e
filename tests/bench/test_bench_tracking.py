"""Tests for bench/tracking.py: the tracker benchmark on simulated quadrupeds, on one short sequence."""

import numpy as np

from bench.tracking import get_args_parser, main, outputs_from_tracks, run_ours, run_raw
from tracking.tracker import TrackerSettings
from train.synthetic.tracks import SCENARIOS, simulate_sequence


def _short_sequence():
    from dataclasses import replace

    return simulate_sequence(replace(SCENARIOS["crossing"], num_frames=40), seed=0)


def test_run_ours_gives_one_output_per_frame_with_identities():
    sequence = _short_sequence()
    causal, offline = run_ours(sequence, TrackerSettings())
    assert len(causal) == len(offline) == sequence.num_frames
    ids = np.concatenate([frame.ids for frame in causal])
    assert ids.size > 0 and (ids >= 1).all()
    assert {int(i) for i in np.concatenate([frame.ids for frame in offline])} <= {int(i) for i in ids}
    assert all(len(frame.ids) == len(frame.boxes) == len(frame.keypoints) for frame in causal)


def test_run_raw_numbers_detections_per_frame():
    sequence = _short_sequence()
    raw = run_raw(sequence)
    assert [len(frame.ids) for frame in raw] == [len(frame.detections) for frame in sequence.frames]


def test_outputs_from_tracks_of_empty_frames():
    assert [len(frame.ids) for frame in outputs_from_tracks([[], []])] == [0, 0]


def test_main_without_writing_gives_the_tables():
    args = get_args_parser().parse_args(["--scenarios", "crossing", "--seeds", "0", "--frames", "40", "--no-write"])
    body = main(args)
    assert "train.synthetic.tracks.SCENARIOS" in body
    assert "| crossing | ours causal |" in body and "### Goals" in body
