"""Output guards: no output over an input or another output, writability checked up front, one run per file."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import app.outputs as outputs
from app.outputs import OutputBusyError, OutputLock, check_outputs, check_writable, same_file
from app.sinks import SinkError, partial_path


@pytest.fixture()
def video(tmp_path) -> Path:
    path = tmp_path / "in" / "a.mp4"
    path.parent.mkdir()
    path.write_bytes(b"video")
    return path


def _spellings(video: Path) -> dict[str, Path]:
    (video.parent / "sub").mkdir(exist_ok=True)
    link = video.parent / "link.mp4"
    link.symlink_to(video)
    hard = video.parent / "hard.mp4"
    os.link(video, hard)
    return {"same": video, "dotted": video.parent / "sub" / ".." / video.name, "symlink": link, "hard link": hard}


def test_an_output_may_not_be_an_input_however_it_is_spelled(video):
    for name, spelling in _spellings(video).items():
        with pytest.raises(SinkError, match="is the input .* it would be overwritten") as info:
            check_outputs([video], [video.parent / "ok.json", spelling])
        assert "\n" not in str(info.value), name
    assert video.read_bytes() == b"video"


def test_two_outputs_may_not_be_the_same_file(tmp_path, video):
    with pytest.raises(SinkError, match="two outputs of this run are the same file"):
        check_outputs([video], [tmp_path / "r.out", tmp_path / "x" / ".." / "r.out"])


def test_distinct_outputs_pass(tmp_path, video):
    check_outputs([video], [tmp_path / "a.json", tmp_path / "a.jsonl", tmp_path / "out" / "a.mp4"])
    assert same_file(video, video.parent / "." / "a.mp4") and not same_file(video, tmp_path / "a.mp4")


def test_writable_check_makes_missing_folders_and_leaves_nothing(tmp_path):
    target = tmp_path / "new" / "deeper" / "a.json"
    check_writable([target, tmp_path / "b.csv"])
    assert target.parent.is_dir() and not target.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deeper", "new"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: tmp, "it is a folder"),
        (lambda tmp: _file(tmp / "f") / "a.json", "is a file, not a folder"),
        (lambda tmp: _file(tmp / "g") / "sub" / "a.json", "is a file, not a folder"),
    ],
)
def test_unwritable_places_are_one_clear_error(tmp_path, make, message):
    with pytest.raises(SinkError, match=message) as info:
        check_writable([make(tmp_path)])
    assert "\n" not in str(info.value)


def _file(path: Path) -> Path:
    path.write_text("x")
    return path


@pytest.mark.parametrize(
    "name, code, reason",
    [("open", errno.EROFS, "read-only file system"), ("open", errno.EACCES, "permission denied"),
     ("fsync", errno.ENOSPC, "no space left on device"), ("fsync", errno.EDQUOT, "disk quota exceeded")],
)
def test_read_only_and_full_places_are_found_before_any_work(tmp_path, monkeypatch, name, code, reason):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(outputs.os, name, fail)
    with pytest.raises(SinkError, match=f"cannot write .*a.json: {reason}$"):
        check_writable([tmp_path / "a.json"])
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_found_before_any_work(tmp_path, monkeypatch):
    full = type("Usage", (), {"total": 1, "used": 1, "free": 0})()
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: full)
    with pytest.raises(SinkError, match="no space left on device"):
        check_writable([tmp_path / "a.json"])


def test_partial_names_keep_the_extension_last():
    assert partial_path("out/a.mp4") == Path("out/a.partial.mp4")
    assert partial_path("a.coco.json") == Path("a.coco.partial.json")


HOLD = textwrap.dedent(
    """
    import sys, time
    from app.outputs import OutputLock
    with OutputLock(sys.argv[1:]):
        print("held", flush=True)
        time.sleep(60)
    """
)


def _hold_in_another_process(*paths: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, *map(str, paths)], stdout=subprocess.PIPE, text=True,
                               cwd=Path(__file__).resolve().parents[2])
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_is_told_who_writes_the_files(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "a.mp4"
    holder = _hold_in_another_process(a)
    try:
        with pytest.raises(OutputBusyError, match=rf"a.json is being written by another animalpose run "
                                                  rf"\(process {holder.pid}\)"):
            OutputLock([b, a]).acquire()
        assert not (tmp_path / ".a.mp4.lock").exists()  # all or none: b's lock was given back
    finally:
        holder.kill()
        holder.wait()
    with OutputLock([a, b]):  # a killed holder blocks nobody
        assert (tmp_path / ".a.json.lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the lock files go with the locks


def test_locks_are_exclusive_within_one_process_too(tmp_path):
    with OutputLock([tmp_path / "a.json"]), pytest.raises(OutputBusyError):
        OutputLock([tmp_path / "a.json"]).acquire()


def test_lock_taken_after_the_holder_removed_its_file_is_the_current_one(tmp_path, monkeypatch):
    """The holder may remove the lock file between our open and our flock: we must not keep a lock on a
    file nobody else sees."""
    path = tmp_path / "a.json"
    lock = tmp_path / ".a.json.lock"
    real_flock = outputs.fcntl.flock
    calls = []

    def flock(fd, flags):
        calls.append(fd)
        if len(calls) == 1:  # the holder finishes right now: its file goes away
            lock.unlink()
        return real_flock(fd, flags)

    monkeypatch.setattr(outputs.fcntl, "flock", flock)
    held = OutputLock([path])
    held.acquire()
    try:
        assert len(calls) == 2 and lock.exists()
        assert os.stat(lock).st_ino == os.fstat(held._held[0][1]).st_ino
    finally:
        held.release()


def test_lock_release_is_idempotent(tmp_path):
    lock = OutputLock([tmp_path / "x"])
    lock.acquire()
    lock.release()
    lock.release()
    started = time.monotonic()
    with OutputLock([tmp_path / "x"]):
        pass
    assert time.monotonic() - started < 5
