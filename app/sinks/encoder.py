"""Encoding BGR frames into a video file with PyAV (FFmpeg): H.264 MP4 that plays everywhere, VP9 WebM,
H.264 MKV, Motion-JPEG AVI.

* The container's extension picks the encoders tried (:data:`CODECS_BY_EXTENSION`); with ``hardware``
  NVIDIA's NVENC is tried before libx264 (:data:`HARDWARE_CODECS`) and used when it opens.
* MP4 and MOV files are written with ``+faststart`` (the index first: a browser starts playing before
  the whole file has arrived); every file is finalised on :meth:`VideoEncoder.close`, so a run that
  stops early still leaves a file that plays.
* Frames keep their time stamps (seconds from the first frame, in 1/90000 s): a variable-frame-rate
  source gives a variable-frame-rate video that stays in sync with it (AVI, which knows only a constant
  rate, counts frames at the source's rate instead).
* Colours: OpenCV's BGR is converted to 4:2:0 YUV with BT.601 limited-range coefficients, and the
  stream is tagged so, so that players show the colours the frames had.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: Encoders (FFmpeg names) tried in order for each container.
CODECS_BY_EXTENSION: dict[str, tuple[str, ...]] = {
    ".mp4": ("libx264",),
    ".m4v": ("libx264",),
    ".mov": ("libx264",),
    ".mkv": ("libx264",),
    ".webm": ("libvpx-vp9",),
    ".avi": ("mjpeg",),
}
#: Hardware encoders tried first for a software encoder when a GPU is in use.
HARDWARE_CODECS: dict[str, tuple[str, ...]] = {"libx264": ("h264_nvenc",)}
#: Encoders whose output plays in web browsers (in MP4 or WebM).
BROWSER_PLAYABLE: frozenset[str] = frozenset({"libx264", "h264_nvenc", "libvpx-vp9"})
#: Quality and speed of each encoder: constant quality (CRF 23 for H.264, x264's default) at a preset that
#: leaves the CPU to the pipeline: "superfast" encodes 1.3 to 2 times as fast as "veryfast" for files about
#: twice as large, still smaller than OpenCV's mp4v (docs/benchmarks.md, "Video encoding and decoding").
ENCODER_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"crf": "23", "preset": "superfast"},
    "h264_nvenc": {"preset": "p4", "rc": "vbr", "cq": "23"},
    "libvpx-vp9": {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"},
    "mjpeg": {},
}
#: Pixel format of each encoder's frames (4:2:0: what browsers, phones and players decode).
PIXEL_FORMATS: dict[str, str] = {"mjpeg": "yuvj420p"}
#: Containers written with the index at the front.
FASTSTART_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".m4v", ".mov"})
#: Ticks per second of the time stamps written (a multiple of 24, 25, 30 and 29.97's 30000/1001 step).
TIME_BASE = Fraction(1, 90000)
#: Containers that know only a constant frame rate: their time stamps count frames at the source's rate.
CONSTANT_RATE_EXTENSIONS: frozenset[str] = frozenset({".avi"})

#: (codec, frame size, options) that failed to open in this process: not tried again.
_unavailable: set[tuple[str, tuple[int, int], tuple[tuple[str, str], ...]]] = set()


class EncoderError(RuntimeError):
    """No encoder of a list opens for this frame size (the message is one line)."""


def cuda_in_use() -> bool:
    """True when this process computes on an NVIDIA GPU (torch has initialised CUDA): then NVENC is
    tried for H.264 and the CPU is left to the pipeline."""
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:  # a torch without CUDA support
        return False


def codecs_for(path: str | Path, hardware: bool = False) -> tuple[str, ...]:
    """The encoders tried for ``path``'s container, hardware ones first when ``hardware``.

    Raises:
        KeyError: an extension not in :data:`CODECS_BY_EXTENSION`.
    """
    software = CODECS_BY_EXTENSION[Path(path).suffix.lower()]
    if not hardware:
        return software
    return tuple(c for s in software for c in (*HARDWARE_CODECS.get(s, ()), s))


def even_size(width: int, height: int) -> tuple[int, int]:
    """The frame size encoded: 4:2:0 needs even sides, so an odd last column or row is dropped."""
    return max(2, width - width % 2), max(2, height - height % 2)


def _codec_opens(codec: str, size: tuple[int, int], fps: float, options: Mapping[str, str] | None = None) -> bool:
    """Whether ``codec`` opens at ``size`` here (an NVENC without an NVIDIA driver does not)."""
    import av

    options = dict(ENCODER_OPTIONS.get(codec, {}) if options is None else options)
    key = (codec, size, tuple(sorted(options.items())))
    if key in _unavailable:
        return False
    try:
        context = av.CodecContext.create(codec, "w")
        context.width, context.height = size
        context.pix_fmt = PIXEL_FORMATS.get(codec, "yuv420p")
        context.time_base = TIME_BASE
        context.framerate = Fraction(fps).limit_denominator(1001)
        context.options = options
        context.open()
    except Exception as exc:  # unknown encoder, no device, unsupported size
        logger.debug("the %s encoder does not open at %dx%d: %s", codec, *size, exc)
        _unavailable.add(key)
        return False
    return True


class VideoEncoder:
    """One output video: :meth:`encode` BGR frames with their time stamps, then :meth:`close`.

    Args:
        path: the file written (its extension picks the container).
        size: (width, height) of the frames in pixels; odd sides lose their last column or row.
        fps: the source's frame rate (the rate announced in the file, and the spacing of frames whose
            time stamp is unknown).
        codecs: encoders tried in order (FFmpeg names); the first that opens is used (:attr:`codec`).
        options: FFmpeg options of each encoder, instead of :data:`ENCODER_OPTIONS`.

    Raises:
        EncoderError: none of ``codecs`` opens.
        OSError: the file cannot be created.
    """

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float, codecs: Sequence[str],
                 options: Mapping[str, Mapping[str, str]] | None = None) -> None:
        import av

        options = ENCODER_OPTIONS if options is None else options
        self.path = Path(path)
        self.size = even_size(*size)
        self.fps = float(fps)
        fps_fraction = Fraction(self.fps).limit_denominator(1001)
        constant_rate = self.path.suffix.lower() in CONSTANT_RATE_EXTENSIONS
        self._time_base = 1 / fps_fraction if constant_rate else TIME_BASE
        codec = next((c for c in codecs if _codec_opens(c, self.size, self.fps, options.get(c, {}))), None)
        if codec is None:
            raise EncoderError(f"none of the encoders {', '.join(codecs)} opens for "
                               f"{self.size[0]}x{self.size[1]} {self.path.suffix} video")
        self.codec = codec
        muxer = {"movflags": "+faststart"} if self.path.suffix.lower() in FASTSTART_EXTENSIONS else {}
        self._container = av.open(str(self.path), "w", container_options=muxer)
        try:
            stream = self._container.add_stream(self.codec, rate=fps_fraction,
                                                options=dict(options.get(self.codec, {})))
            stream.width, stream.height = self.size
            stream.pix_fmt = PIXEL_FORMATS.get(self.codec, "yuv420p")
            stream.time_base = self._time_base
            stream.codec_context.time_base = self._time_base
            stream.codec_context.colorspace = 5  # BT.601 (AVCOL_SPC_BT470BG), as the frames are converted
            stream.codec_context.color_range = 2 if stream.pix_fmt == "yuvj420p" else 1  # full (JPEG) or limited
        except BaseException:
            self._container.close()
            raise
        self._stream = stream
        self._first_s: float | None = None
        self._last_pts = -1
        self._step = max(1, round(1 / (self.fps * self._time_base)))
        self.frames = 0

    def _pts(self, timestamp_s: float) -> int:
        """Ticks since the first frame; a missing or non-increasing time stamp continues at the frame rate."""
        if self._first_s is None and math.isfinite(timestamp_s):
            self._first_s = timestamp_s
        pts = -1
        if self._first_s is not None and math.isfinite(timestamp_s):
            pts = round((timestamp_s - self._first_s) / self._time_base)
        if pts <= self._last_pts:
            pts = self._last_pts + self._step if self._last_pts >= 0 else 0
        self._last_pts = pts
        return pts

    def encode(self, image: np.ndarray, timestamp_s: float) -> None:
        """Encode an (H, W, 3) BGR uint8 frame of :attr:`size` (or one column/row more) shown at ``timestamp_s``.

        Raises:
            OSError: writing failed (``errno`` says why, e.g. ENOSPC for a full disk).
        """
        import av

        width, height = self.size
        image = np.ascontiguousarray(image[:height, :width])
        if self._stream.pix_fmt == "yuv420p":  # OpenCV's conversion: faster than FFmpeg's swscale
            frame = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
        else:  # the encoder converts (full-range JPEG YUV for Motion JPEG)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = self._pts(timestamp_s)
        frame.time_base = self._time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finalise the file (its index; moved to the front for MP4).

        Raises:
            OSError: writing failed.
        """
        try:
            if self.frames == 0:
                self._container.start_encoding()  # a file even without frames (its header)
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()

    def release(self) -> None:
        """Close the file without reporting errors (after another error was reported)."""
        try:
            self._container.close()
        except Exception as exc:
            logger.debug("closing %s: %s", self.path, exc)
