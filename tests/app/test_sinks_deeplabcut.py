"""app.sinks.deeplabcut: DeepLabCut's multi-animal .h5 and .csv, read back by movement and pandas as DeepLabCut
users read them, hold the animals, keypoints, coordinates and likelihoods of our JSON results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pose_file_support import (
    PIXEL_TOLERANCE,
    assert_movement_matches,
    json_arrays,
    movement_dataset,
)
from test_sinks import FPS, INFO, make_results

from app.sinks import DeepLabCutSink, JsonLinesSink
from app.sinks.deeplabcut import HDF_KEY, HEADER_LEVELS
from pose.keypoints import KEYPOINT_NAMES

pd = pytest.importorskip("pandas")


def _write(folder: Path, name: str, results) -> tuple[Path, Path]:
    path, json_path = folder / name, folder / "run.json"
    with DeepLabCutSink(path, INFO) as dlc, JsonLinesSink(folder / "run.jsonl", json_path, INFO) as lines:
        for result in results:
            dlc.write(result)
            lines.write(result)
    return path, json_path


@pytest.mark.parametrize("name", ["run.dlc.h5", "run.dlc.csv"])
def test_movement_reads_what_the_json_holds(tmp_path, name):
    path, json_path = _write(tmp_path, name, make_results())
    dataset = movement_dataset(path, "DeepLabCut", fps=FPS)
    assert dataset.attrs["source_software"] == "DeepLabCut" and dataset.attrs["fps"] == FPS
    assert_movement_matches(dataset, json_arrays(json_path))


@pytest.mark.filterwarnings("ignore::pandas.errors.PerformanceWarning")  # columns in AP-10K order, not sorted
def test_the_h5_table_has_deeplabcuts_header_and_a_row_per_frame(tmp_path):
    path, json_path = _write(tmp_path, "run.h5", make_results())
    table = pd.read_hdf(path, key=HDF_KEY)
    assert table.columns.names == list(HEADER_LEVELS)
    assert set(table.columns.get_level_values("scorer")) == {"animalpose"}
    assert table.columns.get_level_values("individuals").unique().tolist() == ["track_3", "track_7"]
    assert table.columns.get_level_values("bodyparts").unique().tolist() == list(KEYPOINT_NAMES)
    assert table.columns.get_level_values("coords").unique().tolist() == ["x", "y", "likelihood"]
    assert table.index.tolist() == list(range(6))
    expected = json_arrays(json_path)
    nose = table[("animalpose", "track_7", "Nose")]
    np.testing.assert_allclose(nose[["x", "y", "likelihood"]].to_numpy(), expected.keypoints[:, 1, 2],
                               atol=PIXEL_TOLERANCE)
    assert nose.iloc[2].isna().all() and table.loc[4].isna().all()  # track 7 absent in frame 2, frame 4 empty
    missing = table[("animalpose", "track_3", KEYPOINT_NAMES[5])].iloc[0]
    assert missing[["x", "y"]].isna().all() and missing["likelihood"] == 0.0


def test_the_csv_reads_as_the_h5(tmp_path):
    h5, _ = _write(tmp_path, "run.h5", make_results())
    csv, _ = _write(tmp_path, "run.csv", make_results())
    from_csv = pd.read_csv(csv, header=[0, 1, 2, 3], index_col=0)
    from_h5 = pd.read_hdf(h5, key=HDF_KEY)
    assert from_csv.columns.tolist() == from_h5.columns.tolist()
    np.testing.assert_allclose(from_csv.to_numpy(), from_h5.to_numpy(), atol=1e-9)
    first = csv.read_text().splitlines()[:5]
    assert [line.split(",")[0] for line in first] == ["scorer", "individuals", "bodyparts", "coords", "0"]


def test_frames_without_a_result_are_empty_rows(tmp_path):
    results = [r for r in make_results() if r.frame_index != 1]  # e.g. an unreadable image
    path, json_path = _write(tmp_path, "run.h5", results)
    table = pd.read_hdf(path, key=HDF_KEY)
    assert table.index.tolist() == list(range(6)) and table.loc[1].isna().all()
    assert_movement_matches(movement_dataset(path, "DeepLabCut", fps=FPS), json_arrays(json_path))
