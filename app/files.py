"""Writing result files so that a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

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
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = None) -> Path:
    """Serialise ``obj`` as standard JSON and write it atomically.

    Raises:
        ValueError: ``obj`` holds NaN or an infinity (not valid JSON: write None for a missing value).
    """
    return atomic_write_bytes(path, (json.dumps(obj, indent=indent, allow_nan=False) + "\n").encode("utf-8"))


def link_or_copy(source: str | Path, target: str | Path) -> Path:
    """Make ``target`` a hard link to ``source`` (a copy where linking fails), replacing any old ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target
