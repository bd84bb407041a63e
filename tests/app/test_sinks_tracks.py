"""app.sinks.tracks: results as dense arrays, and what every pose file sink (DeepLabCut, SLEAP, NWB) shares:
atomic files, partial files on abort, one-line errors, the error that names the ``formats`` extra."""

from __future__ import annotations

import errno
import importlib.util
import re

import numpy as np
import pytest
from test_sinks import INFO, leftovers, make_results

import app.sinks.base
from app.sinks import (
    DeepLabCutSink,
    NwbSink,
    SinkError,
    SleapSink,
    individual_name,
    partial_path,
    pose_table,
)
from app.sinks.tracks import PoseTable
from pose.keypoints import KEYPOINT_NAMES, SKELETON
from pose.structures import FrameResult

SINKS = [(DeepLabCutSink, "out.h5"), (DeepLabCutSink, "out.csv"), (SleapSink, "out.h5"), (SleapSink, "out.slp"),
         (NwbSink, "out.nwb")]
SINK_IDS = ["dlc-h5", "dlc-csv", "sleap-h5", "slp", "nwb"]


def test_pose_table_is_dense_with_nan_for_absent_animals_and_missing_keypoints():
    results = make_results()
    table = pose_table(results[::-1])  # any order in, frame order out
    assert table.frames.tolist() == [r.frame_index for r in results]
    assert table.track_ids.tolist() == [3, 7] and table.individuals == ["track_3", "track_7"]
    assert table.keypoints.shape == (len(results), 2, 17, 3) and table.keypoint_names == KEYPOINT_NAMES
    np.testing.assert_array_equal(table.skeleton, SKELETON)
    assert table.present.tolist()[2] == [True, False] and not table.present[4].any()  # 7 absent, frame 4 empty
    assert np.isnan(table.keypoints[2, 1]).all() and np.isnan(table.box_scores[2, 1])
    assert np.isnan(table.keypoints[0, 0, 5, :2]).all() and table.keypoints[0, 0, 5, 2] == 0.0  # missing keypoint
    np.testing.assert_allclose(table.keypoints[0, 1], results[0].keypoints[1], atol=1e-3)
    assert table.keypoints.dtype == np.float64


def test_every_frame_fills_the_frames_without_results():
    results = [r for r in make_results() if r.frame_index not in (1, 2)]
    table = pose_table(results).every_frame()
    assert table.frames.tolist() == list(range(6))
    assert np.isnan(table.keypoints[1:3]).all() and np.isnan(table.times[1:3]).all()
    assert table.times[3] == pytest.approx(0.3)
    assert pose_table(make_results()).every_frame().frames.tolist() == list(range(6))


def test_a_run_without_frames_or_animals_gives_an_empty_table():
    assert pose_table([]).keypoints.shape == (0, 0, 17, 3)
    table = pose_table([FrameResult.empty(0, 0.0), FrameResult.empty(1, 0.1)])
    assert table.keypoints.shape == (2, 0, 17, 3) and table.individuals == [] and len(table) == 2
    later = pose_table([FrameResult.empty(0, 0.0), make_results()[1]])  # animals only from the second frame
    assert later.keypoints.shape == (2, 2, 17, 3) and np.isnan(later.keypoints[0]).all()


def test_individuals_are_named_after_their_track():
    assert individual_name(12) == "track_12"


@pytest.mark.parametrize("sink, name", SINKS, ids=SINK_IDS)
def test_the_file_appears_only_when_complete(sink, name, tmp_path):
    path = tmp_path / name
    with sink(path, INFO) as out:
        for result in make_results():
            out.write(result)
        assert not path.exists() and leftovers(tmp_path) == []
    assert path.is_file() and leftovers(tmp_path) == []


@pytest.mark.parametrize("sink, name", SINKS, ids=SINK_IDS)
def test_an_interrupted_run_leaves_its_frames_in_a_partial_file(sink, name, tmp_path):
    path = tmp_path / name
    with pytest.raises(KeyboardInterrupt):
        with sink(path, INFO) as out:
            for result in make_results()[:3]:
                out.write(result)
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == [partial_path(path).name]


@pytest.mark.parametrize("sink, name", SINKS, ids=SINK_IDS)
def test_nothing_is_left_when_no_frame_came(sink, name, tmp_path):
    with pytest.raises(RuntimeError):
        with sink(tmp_path / name, INFO):
            raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sink, name, module", [(DeepLabCutSink, "out.h5", "tables"),
                                                (SleapSink, "out.slp", "sleap_io"), (NwbSink, "out.nwb", "ndx_pose")])
def test_a_missing_package_names_the_formats_extra(sink, name, module, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(app.sinks.base.importlib.util, "find_spec", lambda m, *a: None if m == module else real(m, *a))
    with pytest.raises(SinkError) as error:
        sink(tmp_path / name, INFO)
    message = str(error.value)
    assert message == (f"cannot write {tmp_path / name}: {sink.format_name} needs {module}, installed with "
                       "pip install 'animalpose[formats]'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sink, name, message", [(DeepLabCutSink, "out.json", "a DeepLabCut file ends in .h5 or .csv"),
                                                 (SleapSink, "out.csv", "a SLEAP file ends in .h5 (analysis) or .slp")])
def test_an_extension_the_format_lacks_is_refused(sink, name, message, tmp_path):
    with pytest.raises(SinkError, match=re.escape(message)):
        sink.check(tmp_path / name)


@pytest.mark.parametrize("sink, name", SINKS, ids=SINK_IDS)
def test_a_full_disk_is_one_clear_error_and_leaves_nothing(sink, name, tmp_path, monkeypatch):
    def full_disk(self, path, table: PoseTable) -> None:
        path.write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sink, "write_file", full_disk)
    with pytest.raises(SinkError, match=r"^cannot write .*out\.\w+: no space left on device$"):
        with sink(tmp_path / name, INFO) as out:
            out.write(make_results()[0])
    assert list(tmp_path.iterdir()) == []


def test_a_library_error_is_one_line(tmp_path, monkeypatch):
    def broken(self, path, table) -> None:
        raise RuntimeError("HDF5 said no\n  with a long trace\n  below")

    monkeypatch.setattr(NwbSink, "write_file", broken)
    with pytest.raises(SinkError, match=r"^cannot write .*out\.nwb: HDF5 said no$"):
        with NwbSink(tmp_path / "out.nwb", INFO) as out:
            out.write(make_results()[0])


def test_write_after_close_is_an_error(tmp_path):
    sink = NwbSink(tmp_path / "out.nwb", INFO)
    sink.close()
    with pytest.raises(SinkError, match="closed"):
        sink.write(make_results()[0])


@pytest.mark.parametrize("sink, name", SINKS, ids=SINK_IDS)
@pytest.mark.parametrize("frames", [0, 2], ids=["no frame", "no animal"])
def test_a_run_without_animals_still_gives_a_file(sink, name, frames, tmp_path):
    with sink(tmp_path / name, INFO) as out:
        for n in range(frames):
            out.write(FrameResult.empty(n, n / 10))
    assert (tmp_path / name).is_file()
    if sink is DeepLabCutSink and name.endswith(".h5"):
        import pandas as pd

        assert pd.read_hdf(tmp_path / name, key="df_with_missing").shape == (frames, 0)
