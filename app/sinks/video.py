"""The labeled video: each frame drawn with its results and encoded (:mod:`app.sinks.encoder`, PyAV) on a
writer thread."""

from __future__ import annotations

import errno
import logging
import os
import queue
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from app.drawing import DrawSettings, TrailHistory, draw_frame
from app.sinks.base import (
    SinkBase,
    SinkError,
    finish_file,
    keep_partial,
    part_path,
    prepare_folder,
    sink_error,
)
from app.sinks.encoder import (
    BROWSER_PLAYABLE,
    CODECS_BY_EXTENSION,
    EncoderError,
    VideoEncoder,
    codecs_for,
    cuda_in_use,
)
from app.sources import VideoInfo
from pose.structures import FrameResult

logger = logging.getLogger(__name__)

__all__ = ["BROWSER_PLAYABLE", "CODECS_BY_EXTENSION", "DISK_CHECK_EVERY", "VideoSink", "video_is_readable"]


def video_is_readable(path: Path) -> bool:
    """Whether ``path`` opens as a video with at least one frame's data (read back after writing)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return next(iter(container.demux(stream))).size > 0
    except Exception:
        return False


_STOP = object()
#: The video writer checks the free disk space every this many frames.
DISK_CHECK_EVERY = 30


class VideoSink(SinkBase):
    """A labeled copy of the video: skeletons in AP-10K colours, boxes, track ids and optional trails.

    Drawing and encoding run on a writer thread fed through a bounded queue, so they overlap with
    the pipeline (``write`` blocks only when ``queue_size`` frames are waiting). Each frame is shown at
    its result's time stamp (a variable-frame-rate source stays in sync); frames whose size differs
    from ``info`` are resized.

    Args:
        path: output file; the extension picks the container and the encoders tried
            (:data:`CODECS_BY_EXTENSION`: H.264 for .mp4/.m4v/.mov/.mkv, VP9 for .webm, Motion JPEG for
            .avi; the first that opens is used, see :attr:`codec`).
        info: size and frame rate of the output.
        draw: what to draw.
        codecs: encoders (FFmpeg names) to try instead of the container's defaults.
        queue_size: frames waiting for the writer thread.
        hardware: try NVIDIA's NVENC before libx264; None: when this process computes on CUDA
            (:func:`app.sinks.encoder.cuda_in_use`).

    Raises:
        SinkError: the folder is not writable, or no encoder opens.
    """

    def __init__(self, path: str | Path, info: VideoInfo, draw: DrawSettings | None = None,
                 codecs: Sequence[str] | None = None, queue_size: int = 8, hardware: bool | None = None) -> None:
        self.path = Path(path)
        self.info = info
        self.draw = draw or DrawSettings()
        suffix = self.path.suffix.lower()
        if codecs is None:
            if suffix not in CODECS_BY_EXTENSION:
                raise SinkError(f"cannot write {self.path}: unknown video extension {suffix!r}; "
                                f"use one of {', '.join(CODECS_BY_EXTENSION)}")
            codecs = codecs_for(self.path, cuda_in_use() if hardware is None else hardware)
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        prepare_folder(self.path)
        self.part = part_path(self.path)
        try:
            self._encoder = VideoEncoder(self.part, info.size, info.fps, list(codecs))
        except EncoderError as exc:
            self.part.unlink(missing_ok=True)
            raise SinkError(f"cannot write {self.path}: {exc}") from None
        except OSError as exc:
            self.part.unlink(missing_ok=True)
            raise sink_error(self.path, exc) from None
        self.codec = self._encoder.codec
        logger.info("writing %s with the %s encoder", self.path, self.codec)
        self._trails = TrailHistory(self.draw.trail_length, self.draw.trail_keypoint, self.draw.kpt_thr) \
            if self.draw.trail_length else None
        self._queue: queue.Queue[object] = queue.Queue(queue_size)
        self._error: BaseException | None = None
        self._frames_written = 0
        self._warned_size = False
        self._done = False
        self._thread = threading.Thread(target=self._run, name=f"write {self.path.name}", daemon=True)
        self._thread.start()

    @property
    def frames_written(self) -> int:
        return self._frames_written

    def _encode(self, result: FrameResult, image: np.ndarray) -> None:
        trails = self._trails.update(result) if self._trails is not None else None
        canvas = draw_frame(image, result, self.draw, trails)
        if canvas.shape[1::-1] != self.info.size:
            if not self._warned_size:
                logger.warning("%s: resizing %dx%d frames to %dx%d", self.path, canvas.shape[1], canvas.shape[0],
                               *self.info.size)
                self._warned_size = True
            canvas = cv2.resize(canvas, self.info.size, interpolation=cv2.INTER_AREA)
        self._encoder.encode(canvas, result.timestamp_s)
        self._frames_written += 1
        if self._frames_written % DISK_CHECK_EVERY == 0 and shutil.disk_usage(self.part.parent).free == 0:
            # the muxer buffers its writes: a full disk is found here before the end of the video
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # drain, so that write() never blocks on a dead writer
            try:
                self._encode(*item)  # type: ignore[misc]
            except BaseException as exc:  # reported by the next write() or close()
                self._error = exc

    def _raise_writer_error(self) -> None:
        if isinstance(self._error, OSError):
            raise sink_error(self.path, self._error) from self._error
        if self._error is not None:
            raise SinkError(f"cannot write {self.path}: {self._error}") from self._error

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        """Queue ``image`` (H, W, 3) BGR uint8 to be drawn with ``result`` and encoded.

        The writer thread reads ``image`` later: do not change it after this call.
        """
        if self._done:
            raise SinkError(f"cannot write {self.path}: the sink is closed")
        if image is None:
            raise ValueError("VideoSink.write needs the frame image")
        self._raise_writer_error()
        self._queue.put((result, image))

    def _stop_writer(self) -> None:
        """Encode what is queued and finalise the file (its index written: it plays however the run ended)."""
        self._done = True
        self._queue.put(_STOP)
        self._thread.join()
        if self._error is not None:
            self._encoder.release()
            return
        try:
            self._encoder.close()
        except BaseException as exc:
            self._error = exc

    def _check_written(self) -> None:
        """Read the finished file back: a full disk can leave a file without its index."""
        if self._frames_written and not video_is_readable(self.part):
            reason = "no space left on device" if shutil.disk_usage(self.part.parent).free == 0 \
                else "the encoder produced an unreadable file"
            raise SinkError(f"cannot write {self.path}: {reason}")

    def close(self) -> None:
        """Finish encoding, check the file and rename it to its final name.

        On failure what was encoded is left as :func:`partial_path` when it plays (else removed).
        """
        if self._done:
            return
        self._stop_writer()
        try:
            self._raise_writer_error()
            self._check_written()
            finish_file(self.part, self.path)
        except SinkError:
            self._leave_partial()
            raise
        logger.info("wrote %s (%d frames, %s)", self.path, self._frames_written, self.codec)

    def _leave_partial(self) -> None:
        if not self.part.exists():
            return
        if self._frames_written == 0 or not video_is_readable(self.part):
            self.part.unlink(missing_ok=True)
            return
        target = keep_partial(self.part, self.path)
        if target is not None:
            logger.warning("%s is incomplete: the %d frames written are in %s", self.path, self._frames_written,
                           target)

    def abort(self) -> None:
        """Finish the frames queued so far and leave them in :func:`partial_path` (nothing when none)."""
        if self._done:
            return
        self._stop_writer()
        self._leave_partial()
