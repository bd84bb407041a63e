"""Guards around the files a run writes: checked before the first frame, locked while written.

- :func:`check_outputs` refuses, before any work, an output that is one of the run's inputs or
  another of its outputs (``track a.mp4 --out a.mp4`` would replace the video with its labeled copy);
- :func:`check_writable` finds a read-only, missing or full destination before the first frame
  rather than after the whole first pass;
- :class:`OutputLock` keeps two runs from writing the same files at once (the second is told
  which process holds them);
- :func:`partial_path` (from :mod:`app.sinks`) is where an interrupted or failed run leaves what it
  had written (``a.mp4`` -> ``a.partial.mp4``), apart from a complete result and from a resumed
  run's "already done" check.

Problems raise :class:`app.sinks.SinkError` (one line naming the file); a held lock raises its
subclass :class:`OutputBusyError`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

from app.sinks import SinkError, partial_path, sink_error

try:  # POSIX advisory locks; elsewhere a lock file created exclusively stands in
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

__all__ = ["OutputBusyError", "OutputLock", "check_outputs", "check_writable", "partial_path", "same_file"]


class OutputBusyError(SinkError):
    """Another run is writing one of the outputs right now."""


def _key(path: Path) -> str:
    return os.path.normcase(os.path.realpath(path))


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when ``a`` and ``b`` name the same file (also through links, or different spellings)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return _key(a) == _key(b)


def check_outputs(inputs: Iterable[str | Path], outputs: Sequence[str | Path]) -> None:
    """Refuse outputs that would overwrite an input or each other.

    Raises:
        SinkError: an output is one of ``inputs``, or two outputs are the same file.
    """
    outputs = [Path(p) for p in outputs]
    for i, out in enumerate(outputs):
        for other in outputs[:i]:
            if same_file(out, other):
                raise SinkError(f"two outputs of this run are the same file {out}: give each output its own name")
    existing_outputs = [p for p in outputs if p.exists()]
    by_key = {_key(p): p for p in outputs}
    for source in inputs:
        source = Path(source)
        clash = by_key.get(_key(source))
        if clash is None:
            clash = next((p for p in existing_outputs if same_file(p, source)), None)
        if clash is not None:
            raise SinkError(f"the output {clash} is the input {source}: it would be overwritten; "
                            "write the results elsewhere (another name or --out-dir)")


def check_writable(paths: Iterable[str | Path]) -> None:
    """Check that each of ``paths`` can be created: its folder exists (made if missing) and takes a new
    file, the path is not a folder, and the disk is not full. Nothing is left behind.

    Raises:
        SinkError: naming the first path that cannot be written and why.
    """
    checked: set[str] = set()
    for path in (Path(p) for p in paths):
        if path.is_dir():
            raise SinkError(f"cannot write {path}: it is a folder")
        folder = path.parent
        if _key(folder) in checked:
            continue
        existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
        if not existing.is_dir():
            raise SinkError(f"cannot write {path}: {existing} is a file, not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _probe(folder)
        except OSError as exc:
            raise sink_error(path, exc) from None
        if shutil.disk_usage(folder).free == 0:
            raise sink_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        checked.add(_key(folder))


def _probe(folder: Path) -> None:
    """Create, write, sync and remove a small file in ``folder`` (finds read-only places, full disks
    and exhausted quotas); raises the OSError of the first step that fails."""
    probe = folder / f".animalpose-probe-{os.getpid()}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            probe.unlink()


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


class OutputLock:
    """Exclusive locks on a set of output files for the time they are written.

    Each output gets a lock file ``.NAME.lock`` beside it (removed on release), locked with
    ``flock``; the locks are taken all or none. A run that finds one taken raises
    :class:`OutputBusyError` naming the process that holds it. Locks die with their process, so a
    killed run never blocks the next one.
    """

    def __init__(self, paths: Iterable[str | Path]) -> None:
        self.paths = sorted({Path(p) for p in paths}, key=_key)
        self._held: list[tuple[Path, int]] = []

    def acquire(self) -> None:
        try:
            for path in self.paths:
                self._held.append((_lock_path(path), self._lock_one(path)))
        except BaseException:
            self.release()
            raise

    def _lock_one(self, path: Path) -> int:
        lock = _lock_path(path)
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise sink_error(path, exc) from None
        while True:
            try:
                flags = os.O_RDWR | os.O_CREAT | (0 if fcntl is not None else os.O_EXCL)
                fd = os.open(lock, flags, 0o644)
            except FileExistsError:  # pragma: no cover - Windows
                raise OutputBusyError(f"{path} is being written by another animalpose run (lock file {lock}; "
                                      "delete it if no other run is going)") from None
            except OSError as exc:
                raise sink_error(path, exc) from None
            if fcntl is None:  # pragma: no cover - Windows
                os.write(fd, str(os.getpid()).encode())
                return fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_pid(fd)
                os.close(fd)
                who = f"process {holder}" if holder else "another process"
                raise OutputBusyError(f"{path} is being written by another animalpose run ({who}); "
                                      "wait for it to finish or write elsewhere") from None
            # The holder before us may have removed the file between our open and our lock:
            # then we locked a file nobody else will see, so start again on the current one.
            try:
                if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                    os.ftruncate(fd, 0)
                    os.write(fd, str(os.getpid()).encode())
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def release(self) -> None:
        """Remove the lock files and unlock. Safe to call more than once."""
        while self._held:
            lock, fd = self._held.pop()
            with contextlib.suppress(OSError):
                lock.unlink()
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
