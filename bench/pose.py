"""Pose model speed: per-crop latency and crops/s for batch 1/4/8, torch vs ONNX Runtime.

Run: ``python -m bench.pose [--models hrnet_w32 res50] [--batches 1 4 8] [--repeats 3] [--device cpu]``

For each model (random weights; speed does not depend on them) it measures, on the same input:
- ``plain torch``: ``model(x)`` under ``torch.inference_mode()``, the floor for any torch wrapper;
- ``ours (torch)``: :meth:`PoseEstimator.infer_heatmaps`, i.e. our torch path including the
  numpy <-> tensor copies, so ``ours / plain`` is our overhead; on CUDA it replays CUDA graphs (the
  default), and ``ours eager`` is the same without them;
- ``ours (onnxruntime)``: the same method with the ONNX Runtime backend from our own export;
- pre- and post-processing alone (crop + normalise, flip merge + decode) per crop.
Results are written to the ``pose`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from bench.report import command_line, write_section
from pose.codec import decode_heatmaps, flip_back
from pose.estimator import Backend, PoseEstimator, PoseSettings, Precision, cudnn_tf32, prepare_inputs
from pose.keypoints import FLIP_INDEX
from pose.model import ARCHITECTURES, build_model

logger = logging.getLogger("bench.pose")

#: The official models timed here, by their names in :data:`pose.model.ARCHITECTURES`.
MODELS: tuple[str, ...] = ("hrnet_w32", "hrnet_w48", "res50", "res101")


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 1, sync: Callable[[], None] = lambda: None) -> float:
    """Median wall time of ``fn`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_model(name: str, batches: list[int], repeats: int, device: str) -> list[dict]:
    torch.manual_seed(0)
    model = build_model(ARCHITECTURES[name]).eval()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    settings = PoseSettings(device=device, flip_test=False, backend=Backend.TORCH)
    ours = PoseEstimator(model, settings)
    # On a GPU, ONNX Runtime without its CUDA provider would run on the CPU: not a GPU number.
    ort = (PoseEstimator(model, PoseSettings(device=device, flip_test=False, backend=Backend.ONNXRUNTIME))
           if not device.startswith("cuda") or ort_has_cuda() else None)
    cuda = device.startswith("cuda")
    eager = PoseEstimator(model, replace(settings, cuda_graphs=False)) if cuda else None
    half = (PoseEstimator(build_model(ARCHITECTURES[name]).eval(), replace(settings, precision=Precision.FAST))
            if cuda else None)
    plain_model = ours.model  # same module, same device and memory format
    rows = []
    rng = np.random.default_rng(0)
    for batch in batches:
        x = rng.standard_normal((batch, 3, 256, 256)).astype(np.float32)
        xt = torch.from_numpy(x).to(device)
        if ours.channels_last:
            xt = xt.contiguous(memory_format=torch.channels_last)

        def plain() -> None:
            with torch.inference_mode(), cudnn_tf32(False):  # as the estimator runs by default
                plain_model(xt.half() if ours.half else xt)

        t_plain = timeit(plain, repeats, sync=sync)
        t_ours = timeit(lambda: ours.infer_heatmaps(x), repeats, warmup=3 if cuda else 1, sync=sync)
        t_eager = timeit(lambda: eager.infer_heatmaps(x), repeats, sync=sync) if eager is not None else math.nan
        t_ort = timeit(lambda: ort.infer_heatmaps(x), repeats) if ort is not None else math.nan
        t_half = (timeit(lambda: half.infer_heatmaps(x), repeats, warmup=3, sync=sync) if half is not None
                  else math.nan)
        rows.append({"model": name, "batch": batch, "plain": t_plain / batch, "ours": t_ours / batch,
                     "ort": t_ort / batch, "half": t_half / batch, "eager": t_eager / batch})
        logger.info(
            "%s batch %d: plain %.1f ms/crop, ours %.1f ms/crop (eager %.1f), onnxruntime %.1f ms/crop, "
            "fast %.1f ms/crop", name, batch, 1e3 * t_plain / batch, 1e3 * t_ours / batch, 1e3 * t_eager / batch,
            1e3 * t_ort / batch, 1e3 * t_half / batch,
        )
    return rows


def ort_has_cuda() -> bool:
    """Whether the installed ONNX Runtime has its CUDA provider."""
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def bench_processing(repeats: int, num_boxes: int = 8) -> tuple[float, float]:
    """Seconds per crop for crop+normalise and for flip merge + decode (no network)."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    xy = rng.uniform(0, 900, (num_boxes, 2))
    boxes = np.concatenate([xy, rng.uniform(80, 350, (num_boxes, 2))], axis=1)
    settings = PoseSettings()
    t_pre = timeit(lambda: prepare_inputs(frame, boxes, settings), repeats * 5)
    batch = prepare_inputs(frame, boxes, settings)
    heatmaps = rng.standard_normal((num_boxes * 2, 17, 64, 64)).astype(np.float32)

    def post() -> None:
        merged = (heatmaps[:num_boxes] + flip_back(heatmaps[num_boxes:], FLIP_INDEX)) * np.float32(0.5)
        decode_heatmaps(merged, batch.center, batch.scale)

    t_post = timeit(post, repeats * 5)
    return t_pre / num_boxes, t_post / num_boxes


def render(rows: list[dict], pre: float, post: float, device: str) -> str:
    cuda = device.startswith("cuda")
    digits = 2 if cuda else 1
    lines = [
        f"Device: `{device}`, torch {torch.__version__}, {torch.get_num_threads()} torch threads. "
        "Random weights, input 256x256, no flip test (the flip test doubles the crops). "
        "Per-crop latency = batch time / batch size."
        + (" float32 without TF32 (the estimator's default, EXACT), replayed from CUDA graphs (the default); "
           "`ours eager` is the same without graphs; the float16 columns are FAST (`--half`), with graphs. ONNX "
           "Runtime is timed only where it has its CUDA provider (n/a: it has not)." if cuda else ""),
        "",
        "| model | batch | plain torch ms/crop | ours (torch) ms/crop | ours/plain | ours (onnxruntime) ms/crop | "
        "crops/s torch | crops/s onnxruntime |"
        + (" ours eager ms/crop | ours float16 ms/crop | crops/s float16 |" if cuda else ""),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: | ---: | ---: |" if cuda else ""),
    ]

    def ms(seconds: float) -> str:
        return "n/a" if math.isnan(seconds) else f"{1e3 * seconds:.{digits}f}"

    def rate(seconds: float) -> str:
        return "n/a" if math.isnan(seconds) else f"{1 / seconds:.1f}"

    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch']} | {ms(r['plain'])} | {ms(r['ours'])} | "
            f"{r['ours'] / r['plain']:.2f} | {ms(r['ort'])} | {rate(r['ours'])} | {rate(r['ort'])} |"
            + (f" {ms(r.get('eager', math.nan))} | {ms(r['half'])} | {rate(r['half'])} |" if cuda else "")
        )
    lines += [
        "",
        f"Pre-processing (clean, center/scale, warp, normalise) {1e3 * pre:.2f} ms/crop; "
        f"post-processing (flip merge + default decode) {1e3 * post:.2f} ms/crop, on 8 boxes of a 1280x720 frame.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["hrnet_w32", "res50"], choices=sorted(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-write", action="store_true", help="print the table instead of writing docs/benchmarks.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for name in args.models:
        rows += bench_model(name, args.batches, args.repeats, args.device)
    pre, post = bench_processing(args.repeats)
    body = render(rows, pre, post, args.device)
    if args.no_write:
        sys.stdout.write(body + "\n")
    else:
        section = "pose-" + args.device.split(":")[0]
        command = command_line("bench.pose", argv)
        write_section(section, body, command, title=f"Pose model speed ({args.device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
