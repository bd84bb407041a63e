"""app.sinks.nwb: an NWB file with ndx-pose, read back by pynwb and movement, holds the animals, keypoints,
coordinates, confidences and times of our JSON results, the AP-10K skeleton, the source video and our version."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pose_file_support import (
    PIXEL_TOLERANCE,
    SCORE_TOLERANCE,
    assert_movement_matches,
    json_arrays,
    movement_dataset,
)
from test_sinks import FPS, INFO, make_results

import animalpose
from app.sinks import JsonLinesSink, NwbSink
from pose.keypoints import KEYPOINT_NAMES, SKELETON

pynwb = pytest.importorskip("pynwb")
pytest.importorskip("ndx_pose")


def _write(folder: Path, results, info=INFO) -> tuple[Path, Path]:
    path, json_path = folder / "run.nwb", folder / "run.json"
    with NwbSink(path, info) as nwb, JsonLinesSink(folder / "run.jsonl", json_path, info) as lines:
        for result in results:
            nwb.write(result)
            lines.write(result)
    return path, json_path


def test_pynwb_reads_one_pose_estimation_per_animal_with_the_skeleton_and_the_video(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"a video")
    path, json_path = _write(tmp_path, make_results(), replace(INFO, name=str(video)))
    expected = json_arrays(json_path)
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        behavior = nwbfile.processing["behavior"]
        skeleton = behavior["Skeletons"].skeletons["AP-10K"]
        assert list(skeleton.nodes[:]) == list(KEYPOINT_NAMES)
        np.testing.assert_array_equal(skeleton.edges[:], SKELETON)
        source = nwbfile.acquisition["video"]
        assert list(source.external_file[:]) == [str(video)] and source.rate == FPS
        assert list(source.dimension[:]) == [INFO.width, INFO.height]
        for column, name in enumerate(expected.individuals):
            estimation = behavior[name]
            assert estimation.source_software == "animalpose"
            assert estimation.source_software_version == animalpose.__version__
            assert estimation.skeleton is skeleton and estimation.source_video is source
            assert list(estimation.pose_estimation_series) == sorted(KEYPOINT_NAMES)
            for k, keypoint in enumerate(KEYPOINT_NAMES):
                series = estimation.pose_estimation_series[keypoint]
                assert series.rate == FPS and series.starting_time == 0.0  # evenly spaced frames
                np.testing.assert_allclose(series.data[:], expected.keypoints[:, column, k, :2], atol=PIXEL_TOLERANCE)
                np.testing.assert_allclose(series.confidence[:], expected.keypoints[:, column, k, 2],
                                           atol=SCORE_TOLERANCE)


def test_movement_reads_each_animal(tmp_path):
    path, json_path = _write(tmp_path, make_results())
    expected = json_arrays(json_path)
    for name in expected.individuals:
        dataset = movement_dataset(path, "NWB", pose_estimation_key=name)
        assert dataset.attrs["source_software"] == "animalpose" and dataset.attrs["fps"] == FPS
        assert_movement_matches(dataset, expected, individuals=[name])


def test_variable_frame_rate_keeps_every_time_stamp(tmp_path):
    times = [0.0, 0.033, 0.1, 0.133, 0.3, 0.5]
    results = [replace(r, timestamp_s=t) for r, t in zip(make_results(), times)]
    path, json_path = _write(tmp_path, results)
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        estimation = io.read().processing["behavior"]["track_3"]
        first = estimation.pose_estimation_series["Nose"]
        assert first.rate is None
        np.testing.assert_allclose(first.timestamps[:], times)
        other = estimation.pose_estimation_series["L_Eye"]
        np.testing.assert_allclose(other.timestamps[:], times)
