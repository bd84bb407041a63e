"""Live-stream latency: p50/p95 from capture to result, over a long stream, with the drop rate.

Run: ``python -m bench.live [--frames 10000] [--fps 50] [--pose CHECKPOINT | --random hrnet_w32] [--device cpu]``
or, for a profile (:mod:`app.profiles`) at 720p: ``python -m bench.live --profile realtime --size 1280 720``

An HTTP MJPEG server on 127.0.0.1 (the test helper ``tests/app/streaming.py``) streams ``--frames``
frames of a real AP-10K image panned over time, each stamped with its number. ``LiveSource`` reads
it newest-frame-first and the pipeline processes what it gets (detector: two fixed boxes, so the
pose model does real work each frame; pose: the small reference network unless ``--pose`` names
another checkpoint or ``--random`` an architecture to run with random weights). Latency is
``time.monotonic()`` after the result minus the frame's capture time; it is reported per tenth of the
stream to show that it stays flat (no queue builds up, unlike ultralytics#4211), with the share of
frames dropped as stale. Written to the ``live`` section of ``docs/benchmarks.md`` (``live-cuda`` with
``--device cuda``).

With ``--profile``, the run is that profile's: its pose model with random weights (unless ``--pose`` or
``--random`` names another), its flip test, and YOLO11n (random weights) run at its input size on every
k-th frame as it says, for its cost, answering with the two fixed boxes. Written to ``live-PROFILE``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from animalpose import Model
from app.profiles import as_profile, profile_choices
from app.runs import Models
from app.sources import LiveSettings, LiveSource
from bench.report import command_line, write_section
from bench.throughput import make_yolo
from pose.estimator import PoseEstimator, PoseSettings
from pose.model import ARCHITECTURES, build_model
from pose.precision import LIVE_PRECISION, Precision
from pose.structures import Detections

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from streaming import MJPEGServer, frame_number, panning_frames  # noqa: E402

logger = logging.getLogger("bench.live")
DEFAULT_POSE = str(ROOT / "tests/data/reference/resnet_small/resnet_small_ap10k.pth")


def fixed_detector(image: np.ndarray) -> Detections:
    h, w = image.shape[:2]
    boxes = np.array([[0.1 * w, 0.3 * h, 0.45 * w, 0.9 * h], [0.55 * w, 0.3 * h, 0.9 * w, 0.9 * h]], np.float32)
    return Detections(boxes, np.array([0.9, 0.9], np.float32))


class TimedFixedDetector:
    """Runs ``yolo`` for its cost, then answers with :func:`fixed_detector`'s boxes."""

    def __init__(self, yolo) -> None:
        self.yolo = yolo

    def __call__(self, image: np.ndarray) -> Detections:
        self.yolo(image)
        return fixed_detector(image)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10000, help="frames the stream sends")
    parser.add_argument("--fps", type=float, default=50.0, help="frame rate of the stream")
    parser.add_argument("--pose", default=DEFAULT_POSE)
    parser.add_argument("--random", choices=sorted(ARCHITECTURES), help="instead of --pose: this architecture "
                        "with random weights (a full-size network; speed does not depend on the weights)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=[p.value for p in Precision], default=LIVE_PRECISION.value,
                        help=f"as animalpose live --precision (default {LIVE_PRECISION.value}, live's)")
    parser.add_argument("--profile", choices=["full", "realtime"], default=None,
                        help="run as this profile runs live (pose model, flip test, YOLO11n at its size and interval)")
    parser.add_argument("--size", type=int, nargs=2, default=[640, 360], metavar=("W", "H"),
                        help="size of the streamed frames (default 640 360)")
    parser.add_argument("--fresh-wait", type=float, default=LiveSettings.fresh_wait,
                        help="LiveSettings.fresh_wait (0: always the newest frame at once)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    choices = profile_choices(as_profile(args.profile)) if args.profile else None
    flip_test = choices.flip_test if choices else True
    settings = PoseSettings(device=args.device, precision=args.precision, flip_test=flip_test)
    random_arch = args.random or (choices.pose_weights if choices and args.pose == DEFAULT_POSE else None)
    if random_arch:
        torch.manual_seed(0)
        estimator = PoseEstimator(build_model(ARCHITECTURES[random_arch]).eval(), settings)
        pose_name = f"{random_arch} (random weights)"
    else:
        estimator = PoseEstimator.from_weights(args.pose, settings)
        pose_name = Path(args.pose).name
    detector, det_every, det_name = fixed_detector, 1, "fixed two boxes per frame"
    if choices:
        with tempfile.TemporaryDirectory() as tmp:
            detector = TimedFixedDetector(make_yolo(Path(tmp), args.device, choices.det_image_size))
        det_every = choices.det_every
        det_name = (f"YOLO11n (random weights) at {choices.det_image_size} px every "
                    f"{'frame' if det_every == 1 else f'{det_every} frames'}, answering with two fixed boxes")
    pipeline = Model(Models(detector, estimator)).pipeline(live=True, smoothing="causal", min_hits=1,
                                                           det_every=det_every)
    size = tuple(args.size)
    backgrounds = panning_frames(ROOT / "tests/data/samples/ap10k/000000037516.jpg", size=size, count=64)
    records: list[tuple[int, float]] = []  # (stream frame number, latency s)
    detected: list[bool] = []  # whether the detector ran on each processed frame
    with MJPEGServer(backgrounds, fps=args.fps, max_frames=args.frames) as server:
        with LiveSource(server.url, LiveSettings(max_reconnect_s=2.0, read_timeout_s=2.0,
                                                            fresh_wait=args.fresh_wait)) as source:
            start = time.perf_counter()
            try:
                for frame in source:
                    runs = pipeline.times.detector_runs
                    pipeline.process(frame.image, frame.index, frame.timestamp_s)
                    detected.append(pipeline.times.detector_runs > runs)
                    records.append((frame_number(frame.image), time.monotonic() - frame.captured_at))
                    if records[-1][0] >= args.frames - 1:
                        break
            except Exception as exc:  # the stream ends when the server has sent its frames
                logger.info("stream ended: %s", exc)
            wall = time.perf_counter() - start
            stats = source.stats
    sent = max(n for n, _ in records) + 1 if records else 0
    processed = len(records)
    latencies = [latency for _, latency in records]
    with_detector = [latency for (_, latency), d in zip(records, detected) if d]
    pose_only = [latency for (_, latency), d in zip(records, detected) if not d]
    lines = [
        f"Stream: MJPEG over HTTP on 127.0.0.1, {size[0]}x{size[1]} at {args.fps:g} fps, {sent} frames sent and seen "
        f"({wall:.0f} s). Pipeline{f' (profile {args.profile})' if args.profile else ''}: {det_name}, pose "
        f"`{pose_name}` {'with' if flip_test else 'without'} flip test on `{args.device}` ({args.precision}), "
        f"causal smoothing; LiveSettings.fresh_wait {args.fresh_wait:g}. Latency = result time - capture time of "
        "the frame.",
        "",
        f"Processed {processed} frames ({processed / wall:.1f}/s); dropped as stale {stats.frames_dropped} "
        f"of {stats.frames_read} read ({100 * stats.frames_dropped / max(stats.frames_read, 1):.1f}%); "
        f"reconnects {stats.reconnects}. Overall latency p50 {1e3 * percentile(latencies, 50):.0f} ms, "
        f"p95 {1e3 * percentile(latencies, 95):.0f} ms. Load average at the end "
        f"{os.getloadavg()[0]:.1f} (other processes on the machine's cores slow the pipeline; windows with "
        "fewer processed frames are those).",
        "",
        f"The detector ran on {len(with_detector)} of the {processed} processed frames: latency p50 / p95 "
        f"{1e3 * percentile(with_detector, 50):.0f} / {1e3 * percentile(with_detector, 95):.0f} ms on those, "
        f"{1e3 * percentile(pose_only, 50):.0f} / {1e3 * percentile(pose_only, 95):.0f} ms on the others.",
        "",
        "| stream frames | processed | latency p50 ms | latency p95 ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    step = max(1, sent // 10)
    for lo in range(0, sent, step):
        window = [lat for n, lat in records if lo <= n < lo + step]
        lines.append(f"| {lo}-{min(lo + step, sent) - 1} | {len(window)} | {1e3 * percentile(window, 50):.0f} | "
                     f"{1e3 * percentile(window, 95):.0f} |")
    body = "\n".join(lines)
    logger.info(body)
    if not args.no_write:
        command = command_line("bench.live", argv)
        device = args.device.split(":")[0]
        section, title = ("live", "Live stream latency (CPU)") if device == "cpu" else \
            (f"live-{device}", f"Live stream latency ({args.device})")
        if args.profile:
            section, title = f"{section}-{args.profile}", f"{title}, profile {args.profile}"
        write_section(section, body, command, title=title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
