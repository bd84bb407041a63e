"""Soak: ``animalpose live`` and ``animalpose track`` for many frames, with memory and open files sampled.

Run: ``python -m bench.soak [--frames 10000] [--every 500] [--warmup 1000] [--only live|track]
[--out-dir runs/soak] [--write-docs]``

Both runs go through the real command line, each in a child process (``python -m app.cli``, which is
what the ``animalpose`` script runs):

- ``live``: ``animalpose live URL --max-frames N`` on an HTTP MJPEG stream served from this process on
  127.0.0.1 (:class:`LoopingMJPEGServer`), which loops the first ``--loop-frames`` frames of the clip at
  ``--stream-fps`` for as long as anybody watches;
- ``track``: ``animalpose track clip.mp4`` on an N-frame synthetic clip of three walking animals
  (``train.synthetic.video.render_video``), with the default smoothing of files (offline, two passes)
  unless ``--track-smoothing`` says otherwise.

Each run writes a labeled video, JSON Lines and CSV. The pose model is the small reference network
of the tests; the detector is a YOLO11n with random weights whose batch-norm statistics are computed
on the clip's frames (:func:`write_random_detector`), so that its boxes depend on the image: with
``--det-iou`` near 0 it reports a few boxes per frame that move and vanish, the tracker starts and
ends identities, and detection, tracking, pose and writing all work on every frame.

Every ``--every`` frames (counted as lines of the JSON Lines file, which the command flushes per frame)
the child's resident memory (``VmRSS``), open file descriptors and threads are read from ``/proc``,
up to the last multiple below ``--frames`` (after the last frame the command is closing its files; its
peak memory over the whole run, closing included, is ``VmHWM``). Growth is measured from the first
sample at or after ``--warmup`` frames (:func:`growth`); a run is flat when neither memory nor file
descriptors ever exceed that baseline by more than ``--limit-pct`` (:func:`is_flat`). Results go to
``--out-dir`` (``samples.csv``, ``summary.json``, ``soak.md``) and, with ``--write-docs``, to the
``soak`` section of ``docs/benchmarks.md``. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

logger = logging.getLogger("bench.soak")

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_POSE = ROOT / "tests/data/reference/resnet_small/resnet_small_ap10k.pth"
BOUNDARY = "soakframe"
RUNS = ("live", "track")


@dataclass(frozen=True)
class SoakSettings:
    """What one soak runs.

    Attributes:
        frames: frames each command processes (the clip's length; ``live --max-frames``).
        every: frames between two samples.
        warmup: frames after which the baseline sample is taken.
        limit_pct: largest growth over the baseline, in percent, that still counts as flat.
        width, height: frame size of the clip and the stream, in pixels.
        clip_fps: frame rate of the clip, in frames/s.
        stream_fps: frames per second the MJPEG server produces.
        loop_frames: frames of the clip the server loops over.
        det_conf, det_iou, det_imgsz: the detector options given to both commands.
        track_smoothing: ``--smoothing`` of the track run; None: its default (offline for files).
        stall_s: a command that writes no frame for this many seconds is stopped and reported as stalled
            (after its last frame it gets :func:`closing_limit_s` to exit).
    """

    frames: int = 10000
    every: int = 500
    warmup: int = 1000
    limit_pct: float = 5.0
    width: int = 320
    height: int = 240
    clip_fps: float = 30.0
    stream_fps: float = 25.0
    loop_frames: int = 300
    det_conf: float = 0.5
    det_iou: float = 0.05
    det_imgsz: int = 320
    track_smoothing: str | None = None
    stall_s: float = 120.0

    def __post_init__(self) -> None:
        for name in ("frames", "every", "loop_frames", "det_imgsz"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.warmup < self.frames:
            raise ValueError(f"warmup must be in [0, frames={self.frames}), got {self.warmup}")
        if self.every >= self.frames:
            raise ValueError(f"every ({self.every}) must be below frames ({self.frames})")
        last_sample = (self.frames - 1) // self.every * self.every
        if self.warmup > last_sample:
            raise ValueError(f"warmup ({self.warmup}) must be at most the last sample, at {last_sample} frames")
        for name in ("limit_pct", "clip_fps", "stream_fps", "stall_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.width < 32 or self.height < 32:
            raise ValueError(f"width and height must be at least 32 pixels, got {self.width}x{self.height}")
        if self.track_smoothing not in (None, "offline", "causal", "none"):
            raise ValueError(f"track_smoothing must be offline, causal, none or None, got {self.track_smoothing!r}")


# ---------------------------------------------------------------------------------------- growth


@dataclass(frozen=True)
class Growth:
    """How a quantity moved after warm-up: its value at the baseline sample, at the last and at its peak."""

    baseline_frames: int
    baseline: float
    last: float
    peak: float

    @property
    def last_pct(self) -> float:
        """Last value over the baseline, in percent (negative: it shrank)."""
        return 100.0 * (self.last - self.baseline) / self.baseline

    @property
    def peak_pct(self) -> float:
        """Largest value after warm-up over the baseline, in percent."""
        return 100.0 * (self.peak - self.baseline) / self.baseline


def growth(frames: Sequence[int], values: Sequence[float], warmup: int) -> Growth:
    """Growth of ``values`` (one per sample, taken after ``frames`` frames, increasing) from the first
    sample at or after ``warmup`` frames to the last sample, and to the largest one in between.

    Raises:
        ValueError: lengths differ, frames do not increase, no sample at or after ``warmup``, or a
            baseline that is not positive.
    """
    if len(frames) != len(values):
        raise ValueError(f"frames and values must have one entry per sample, got {len(frames)} and {len(values)}")
    if any(b <= a for a, b in itertools.pairwise(frames)):
        raise ValueError(f"frames must increase, got {list(frames)}")
    start = next((i for i, n in enumerate(frames) if n >= warmup), None)
    if start is None:
        last = frames[-1] if frames else None
        raise ValueError(f"no sample at or after the warm-up of {warmup} frames (last sample at {last})")
    baseline = float(values[start])
    if not baseline > 0:
        raise ValueError(f"the baseline must be positive, got {baseline} at {frames[start]} frames")
    after = [float(v) for v in values[start:]]
    return Growth(int(frames[start]), baseline, after[-1], max(after))


def is_flat(result: Growth, limit_pct: float) -> bool:
    """True when the quantity never rose more than ``limit_pct`` percent above its baseline."""
    if not limit_pct >= 0:
        raise ValueError(f"limit_pct must be >= 0, got {limit_pct}")
    return result.peak_pct <= limit_pct


def slope_per_1000(frames: Sequence[int], values: Sequence[float], warmup: int) -> float:
    """Least-squares slope of ``values`` per 1,000 frames over the samples at or after ``warmup``
    (NaN with fewer than two)."""
    pairs = [(n, v) for n, v in zip(frames, values) if n >= warmup]
    if len(pairs) < 2:
        return math.nan
    x, y = np.array(pairs, np.float64).T
    return float(np.polyfit(x / 1000.0, y, 1)[0])


# ---------------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Usage:
    """What ``/proc`` says of a process: resident and peak resident memory (KiB), open fds, threads."""

    rss_kib: int
    peak_rss_kib: int
    fds: int
    threads: int


def read_usage(pid: int) -> Usage | None:
    """The :class:`Usage` of process ``pid``; None once it has exited."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    fields[key] = int(rest.split()[0])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    if "VmRSS" not in fields:  # a zombie: exited, not yet reaped
        return None
    return Usage(fields["VmRSS"], fields.get("VmHWM", fields["VmRSS"]), fds, fields.get("Threads", 0))


class LineCounter:
    """Counts the lines of a file that another process appends to, reading only what is new."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._offset = 0

    def count(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self.lines
        self._offset += len(data)
        self.lines += data.count(b"\n")
        return self.lines


@dataclass(frozen=True)
class Sample:
    """One reading of the child: after ``frames`` frames, ``elapsed_s`` seconds after it started."""

    frames: int
    elapsed_s: float
    rss_kib: int
    fds: int
    threads: int


@dataclass(frozen=True)
class RunRecord:
    """What one command did: its samples, how it ended and its peaks over the whole run.

    ``final`` is the last reading before the process exited (for offline smoothing: during the second
    pass, which writes the files after the last JSON line).
    """

    name: str
    command: str
    returncode: int | None
    stalled: bool
    frames: int
    wall_s: float
    first_frame_s: float | None
    samples: tuple[Sample, ...]
    peak_rss_kib: int
    max_fds: int
    max_threads: int
    final: Usage | None


def closing_limit_s(stall_s: float, frames: int) -> float:
    """Seconds a command may take to exit after its last JSON line: ``stall_s`` plus 0.1 s per frame, as
    offline smoothing writes the video and CSV in a second pass over the frames after that line."""
    return stall_s + 0.1 * frames


def monitor(name: str, command: Sequence[str], jsonl: Path, log_path: Path, every: int, expected: int,
            stall_s: float, env: dict[str, str] | None = None, poll_s: float = 0.05) -> RunRecord:
    """Run ``command``, sampling its :class:`Usage` each time the lines of ``jsonl`` pass a multiple of
    ``every`` below ``expected`` (the frames it will process: once they are all written it is closing
    its files, no longer in its steady state), until it exits. Stop it (SIGTERM, then SIGKILL) when no
    line comes for ``stall_s`` seconds, or when it has not exited :func:`closing_limit_s` after its
    last line. Its output goes to ``log_path``."""
    counter = LineCounter(jsonl)
    samples: list[Sample] = []
    peak_rss = max_fds = max_threads = 0
    final: Usage | None = None
    stalled = False
    first_frame_s: float | None = None
    next_mark = every
    start = time.monotonic()
    last_progress = start
    with open(log_path, "wb") as log:
        process = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            while True:
                exited = process.poll() is not None
                previous = counter.lines
                lines = counter.count()
                now = time.monotonic()
                if lines > previous:
                    last_progress = now
                    if first_frame_s is None:
                        first_frame_s = now - start
                usage = None if exited else read_usage(process.pid)
                if usage is not None:
                    final = usage
                    peak_rss = max(peak_rss, usage.peak_rss_kib)
                    max_fds, max_threads = max(max_fds, usage.fds), max(max_threads, usage.threads)
                    if next_mark <= lines < expected:
                        samples.append(Sample(lines, now - start, usage.rss_kib, usage.fds, usage.threads))
                        next_mark = (lines // every + 1) * every
                if exited:
                    break
                limit = stall_s if lines < expected else closing_limit_s(stall_s, expected)
                if now - last_progress > limit:
                    stalled = True
                    logger.error("%s: stuck for %.0f s after %d frames: stopping it", name, limit, lines)
                    break
                time.sleep(poll_s)
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    counter.count()
    return RunRecord(name, " ".join(command), process.returncode, stalled, counter.lines, time.monotonic() - start,
                     first_frame_s, tuple(samples), peak_rss, max_fds, max_threads, final)


# ------------------------------------------------------------------------------------- inputs


class LoopingMJPEGServer:
    """HTTP MJPEG camera on 127.0.0.1 that loops ``jpegs`` at ``fps`` for as long as it runs.

    Frames follow a wall clock, as a camera's do: each client receives the newest frame at each tick.
    Use as a context manager; ``url`` is the stream address, ``connections`` counts the streams served.
    """

    def __init__(self, jpegs: Sequence[bytes], fps: float) -> None:
        if not jpegs:
            raise ValueError("jpegs must hold at least one JPEG image")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = fps
        self._jpegs = list(jpegs)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._connections = 0
        self._frames_sent = 0
        self._start = time.monotonic()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="soak-mjpeg", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/stream.mjpg"

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def frames_sent(self) -> int:
        with self._lock:
            return self._frames_sent

    def __enter__(self) -> LoopingMJPEGServer:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=2)

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self._connections += 1
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        last = -1
        while not self._stopped.is_set():
            tick = int((time.monotonic() - self._start) * self.fps)
            if tick == last:
                time.sleep(0.2 / self.fps)
                continue
            data = self._jpegs[tick % len(self._jpegs)]
            handler.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                                .encode() + data + b"\r\n")
            handler.wfile.flush()
            last = tick
            with self._lock:
                self._frames_sent += 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:  # http.server's naming
                try:
                    server._stream(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: object) -> None:
                logger.debug("mjpeg server: " + format, *args)

        return Handler


def read_frames(video: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of ``video`` (BGR uint8); fewer when it is shorter."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    frames = []
    try:
        while len(frames) < count:
            ok, image = capture.read()
            if not ok:
                break
            frames.append(image)
    finally:
        capture.release()
    if not frames:
        raise RuntimeError(f"could not read a frame of {video}")
    return frames


def encode_jpegs(frames: Sequence[np.ndarray], quality: int = 85) -> list[bytes]:
    import cv2

    out = []
    for image in frames:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out.append(data.tobytes())
    return out


def write_random_detector(path: Path, images: Sequence[np.ndarray], image_size: int, seed: int = 0) -> Path:
    """Save a YOLO11n with random weights (nothing downloaded) whose batch-norm statistics are those of
    ``images`` (BGR), so that its scores and boxes depend on the picture. Its one class is "animal"."""
    import cv2
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    yolo = YOLO("yolo11n.yaml")
    network = DetectionModel("yolo11n.yaml", nc=1, verbose=False)
    network.names = {0: "animal"}
    batch = np.stack([cv2.resize(im, (image_size, image_size))[:, :, ::-1] for im in images])
    inputs = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float() / 255.0
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batch
    network.train()
    with torch.no_grad():
        network(inputs)
    network.eval()
    yolo.model = network
    path.parent.mkdir(parents=True, exist_ok=True)
    yolo.save(str(path))
    return path


def write_clip(path: Path, settings: SoakSettings) -> Path:
    """The synthetic clip of three walking animals, ``settings.frames`` frames long."""
    from train.synthetic.video import VideoSettings, render_video

    render_video(path, VideoSettings(num_animals=3, num_frames=settings.frames, width=settings.width,
                                     height=settings.height, fps=settings.clip_fps, seed=0))
    return path


def command_for(name: str, source: str, out: Path, det_weights: Path, settings: SoakSettings) -> list[str]:
    """The ``animalpose`` command line of run ``name`` (``live`` or ``track``), writing into folder ``out``."""
    if name not in RUNS:
        raise ValueError(f"name must be one of {RUNS}, got {name!r}")
    command = [sys.executable, "-m", "app.cli", name, source,
               "--out", str(out / f"{name}.mp4"), "--jsonl", str(out / f"{name}.jsonl"),
               "--csv", str(out / f"{name}.csv"),
               "--det-weights", str(det_weights), "--det-conf", str(settings.det_conf),
               "--det-iou", str(settings.det_iou), "--det-imgsz", str(settings.det_imgsz),
               "--pose-weights", str(REFERENCE_POSE), "--device", "cpu", "--backend", "torch"]
    if name == "live":
        command += ["--max-frames", str(settings.frames)]
    else:
        command += ["-q"]
        if settings.track_smoothing is not None:
            command += ["--smoothing", settings.track_smoothing]
    return command


def animals_per_frame(jsonl: Path) -> dict[str, float]:
    """Mean and largest number of animals per frame, and distinct track ids, in a JSON Lines result file."""
    counts, ids = [], set()
    with open(jsonl, encoding="utf-8") as f:
        for line in f:
            animals = json.loads(line)["animals"]
            counts.append(len(animals))
            ids.update(a["track_id"] for a in animals)
    return {"mean": float(np.mean(counts)) if counts else 0.0, "max": max(counts, default=0),
            "track_ids": len(ids), "frames_without": sum(c == 0 for c in counts)}


def _log_lines(path: Path, *needles: str) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    return [line.strip() for line in text.splitlines() if any(n in line for n in needles)]


# ------------------------------------------------------------------------------------ summary


def summarise(record: RunRecord, settings: SoakSettings, out: Path) -> dict:
    """The summary of one run: how it ended, throughput, growth and the verdict."""
    frames = [s.frames for s in record.samples]
    summary: dict = {
        "name": record.name, "command": record.command, "returncode": record.returncode,
        "stalled": record.stalled, "frames": record.frames, "wall_s": round(record.wall_s, 1),
        "startup_s": None if record.first_frame_s is None else round(record.first_frame_s, 1),
        "peak_rss_mib": round(record.peak_rss_kib / 1024, 1), "max_fds": record.max_fds,
        "max_threads": record.max_threads,
        "final": None if record.final is None else asdict(record.final),
        "samples": [asdict(s) for s in record.samples],
    }
    if len(record.samples) >= 2:
        first, last = record.samples[0], record.samples[-1]
        summary["frames_per_s"] = round((last.frames - first.frames) / max(last.elapsed_s - first.elapsed_s, 1e-9), 2)
    jsonl = out / f"{record.name}.jsonl"
    if jsonl.is_file():
        summary["animals"] = animals_per_frame(jsonl)
    log = out / f"{record.name}.log"
    if log.is_file():
        summary["log"] = _log_lines(log, "frames/s", "reconnect", "lost ", "Error", "error", "Traceback", "WARNING")
    for key in ("rss_kib", "fds", "threads"):
        summary[key] = growth_entry(frames, [getattr(s, key) for s in record.samples], settings)
    complete = record.returncode == 0 and not record.stalled and record.frames >= settings.frames
    summary["complete"] = complete
    # The verdict is on memory and file descriptors; threads are reported.
    summary["flat"] = complete and all(summary[key].get("flat", False) for key in ("rss_kib", "fds"))
    return summary


def growth_entry(frames: Sequence[int], values: Sequence[float], settings: SoakSettings) -> dict:
    """:func:`growth` of one quantity with its percentages, slope per 1,000 frames (in the quantity's unit)
    and :func:`is_flat`; ``{"error": why}`` when there is no baseline."""
    try:
        result = growth(frames, values, settings.warmup)
    except ValueError as exc:
        return {"error": str(exc)}
    return {**asdict(result), "last_pct": round(result.last_pct, 2), "peak_pct": round(result.peak_pct, 2),
            "slope_per_1000_frames": round(slope_per_1000(frames, values, settings.warmup), 3),
            "flat": is_flat(result, settings.limit_pct)}


def write_samples_csv(path: Path, summaries: Sequence[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "frames", "elapsed_s", "rss_mib", "fds", "threads"])
        for summary in summaries:
            for s in summary["samples"]:
                writer.writerow([summary["name"], s["frames"], f"{s['elapsed_s']:.1f}", f"{s['rss_kib'] / 1024:.1f}",
                                 s["fds"], s["threads"]])


def _pct(entry: dict, key: str) -> str:
    return f"{entry[key]:+.1f}%" if "error" not in entry else "n/a"


def markdown(summaries: Sequence[dict], settings: SoakSettings, extra: dict[str, str]) -> str:
    """The Markdown body for ``docs/benchmarks.md``: setup, a verdict table and the samples."""
    lines = [
        (f"Each command runs {settings.frames} frames of {settings.width}x{settings.height} in a child process. "
        f"Each time its JSON Lines output passes a multiple of {settings.every} frames below {settings.frames} "
        f"(at the last frame it is closing its files), its resident memory (VmRSS), open file descriptors "
        f"and threads are read from /proc. Growth is measured from the first sample at or after "
        f"{settings.warmup} frames (the baseline) to the last one (last) and to the largest one (peak); "
        f"flat: memory and file descriptors never more than {settings.limit_pct:g}% above the baseline. "
        f"Peak RSS is VmHWM over the whole run, closing included. Pose: the tests' small reference network "
        f"(`resnet_small_ap10k.pth`, flip test; `--backend torch`: both networks in torch); detector: YOLO11n with "
        f"random weights and "
        f"batch-norm statistics from the clip (`--det-conf {settings.det_conf:g} --det-iou {settings.det_iou:g} "
        f"--det-imgsz {settings.det_imgsz}`), a few moving boxes per frame; outputs: labeled video (mp4v), "
        f"JSON Lines and CSV."),
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in extra.items()]
    lines += [
        "",
        ("| run | frames | frames/s | RSS MiB baseline / last / peak | RSS growth last, peak | "
         "fds baseline / last / max | fds growth peak | threads baseline / last | animals/frame (track ids) | flat |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in summaries:
        rss, fds, threads = s["rss_kib"], s["fds"], s["threads"]
        animals = s.get("animals", {})
        if "error" in rss:
            rss_cells = f"n/a / n/a / {s['peak_rss_mib']:.0f} | n/a"
        else:
            rss_cells = (f"{rss['baseline'] / 1024:.0f} / {rss['last'] / 1024:.0f} / {s['peak_rss_mib']:.0f} | "
                         f"{_pct(rss, 'last_pct')}, {_pct(rss, 'peak_pct')}")
        fd_cells = (f"{fds['baseline']:.0f} / {fds['last']:.0f} / {s['max_fds']} | {_pct(fds, 'peak_pct')}"
                    if "error" not in fds else f"n/a / n/a / {s['max_fds']} | n/a")
        thread_cells = f"{threads['baseline']:.0f} / {threads['last']:.0f}" if "error" not in threads else "n/a"
        verdict = "yes" if s["flat"] else ("no" if s["complete"] else "no (did not finish)")
        lines.append(
            f"| {s.get('label', s['name'])} | {s['frames']} | {s.get('frames_per_s', float('nan')):.1f} | "
            f"{rss_cells} | {fd_cells} | {thread_cells} | {animals.get('mean', float('nan')):.2f} "
            f"({animals.get('track_ids', 0)}) | {verdict} |"
        )
    lines += ["", "Samples (frames: RSS MiB / fds / threads):", ""]
    for s in summaries:
        cells = [f"{x['frames']}: {x['rss_kib'] / 1024:.0f}/{x['fds']}/{x['threads']}" for x in s["samples"]]
        lines.append(f"- {s.get('label', s['name'])}: " + ", ".join(cells))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------- main


def settings_from_args(args: argparse.Namespace) -> SoakSettings:
    return SoakSettings(frames=args.frames, every=args.every, warmup=args.warmup, limit_pct=args.limit_pct,
                        width=args.size[0], height=args.size[1], stream_fps=args.stream_fps,
                        loop_frames=args.loop_frames, det_conf=args.det_conf, det_iou=args.det_iou,
                        det_imgsz=args.det_imgsz, track_smoothing=args.track_smoothing, stall_s=args.stall_s)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = SoakSettings()
    parser.add_argument("--frames", type=int, default=defaults.frames, help="frames per command")
    parser.add_argument("--every", type=int, default=defaults.every, help="frames between samples")
    parser.add_argument("--warmup", type=int, default=defaults.warmup, help="frames before the baseline sample")
    parser.add_argument("--limit-pct", type=float, default=defaults.limit_pct, help="largest growth still flat (%%)")
    parser.add_argument("--only", choices=RUNS, help="run only this command")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/soak"), help="folder for inputs and results")
    parser.add_argument("--size", type=int, nargs=2, default=[defaults.width, defaults.height], metavar=("W", "H"))
    parser.add_argument("--stream-fps", type=float, default=defaults.stream_fps)
    parser.add_argument("--loop-frames", type=int, default=defaults.loop_frames, help="frames the stream loops over")
    parser.add_argument("--det-conf", type=float, default=defaults.det_conf)
    parser.add_argument("--det-iou", type=float, default=defaults.det_iou)
    parser.add_argument("--det-imgsz", type=int, default=defaults.det_imgsz)
    parser.add_argument("--track-smoothing", choices=["offline", "causal", "none"], default=None,
                        help="--smoothing of the track run (default: the command's own, offline)")
    parser.add_argument("--stall-s", type=float, default=defaults.stall_s,
                        help="stop a command that writes no frame for this long")
    parser.add_argument("--write-docs", action="store_true", help="write the soak section of docs/benchmarks.md")
    return parser


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("YOLO_OFFLINE", "1")  # ultralytics never reaches for the network
    return env


def run_one(name: str, clip: Path, det_weights: Path, settings: SoakSettings, out_dir: Path) -> dict:
    """Run command ``name`` under :func:`monitor` into ``out_dir/name``; returns its :func:`summarise`
    (for ``live``, with what the stream served)."""
    out = out_dir / name
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / f"{name}.jsonl", out / f"{name}.log"):
        stale.unlink(missing_ok=True)
    facts: dict = {}
    if name == "track":
        command = command_for(name, str(clip), out, det_weights, settings)
        record = monitor(name, command, out / f"{name}.jsonl", out / f"{name}.log", settings.every, settings.frames,
                         settings.stall_s, _child_env())
    else:
        jpegs = encode_jpegs(read_frames(clip, settings.loop_frames))
        with LoopingMJPEGServer(jpegs, settings.stream_fps) as server:
            command = command_for(name, server.url, out, det_weights, settings)
            record = monitor(name, command, out / f"{name}.jsonl", out / f"{name}.log", settings.every,
                             settings.frames, settings.stall_s, _child_env())
            facts = {"stream_connections": server.connections, "stream_frames_sent": server.frames_sent,
                     "loop_frames": len(jpegs)}
    smoothing = settings.track_smoothing if name == "track" else None
    label = name if smoothing is None else f"{name} --smoothing {smoothing}"
    summary = {**summarise(record, settings, out), "label": label, **facts}
    logger.info("%s: %d frames in %.0f s, exit %s; flat: %s", name, record.frames, record.wall_s, record.returncode,
                summary["flat"])
    return summary


def main(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    out_dir = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    clip = out_dir / f"clip_{settings.frames}_{settings.width}x{settings.height}.mp4"
    if not clip.is_file():
        logger.info("writing the %d-frame clip %s", settings.frames, clip)
        write_clip(clip, settings)
    det_weights = write_random_detector(out_dir / "random_yolo11n.pt", read_frames(clip, 16), settings.det_imgsz)
    summaries = [run_one(name, clip, det_weights, settings, out_dir) for name in RUNS
                 if args.only in (None, name)]
    write_samples_csv(out_dir / "samples.csv", summaries)
    (out_dir / "summary.json").write_text(json.dumps({"settings": asdict(settings), "runs": summaries}, indent=1),
                                          encoding="utf-8")
    live = next((s for s in summaries if s["name"] == "live"), None)
    extra = {"load average at the end": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    if live is not None:
        extra["live stream"] = (f"MJPEG over HTTP on 127.0.0.1 looping {live['loop_frames']} frames at "
                                f"{settings.stream_fps:g} fps; {live['stream_connections']} connection(s), "
                                f"{live['stream_frames_sent']} frames sent")
    body = markdown(summaries, settings, extra)
    (out_dir / "soak.md").write_text(body, encoding="utf-8")
    logger.info("\n%s", body)
    if args.write_docs:
        from bench.report import write_section

        command = "python -m bench.soak " + " ".join(sys.argv[1:])
        write_section("soak", body, command.strip(), title="Soak")
    return 0 if all(s["flat"] for s in summaries) else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = get_args_parser()
    arguments = parser.parse_args()
    try:
        settings_from_args(arguments)
    except ValueError as error:
        parser.error(str(error))
    sys.exit(main(arguments))
