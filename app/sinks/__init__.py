"""Result writers: the labeled video, JSON Lines (+ a final JSON), CSV, COCO keypoint results, and the pose
files of DeepLabCut, SLEAP and NWB.

Every sink is a context manager with ``write(result, image=None)``, ``close()`` and ``abort()``
(:class:`Sink`); :mod:`app.sinks.base` says how files are written and what an interrupted run leaves.
One module per format: :mod:`~app.sinks.video` (drawing, over :mod:`~app.sinks.encoder`),
:mod:`~app.sinks.json_lines`, :mod:`~app.sinks.keypoints_csv`, :mod:`~app.sinks.coco`,
:mod:`~app.sinks.deeplabcut`, :mod:`~app.sinks.sleap` and :mod:`~app.sinks.nwb` (the last three over
:mod:`~app.sinks.tracks`; their packages come with ``pip install 'animalpose[formats]'``).
"""

from app.sinks.base import (
    FORMATS_EXTRA,
    Sink,
    SinkError,
    atomic_write_bytes,
    atomic_write_json,
    part_path,
    partial_path,
    sink_error,
    write_file_atomically,
    write_path_atomically,
)
from app.sinks.coco import CocoResultsSink, coco_results
from app.sinks.deeplabcut import DeepLabCutSink
from app.sinks.json_lines import JsonLinesSink
from app.sinks.keypoints_csv import (
    LONG_HEADER,
    CsvLayout,
    CsvSink,
    long_rows,
    write_wide_csv,
)
from app.sinks.nwb import NwbSink
from app.sinks.sleap import SleapSink
from app.sinks.tracks import PoseFileSink, PoseTable, individual_name, pose_table
from app.sinks.video import BROWSER_PLAYABLE, CODECS_BY_EXTENSION, VideoSink

__all__ = [
    "BROWSER_PLAYABLE",
    "CODECS_BY_EXTENSION",
    "FORMATS_EXTRA",
    "LONG_HEADER",
    "CocoResultsSink",
    "CsvLayout",
    "CsvSink",
    "DeepLabCutSink",
    "JsonLinesSink",
    "NwbSink",
    "PoseFileSink",
    "PoseTable",
    "Sink",
    "SinkError",
    "SleapSink",
    "VideoSink",
    "atomic_write_bytes",
    "atomic_write_json",
    "coco_results",
    "individual_name",
    "long_rows",
    "part_path",
    "partial_path",
    "pose_table",
    "sink_error",
    "write_file_atomically",
    "write_path_atomically",
    "write_wide_csv",
]
