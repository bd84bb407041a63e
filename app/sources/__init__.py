"""Frame readers: video files, image folders, webcams and network streams.

Every source is a context manager and an iterable of :class:`Frame`, with an
:class:`VideoInfo` (``.info``) known as soon as it is opened and a
:class:`SourceStats` snapshot (``.stats``) that says what was read, delivered,
dropped or skipped. Reading starts with the iteration and happens on a reader
thread, so decoding overlaps with whatever the consumer does with each frame:

* :class:`VideoFileSource` and :class:`ImageFolderSource` put every frame on a
  bounded queue; a slow consumer slows the reader down, nothing is dropped.
* :class:`LiveSource` keeps only the newest frame in a one-slot buffer; a frame
  the consumer had no time to take is replaced and counted as dropped. The
  consumer therefore always works on a frame at most one frame-interval old,
  however slow it is (the buffer never falls behind the camera), and reconnects
  with exponential backoff when the stream drops.

Problems a user can act on (missing file, not a video, unreachable stream) raise
:class:`SourceError` with a one-line message that names the source.
"""

from __future__ import annotations

from pathlib import Path

from app.sources.base import Frame, SourceError, SourceStats, VideoInfo, quiet_opencv
from app.sources.files import ImageFolderSource, ImageReadError, VideoFileSource, read_image_file
from app.sources.live import LiveSettings, LiveSource
from app.sources.paths import (
    IMAGE_EXTENSIONS,
    STREAM_SCHEMES,
    VIDEO_EXTENSIONS,
    SourceKind,
    expand_video_inputs,
    list_images,
    redact_url,
    source_kind,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "STREAM_SCHEMES",
    "VIDEO_EXTENSIONS",
    "Frame",
    "ImageFolderSource",
    "ImageReadError",
    "LiveSettings",
    "LiveSource",
    "SourceError",
    "SourceKind",
    "SourceStats",
    "VideoFileSource",
    "VideoInfo",
    "expand_video_inputs",
    "list_images",
    "open_source",
    "quiet_opencv",
    "read_image_file",
    "redact_url",
    "source_kind",
]


def open_source(
    spec: str | int | Path,
    *,
    fps: float | None = None,
    queue_size: int = 8,
    live: LiveSettings | None = None,
) -> VideoFileSource | ImageFolderSource | LiveSource:
    """Open what ``spec`` names (see :func:`source_kind`).

    Args:
        spec: a video file, an image file / folder / glob, a camera index, or a stream URL.
        fps: frame rate of an image sequence (default 1); ignored for videos and live sources.
        queue_size: frames read ahead for files and image folders.
        live: settings of a live source.

    Raises:
        SourceError: the source cannot be opened, or ``spec`` holds several videos (open each of
            :func:`expand_video_inputs` in turn).
    """
    kind = source_kind(spec)
    if kind is SourceKind.LIVE:
        return LiveSource(spec if isinstance(spec, int) else str(spec), live)
    if kind is SourceKind.IMAGES:
        return ImageFolderSource(spec, fps=fps or 1.0, queue_size=queue_size)
    if kind is SourceKind.VIDEOS:
        videos = expand_video_inputs(spec)
        if len(videos) > 1:
            raise SourceError(f"{spec} holds {len(videos)} videos; process them one at a time")
        spec = videos[0]
    return VideoFileSource(spec, queue_size=queue_size)
