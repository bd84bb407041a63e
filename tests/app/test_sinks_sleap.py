"""app.sinks.sleap: SLEAP's analysis HDF5 and .slp labels, read back by movement, sleap-io and h5py, hold the
animals, keypoints, coordinates and scores of our JSON results, with the AP-10K skeleton."""

from __future__ import annotations

import json
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

from app.sinks import JsonLinesSink, SleapSink
from pose.keypoints import FLIP_PAIRS, KEYPOINT_NAMES, SKELETON

sio = pytest.importorskip("sleap_io")
h5py = pytest.importorskip("h5py")


def _write(folder: Path, name: str) -> tuple[Path, Path]:
    path, json_path = folder / name, folder / "run.json"
    with SleapSink(path, INFO) as sleap, JsonLinesSink(folder / "run.jsonl", json_path, INFO) as lines:
        for result in make_results():
            sleap.write(result)
            lines.write(result)
    return path, json_path


@pytest.mark.parametrize("name", ["run.sleap.h5", "run.slp"])
def test_movement_reads_what_the_json_holds(tmp_path, name):
    path, json_path = _write(tmp_path, name)
    dataset = movement_dataset(path, "SLEAP", fps=FPS)
    assert dataset.attrs["source_software"] == "SLEAP"
    assert_movement_matches(dataset, json_arrays(json_path))


def test_the_analysis_file_has_sleaps_datasets(tmp_path):
    path, json_path = _write(tmp_path, "run.h5")
    expected = json_arrays(json_path)
    with h5py.File(path, "r") as f:
        assert {"tracks", "track_occupancy", "point_scores", "instance_scores", "tracking_scores", "track_names",
                "node_names", "edge_names", "edge_inds", "video_path", "provenance"} <= set(f)
        assert f["tracks"].shape == (2, 2, 17, 6) and json.loads(f["tracks"].attrs["dims"]) == ["track", "xy", "node",
                                                                                               "frame"]
        assert [n.decode() for n in f["node_names"]] == list(KEYPOINT_NAMES)
        assert [n.decode() for n in f["track_names"]] == ["track_3", "track_7"]
        np.testing.assert_array_equal(f["edge_inds"][:], SKELETON)
        np.testing.assert_array_equal(f["track_occupancy"][:], expected.present().astype(np.uint8))
        np.testing.assert_allclose(f["instance_scores"][:].T, expected.box_scores, atol=SCORE_TOLERANCE)
        np.testing.assert_allclose(f["tracks"][:].transpose(3, 0, 2, 1), expected.keypoints[..., :2],
                                   atol=PIXEL_TOLERANCE)
        provenance = json.loads(f["provenance"][()])
        assert provenance["software"] == "animalpose" and provenance["source"] == INFO.name


@pytest.mark.parametrize("name", ["run.h5", "run.slp"])
def test_sleap_io_loads_tracks_skeleton_and_scores(tmp_path, name):
    path, json_path = _write(tmp_path, name)
    labels = sio.load_file(str(path))
    expected = json_arrays(json_path)
    assert [t.name for t in labels.tracks] == expected.individuals
    skeleton = labels.skeletons[0]
    assert skeleton.node_names == list(KEYPOINT_NAMES)
    assert sorted(skeleton.edge_inds) == sorted(map(tuple, SKELETON.tolist()))
    assert {frozenset(s) for s in skeleton.symmetry_inds} == {frozenset(p) for p in FLIP_PAIRS}
    assert sum(len(frame.instances) for frame in labels) == int(expected.present().sum())
    arrays = labels.numpy(return_confidence=True)  # (frames, tracks, nodes, x y score)
    present = expected.present()
    np.testing.assert_allclose(arrays[present][..., :2], expected.keypoints[present][..., :2], atol=PIXEL_TOLERANCE)
    np.testing.assert_allclose(arrays[present][..., 2], expected.keypoints[present][..., 2], atol=SCORE_TOLERANCE)
