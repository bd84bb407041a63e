"""The CUDA paths measured on a machine with a GPU: how exactly they reproduce mmpose, and what they cost.

Run: ``python -m bench.gpu_check [--device cuda] [--repeats 30] [--trained W | --quick-train EPOCHS] [--json F]
[--no-write]``

1. Accuracy of the pose network in EXACT (float32 without TF32, the default), EXACT with TF32
   convolutions, FAST (float16) and EXACT not channels-last, all replayed from CUDA graphs (the
   default on CUDA): the heatmaps of the two small reference networks (``tests/data/reference``,
   outputs of mmpose 0.x) on mmpose's own preprocessed input, against mmpose's; and with a trained
   checkpoint (``--trained W``, or one trained here for a few epochs with ``--quick-train``) how far
   each variant moves its keypoints from our CPU float32 output on synthetic images: the drift that
   FAST costs. (The small reference networks are untrained: their flat heatmaps make keypoint
   comparisons meaningless for them; and OpenCV 5's crops differ from OpenCV 4's, which mmpose's
   numbers were made with.)
2. Graph replay against eager calls: the largest difference between the heatmaps of a graph replay
   and of an eager call on the same padded batch, per precision (0 expected: the same kernels).
3. Speed of the pose network: HRNet-w32 (random weights) at 256x256, eager and from CUDA graphs,
   EXACT and FAST, on batches of 2, 6, 16 and 64 crops (1, 3 and 8 animals with the flip test, and a
   full bucket): milliseconds per ``infer_heatmaps`` call; and the whole ``PoseEstimator`` call for 3
   animals of a 1280x720 frame (crops, flip test, decoding).
4. Speed of the detector: YOLO11n (random weights) at 640 on a 1280x720 frame through
   :class:`tracking.detector.Detector`, ultralytics' ``predict`` against the CUDA-graph path, EXACT
   and FAST, and whether the two give the same boxes.

On the CPU only the EXACT eager rows run (graphs and FAST are CUDA only). Written to the
``gpu-check`` section of ``docs/benchmarks.md``.
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
from bench.report import command_line, write_section
from pose.estimator import Backend, PoseEstimator, PoseSettings, Precision
from pose.graphs import batch_buckets, bucket_for
from pose.model import hrnet_w32
from pose.transforms import xyxy_to_xywh

logger = logging.getLogger("bench.gpu_check")

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "reference"
JAGUAR = ROOT / "tests" / "data" / "samples" / "ap10k" / "000000037516.jpg"
JAGUAR_BOX = np.array([[66, 192, 1092, 512]], np.float32)  # its ground-truth box (x, y, w, h)
FRAME_BOXES = np.array([[100, 120, 420, 380], [520, 200, 900, 560], [880, 60, 1240, 420]], np.float32)  # xyxy


@dataclass(frozen=True)
class Variant:
    """One way of running a network on the GPU."""

    name: str
    precision: Precision = Precision.EXACT
    tf32: bool = False
    channels_last: bool = True
    cuda_graphs: bool = True


#: Accuracy: how each precision reproduces mmpose and moves a trained model's keypoints (graphs on).
VARIANTS = (
    Variant("exact (float32)"),
    Variant("exact + TF32", tf32=True),
    Variant("fast (float16)", precision=Precision.FAST),
    Variant("exact, not channels-last", channels_last=False),
)

#: Speed: eager calls against graph replays, in both precisions.
SPEED_VARIANTS = (
    Variant("exact, eager", cuda_graphs=False),
    Variant("exact, graphs"),
    Variant("exact + TF32, graphs", tf32=True),
    Variant("fast, eager", precision=Precision.FAST, cuda_graphs=False),
    Variant("fast, graphs", precision=Precision.FAST),
)

#: The detector: ultralytics' predict against the graph path, in both precisions.
DETECTOR_VARIANTS = (
    Variant("exact, predict", cuda_graphs=False),
    Variant("exact, graphs"),
    Variant("fast, predict", precision=Precision.FAST, cuda_graphs=False),
    Variant("fast, graphs", precision=Precision.FAST),
)


def settings_of(variant: Variant, device: str) -> PoseSettings:
    return PoseSettings(device=device, precision=variant.precision, channels_last=variant.channels_last,
                        tf32=variant.tf32, cuda_graphs=variant.cuda_graphs)


def variants_on(variants: tuple[Variant, ...], device: str) -> tuple[Variant, ...]:
    """The variants that mean something on ``device``: all on CUDA, EXACT without graphs or TF32 elsewhere."""
    if device.startswith("cuda"):
        return variants
    plain = tuple(v for v in variants if v.precision is Precision.EXACT and not v.tf32 and v.channels_last)
    return tuple(v for v in plain if not v.cuda_graphs) or plain[:1]


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


def quick_trained_checkpoint(folder: Path, device: str, images: int = 800, epochs: int = 30) -> Path:
    """A pose model trained here on synthetic images, for the keypoint drift when no trained checkpoint is
    given: hrnet_tiny_s2 at 96x96 as the synthetic benchmark's, but on ``images`` images for ``epochs``
    epochs (under a minute on a GPU). Its heatmaps peak as a trained model's do, which the drift needs."""
    from train.synthetic import DatasetSettings, write_dataset
    from train.train_pose import PoseTrainSettings, default_heatmap_size, train

    data = folder / "data"
    write_dataset(data, DatasetSettings(num_images=images, width=256, height=256, seed=7, formats=("ap10k",)))
    annotations = data / "annotations"
    settings = PoseTrainSettings(
        train_ann=annotations / "ap10k-train-split1.json", val_ann=annotations / "ap10k-val-split1.json",
        image_root=data / "data", output_dir=folder / "run", arch="hrnet_tiny_s2", input_size=(96, 96),
        heatmap_size=default_heatmap_size((96, 96), "hrnet_tiny_s2"), epochs=epochs, batch_size=32, lr=2e-3,
        lr_steps=(max(1, round(0.8 * epochs)),), warmup_iters=50, eval_interval=epochs, device=device,
        amp=device.startswith("cuda"), workers=4 if device.startswith("cuda") else 0, progress=False,
    )
    result = train(settings)
    logger.info("quick-trained pose model: AP %.3f after %d epochs on %d images", result.best_ap, epochs, images)
    return result.best_checkpoint


def _sync(device: str):
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def pose_speed(variant: Variant, batches: list[int], repeats: int, device: str) -> dict[str, float]:
    """Milliseconds per ``infer_heatmaps`` call of HRNet-w32 for each batch size, and (key ``"frame"``) per
    whole estimator call for the 3 animals of a 1280x720 frame with the flip test."""
    torch.manual_seed(0)
    estimator = PoseEstimator(hrnet_w32(), settings_of(variant, device))
    warmup = 5 if device.startswith("cuda") else 1  # the first calls capture the graphs
    rng = np.random.default_rng(0)
    out = {}
    for batch in batches:
        x = rng.standard_normal((batch, 3, 256, 256)).astype(np.float32)
        out[str(batch)] = 1e3 * timeit(lambda x=x: estimator.infer_heatmaps(x), repeats, warmup, _sync(device))
    frame = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    out["frame"] = 1e3 * timeit(lambda: estimator(frame, FRAME_BOXES), repeats, warmup, _sync(device))
    return out


def replay_difference(precision: Precision, device: str, sizes: tuple[int, ...] = (5, 20)) -> float:
    """Largest absolute difference between HRNet-w32's heatmaps replayed from CUDA graphs and eager calls on
    the same padded batches (0: the same kernels ran)."""
    torch.manual_seed(0)
    model = hrnet_w32()
    graphed = PoseEstimator(model, PoseSettings(device=device, precision=precision))
    eager = PoseEstimator(model, PoseSettings(device=device, precision=precision, cuda_graphs=False))
    buckets = batch_buckets(graphed.settings.max_batch)
    rng = np.random.default_rng(1)
    worst = 0.0
    for n in sizes:
        x = rng.standard_normal((n, 3, 256, 256)).astype(np.float32)
        padded = np.concatenate([x, np.zeros((bucket_for(n, buckets) - n, 3, 256, 256), np.float32)])
        worst = max(worst, float(np.abs(graphed.infer_heatmaps(x) - eager.infer_heatmaps(padded)[:n]).max()))
    return worst


def detector_speed(variant: Variant, repeats: int, device: str, folder: Path) -> tuple[float, object]:
    """Milliseconds per 1280x720 frame of YOLO11n (random weights) through :class:`tracking.detector.Detector`,
    and the frame's detections."""
    from ultralytics import YOLO

    from tracking.detector import Detector, DetectorSettings

    path = folder / "yolo11n_random.pt"
    if not path.exists():
        torch.manual_seed(0)
        YOLO("yolo11n.yaml").save(str(path))
    detector = Detector(DetectorSettings(weights=path, device=device, precision=variant.precision,
                                         cuda_graphs=variant.cuda_graphs))
    frame = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    warmup = 5 if device.startswith("cuda") else 1
    ms = 1e3 * timeit(lambda: detector(frame), repeats, warmup, _sync(device))
    logger.info("YOLO11n %s (%s): %.2f ms", variant.name, detector.path.value, ms)
    return ms, detector(frame)


def same_detections(a, b) -> bool:
    return (np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.scores, b.scores)
            and np.array_equal(a.class_ids, b.class_ids))


def render(results: dict, device: str) -> str:
    lines = [
        f"Device `{device}` ({results['gpu']}), torch {torch.__version__}, cuDNN {results['cudnn']}, "
        f"OpenCV {cv2.__version__}.",
        "",
        "Network against mmpose 0.x: the two small reference networks on mmpose's own preprocessed input of "
        "000000037516.jpg (no OpenCV crop involved), from CUDA graphs on a GPU; largest heatmap error relative "
        "to the heatmap's peak:",
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
    if results.get("replay_vs_eager"):
        lines += ["", "CUDA-graph replay against eager calls on the same padded batches (HRNet-w32, 5 and 20 "
                  "crops padded to 6 and 24), largest absolute heatmap difference: "
                  + ", ".join(f"{k} {v:.1e}" for k, v in results["replay_vs_eager"].items()) + "."]
    batches = sorted({k for row in results["pose_speed"] for k in row["ms"] if k != "frame"}, key=int)
    lines += [
        "",
        "HRNet-w32 (random weights) at 256x256, milliseconds per `infer_heatmaps` call (numpy in, numpy out; "
        "with the flip test, 2 crops = 1 animal, 6 crops = 3 animals, 16 crops = 8 animals), and per whole "
        "`PoseEstimator` call for 3 animals of a 1280x720 frame (crops, flip test on the device, decoding); "
        "median of the repeats:",
        "",
        "| variant | " + " | ".join(f"{b} crops ms" for b in batches) + " | 3 animals, whole call ms |",
        "| --- |" + " ---: |" * (len(batches) + 1),
    ]
    for row in results["pose_speed"]:
        lines.append(f"| {row['variant']} | " + " | ".join(f"{row['ms'][b]:.2f}" for b in batches)
                     + f" | {row['ms']['frame']:.2f} |")
    lines += ["", "YOLO11n (random weights) at 640 on a 1280x720 frame, through `tracking.detector.Detector` "
              "(letterbox, network, NMS): " + ", ".join(f"{k} {v:.2f} ms" for k, v in results["detector_ms"].items())
              + "."]
    if results.get("detector_same_boxes"):
        lines.append("Graph path and ultralytics' predict give the same boxes: "
                     + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in results["detector_same_boxes"].items())
                     + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 6, 16, 64])
    parser.add_argument("--trained", type=Path, help="a trained pose checkpoint: also measure how far each GPU "
                        "variant moves its keypoints on synthetic images")
    parser.add_argument("--quick-train", type=int, default=0, metavar="EPOCHS",
                        help="without --trained: train a small pose model here for EPOCHS epochs (30: under a "
                        "minute on a GPU) and measure the keypoint drift on it")
    parser.add_argument("--quick-train-images", type=int, default=800, help="synthetic images for --quick-train")
    parser.add_argument("--images", type=int, default=100, help="synthetic images for the keypoint drift")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument("--no-write", action="store_true", help="print the table instead of writing docs/benchmarks.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cuda = args.device.startswith("cuda")
    results: dict = {
        "gpu": torch.cuda.get_device_name(torch.device(args.device)) if cuda else "no GPU",
        "cudnn": torch.backends.cudnn.version(),
        "heatmap_error": {}, "keypoint_shift": {}, "replay_vs_eager": {}, "pose_speed": [], "detector_ms": {},
        "detector_same_boxes": {},
    }
    variants = variants_on(VARIANTS, args.device)
    for variant in variants:
        results["heatmap_error"][variant.name] = {
            name: heatmap_error(name, variant, args.device) for name in ("hrnet_small", "resnet_small")}
        logger.info("heatmap error %s: %s", variant.name, results["heatmap_error"][variant.name])
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        trained = args.trained
        if trained is None and args.quick_train > 0:
            trained = quick_trained_checkpoint(Path(tmp) / "quick", args.device, args.quick_train_images,
                                               args.quick_train)
            results["quick_train"] = {"epochs": args.quick_train, "images": args.quick_train_images}
        if trained is not None:
            from pose.checkpoint import load_pose_checkpoint

            size = load_pose_checkpoint(trained)[2] or (256, 256)
            images = trained_images(args.images, 4 * max(size))
            results.update(trained=Path(trained).name if args.trained else f"quick-trained, {args.quick_train} epochs",
                           trained_images=len(images))
            reference = trained_keypoints(trained, PoseSettings(device="cpu", backend=Backend.TORCH), images)
            for variant in variants[:3]:  # exact, exact + TF32, fast
                keypoints = trained_keypoints(trained, settings_of(variant, args.device), images)
                results["keypoint_shift"][variant.name] = keypoint_shift(keypoints, reference)
                logger.info("keypoint shift %s: %s", variant.name, results["keypoint_shift"][variant.name])
        if cuda:
            for precision in Precision:
                results["replay_vs_eager"][precision.value] = replay_difference(precision, args.device)
                logger.info("replay vs eager %s: %.1e", precision.value, results["replay_vs_eager"][precision.value])
        for variant in variants_on(SPEED_VARIANTS, args.device):
            speed = pose_speed(variant, args.batches, args.repeats, args.device)
            results["pose_speed"].append({"variant": variant.name, "ms": speed})
            logger.info("%s: %s", variant.name, speed)
        found = {}
        for variant in variants_on(DETECTOR_VARIANTS, args.device):
            results["detector_ms"][variant.name], found[variant.name] = detector_speed(
                variant, args.repeats, args.device, Path(tmp))
        for precision in ("exact", "fast"):
            if f"{precision}, graphs" in found:
                results["detector_same_boxes"][precision] = same_detections(found[f"{precision}, graphs"],
                                                                            found[f"{precision}, predict"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    body = render(results, args.device)
    if args.no_write:
        sys.stdout.write(body + "\n")
    else:
        command = command_line("bench.gpu_check", argv)
        write_section("gpu-check", body, command, title=f"CUDA paths: accuracy and cost ({args.device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
