"""What the pose-file tests share: our JSON results as dense arrays, to compare with what the field's
readers (movement, pandas, sleap-io, h5py, pynwb) load from the DeepLabCut, SLEAP and NWB files."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from app.results_json import read_results

#: One unit of the last decimal the files keep (pixels, confidences): rounding may differ by that.
PIXEL_TOLERANCE = 1.01e-3
SCORE_TOLERANCE = 1.01e-4


@dataclass(frozen=True)
class JsonArrays:
    """A JSON results document as arrays over every frame from 0 (NaN where an animal is absent).

    Attributes:
        individuals: ``track_<id>`` per animal, in increasing id order.
        keypoints: (F, T, K, 3) x, y, confidence; x, y NaN where a keypoint is missing.
        box_scores: (F, T).
        times: (F,) seconds (NaN for a frame without a result).
    """

    individuals: list[str]
    keypoint_names: list[str]
    skeleton: list[list[int]]
    keypoints: np.ndarray
    box_scores: np.ndarray
    times: np.ndarray
    fps: float

    def present(self) -> np.ndarray:
        return np.isfinite(self.box_scores)


def json_arrays(path: Path) -> JsonArrays:
    document = read_results(path)
    frames = document["frames"]
    ids = sorted({a["track_id"] for f in frames for a in f["animals"]})
    count = max(f["frame"] for f in frames) + 1
    names = document["keypoint_names"]
    keypoints = np.full((count, len(ids), len(names), 3), np.nan)
    scores = np.full((count, len(ids)), np.nan)
    times = np.full(count, np.nan)
    for frame in frames:
        times[frame["frame"]] = frame["time"]
        for animal in frame["animals"]:
            column = ids.index(animal["track_id"])
            keypoints[frame["frame"], column] = [[np.nan if v is None else v for v in point]
                                                 for point in animal["keypoints"]]
            scores[frame["frame"], column] = animal["score"]
    return JsonArrays([f"track_{i}" for i in ids], names, document["skeleton"], keypoints, scores, times,
                      document["source"]["fps"])


def movement_dataset(path: Path, software: str, **options):
    """``movement.io.load_poses.from_file(path, source_software=software)`` (its deprecation warning hushed)."""
    load_poses = pytest.importorskip("movement.io.load_poses")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_poses.from_file(path, source_software=software, **options)


def assert_movement_matches(dataset, expected: JsonArrays, individuals: list[str] | None = None) -> None:
    """A movement poses dataset holds the frames, animals, keypoints, coordinates and confidences of ``expected``
    (animals renamed to ``individuals`` first, when given)."""
    if individuals is not None:
        dataset = dataset.assign_coords(individuals=individuals)
    names = list(expected.individuals if individuals is None else individuals)
    assert sorted(dataset.individuals.values.tolist()) == sorted(names)
    assert sorted(dataset.keypoints.values.tolist()) == sorted(expected.keypoint_names)
    columns = [expected.individuals.index(n) for n in names]
    position = dataset.position.sel(individuals=names, keypoints=expected.keypoint_names)
    confidence = dataset.confidence.sel(individuals=names, keypoints=expected.keypoint_names)
    # movement: (time, space, keypoints, individuals); ours: (frame, individual, keypoint, xyc)
    want = expected.keypoints[:, columns].transpose(0, 3, 2, 1)
    assert position.shape[0] == want.shape[0], "not the same frames"
    np.testing.assert_allclose(position.values, want[:, :2], atol=PIXEL_TOLERANCE)
    np.testing.assert_allclose(confidence.values, want[:, 2], atol=SCORE_TOLERANCE)
