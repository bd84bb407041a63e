"""Result writers: the labeled video, JSON Lines (+ a final JSON), CSV and COCO keypoint results.

Every sink is a context manager with ``write(result, image=None)``, ``close()`` and ``abort()``
(:class:`Sink`); :mod:`app.sinks.base` says how files are written and what an interrupted run leaves.
One module per format: :mod:`~app.sinks.video`, :mod:`~app.sinks.json_lines`,
:mod:`~app.sinks.keypoints_csv`, :mod:`~app.sinks.coco`.
"""

from app.sinks.base import (
    Sink,
    SinkError,
    atomic_write_bytes,
    atomic_write_json,
    part_path,
    partial_path,
    sink_error,
    write_file_atomically,
)
from app.sinks.coco import CocoResultsSink, coco_results
from app.sinks.json_lines import JsonLinesSink
from app.sinks.keypoints_csv import LONG_HEADER, CsvLayout, CsvSink, long_rows, write_wide_csv
from app.sinks.video import BROWSER_MP4_CODECS, BROWSER_PLAYABLE, CODECS_BY_EXTENSION, VideoSink

__all__ = [
    "BROWSER_MP4_CODECS",
    "BROWSER_PLAYABLE",
    "CODECS_BY_EXTENSION",
    "LONG_HEADER",
    "CocoResultsSink",
    "CsvLayout",
    "CsvSink",
    "JsonLinesSink",
    "Sink",
    "SinkError",
    "VideoSink",
    "atomic_write_bytes",
    "atomic_write_json",
    "coco_results",
    "long_rows",
    "part_path",
    "partial_path",
    "sink_error",
    "write_file_atomically",
    "write_wide_csv",
]
