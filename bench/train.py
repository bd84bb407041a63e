"""Training speed: model images/s with and without AMP, and whether the data loader keeps up.

Run: ``python -m bench.train [--arch hrnet_w32] [--batch 8] [--steps 3] [--workers 0 1 2] [--device cpu]``

Three measurements, each after one warm-up step or batch:
- the model: :func:`train.engine.train_one_epoch` (forward, :class:`JointsMSELoss`, backward,
  Adam) on random input and target tensors, so no data loading is timed; in float32 and with
  AMP, each in the standard and in channels-last memory order (``PoseTrainSettings.channels_last``,
  the default); AMP (float16 autocast and a GradScaler on CUDA; bfloat16 autocast on a CPU that supports it,
  without scaling, otherwise n/a). The model is :func:`train.train_pose.build_training_model`'s,
  from scratch (speed does not depend on the weights);
- the loader alone: a DataLoader over :class:`AP10KDataset` with augmentation on, on a synthetic
  AP-10K dataset written to a temporary folder, for each worker count;
- the ratio loader / model: the loader must run at least twice as fast as the model, since on
  one machine both share the CPU.
Results are written to the ``train-<device type>`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch
from torch.utils.data import DataLoader, RandomSampler

from bench.report import command_line, write_section
from train.dataset import AP10KDataset, worker_init
from train.engine import JointsMSELoss, train_one_epoch
from train.synthetic import DatasetSettings, write_dataset
from train.train_pose import HEATMAP_ARCHITECTURES, PoseTrainSettings, build_training_model

logger = logging.getLogger("bench.train")

#: The loader must deliver at least this many times the model's images/s.
REQUIRED_LOADER_RATIO = 2.0

#: Timed model variants: (AMP, channels-last memory order).
MODEL_VARIANTS: tuple[tuple[bool, bool], ...] = ((False, False), (False, True), (True, False), (True, True))


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype :func:`train_one_epoch` uses on ``device``, or None where AMP is not worth timing."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model(settings: PoseTrainSettings, device: torch.device, steps: int, amp: bool,
                channels_last: bool = False) -> float | None:
    """Training images/s of one process: ``steps`` timed steps after one warm-up step; None when AMP is n/a."""
    if amp and amp_dtype(device) is None:
        return None
    torch.manual_seed(0)
    model, _ = build_training_model(settings)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    # On the CPU, bfloat16 needs no loss scaling: a disabled scaler only switches autocast on.
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda") if amp else None
    batch, (width, height), (hw, hh) = settings.batch_size, settings.input_size, settings.heatmap_size
    images = torch.randn(batch, 3, height, width)
    targets = torch.rand(batch, 17, hh, hw) * 0.1
    weights = torch.ones(batch, 17, 1)
    loader = [(images, targets, weights, {})] * steps
    criterion = JointsMSELoss()
    train_one_epoch(model, optimizer, loader[:1], device, 0, scaler, criterion=criterion, progress=False)
    _sync(device)
    start = time.perf_counter()
    stats = train_one_epoch(model, optimizer, loader, device, 1, scaler, criterion=criterion, progress=False)
    _sync(device)
    return stats.samples / (time.perf_counter() - start)


def bench_loader(dataset: AP10KDataset, batch: int, workers: int, batches: int) -> float:
    """Images/s of a DataLoader drawing from ``dataset`` at random (with replacement, so any size
    will do): ``batches`` timed batches after the first, which also pays for starting the workers.
    While the first batch is made the other workers work ahead, which inflates the rate by at most
    about one batch in ``batches``."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=(batches + 1) * batch,
                            generator=torch.Generator().manual_seed(0))
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, worker_init_fn=worker_init)
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - start
    del iterator
    return batches * batch / seconds


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def render(args: argparse.Namespace, device: torch.device, model_rates: dict[tuple[bool, bool], float | None],
           loader_rates: dict[int, float], instances: int, load: tuple[tuple[float, ...], tuple[float, ...]]) -> str:
    dtype = amp_dtype(device)
    scaling = " + GradScaler" if device.type == "cuda" else ""
    amp_name = f"AMP ({str(dtype).removeprefix('torch.')} autocast{scaling})"
    fastest = max(v for v in model_rates.values() if v is not None)
    lines = [
        f"Device: `{device}`, torch {torch.__version__}, {torch.get_num_threads()} torch threads. "
        f"{args.arch} from scratch, input {args.input_size}x{args.input_size}, batch {args.batch}, Adam; "
        f"{args.steps} timed steps after 1 warm-up step, on random tensors (no data loading).",
        "",
        "| model training | images/s | ms/step |",
        "| --- | ---: | ---: |",
    ]
    for amp, channels_last in MODEL_VARIANTS:
        rate = model_rates[amp, channels_last]
        label = (amp_name if dtype is not None else "AMP") if amp else "float32"
        label += ", channels-last" if channels_last else ""
        step = "n/a" if rate is None else f"{1e3 * args.batch / rate:.0f}"
        lines.append(f"| {label} | {_rate(rate)} | {step} |")
    lines += [
        "",
        f"Loader alone: `AP10KDataset` with augmentation (`train=True`) over {instances} instances of "
        f"{args.num_images} synthetic {args.image_size}x{args.image_size} JPEG images, batch {args.batch}, "
        "OpenCV on one thread per process, "
        f"{args.loader_batches} timed batches after the first. Ratio = loader images/s / fastest model images/s "
        f"({fastest:.1f}); at least {REQUIRED_LOADER_RATIO:g} is needed.",
        "",
        "| loader workers | images/s | loader / model | keeps up |",
        "| ---: | ---: | ---: | :---: |",
    ]
    for workers, rate in sorted(loader_rates.items()):
        ratio = rate / fastest
        lines.append(f"| {workers} | {rate:.1f} | {ratio:.1f} | {'yes' if ratio >= REQUIRED_LOADER_RATIO else 'no'} |")
    before, after = load
    lines += [
        "",
        f"Load average (1, 5, 15 min) before the run {', '.join(f'{v:.2f}' for v in before)}; "
        f"after {', '.join(f'{v:.2f}' for v in after)} (other processes share the machine).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="hrnet_w32", choices=sorted(HEATMAP_ARCHITECTURES))
    parser.add_argument("--batch", type=int, default=8, help="images per training step and per loader batch")
    parser.add_argument("--input-size", type=int, default=256, help="model input width = height in pixels")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per precision")
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2], help="loader worker counts to time")
    parser.add_argument("--loader-batches", type=int, default=24, help="timed loader batches per worker count")
    parser.add_argument("--num-images", type=int, default=64, help="synthetic images to write")
    parser.add_argument("--image-size", type=int, default=256, help="synthetic image width = height in pixels")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-write", action="store_true",
                        help="print the tables instead of writing docs/benchmarks.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(args.device)
    # A DataLoader worker forked while OpenCV's thread pool is idle in this process hangs in
    # worker_init's cv2.setNumThreads(1) (pthread_cond_destroy); with one OpenCV thread here there
    # is no pool to inherit. The 0-worker loader therefore runs OpenCV on one thread too.
    cv2.setNumThreads(1)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        write_dataset(root, DatasetSettings(num_images=args.num_images, width=args.image_size,
                                            height=args.image_size, val_fraction=0.0, test_fraction=0.0,
                                            formats=("ap10k",)))
        ann = root / "annotations" / "ap10k-train-split1.json"
        size = (args.input_size, args.input_size)
        settings = PoseTrainSettings(train_ann=ann, val_ann=ann, image_root=root / "data", arch=args.arch,
                                     input_size=size, heatmap_size=(args.input_size // 4, args.input_size // 4),
                                     batch_size=args.batch, progress=False)
        dataset = AP10KDataset(ann, root / "data", input_size=size, heatmap_size=settings.heatmap_size,
                               train=True, augment=settings.augment)
        loader_rates = {}
        for workers in args.workers:
            loader_rates[workers] = bench_loader(dataset, args.batch, workers, args.loader_batches)
            logger.info("loader, %d workers: %.1f images/s", workers, loader_rates[workers])
    model_rates = {}
    for amp, channels_last in MODEL_VARIANTS:
        rate = bench_model(settings, device, args.steps, amp=amp, channels_last=channels_last)
        model_rates[amp, channels_last] = rate
        logger.info("%s training (AMP %s, channels-last %s): %s images/s", args.arch, amp, channels_last, _rate(rate))
    body = render(args, device, model_rates, loader_rates, len(dataset), (load_before, os.getloadavg()))
    if args.no_write:
        sys.stdout.write(body + "\n")
    else:
        command = command_line("bench.train", argv)
        write_section("train-" + device.type, body, command, title=f"Training speed ({device})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
