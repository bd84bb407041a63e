"""RTMPose-m against HRNet-w32 on the CPU: milliseconds per crop with ONNX Runtime and torch, batch 1 and 6.

Run: ``python -m bench.rtmpose [--batches 1 6] [--rounds 10] [--repeats 3] [--no-write]``

Both models get random weights (speed does not depend on them) and run through
:meth:`PoseEstimator.infer <pose.estimator.PoseEstimator.infer>`, the estimator's own network call
(numpy in, numpy out; ONNX Runtime from our export, its threads not spinning, as the estimator runs it),
with no flip test: the flip test doubles the crops. Batch 6 is the flip test of three animals.
The measurements are interleaved round by round (every model, backend and batch in each round: one untimed
call, then ``--repeats`` timed calls) and the median over all rounds is reported, so that a change of load on a
shared machine falls on all alike; the untimed call takes the cores back from the previous measurement's threads
(torch's OpenMP workers spin for a while after a call: before the untimed call was added, the first ONNX Runtime
call after a torch one was timed, 28.9 ms a crop where 23-25 ms is what ONNX Runtime alone gives);
the load average before and after is printed with them. Besides wall time, the process's CPU time
per crop (all its threads) is reported: on a machine shared with other work it is the steadier
measure of the cost (ONNX Runtime's threads do not spin, so its CPU time is work; torch's OpenMP
threads spin while waiting, so its CPU time also counts waiting). Also timed: the SimCC path's pre-processing
(center/scale, warp, normalise) and post-processing (flip merge, decode) per crop.
The table goes to the ``rtmpose-cpu`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from bench.report import command_line, write_section
from pose.estimator import Backend, PoseEstimator, PoseSettings
from pose.model import ARCHITECTURES, build_model

logger = logging.getLogger("bench.rtmpose")

MODELS: tuple[str, ...] = ("rtmpose_m", "hrnet_w32")
BACKENDS: tuple[Backend, ...] = (Backend.ONNXRUNTIME, Backend.TORCH)
#: The issue's target for RTMPose-m with ONNX Runtime at batch 1, milliseconds per crop.
TARGET_MS = 25.0


def _estimators(name: str) -> dict[Backend, PoseEstimator]:
    torch.manual_seed(0)
    model = build_model(ARCHITECTURES[name]).eval()
    return {backend: PoseEstimator(model, PoseSettings(device="cpu", flip_test=False, backend=backend))
            for backend in BACKENDS}


def _time(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and process CPU seconds of one call of ``fn``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


Key = tuple[str, Backend, int]


def measure(batches: list[int], rounds: int, warmup: int = 2, repeats: int = 3
            ) -> tuple[dict[Key, float], dict[Key, float]]:
    """Median wall and CPU seconds per crop of every (model, backend, batch), from ``rounds`` interleaved
    rounds of one untimed and ``repeats`` timed calls each."""
    estimators = {name: _estimators(name) for name in MODELS}
    rng = np.random.default_rng(0)
    inputs = {batch: rng.standard_normal((batch, 3, 256, 256)).astype(np.float32) for batch in batches}
    keys = [(name, backend, batch) for name in MODELS for backend in BACKENDS for batch in batches]
    for name, backend, batch in keys:
        for _ in range(warmup):
            estimators[name][backend].infer(inputs[batch])
    times: dict[Key, list[tuple[float, float]]] = {key: [] for key in keys}
    for index in range(rounds):
        for name, backend, batch in keys:
            run = estimators[name][backend].infer
            run(inputs[batch])  # untimed: the previous measurement's threads give the cores back
            for _ in range(repeats):
                wall, cpu = _time(lambda run=run, x=inputs[batch]: run(x))
                times[(name, backend, batch)].append((wall / batch, cpu / batch))
        logger.info("round %d/%d done", index + 1, rounds)
    return ({key: statistics.median(w for w, _ in values) for key, values in times.items()},
            {key: statistics.median(c for _, c in values) for key, values in times.items()})


def processing(rounds: int, num_boxes: int = 6) -> tuple[float, float]:
    """Seconds per crop of the SimCC path's pre-processing and of its flip merge + decode."""
    torch.manual_seed(0)
    estimator = PoseEstimator(build_model(ARCHITECTURES["rtmpose_m"]).eval(),
                              PoseSettings(device="cpu", backend=Backend.TORCH))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    boxes = np.concatenate([rng.uniform(0, 900, (num_boxes, 2)), rng.uniform(80, 350, (num_boxes, 2))], axis=1)
    codec, settings = estimator.codec, estimator.settings
    pre = statistics.median(_time(lambda: codec.prepare_xywh(frame, boxes, settings, False))[0] for _ in range(rounds))
    batch = codec.prepare_xywh(frame, boxes, settings, False)
    logits = rng.standard_normal((2 * num_boxes, 17, sum(codec.bins))).astype(np.float32)
    post = statistics.median(
        _time(lambda: codec.decode(codec.merge_flip(logits[:num_boxes], logits[num_boxes:]), batch))[0]
        for _ in range(rounds))
    return pre / num_boxes, post / num_boxes


def render(results: dict[Key, float], cpu: dict[Key, float], batches: list[int], pre: float, post: float,
           load: tuple[float, float], rounds: int, repeats: int = 1) -> str:
    ms = {key: 1e3 * value for key, value in results.items()}
    cpu_ms = {key: 1e3 * value for key, value in cpu.items()}
    lines = [
        (f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {_ort_version()} "
         f"(threads: all cores, not spinning, as the estimator runs it). Random weights, input 256x256, no flip "
         f"test; milliseconds per crop = batch time / batch size, median of {rounds} interleaved rounds of "
         f"one untimed and {repeats} timed calls each. Load "
         f"average (1 min) {load[0]:.2f} before, {load[1]:.2f} after (2 cores, shared with other work)."),
        "",
        ("| model | batch | onnxruntime ms/crop | torch ms/crop | crops/s onnxruntime | crops/s torch "
         "| onnxruntime CPU ms/crop | torch CPU ms/crop |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in MODELS:
        for batch in batches:
            ort, tor = ms[(name, Backend.ONNXRUNTIME, batch)], ms[(name, Backend.TORCH, batch)]
            lines.append(f"| {name} | {batch} | {ort:.1f} | {tor:.1f} | {1e3 / ort:.1f} | {1e3 / tor:.1f} "
                         f"| {cpu_ms[(name, Backend.ONNXRUNTIME, batch)]:.1f} "
                         f"| {cpu_ms[(name, Backend.TORCH, batch)]:.1f} |")
    lines.append("")
    for batch in batches:
        ratios = [ms[("hrnet_w32", b, batch)] / ms[("rtmpose_m", b, batch)] for b in BACKENDS]
        ort = Backend.ONNXRUNTIME
        cpu_ratio = cpu_ms[("hrnet_w32", ort, batch)] / cpu_ms[("rtmpose_m", ort, batch)]
        lines.append(f"- batch {batch}: HRNet-w32 / RTMPose-m = {ratios[0]:.1f}x with onnxruntime "
                     f"({cpu_ratio:.1f}x in CPU time), {ratios[1]:.1f}x with torch.")
    first = ms[("rtmpose_m", Backend.ONNXRUNTIME, batches[0])]
    lines.append(f"- Target (issue 24): RTMPose-m with onnxruntime at batch 1 <= {TARGET_MS:.0f} ms/crop: "
                 + (f"{first:.1f} ms, {'met' if first <= TARGET_MS else 'not met'}." if batches[0] == 1
                    else "not measured (no batch 1)."))
    lines.append(f"- SimCC path outside the network, per crop (6 boxes of a 1280x720 frame): pre-processing "
                 f"(center/scale, warp, normalise) {1e3 * pre:.2f} ms; flip merge + decode {1e3 * post:.3f} ms.")
    return "\n".join(lines)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 6])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds (the median is reported)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per model, backend and batch in a round")
    parser.add_argument("--no-write", action="store_true", help="print the table instead of writing docs/benchmarks.md")
    args = parser.parse_args(argv)
    if min(args.batches) < 1 or args.rounds < 1 or args.repeats < 1:
        parser.error("batches, rounds and repeats must be positive")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    load_before = os.getloadavg()[0]
    wall, cpu = measure(args.batches, args.rounds, repeats=args.repeats)
    pre, post = processing(args.rounds)
    body = render(wall, cpu, args.batches, pre, post, (load_before, os.getloadavg()[0]), args.rounds, args.repeats)
    if args.no_write:
        sys.stdout.write(body + "\n")
    else:
        command = command_line("bench.rtmpose", argv)
        write_section("rtmpose-cpu", body, command, title="RTMPose-m against HRNet-w32 per crop (cpu)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
