"""JSON Lines streamed frame by frame, and the final JSON document built from them."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from app.results_json import frame_to_json, layout_metadata
from app.sinks.base import (
    SinkBase,
    SinkError,
    partial_path,
    prepare_folder,
    remove_quietly,
    sink_error,
    write_file_atomically,
)
from app.sources import VideoInfo
from pose.structures import FrameResult

logger = logging.getLogger(__name__)



class JsonLinesSink(SinkBase):
    """One JSON object per frame (:func:`frame_to_json`), flushed as it is written; a final JSON at close.

    Args:
        path: the JSON Lines file, written under this name from the start (a crash loses at most
            the frame being written).
        final_json: if given, ``close()`` writes there (atomically) one document: the
            :func:`layout_metadata` of ``info``, ``metadata``, and ``"frames"``: the list of all lines.
        info: the source, described in the final JSON.
        metadata: more entries for the final JSON (models, settings, statistics).

    Raises:
        SinkError: the file cannot be created or written.
    """

    def __init__(self, path: str | Path, final_json: str | Path | None = None, info: VideoInfo | None = None,
                 metadata: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.final_json = Path(final_json) if final_json is not None else None
        if self.final_json is not None and self.final_json.resolve() == self.path.resolve():
            raise ValueError(f"final_json must differ from the JSON Lines path {self.path}")
        self.info = info
        self.metadata = dict(metadata or {})
        self.frames_written = 0
        prepare_folder(self.path)
        try:
            self._file: IO[str] | None = open(self.path, "w", encoding="utf-8")
        except OSError as exc:
            raise sink_error(self.path, exc) from None

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        """Append and flush the line of ``result`` (``image`` is ignored)."""
        if self._file is None:
            raise SinkError(f"cannot write {self.path}: the sink is closed")
        try:
            self._file.write(json.dumps(frame_to_json(result), allow_nan=False) + "\n")
            self._file.flush()
        except OSError as exc:
            raise sink_error(self.path, exc) from None
        self.frames_written += 1

    def set_metadata(self, **entries: Any) -> None:
        """Add entries to the final JSON (e.g. statistics known only at the end)."""
        self.metadata.update(entries)

    def _close_file(self) -> None:
        if self._file is None:
            return
        handle, self._file = self._file, None
        try:
            handle.close()
        except OSError as exc:
            raise sink_error(self.path, exc) from None

    def _write_final(self, out: IO[str], complete: bool) -> None:
        head = json.dumps({**layout_metadata(self.info), "complete": complete, **self.metadata}, allow_nan=False)
        out.write(head[:-1] + ', "frames": [')
        with open(self.path, encoding="utf-8") as lines:
            for n, line in enumerate(lines):
                out.write(("\n" if n == 0 else ",\n") + line.rstrip("\n"))
        out.write("\n]}\n")

    def close(self) -> None:
        """Close the JSON Lines file and write the final JSON (``"complete": true``), if one was asked for."""
        if self._file is None:
            return
        self._close_file()
        if self.final_json is not None:
            write_file_atomically(self.final_json, lambda out: self._write_final(out, True))
            logger.info("wrote %s (%d frames)", self.final_json, self.frames_written)

    def abort(self) -> None:
        """Close the JSON Lines file (it keeps every line written) and write the final JSON of the frames
        so far under :func:`partial_path`, with ``"complete": false``. When no frame was written the
        (empty) JSON Lines file is removed and nothing is written."""
        try:
            self._close_file()
        except SinkError as exc:
            logger.error("%s", exc)
            return
        if self.frames_written == 0:  # nothing to keep: no empty log either
            remove_quietly(self.path)
            return
        if self.final_json is None:
            return
        target = partial_path(self.final_json)
        try:
            write_file_atomically(target, lambda out: self._write_final(out, False))
        except (SinkError, OSError) as exc:
            logger.error("%s", exc)
            return
        logger.warning("%s is incomplete: the %d frames written are in %s", self.final_json, self.frames_written,
                       target)


