"""What every result writer shares: the :class:`Sink` protocol, :class:`SinkError`, and the one way
files are written so that a final name only ever holds a complete file.

* Outputs are written under a temporary name in the destination folder, ``.STEM.part.EXT``
  (:func:`part_path`; the extension stays last so FFmpeg still knows the container), and renamed
  to their final name by ``close()``.
* Leaving the ``with`` block with an exception (an error, Ctrl-C, SIGTERM) calls ``abort()``
  instead: what was written so far is finalised under the partial name :func:`partial_path`
  (``a.mp4`` -> ``a.partial.mp4``; a video is finalised so it plays, a final JSON says
  ``"complete": false``), so that a partial result is never taken for a complete one and no hidden
  temporary file is left; an output that received nothing is not written at all.
* Operating-system failures (full disk, no permission, read-only file system) raise
  :class:`SinkError` naming the file and the reason in words.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import numpy as np

from pose.structures import FrameResult

logger = logging.getLogger(__name__)

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


#: The optional dependencies of the pose file formats (``pip install 'animalpose[formats]'``).
FORMATS_EXTRA = "formats"


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


def keep_partial(part: Path, path: Path) -> Path | None:
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


def prepare_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise sink_error(path, exc) from None
    if path.is_dir():
        raise SinkError(f"cannot write {path}: it is a folder")


def finish_file(part: Path, path: Path, handle: IO[Any] | None = None) -> None:
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
    prepare_folder(path)
    part = part_path(path)
    try:
        with open(part, "w", encoding="utf-8", newline="") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(part, path)
    except OSError as exc:
        remove_quietly(part)
        raise sink_error(path, exc) from None
    except BaseException:
        remove_quietly(part)
        raise
    return path


def remove_quietly(path: Path) -> None:
    """Remove a temporary file if it is there; a failure here must not hide the error being reported."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def require_formats(path: Path, what: str, *modules: str) -> None:
    """Raise :class:`SinkError` naming the ``formats`` extra when a module that ``what`` needs is not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise SinkError(f"cannot write {path}: {what} needs {', '.join(missing)}, installed with "
                        f"pip install 'animalpose[{FORMATS_EXTRA}]'")


def write_path_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)`` (a library that writes a whole file by name) and rename the file to
    ``path``; the temporary file is removed when that fails.

    Raises:
        SinkError: naming ``path`` and the reason in one line (a full disk in words).
    """
    prepare_folder(path)
    part = part_path(path)
    try:
        write(part)
        with open(part, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(part, path)
    except OSError as exc:
        remove_quietly(part)
        if exc.errno is None and shutil.disk_usage(path.parent).free == 0:
            exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise sink_error(path, exc) from None
    except SinkError:
        remove_quietly(part)
        raise
    except Exception as exc:  # the HDF5 libraries wrap their I/O errors in their own exceptions
        remove_quietly(part)
        if shutil.disk_usage(path.parent).free == 0:
            raise sink_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from None
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SinkError(f"cannot write {path}: {first_line}") from exc
    except BaseException:
        remove_quietly(part)
        raise
    return path


class Sink(Protocol):
    """What the pipeline writes to."""

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


_Self = TypeVar("_Self", bound="SinkBase")


class SinkBase:
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




def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder (named with this process's
    id) and a rename.

    Raises:
        OSError: the folder cannot be made or written (the temporary file is removed; a failure to
            remove it never hides the original error).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        remove_quietly(tmp)
    return path


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = None) -> Path:
    """Serialise ``obj`` as standard JSON and write it atomically (:func:`atomic_write_bytes`).

    Raises:
        ValueError: ``obj`` holds NaN or an infinity (not valid JSON: write None for a missing value).
    """
    return atomic_write_bytes(path, (json.dumps(obj, indent=indent, allow_nan=False) + "\n").encode("utf-8"))
