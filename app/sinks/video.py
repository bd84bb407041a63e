"""The labeled video: each frame drawn with its results and encoded on a writer thread."""

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
from app.sinks.base import SinkBase, SinkError, finish_file, keep_partial, part_path, prepare_folder, sink_error
from app.sources import VideoInfo, quiet_opencv
from pose.structures import FrameResult

logger = logging.getLogger(__name__)

#: FourCCs tried in order for each container. H.264 ('avc1') plays in every browser but needs an
#: OpenCV whose FFmpeg has an H.264 encoder (the opencv-python wheels have none); 'mp4v' (MPEG-4
#: Part 2) is fast and plays in desktop players but not in browsers. WebM (VP8/VP9) plays in browsers.
CODECS_BY_EXTENSION: dict[str, tuple[str, ...]] = {
    ".mp4": ("avc1", "mp4v"),
    ".m4v": ("avc1", "mp4v"),
    ".mov": ("avc1", "mp4v"),
    ".mkv": ("avc1", "mp4v"),
    ".webm": ("VP80", "VP90"),
    ".avi": ("MJPG", "XVID"),
}
#: Browser-playable choices for ``.mp4``: VP9 in MP4 plays in current browsers but encodes slowly
#: with libvpx (about 5 frames/s at 1280x720 on two cores, against 200 for 'mp4v').
BROWSER_MP4_CODECS: tuple[str, ...] = ("avc1", "vp09")
#: Codecs that browsers play (used to warn when the chosen one is not among them).
BROWSER_PLAYABLE: frozenset[str] = frozenset({"avc1", "vp09", "VP80", "VP90"})



#: (codec, extension, frame size) that failed to open in this process: not tried again (each
#: failed attempt costs time and FFmpeg prints its own complaint on stderr).
_unavailable_codecs: set[tuple[str, str, tuple[int, int]]] = set()
_warned_not_browser_playable = False


def _open_writer(part: Path, path: Path, info: VideoInfo, codecs: Sequence[str]) -> tuple[cv2.VideoWriter, str]:
    suffix = part.suffix.lower()
    for codec in codecs:
        if (codec, suffix, info.size) in _unavailable_codecs:
            continue
        with quiet_opencv():
            fourcc = cv2.VideoWriter_fourcc(*codec)
            writer = cv2.VideoWriter(str(part), cv2.CAP_FFMPEG, fourcc, info.fps, info.size)
        if writer.isOpened():
            return writer, codec
        writer.release()
        if os.access(part.parent, os.W_OK):
            _unavailable_codecs.add((codec, suffix, info.size))
        logger.debug("no %r encoder for %s", codec, suffix)
    raise SinkError(f"cannot write {path}: none of the codecs {', '.join(codecs)} "
                    f"can encode {part.suffix} video with this OpenCV")


_STOP = object()
#: The video writer checks the free disk space every this many frames.
DISK_CHECK_EVERY = 30


class VideoSink(SinkBase):
    """A labeled copy of the video: skeletons in AP-10K colours, boxes, track ids and optional trails.

    Drawing and encoding run on a writer thread fed through a bounded queue, so they overlap with
    the pipeline (``write`` blocks only when ``queue_size`` frames are waiting). Frames whose size
    differs from ``info`` are resized (OpenCV would silently drop them).

    Args:
        path: output file; the extension picks the container and the codecs tried
            (:data:`CODECS_BY_EXTENSION`; the first that opens is used, see :attr:`codec`).
        info: size and frame rate of the output.
        draw: what to draw.
        codecs: FourCCs to try instead of the container's defaults (e.g. :data:`BROWSER_MP4_CODECS`).
        queue_size: frames waiting for the writer thread.

    Raises:
        SinkError: the folder is not writable, or no codec can be opened.
    """

    def __init__(self, path: str | Path, info: VideoInfo, draw: DrawSettings | None = None,
                 codecs: Sequence[str] | None = None, queue_size: int = 8) -> None:
        self.path = Path(path)
        self.info = info
        self.draw = draw or DrawSettings()
        suffix = self.path.suffix.lower()
        if codecs is None:
            if suffix not in CODECS_BY_EXTENSION:
                raise SinkError(f"cannot write {self.path}: unknown video extension {suffix!r}; "
                                f"use one of {', '.join(CODECS_BY_EXTENSION)}")
            codecs = CODECS_BY_EXTENSION[suffix]
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        prepare_folder(self.path)
        self.part = part_path(self.path)
        try:
            self.part.touch()
        except OSError as exc:
            raise sink_error(self.path, exc) from None
        try:
            self._writer, self.codec = _open_writer(self.part, self.path, info, list(codecs))
        except SinkError:
            self.part.unlink(missing_ok=True)
            raise
        self._log_codec()
        self._trails = TrailHistory(self.draw.trail_length, self.draw.trail_keypoint, self.draw.kpt_thr) \
            if self.draw.trail_length else None
        self._queue: queue.Queue[object] = queue.Queue(queue_size)
        self._error: BaseException | None = None
        self._frames_written = 0
        self._warned_size = False
        self._done = False
        self._thread = threading.Thread(target=self._run, name=f"write {self.path.name}", daemon=True)
        self._thread.start()

    def _log_codec(self) -> None:
        global _warned_not_browser_playable
        if self.codec in BROWSER_PLAYABLE or _warned_not_browser_playable:
            logger.info("writing %s with the %r codec", self.path, self.codec)
            return
        _warned_not_browser_playable = True
        logger.warning("writing %s with the %r codec: web browsers will not play it (this OpenCV has no H.264 "
                       "encoder; write .webm for a browser-playable video)", self.path, self.codec)

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
        self._writer.write(canvas)
        self._frames_written += 1
        if self._frames_written % DISK_CHECK_EVERY == 0 and shutil.disk_usage(self.part.parent).free == 0:
            # OpenCV's writer reports failed writes only on stderr; a full disk is found here instead
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
        self._done = True
        self._queue.put(_STOP)
        self._thread.join()
        self._writer.release()

    def _check_written(self) -> None:
        """Read the finished file's header back: a full disk shows up as missing frames."""
        with quiet_opencv():
            capture = cv2.VideoCapture(str(self.part), cv2.CAP_FFMPEG)
            count = capture.get(cv2.CAP_PROP_FRAME_COUNT) if capture.isOpened() else 0.0
            capture.release()
        if self._frames_written and not count > 0:
            reason = "no space left on device" if shutil.disk_usage(self.part.parent).free == 0 \
                else "the encoder produced an unreadable file"
            raise SinkError(f"cannot write {self.path}: {reason}")

    def close(self) -> None:
        """Finish encoding, check the file and rename it to its final name.

        On failure what was encoded is left as :func:`partial_path` (or removed when unreadable).
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
        if self._frames_written == 0:
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


