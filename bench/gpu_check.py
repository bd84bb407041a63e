"""The CUDA paths measured on a machine with a GPU: how exactly they reproduce mmpose, and what they cost.

Run: ``python -m bench.gpu_check [--device cuda] [--repeats 30] [--trained W] [--json F] [--no-write]``

1. Accuracy, in float32 without TF32 (what the estimator runs unless ``PoseSettings.tf32`` allows it),
   float32 with TF32 convolutions (cuDNN's default in PyTorch), float16, and float32 not channels-last:
   the heatmaps of the two small reference networks (``tests/data/reference``, outputs of mmpose 0.x)
   on mmpose's own preprocessed input, against mmpose's; and with ``--trained W`` (a trained
   checkpoint) how far each variant moves its keypoints from our CPU float32 output on synthetic
   images. (The small reference networks are untrained: their flat heatmaps make keypoint
   comparisons meaningless for them; and OpenCV 5's crops differ from OpenCV 4's, which mmpose's
   numbers were made with.)
2. Speed: HRNet-w32 (random weights) at 256x256 on batches of 2 and 6 crops (1 and 3 animals with the
   flip test): milliseconds per call through ``infer_heatmaps`` in the same variants, channels-last
   on and off; and YOLO11n (random weights) at 640 on a 1280x720 frame, float32 and float16.
Written to the ``gpu-check`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.pose import timeit
from bench.report import write_section
from pose.estimator import PoseEstimator, PoseSettings
from pose.model import hrnet_w32
from pose.transforms import xyxy_to_xywh

logger = logging.getLogger("bench.gpu_check")

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "reference"
JAGUAR = ROOT / "tests" / "data" / "samples" / "ap10k" / "000000037516.jpg"
JAGUAR_BOX = np.array([[66, 192, 1092, 512]], np.float32)  # its ground-truth box (x, y, w, h)


@dataclass(frozen=True)
class Variant:
    """One way of running the pose network on the GPU."""

    name: str
    tf32: bool = False
    half: bool = False
    channels_last: bool = True


VARIANTS = (
    Variant("float32"),
    Variant("float32 + TF32", tf32=True),
    Variant("float16", half=True),
    Variant("float32, not channels-last", channels_last=False),
)


def settings_of(variant: Variant, device: str) -> PoseSettings:
    return PoseSettings(device=device, half=variant.half, channels_last=variant.channels_last, tf32=variant.tf32)


def heatmap_error(name: str, variant: Variant, device: str) -> float:
    """Largest error of the reference network ``name``'s heatmaps against mmpose's, relative to their peak, on
    mmpose's own preprocessed input (so that no OpenCV crop is involved)."""
    folder = REFERENCE / name
    estimator = PoseEstimator.from_weights(folder / f"{name}_ap10k.pth", settings_of(variant, device))
    heatmaps = estimator.infer_heatmaps(np.load(REFERENCE / "preprocess" / "000000037516_input.npy"))
    reference = np.load(folder / "heatmaps.npy")
    return float(np.abs(heatmaps - reference).max() / np.abs(reference).max())


def trained_images(count: int, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` synthetic images (``size`` pixels square) with their animals' boxes (x, y, w, h)."""
    from train.synthetic import DatasetSettings, render_dataset_image

    settings = DatasetSettings(num_images=count, width=size, height=size, seed=11)
    out = []
    for index in range(count):
        image, labels, _ = render_dataset_image(index, settings)
        if len(labels.boxes):
            out.append((image, xyxy_to_xywh(labels.boxes).astype(np.float32)))
    return out


def trained_keypoints(weights: Path, settings: PoseSettings, images: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(N, K, 3) keypoints of ``weights`` run with ``settings`` on every animal of ``images``."""
    estimator = PoseEstimator.from_weights(weights, settings)
    return np.concatenate([estimator.estimate_xywh(image, boxes).keypoints for image, boxes in images])


def keypoint_shift(keypoints: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How far ``keypoints`` lie from ``reference`` (our float32 CPU output), in pixels: mean, 99th
    percentile, largest; and the share of keypoints moved by more than 1 pixel."""
    shift = np.linalg.norm(keypoints[..., :2] - reference[..., :2], axis=-1).ravel()
    return {"mean_px": float(shift.mean()), "p99_px": float(np.percentile(shift, 99)), "max_px": float(shift.max()),
            "moved_1px": float((shift > 1).mean()), "keypoints": int(shift.size)}


def pose_speed(variant: Variant, batches: list[int], repeats: int, device: str) -> dict[int, float]:
    """Seconds per ``infer_heatmaps`` call of HRNet-w32 for each batch size."""
    torch.manual_seed(0)
    estimator = PoseEstimator(hrnet_w32(), settings_of(variant, device))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rng = np.random.default_rng(0)
    out = {}
    for batch in batches:
        x = rng.standard_normal((batch, 3, 256, 256)).astype(np.float32)
        out[batch] = timeit(lambda x=x: estimator.infer_heatmaps(x), repeats, warmup=5, sync=sync)
    return out


def detector_speed(half: bool, repeats: int, device: str, folder: Path) -> float:
    """Seconds per 1280x720 frame of YOLO11n (random weights) through :class:`tracking.detector.Detector`."""
    from ultralytics import YOLO

    from tracking.detector import Detector, DetectorSettings

    path = folder / "yolo11n_random.pt"
    if not path.exists():
        YOLO("yolo11n.yaml").save(str(path))
    detector = Detector(DetectorSettings(weights=path, device=device, half=half))
    frame = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    return timeit(lambda: detector(frame), repeats, warmup=5, sync=sync)


def render(results: dict, device: str) -> str:
    lines = [
        f"Device `{device}` ({results['gpu']}), torch {torch.__version__}, cuDNN {results['cudnn']}, "
        f"OpenCV {cv2.__version__}.",
        "",
        "Network against mmpose 0.x: the two small reference networks on mmpose's own preprocessed input of "
        "000000037516.jpg (no OpenCV crop involved); largest heatmap error relative to the heatmap's peak:",
        "",
        "| variant | hrnet_small | resnet_small |",
        "| --- | ---: | ---: |",
    ]
    for name, errors in results["heatmap_error"].items():
        lines.append(f"| {name} | {errors['hrnet_small']:.1e} | {errors['resnet_small']:.1e} |")
    if results["keypoint_shift"]:
        lines += [
            "",
            f"Keypoints of a trained model (`{results['trained']}`) on {results['trained_images']} synthetic images "
            "(ground-truth boxes, flip test), against our float32 output on the CPU: how far each GPU variant "
            "moves them, in pixels:",
            "",
            "| variant | mean px | 99th percentile px | largest px | moved > 1 px |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, row in results["keypoint_shift"].items():
            lines.append(f"| {name} | {row['mean_px']:.4f} | {row['p99_px']:.3f} | {row['max_px']:.2f} | "
                         f"{100 * row['moved_1px']:.2f}% of {row['keypoints']} |")
    batches = sorted({int(b) for row in results["pose_speed"] for b in row["ms"]})
    lines += [
        "",
        "HRNet-w32 (random weights) at 256x256, milliseconds per `infer_heatmaps` call (numpy in, numpy out; "
        "with the flip test, 2 crops = 1 animal, 6 crops = 3 animals), median of the repeats:",
        "",
        "| variant | " + " | ".join(f"{b} crops ms" for b in batches) + " |",
        "| --- |" + " ---: |" * len(batches),
    ]
    for row in results["pose_speed"]:
        lines.append(f"| {row['variant']} | " + " | ".join(f"{row['ms'][str(b)]:.2f}" for b in batches) + " |")
    lines += ["", "YOLO11n (random weights) at 640 on a 1280x720 frame, through `tracking.detector.Detector` "
              "(ultralytics' pre- and post-processing included): "
              + ", ".join(f"{k} {v:.2f} ms" for k, v in results["detector_ms"].items()) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 6, 16])
    parser.add_argument("--trained", type=Path, help="a trained pose checkpoint: also measure how far each GPU "
                        "variant moves its keypoints on synthetic images")
    parser.add_argument("--images", type=int, default=100, help="synthetic images for --trained")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument("--no-write", action="store_true", help="print the table instead of writing docs/benchmarks.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cuda = args.device.startswith("cuda")
    results: dict = {
        "gpu": torch.cuda.get_device_name(torch.device(args.device)) if cuda else "no GPU",
        "cudnn": torch.backends.cudnn.version(),
        "heatmap_error": {}, "keypoint_shift": {}, "pose_speed": [], "detector_ms": {},
    }
    variants = VARIANTS if cuda else VARIANTS[:1]
    for variant in variants:
        results["heatmap_error"][variant.name] = {
            name: heatmap_error(name, variant, args.device) for name in ("hrnet_small", "resnet_small")}
        logger.info("heatmap error %s: %s", variant.name, results["heatmap_error"][variant.name])
    if args.trained:
        from pose.checkpoint import load_pose_checkpoint

        size = load_pose_checkpoint(args.trained)[2] or (256, 256)
        images = trained_images(args.images, 4 * max(size))
        results.update(trained=args.trained.name, trained_images=len(images))
        reference = trained_keypoints(args.trained, PoseSettings(device="cpu"), images)
        for variant in variants:
            keypoints = trained_keypoints(args.trained, settings_of(variant, args.device), images)
            results["keypoint_shift"][variant.name] = keypoint_shift(keypoints, reference)
            logger.info("keypoint shift %s: %s", variant.name, results["keypoint_shift"][variant.name])
    for variant in variants:
        speed = pose_speed(variant, args.batches, args.repeats, args.device)
        results["pose_speed"].append({"variant": variant.name, "ms": {str(b): 1e3 * s for b, s in speed.items()}})
        logger.info("%s: %s", variant.name, results["pose_speed"][-1]["ms"])
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for half in (False, True) if cuda else (False,):
            key = "float16" if half else "float32"
            results["detector_ms"][key] = 1e3 * detector_speed(half, args.repeats, args.device, Path(tmp))
            logger.info("YOLO11n %s: %.2f ms", key, results["detector_ms"][key])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    body = render(results, args.device)
    if args.no_write:
        sys.stdout.write(body + "\n")
    else:
        command = "python -m bench.gpu_check " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section("gpu-check", body, command.strip(), title=f"CUDA paths: accuracy and cost ({args.device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
