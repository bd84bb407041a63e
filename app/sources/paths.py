"""What a user's source argument names: a video, a folder or glob of videos, images, or a camera / stream
(no file is opened here)."""

from __future__ import annotations

import enum
import glob
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from app.sources.base import SourceError

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts",
     ".m2ts", ".3gp", ".ogv"}
)
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm"}
)
STREAM_SCHEMES: frozenset[str] = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt"})

class SourceKind(enum.Enum):
    """What a user's source argument points at; see :func:`source_kind`."""

    VIDEO = "video"
    VIDEOS = "videos"
    IMAGES = "images"
    LIVE = "live"




def _natural_key(path: Path) -> list[object]:
    """Sort key putting ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _is_live_spec(spec: str | int) -> bool:
    if isinstance(spec, int):
        return True
    text = spec.strip()
    return text.isdigit() or urlsplit(text).scheme.lower() in STREAM_SCHEMES


def _candidates(spec: str | Path) -> list[Path]:
    """Files a folder holds (not recursive), a glob matches, or the file itself."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        return sorted((p for p in path.iterdir() if p.is_file()), key=_natural_key)
    if path.is_file():
        return [path]
    if _has_glob(text):
        return sorted((Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()), key=_natural_key)
    raise SourceError(f"{text} does not exist")


def _with_extensions(paths: Sequence[Path], extensions: frozenset[str]) -> list[Path]:
    return [p for p in paths if p.suffix.lower() in extensions]


def expand_video_inputs(spec: str | Path) -> list[Path]:
    """The videos a folder (not recursive), a glob pattern (``**`` recurses) or a single file names.

    Files are kept when their extension is one of :data:`VIDEO_EXTENSIONS` (any case), sorted by
    name with numbers in natural order. A single file is returned as is, whatever its extension.

    Raises:
        SourceError: the path does not exist, or no videos match.
    """
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_file():
        return [path]
    videos = _with_extensions(_candidates(text), VIDEO_EXTENSIONS)
    if not videos:
        where = f"in the folder {text}" if path.is_dir() else f"matching {text}"
        raise SourceError(f"no videos found {where} (looked for {', '.join(sorted(VIDEO_EXTENSIONS))})")
    return videos


def list_images(spec: str | Path | Sequence[str | Path]) -> list[Path]:
    """The images a folder (not recursive), a glob pattern or an explicit list names, in natural name order.

    Raises:
        SourceError: the path does not exist, or no images (:data:`IMAGE_EXTENSIONS`) match.
    """
    if isinstance(spec, (str, Path)):
        images = _with_extensions(_candidates(spec), IMAGE_EXTENSIONS)
        if not images:
            raise SourceError(f"no images found in {spec} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        return images
    images = [Path(p) for p in spec]
    if not images:
        raise SourceError("the list of images is empty")
    for image in images:
        if not image.is_file():
            raise SourceError(f"{image} does not exist")
    return images


def source_kind(spec: str | int | Path) -> SourceKind:
    """Classify a user's source argument.

    * an int, a string of digits, or a URL (rtsp://, http(s)://, ...): ``LIVE``
    * an image file, or a folder / glob holding images and no videos: ``IMAGES``
    * a folder or glob holding videos: ``VIDEOS`` (see :func:`expand_video_inputs`)
    * any other existing file: ``VIDEO`` (OpenCV decides whether it can read it)

    Raises:
        SourceError: the path does not exist or a folder / glob holds neither videos nor images.
    """
    if isinstance(spec, int) or (isinstance(spec, str) and _is_live_spec(spec)):
        return SourceKind.LIVE
    path = Path(str(spec)).expanduser()
    if path.is_file():
        return SourceKind.IMAGES if path.suffix.lower() in IMAGE_EXTENSIONS else SourceKind.VIDEO
    files = _candidates(spec)
    if _with_extensions(files, VIDEO_EXTENSIONS):
        return SourceKind.VIDEOS
    if _with_extensions(files, IMAGE_EXTENSIONS):
        return SourceKind.IMAGES
    raise SourceError(f"{spec} holds no videos or images")


def redact_url(url: str) -> str:
    """``url`` with any user name and password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


