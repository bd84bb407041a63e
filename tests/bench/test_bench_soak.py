"""Tests for bench/soak.py: the growth verdict, the /proc readings, the looping stream and a tiny soak."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from bench.soak import (
    BOUNDARY,
    Growth,
    LineCounter,
    LoopingMJPEGServer,
    RunRecord,
    Sample,
    SoakSettings,
    closing_limit_s,
    command_for,
    get_args_parser,
    growth,
    is_flat,
    main,
    markdown,
    monitor,
    read_usage,
    slope_per_1000,
    summarise,
)


@pytest.mark.parametrize(
    ("frames", "values", "warmup", "expected"),
    [
        ([500, 1000, 1500, 2000], [50, 100, 102, 104], 1000, Growth(1000, 100.0, 104.0, 104.0)),
        ([500, 1000, 1500, 2000], [50, 100, 110, 101], 1000, Growth(1000, 100.0, 101.0, 110.0)),
        ([500, 1000, 1500], [100, 90, 80], 1000, Growth(1000, 90.0, 80.0, 90.0)),
        ([500, 1000, 1500], [100, 90, 80], 0, Growth(500, 100.0, 80.0, 100.0)),
        ([500, 1000, 1500], [100, 90, 80], 700, Growth(1000, 90.0, 80.0, 90.0)),  # first sample after warm-up
        ([20, 40], [7, 7], 40, Growth(40, 7.0, 7.0, 7.0)),  # the baseline may be the only sample
    ],
)
def test_growth(frames, values, warmup, expected):
    assert growth(frames, values, warmup) == expected


@pytest.mark.parametrize(
    ("frames", "values", "warmup", "message"),
    [
        ([500, 1000], [1, 2, 3], 0, "one entry per sample"),
        ([1000, 500], [1, 2], 0, "increase"),
        ([500, 500], [1, 2], 0, "increase"),
        ([500, 1000], [1, 2], 1500, "no sample at or after the warm-up of 1500"),
        ([], [], 0, "no sample"),
        ([500, 1000], [1, 0], 1000, "baseline must be positive"),
    ],
)
def test_growth_errors(frames, values, warmup, message):
    with pytest.raises(ValueError, match=message):
        growth(frames, values, warmup)


@pytest.mark.parametrize(
    ("result", "limit", "last_pct", "peak_pct", "flat"),
    [
        (Growth(1000, 100.0, 105.0, 105.0), 5.0, 5.0, 5.0, True),  # exactly at the limit
        (Growth(1000, 100.0, 105.5, 105.5), 5.0, 5.5, 5.5, False),
        (Growth(1000, 100.0, 101.0, 108.0), 5.0, 1.0, 8.0, False),  # a spike that came back down still counts
        (Growth(1000, 100.0, 60.0, 100.0), 5.0, -40.0, 0.0, True),  # shrinking is flat
        (Growth(1000, 20.0, 21.0, 21.0), 5.0, 5.0, 5.0, True),  # one more fd of 20
        (Growth(1000, 20.0, 22.0, 22.0), 5.0, 10.0, 10.0, False),
        (Growth(1000, 100.0, 100.0, 100.0), 0.0, 0.0, 0.0, True),
    ],
)
def test_is_flat(result, limit, last_pct, peak_pct, flat):
    assert result.last_pct == pytest.approx(last_pct)
    assert result.peak_pct == pytest.approx(peak_pct)
    assert is_flat(result, limit) is flat


def test_is_flat_rejects_a_negative_limit():
    with pytest.raises(ValueError, match="limit_pct"):
        is_flat(Growth(0, 1.0, 1.0, 1.0), -1.0)


@pytest.mark.parametrize(
    ("frames", "values", "warmup", "expected"),
    [
        ([500, 1000, 1500, 2000], [0, 10, 20, 30], 0, 20.0),  # 10 per 500 frames
        ([500, 1000, 1500, 2000], [99, 10, 10, 10], 1000, 0.0),  # warm-up left out
        ([500, 1000], [1, 2], 1000, float("nan")),
    ],
)
def test_slope_per_1000(frames, values, warmup, expected):
    assert slope_per_1000(frames, values, warmup) == pytest.approx(expected, nan_ok=True)


def _record(rss, fds, returncode=0, stalled=False, frames=100):
    samples = tuple(Sample(20 * (i + 1), float(i), r, f, 5) for i, (r, f) in enumerate(zip(rss, fds)))
    return RunRecord("live", "cmd", returncode, stalled, frames, 10.0, 1.0, samples, max(rss, default=0),
                     max(fds, default=0), 5, None)


@pytest.mark.parametrize(
    ("record", "complete", "flat", "verdict"),
    [
        (_record([1000, 1000, 1040, 1050], [8, 8, 8, 8]), True, True, "yes"),
        (_record([1000, 1000, 1060, 1050], [8, 8, 8, 8]), True, False, "no"),  # memory peaked 6% up
        (_record([1000, 1000, 1000, 1000], [8, 8, 9, 8]), True, False, "no"),  # one more fd of 8
        (_record([1000, 1000, 1000, 1000], [8, 8, 8, 8], returncode=1), False, False, "no (did not finish)"),
        (_record([1000, 1000, 1000, 1000], [8, 8, 8, 8], stalled=True), False, False, "no (did not finish)"),
        (_record([1000, 1000, 1000, 1000], [8, 8, 8, 8], frames=90), False, False, "no (did not finish)"),
        (_record([1000], [8], returncode=None, frames=30), False, False, "no (did not finish)"),  # no baseline
    ],
)
def test_summary_verdict(tmp_path, record, complete, flat, verdict):
    settings = SoakSettings(frames=100, every=20, warmup=40)
    summary = summarise(record, settings, tmp_path)
    assert summary["complete"] is complete and summary["flat"] is flat
    if len(record.samples) >= 2:
        assert summary["rss_kib"]["baseline_frames"] == 40
    else:
        assert "no sample at or after the warm-up" in summary["rss_kib"]["error"]
    table = markdown([summary], settings, {"note": "x"})
    row = next(line for line in table.splitlines() if line.startswith("| live |"))
    assert row.endswith(f"| {verdict} |")
    assert "- note: x" in table


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"frames": 0}, "frames"),
        ({"every": 0}, "every"),
        ({"frames": 100, "every": 100, "warmup": 10}, "below frames"),
        ({"frames": 100, "warmup": 100}, "warmup"),
        ({"frames": 100, "every": 30, "warmup": 95}, "at most the last sample, at 90 frames"),
        ({"warmup": -1}, "warmup"),
        ({"limit_pct": 0}, "limit_pct"),
        ({"stream_fps": 0}, "stream_fps"),
        ({"width": 16}, "width"),
        ({"track_smoothing": "kalman"}, "track_smoothing"),
    ],
)
def test_settings_are_checked(changes, message):
    with pytest.raises(ValueError, match=message):
        SoakSettings(**changes)


def test_commands_go_through_the_command_line(tmp_path):
    settings = SoakSettings(frames=100, every=10, warmup=20, track_smoothing="causal")
    live = command_for("live", "http://127.0.0.1:1/s.mjpg", tmp_path, tmp_path / "d.pt", settings)
    track = command_for("track", "clip.mp4", tmp_path, tmp_path / "d.pt", settings)
    for command, name in ((live, "live"), (track, "track")):
        assert command[1:5] == ["-m", "app.cli", name, "http://127.0.0.1:1/s.mjpg" if name == "live" else "clip.mp4"]
        for option in ("--out", "--jsonl", "--csv", "--det-weights", "--pose-weights"):
            assert option in command
    assert live[live.index("--max-frames") + 1] == "100"
    assert track[track.index("--smoothing") + 1] == "causal"
    assert "--smoothing" not in command_for("track", "c.mp4", tmp_path, tmp_path / "d.pt", SoakSettings())
    with pytest.raises(ValueError, match="name"):
        command_for("pose", "x", tmp_path, tmp_path / "d.pt", settings)


def test_read_usage_of_a_live_and_an_ended_process():
    usage = read_usage(os.getpid())
    assert usage is not None
    assert usage.rss_kib > 0 and usage.peak_rss_kib >= usage.rss_kib
    assert usage.fds >= 3 and usage.threads >= 1
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert read_usage(child.pid) is None


def test_line_counter_reads_only_what_is_new(tmp_path):
    path = tmp_path / "f.jsonl"
    counter = LineCounter(path)
    assert counter.count() == 0  # not there yet
    path.write_text('{"a": 1}\n{"a": 2}\n{"a"')
    assert counter.count() == 2
    with open(path, "a") as f:
        f.write(': 3}\n')
    assert counter.count() == 3


# A stand-in for the command: writes N JSON lines, one per 0.05 s, then sleeps S seconds.
WRITER = """import sys, time
with open(sys.argv[1], "w") as f:
    for _ in range(int(sys.argv[2])):
        f.write("{}\\n")
        f.flush()
        time.sleep(0.05)
time.sleep(float(sys.argv[3]))
"""


def test_monitor_samples_each_multiple_below_the_end(tmp_path):
    jsonl = tmp_path / "w.jsonl"
    command = [sys.executable, "-c", WRITER, str(jsonl), "50", "0.3"]
    record = monitor("w", command, jsonl, tmp_path / "w.log", every=10, expected=50, stall_s=10.0)
    assert record.returncode == 0 and not record.stalled and record.frames == 50
    assert [s.frames // 10 for s in record.samples] == [1, 2, 3, 4]  # none at 50: the command is closing
    assert all(s.rss_kib > 0 and s.fds >= 3 for s in record.samples)
    assert record.peak_rss_kib >= max(s.rss_kib for s in record.samples)
    assert record.first_frame_s is not None and record.first_frame_s < record.wall_s


@pytest.mark.parametrize(("lines", "expected"), [(5, 10), (5, 5)])  # stuck mid-run; stuck closing
def test_monitor_stops_a_stuck_command(tmp_path, lines, expected):
    jsonl = tmp_path / "w.jsonl"
    command = [sys.executable, "-c", WRITER, str(jsonl), str(lines), "60"]
    record = monitor("w", command, jsonl, tmp_path / "w.log", every=2, expected=expected, stall_s=1.0)
    assert record.stalled and record.frames == lines and record.returncode != 0
    assert record.wall_s < 1.0 + closing_limit_s(1.0, expected) + 10


def test_stream_loops_its_frames():
    jpegs = [b"\xff\xd8frame%d\xff\xd9" % i for i in range(3)]
    with LoopingMJPEGServer(jpegs, fps=200.0) as server:
        with urllib.request.urlopen(server.url, timeout=5) as response:
            assert response.headers["Content-Type"].endswith(f"boundary={BOUNDARY}")
            data = b""
            while data.count(f"--{BOUNDARY}".encode()) < 10:
                data += response.read1(4096)
        assert server.connections == 1
    parts = [p for p in data.split(f"--{BOUNDARY}".encode()) if p.strip()]
    bodies = [p.split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n") for p in parts[:9]]
    assert set(bodies) <= set(jpegs) and len(bodies) == 9
    assert len(set(bodies)) > 1  # it moves on, and after the third frame starts again


def test_tiny_soak_through_the_command_line(tmp_path):
    out = tmp_path / "soak"
    args = get_args_parser().parse_args([
        "--frames", "60", "--every", "20", "--warmup", "20", "--size", "160", "128", "--det-imgsz", "160",
        "--loop-frames", "16", "--stall-s", "60", "--out-dir", str(out),
    ])
    code = main(args)
    summary = json.loads((out / "summary.json").read_text())
    runs = {run["name"]: run for run in summary["runs"]}
    assert set(runs) == {"live", "track"}
    for run in runs.values():
        assert run["returncode"] == 0 and not run["stalled"] and run["complete"]
        assert run["frames"] == 60
        assert [s["frames"] for s in run["samples"]] == pytest.approx([20, 40], abs=3)
        for sample in run["samples"]:
            assert sample["rss_kib"] > 50_000 and sample["fds"] >= 3 and sample["threads"] >= 1
        rss = run["rss_kib"]
        assert rss["baseline"] == run["samples"][0]["rss_kib"] and rss["last"] == run["samples"][-1]["rss_kib"]
        assert rss["flat"] == (rss["peak_pct"] <= 5.0)
        assert run["flat"] == (rss["flat"] and run["fds"]["flat"])
        assert run["animals"]["mean"] > 0  # the random detector finds boxes, so pose and tracking work
    assert runs["live"]["stream_connections"] >= 1
    assert runs["live"]["stream_frames_sent"] > 16  # more than the loop holds: it looped
    assert code == (0 if all(run["flat"] for run in runs.values()) else 1)
    rows = (out / "samples.csv").read_text().splitlines()
    assert rows[0] == "run,frames,elapsed_s,rss_mib,fds,threads" and len(rows) == 1 + 4
    table = (out / "soak.md").read_text()
    assert "| live | 60 |" in table and "| track | 60 |" in table
    for name in ("live", "track"):
        assert (out / name / f"{name}.mp4").stat().st_size > 0
        assert len((out / name / f"{name}.csv").read_text().splitlines()) > 1
