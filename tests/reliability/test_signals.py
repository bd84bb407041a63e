"""Ctrl-C and SIGTERM on real processes: what was processed is kept (complete or clearly partial), nothing
temporary is left, and the exit says what happened.

The command line runs in a child process (``fake_cli.py``: the product's CLI with the ground truth and
the small HRNet standing in for the networks, slowed down so that the signal lands in the chosen pass)
with a temporary folder of its own, which must be empty afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest

FAKE_CLI = Path(__file__).with_name("fake_cli.py")
ROOT = Path(__file__).resolve().parents[2]
DELAY_S = 0.03

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> tuple[Path, Path]:
    """A 120-frame clip (so that a signal lands inside a pass) and its ground truth."""
    from train.synthetic import VideoSettings, render_video

    folder = tmp_path_factory.mktemp("long")
    path = folder / "long.mp4"
    render_video(path, VideoSettings(num_animals=2, num_frames=120, width=320, height=192, fps=12, seed=5))
    return path, path.with_suffix(".json")


def _run_until(args: list[str], gt: Path, tmp: Path, ready: Callable[[], bool], sig: int,
               timeout_s: float = 120) -> tuple[int, str]:
    """Start the CLI, send ``sig`` once ``ready()``, return (exit code, stderr)."""
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1", "YOLO_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, str(FAKE_CLI), str(gt), str(DELAY_S), "--", *args], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and not ready():
        assert time.monotonic() < deadline, "the run never reached the point to interrupt"
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before the signal: " + process.stderr.read()
    process.send_signal(sig)
    _, err = process.communicate(timeout=timeout_s)
    return process.returncode, err


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _video_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def _outputs(out: Path) -> list[str]:
    return ["--out", str(out / "v.mp4"), "--json", str(out / "r.json"), "--csv", str(out / "r.csv"),
            "--coco", str(out / "r.coco.json"), "-q", "--no-flip"]


def _last_line(err: str) -> str:
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def _ours(folder: Path) -> list[str]:
    """What is left in a temporary folder, but for onnxruntime's own session marker (``.ses``, written
    when it is imported)."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".ses")


@pytest.fixture()
def private_tmp(tmp_path) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder


def test_ctrl_c_while_tracking_keeps_smoothed_results_of_the_frames_so_far(long_clip, tmp_path, private_tmp):
    clip, gt = long_clip
    out = tmp_path / "out"
    code, err = _run_until(["track", str(clip), *_outputs(out)], gt, private_tmp,
                           lambda: _lines(out / "r.jsonl") >= 20, signal.SIGINT)
    assert code == 130 and _last_line(err) == "animalpose track: interrupted"
    assert sorted(p.name for p in out.iterdir()) == ["r.coco.partial.json", "r.jsonl", "r.partial.csv",
                                                     "r.partial.json"]
    document = json.loads((out / "r.partial.json").read_text())
    assert document["complete"] is False
    assert len(document["frames"]) == _lines(out / "r.jsonl") >= 20
    assert "partial results in" in err and _ours(private_tmp) == []


def test_sigterm_while_drawing_the_video_keeps_complete_results_and_a_partial_video(long_clip, tmp_path,
                                                                                    private_tmp):
    clip, gt = long_clip
    out = tmp_path / "out"
    code, err = _run_until(["track", str(clip), *_outputs(out)], gt, private_tmp,
                           lambda: _size(out / ".v.part.mp4") > 5000 and (out / "r.json").exists(), signal.SIGTERM)
    assert code == 143 and _last_line(err) == "animalpose track: stopped by SIGTERM"
    assert sorted(p.name for p in out.iterdir()) == ["r.coco.json", "r.csv", "r.json", "r.jsonl", "v.partial.mp4"]
    assert len(json.loads((out / "r.json").read_text())["frames"]) == 120
    assert 0 < _video_frames(out / "v.partial.mp4") < 120
    assert _ours(private_tmp) == []


def test_sigterm_with_causal_smoothing_leaves_every_output_partial(long_clip, tmp_path, private_tmp):
    clip, gt = long_clip
    out = tmp_path / "out"
    code, err = _run_until(["track", str(clip), *_outputs(out), "--smoothing", "causal"], gt, private_tmp,
                           lambda: _lines(out / "r.jsonl") >= 15, signal.SIGTERM)
    assert code == 143
    names = sorted(p.name for p in out.iterdir())
    assert names == ["r.coco.partial.json", "r.jsonl", "r.partial.csv", "r.partial.json", "v.partial.mp4"]
    frames = len(json.loads((out / "r.partial.json").read_text())["frames"])
    assert frames == _lines(out / "r.jsonl") == _video_frames(out / "v.partial.mp4") >= 15
    assert _ours(private_tmp) == []


def test_ctrl_c_in_live_closes_every_output(long_clip, tmp_path, private_tmp):
    clip, gt = long_clip
    out = tmp_path / "out"
    code, err = _run_until(["live", str(clip), "--json", str(out / "l.json"), "--csv", str(out / "l.csv"),
                            "--no-flip"], gt, private_tmp, lambda: _lines(out / "l.jsonl") >= 3, signal.SIGINT)
    assert code == 0 and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["l.csv", "l.json", "l.jsonl"]
    assert len(json.loads((out / "l.json").read_text())["frames"]) == _lines(out / "l.jsonl")
    assert _ours(private_tmp) == []


def test_sigterm_during_export_leaves_nothing(tmp_path, private_tmp, long_clip, reference_dir):
    _, gt = long_clip
    out = tmp_path / "out"
    out.mkdir()
    weights = reference_dir / "resnet_small" / "resnet_small_ap10k.pth"
    code, err = _run_until(["export", "--pose-weights", str(weights), "--out", str(out / "pose.onnx")], gt,
                           private_tmp, lambda: any(out.iterdir()), signal.SIGTERM)
    time.sleep(0.1)
    assert code == 143 and _last_line(err) == "animalpose export: stopped by SIGTERM"
    assert list(out.iterdir()) == [] and _ours(private_tmp) == []
