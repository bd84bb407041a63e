"""Result writers: labeled video, JSON Lines (+ a final JSON), CSV and COCO keypoint results.

Every sink is a context manager with ``write(result, image=None)`` and ``close()``.

Files and failures:

* Outputs are written under a temporary name in the destination folder, ``.STEM.part.EXT``
  (:func:`part_path`; the extension stays last so FFmpeg still knows the container), and renamed
  to their final name by ``close()``. A final name therefore always holds a complete file.
* Leaving the ``with`` block with an exception calls :meth:`abort` instead: streamed outputs
  (the video, a long CSV) stay under their ``.part`` name with everything written so far (a video
  is finalised so it plays); outputs built at the end (final JSON, wide CSV, COCO results) are not
  written at all.
* JSON Lines is the exception by design: it is a log, written under its final name from the start
  and flushed after every frame, so a crash loses at most the frame being written; its final JSON
  document appears only when ``close()`` completes.
* Operating-system failures (full disk, no permission, read-only file system) raise
  :class:`SinkError` naming the file and the reason.

To end a live run with Ctrl-C and keep complete outputs, catch ``KeyboardInterrupt`` inside the
``with`` block (the sinks then close normally).
"""

from __future__ import annotations

import colorsys
import contextlib
import csv
import enum
import errno
import json
import logging
import math
import os
import queue
import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import cv2
import numpy as np

from app.annotate import draw_poses
from app.sources import VideoInfo, quiet_opencv
from pose.keypoints import KEYPOINT_COLORS, KEYPOINT_NAMES, NUM_KEYPOINTS, SKELETON, SKELETON_COLORS
from pose.structures import FrameResult

logger = logging.getLogger(__name__)

#: Names of the ``FrameResult.keypoint_status`` codes (``tracking.smoothing.KeypointStatus``).
STATUS_NAMES: tuple[str, ...] = ("missing", "observed", "predicted", "smoothed")

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

_ERRNO_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a parent of it is not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENOENT: "its folder does not exist",
}


class SinkError(RuntimeError):
    """An output that cannot be written; the message is one line naming the file."""


def sink_error(path: str | Path, exc: OSError) -> SinkError:
    """A :class:`SinkError` naming ``path`` and the reason of ``exc`` in words."""
    reason = _ERRNO_REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
    return SinkError(f"cannot write {path}: {reason}")


def part_path(path: str | Path) -> Path:
    """The temporary name an output is written under: ``.STEM.part.EXT`` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.stem}.part{path.suffix}")


def partial_path(path: str | Path) -> Path:
    """Where an incomplete output is left: ``a.mp4`` -> ``a.partial.mp4``, ``a.coco.json`` ->
    ``a.coco.partial.json`` (the extension stays last, so players and readers still know the format)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def _keep_partial(part: Path, path: Path) -> Path | None:
    """Move the temporary file ``part`` of ``path`` to :func:`partial_path`; None (and ``part``
    removed) when that fails."""
    target = partial_path(path)
    try:
        os.replace(part, target)
    except OSError as exc:
        logger.error("%s", sink_error(target, exc))
        part.unlink(missing_ok=True)
        return None
    return target


def _prepare_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise sink_error(path, exc) from None
    if path.is_dir():
        raise SinkError(f"cannot write {path}: it is a folder")


def _finish(part: Path, path: Path, handle: IO[Any] | None = None) -> None:
    """Flush and sync ``handle`` (if given) and rename ``part`` to ``path``."""
    try:
        if handle is not None:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        os.replace(part, path)
    except OSError as exc:
        raise sink_error(path, exc) from None


def write_file_atomically(path: str | Path, write: Callable[[IO[str]], None]) -> Path:
    """Call ``write`` on a text file opened under :func:`part_path` and rename it to ``path``.

    On failure the temporary file is removed and :class:`SinkError` (for OS errors) raised.
    """
    path = Path(path)
    _prepare_folder(path)
    part = part_path(path)
    try:
        with open(part, "w", encoding="utf-8", newline="") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(part, path)
    except OSError as exc:
        _remove_quietly(part)
        raise sink_error(path, exc) from None
    except BaseException:
        _remove_quietly(part)
        raise
    return path


def _remove_quietly(path: Path) -> None:
    """Remove a temporary file if it is there; a failure here must not hide the error being reported."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


class Sink(Protocol):
    """What the pipeline writes to."""

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


_Self = TypeVar("_Self", bound="_SinkBase")


class _SinkBase:
    """Context management shared by the sinks: ``close()`` on success, ``abort()`` on an exception."""

    path: Path

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


# --------------------------------------------------------------------------------------------------
# Conversions of results


def _number(value: float, digits: int) -> float | None:
    """``value`` rounded for output; None (JSON null, empty CSV cell) when it is NaN or infinite."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def animal_to_json(result: FrameResult, n: int) -> dict[str, Any]:
    """The ``n``-th animal of ``result`` as a JSON-ready dict (pixels rounded to 0.001, scores to 1e-4)."""
    return {
        "track_id": int(result.track_ids[n]),
        "bbox": [_number(v, 3) for v in result.boxes[n]],
        "score": _number(result.box_scores[n], 4),
        "keypoints": [[_number(x, 3), _number(y, 3), _number(c, 4)] for x, y, c in result.keypoints[n]],
        "status": [int(s) for s in result.keypoint_status[n]],
    }


def frame_to_json(result: FrameResult) -> dict[str, Any]:
    """``{"frame", "time", "animals": [...]}`` for one frame, as written to JSON Lines."""
    return {
        "frame": int(result.frame_index),
        "time": _number(result.timestamp_s, 6),
        "animals": [animal_to_json(result, n) for n in range(len(result))],
    }


def layout_metadata(info: VideoInfo | None = None) -> dict[str, Any]:
    """Source description and the AP-10K layout, for the head of a final JSON document."""
    meta: dict[str, Any] = {}
    if info is not None:
        meta["source"] = {"name": info.name, "fps": info.fps, "width": info.width, "height": info.height,
                          "total_frames": info.total_frames, "is_live": info.is_live}
    meta["keypoint_names"] = list(KEYPOINT_NAMES)
    meta["skeleton"] = SKELETON.tolist()
    meta["skeleton_base"] = 0
    meta["keypoint_status"] = {str(code): name for code, name in enumerate(STATUS_NAMES)}
    return meta


# --------------------------------------------------------------------------------------------------
# Drawing


@dataclass(frozen=True)
class DrawSettings:
    """How a :class:`VideoSink` labels frames.

    Attributes:
        kpt_thr: keypoints (and links) with a confidence below this are not drawn.
        boxes: outline each animal's box.
        labels: write each animal's track id at its box.
        trail_length: draw each track's last ``trail_length`` positions (0: no trails).
        trail_keypoint: keypoint index whose path the trail follows; None: the box centre.
        thickness, radius: line thickness and keypoint radius in pixels; None: follow the frame size.
    """

    kpt_thr: float = 0.3
    boxes: bool = True
    labels: bool = True
    trail_length: int = 0
    trail_keypoint: int | None = None
    thickness: int | None = None
    radius: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.kpt_thr <= 1.0:
            raise ValueError(f"kpt_thr must be in [0, 1], got {self.kpt_thr}")
        if self.trail_length < 0:
            raise ValueError(f"trail_length must be >= 0, got {self.trail_length}")
        if self.trail_keypoint is not None and not 0 <= self.trail_keypoint < NUM_KEYPOINTS:
            raise ValueError(
                f"trail_keypoint must be a keypoint index in [0, {NUM_KEYPOINTS}), got {self.trail_keypoint}"
            )
        for name in ("thickness", "radius"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 pixel or None, got {value}")


def track_color(track_id: int) -> tuple[int, int, int]:
    """A bright BGR colour for a track id; neighbouring ids get well separated hues."""
    hue = (int(track_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


class TrailHistory:
    """The last ``length`` positions of each track (box centre or one keypoint), in pixels.

    A track's trail is forgotten once it has been absent for ``length`` frames.
    """

    def __init__(self, length: int, keypoint: int | None = None, kpt_thr: float = 0.3) -> None:
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.length = length
        self.keypoint = keypoint
        self.kpt_thr = kpt_thr
        self._points: dict[int, deque[tuple[float, float]]] = {}
        self._last_seen: dict[int, int] = {}
        self._frames = 0

    def update(self, result: FrameResult) -> dict[int, np.ndarray]:
        """Add the positions in ``result``; return {track id: (M, 2) positions, oldest first} of its tracks."""
        self._frames += 1
        for n, track_id in enumerate(int(t) for t in result.track_ids):
            if self.keypoint is None:
                x1, y1, x2, y2 = result.boxes[n]
                point = ((x1 + x2) / 2, (y1 + y2) / 2)
            else:
                x, y, c = result.keypoints[n, self.keypoint]
                point = (x, y) if c >= self.kpt_thr else (math.nan, math.nan)
            if math.isfinite(point[0]) and math.isfinite(point[1]):
                self._points.setdefault(track_id, deque(maxlen=self.length)).append((float(point[0]), float(point[1])))
            self._last_seen[track_id] = self._frames
        for track_id in [t for t, seen in self._last_seen.items() if self._frames - seen >= self.length]:
            self._points.pop(track_id, None)
            del self._last_seen[track_id]
        present = {int(t) for t in result.track_ids}
        return {t: np.array(p, np.float32) for t, p in self._points.items() if t in present and p}


def draw_trails(image_bgr: np.ndarray, trails: Mapping[int, np.ndarray], thickness: int = 2) -> np.ndarray:
    """Draw each track's positions (M, 2) as a line in the track's colour, thinner towards the past; in place."""
    for track_id, points in trails.items():
        color = track_color(track_id)
        pixels = np.round(points).astype(np.int32)
        for m in range(1, len(pixels)):
            width = max(1, int(round(thickness * m / (len(pixels) - 1))))
            cv2.line(image_bgr, tuple(pixels[m - 1]), tuple(pixels[m]), color, width, cv2.LINE_AA)
    return image_bgr


def draw_frame(image_bgr: np.ndarray, result: FrameResult, settings: DrawSettings,
               trails: Mapping[int, np.ndarray] | None = None) -> np.ndarray:
    """A copy of ``image_bgr`` with the skeletons (AP-10K colours), boxes, track ids and trails of ``result``."""
    labels = [f"#{int(t)}" for t in result.track_ids] if settings.labels else None
    keypoints = result.keypoints.copy()
    missing = ~np.isfinite(keypoints).all(axis=-1)
    keypoints[missing] = 0.0  # missing keypoints have NaN coordinates: give them zero confidence
    canvas = draw_poses(
        image_bgr, keypoints, SKELETON, KEYPOINT_COLORS, SKELETON_COLORS,
        boxes_xyxy=result.boxes if settings.boxes else None, labels=labels,
        score_threshold=settings.kpt_thr, radius=settings.radius, thickness=settings.thickness,
    )
    if labels is not None and not settings.boxes:
        for label, (x1, y1, _, _) in zip(labels, result.boxes):
            cv2.putText(canvas, label, (int(x1) + 2, max(12, int(y1) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5, (255, 255, 255), 1, cv2.LINE_AA)
    if trails:
        draw_trails(canvas, trails, thickness=settings.thickness or max(2, min(canvas.shape[:2]) // 240))
    return canvas


# --------------------------------------------------------------------------------------------------
# Video


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


class VideoSink(_SinkBase):
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
        _prepare_folder(self.path)
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
            _finish(self.part, self.path)
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
        target = _keep_partial(self.part, self.path)
        if target is not None:
            logger.warning("%s is incomplete: the %d frames written are in %s", self.path, self._frames_written,
                           target)

    def abort(self) -> None:
        """Finish the frames queued so far and leave them in :func:`partial_path` (nothing when none)."""
        if self._done:
            return
        self._stop_writer()
        self._leave_partial()


# --------------------------------------------------------------------------------------------------
# JSON


class JsonLinesSink(_SinkBase):
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
        _prepare_folder(self.path)
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
            _remove_quietly(self.path)
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


# --------------------------------------------------------------------------------------------------
# CSV


class CsvLayout(enum.Enum):
    """LONG: one row per frame x track x keypoint. WIDE: one row per frame, DeepLabCut's header rows."""

    LONG = "long"
    WIDE = "wide"


LONG_HEADER: tuple[str, ...] = ("frame", "time", "track_id", "keypoint", "x", "y", "confidence", "status")


def _cell(value: float, digits: int) -> str:
    number = _number(value, digits)
    return "" if number is None else f"{number:.{digits}f}"


def long_rows(result: FrameResult) -> Iterable[list[str | int]]:
    """The LONG rows of one frame: frame, time (s), track_id, keypoint name, x, y (px), confidence, status."""
    time_cell = _cell(result.timestamp_s, 6)
    for n, track_id in enumerate(result.track_ids):
        for k, name in enumerate(KEYPOINT_NAMES[: result.keypoints.shape[1]]):
            x, y, c = result.keypoints[n, k]
            yield [int(result.frame_index), time_cell, int(track_id), name, _cell(x, 3), _cell(y, 3), _cell(c, 4),
                   int(result.keypoint_status[n, k])]


def write_wide_csv(
    out: IO[str], frames: Sequence[tuple[int, np.ndarray, np.ndarray]], scorer: str = "animalpose"
) -> None:
    """Write DeepLabCut's multi-animal CSV layout.

    Four header rows, each starting with its name: ``scorer``, ``individuals`` (track ids, in
    increasing order), ``bodyparts`` (AP-10K names), ``coords`` (x, y, likelihood); then one row per
    frame: the frame index and x, y, likelihood of every track and keypoint, empty where the
    track is absent or the keypoint missing. ``pandas.read_csv(f, header=[0, 1, 2, 3], index_col=0)``
    reads it as DeepLabCut does.

    Args:
        frames: (frame index, (N,) track ids, (N, K, 3) keypoints) per frame.
    """
    track_ids = sorted({int(t) for _, ids, _ in frames for t in ids})
    names = KEYPOINT_NAMES
    columns = [(t, k, c) for t in track_ids for k in range(len(names)) for c in range(3)]
    writer = csv.writer(out)
    writer.writerow(["scorer"] + [scorer] * len(columns))
    writer.writerow(["individuals"] + [str(t) for t, _, _ in columns])
    writer.writerow(["bodyparts"] + [names[k] for _, k, _ in columns])
    writer.writerow(["coords"] + [("x", "y", "likelihood")[c] for _, _, c in columns])
    slot = {t: i for i, t in enumerate(track_ids)}
    for frame_index, ids, keypoints in frames:
        row = [""] * len(columns)
        for n, track_id in enumerate(ids):
            start = slot[int(track_id)] * len(names) * 3
            for k in range(len(names)):
                x, y, c = keypoints[n, k]
                row[start + 3 * k: start + 3 * k + 3] = [_cell(x, 3), _cell(y, 3), _cell(c, 4)]
        writer.writerow([int(frame_index)] + row)


class CsvSink(_SinkBase):
    """Keypoints as CSV in a :class:`CsvLayout`.

    LONG rows (:data:`LONG_HEADER`) are streamed to the ``.part`` file as frames come; WIDE needs
    every track id for its header, so it is written at ``close()`` from results kept in memory.
    Coordinates are pixels with 3 decimals, confidences 4; missing values are empty cells.
    """

    def __init__(self, path: str | Path, layout: CsvLayout = CsvLayout.LONG) -> None:
        self.path = Path(path)
        self.layout = CsvLayout(layout)
        self.part = part_path(self.path)
        self._frames: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._file: IO[str] | None = None
        self._closed = False
        self.frames_written = 0
        _prepare_folder(self.path)
        if self.layout is CsvLayout.LONG:
            try:
                self._file = open(self.part, "w", encoding="utf-8", newline="")
                self._csv = csv.writer(self._file)
                self._csv.writerow(LONG_HEADER)
            except OSError as exc:
                raise sink_error(self.path, exc) from None

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        """Add the rows of ``result`` (``image`` is ignored)."""
        if self._closed:
            raise SinkError(f"cannot write {self.path}: the sink is closed")
        if self.layout is CsvLayout.WIDE:
            self._frames.append((int(result.frame_index), result.track_ids.copy(), result.keypoints.copy()))
        else:
            try:
                self._csv.writerows(long_rows(result))
            except OSError as exc:
                raise sink_error(self.path, exc) from None
        self.frames_written += 1

    def close(self) -> None:
        """Write (WIDE) or finish (LONG) the file and rename it to its final name."""
        if self._closed:
            return
        self._closed = True
        if self.layout is CsvLayout.WIDE:
            write_file_atomically(self.path, lambda out: write_wide_csv(out, self._frames))
        else:
            try:
                _finish(self.part, self.path, self._file)
            except SinkError:
                if self.frames_written == 0 or _keep_partial(self.part, self.path) is None:
                    self.part.unlink(missing_ok=True)
                raise
        logger.info("wrote %s", self.path)

    def abort(self) -> None:
        """Leave the rows of the frames written so far in :func:`partial_path` (nothing when none)."""
        if self._closed:
            return
        self._closed = True
        target: Path | None = None
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                logger.error("%s", sink_error(self.path, exc))
            target = _keep_partial(self.part, self.path) if self.frames_written else None
            if target is None:
                self.part.unlink(missing_ok=True)
        elif self._frames:
            try:
                target = write_file_atomically(partial_path(self.path), lambda out: write_wide_csv(out, self._frames))
            except SinkError as exc:
                logger.error("%s", exc)
        if target is not None:
            logger.warning("%s is incomplete: the %d frames written are in %s", self.path, self.frames_written,
                           target)


# --------------------------------------------------------------------------------------------------
# COCO


def coco_results(result: FrameResult, image_id: int, category_id: int = 1) -> list[dict[str, Any]]:
    """COCO keypoint detection results for one frame.

    Each animal gives ``{"image_id", "category_id", "keypoints": [x1, y1, c1, ...] (51 numbers),
    "score": mean keypoint confidence x box score, "bbox": [x, y, w, h], "track_id"}``; missing
    keypoints are written as (0, 0, 0).
    """
    out = []
    for n in range(len(result)):
        keypoints = np.nan_to_num(result.keypoints[n].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        x1, y1, x2, y2 = (float(v) for v in result.boxes[n])
        score = float(keypoints[:, 2].mean()) * float(result.box_scores[n])
        out.append({
            "image_id": int(image_id),
            "category_id": int(category_id),
            "keypoints": [round(float(v), 3) for v in keypoints.reshape(-1)],
            "score": round(score, 6),
            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
            "track_id": int(result.track_ids[n]),
        })
    return out


class CocoResultsSink(_SinkBase):
    """All frames as one COCO keypoint results list (``image_id`` = frame index + ``image_id_offset``).

    The list is kept in memory and written atomically at ``close()``; an aborted run writes nothing.
    ``pycocotools.coco.COCO.loadRes`` reads the file.
    """

    def __init__(self, path: str | Path, image_id_offset: int = 0, category_id: int = 1) -> None:
        self.path = Path(path)
        self.image_id_offset = int(image_id_offset)
        self.category_id = int(category_id)
        self._results: list[dict[str, Any]] = []
        self._closed = False
        self.frames_written = 0
        _prepare_folder(self.path)

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        """Add the animals of ``result`` (``image`` is ignored)."""
        if self._closed:
            raise SinkError(f"cannot write {self.path}: the sink is closed")
        self._results.extend(coco_results(result, result.frame_index + self.image_id_offset, self.category_id))
        self.frames_written += 1

    def close(self) -> None:
        """Write the results list to ``path``."""
        if self._closed:
            return
        self._closed = True
        write_file_atomically(self.path, lambda out: json.dump(self._results, out))
        logger.info("wrote %s (%d results)", self.path, len(self._results))

    def abort(self) -> None:
        """Write the results of the frames so far to :func:`partial_path` (nothing when no frame came)."""
        if self._closed:
            return
        self._closed = True
        if not self.frames_written:
            return
        try:
            target = write_file_atomically(partial_path(self.path), lambda out: json.dump(self._results, out))
        except SinkError as exc:
            logger.error("%s", exc)
            return
        logger.warning("%s is incomplete: the %d frames written are in %s", self.path, self.frames_written, target)
