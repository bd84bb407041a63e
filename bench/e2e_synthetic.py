"""End-to-end proof on the synthetic world (``python -m bench.e2e_synthetic``).

Everything from scratch on this machine, no downloaded weights:

1. render a synthetic AP-10K-format dataset (``train.synthetic.write_dataset``) for the pose model and,
   for the detector, frames of short clips like the ones it will track (``train.synthetic.frames``;
   ``--det-data images`` trains it on the pose model's images instead);
2. train a small HRNet (``hrnet_tiny_s2`` by default) and a YOLO11 from its YAML (narrower than YOLO11n
   by default, ``--det-width``) for a given number of epochs;
3. score the pose model on the held-out test images with ground-truth boxes (COCO OKS AP, AP-10K
   sigmas, flip test) and the detector on the held-out test split of its data, and on the pose
   model's test images (box AP50, pycocotools);
4. render held-out clips of three crossing animals, run ``animalpose track`` on them with the trained
   weights (smoothing none, causal, offline) and score the final JSON against the truth
   (``train.e2e.score_clip``): IDF1 / MOTA / ID switches, per-frame OKS AP, keypoint RMSE and jitter.

The table goes into ``docs/benchmarks.md`` (section "e2e-synthetic").

Training length is given in epochs (``--pose-epochs``, ``--det-epochs``), or for the detector in minutes
(``--det-minutes``); the report states how long training took and the load average, since the machine may
be shared.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import shlex
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.report import write_section
from train.e2e import score_clip
from train.train_detector import YOLO11N_WIDTH

logger = logging.getLogger(__name__)

SMOOTHING_MODES = ("none", "causal", "offline")
VIDEO_SEED_OFFSET = 1000  # clip seeds start here, away from every dataset seed
CLIP_FPS = 15.0  # frame rate of the held-out clips and of the detector's training clips
LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=Path("runs/e2e_synthetic"), help="datasets, weights, outputs")
    parser.add_argument("--pose-epochs", type=int, default=88,
                        help="pose training epochs (default 88: about 29 min beside the detector, on this project's "
                        "2-core machine)")
    parser.add_argument("--det-epochs", type=int, default=28,
                        help="detector training epochs (default 28: about 28 min at the default width and size)")
    parser.add_argument("--det-minutes", type=float, default=None,
                        help="train the detector for this many minutes instead of --det-epochs (ultralytics fits "
                        "the epochs to the time)")
    parser.add_argument("--det-seed", type=int, default=None,
                        help="the detector's training seed (default --seed; the data and clips stay those of --seed)")
    parser.add_argument("--images", type=int, default=2000, help="synthetic images (80%% train, 10%% val, 10%% test)")
    parser.add_argument("--image-size", type=int, default=256, help="synthetic image width and height in pixels")
    parser.add_argument("--pose-arch", default="hrnet_tiny_s2",
                        help="a name of pose.model.ARCHITECTURES; rtmpose_m (SimCC, built for --pose-input, a "
                        "multiple of 32) trains with its config's optimiser and schedule (AdamW, flat then cosine)")
    parser.add_argument("--pose-input", type=int, default=96, help="pose input width and height in pixels")
    parser.add_argument("--pose-batch", type=int, default=32)
    parser.add_argument("--pose-lr", type=float, default=None,
                        help="default 2e-3 for heatmap models, the recipe's 4e-3 for SimCC models")
    parser.add_argument("--pose-rotation", type=float, default=15.0,
                        help="rotation augmentation factor in degrees (default 15; the AP-10K recipe's is 40)")
    parser.add_argument("--pose-rotation-prob", type=float, default=0.3,
                        help="probability of a rotation (default 0.3; AP-10K: 0.6)")
    parser.add_argument("--pose-scale", type=float, default=0.25,
                        help="scale augmentation factor (default 0.25; AP-10K: 0.5)")
    parser.add_argument("--pose-half-body", type=float, default=0.1,
                        help="probability of a half-body crop (default 0.1; AP-10K: 0.3)")
    parser.add_argument("--det-data", choices=("frames", "images"), default="frames",
                        help="detector training data: frames of short synthetic clips at --video-size "
                        "(train.synthetic.frames, the default) or the pose model's still images")
    parser.add_argument("--det-clips", type=int, default=200,
                        help="with --det-data frames: clips to sample (80/10/10 train/val/test; default 200)")
    parser.add_argument("--det-frames-per-clip", type=int, default=10,
                        help="with --det-data frames: frames kept per clip (default 10: 200 clips of 10 frames "
                        "gave fewer false boxes on unfamiliar backgrounds than 100 of 20)")
    parser.add_argument("--det-imgsz", type=int, default=256,
                        help="detector training and test size (default 256; the clips are tracked at --track-imgsz)")
    parser.add_argument("--det-width", type=float, default=0.1875,
                        help=f"the detector's channel width multiplier ({YOLO11N_WIDTH:g}: YOLO11n; default 0.1875, "
                        "1.4x faster per epoch: 28 of its epochs beat 20 of YOLO11n's on the validation clips)")
    parser.add_argument("--det-batch", type=int, default=16)
    parser.add_argument("--track-imgsz", type=int, default=None,
                        help="detector input size when tracking the clips (default: the clips' own size, rounded up "
                        "to a multiple of 32: better than the training size on the validation clips with either data)")
    parser.add_argument("--max-lost", type=float, default=None,
                        help="seconds an unseen animal keeps its identity when tracking (animalpose track --max-lost; "
                        "default: animalpose track's)")
    parser.add_argument("--appearance", type=float, default=None,
                        help="weight of the colour-histogram appearance cue when tracking (animalpose track "
                        "--appearance; default: animalpose track's; 0: boxes and motion only)")
    parser.add_argument("--min-hits", type=int, default=None,
                        help="consecutive detections before an animal gets an identity (animalpose track --min-hits; "
                        "default: animalpose track's)")
    parser.add_argument("--det-iou", type=float, default=None,
                        help="IoU of the detector's non-maximum suppression when tracking (animalpose track --det-iou; "
                        "default: animalpose track's)")
    parser.add_argument("--videos", type=int, default=30,
                        help="held-out 3-animal clips (default 30: one clip's IDF1 ranges from about 0.3 to 0.95, "
                        "so the mean of a few clips says little)")
    parser.add_argument("--frames", type=int, default=150, help="frames per clip")
    parser.add_argument("--video-size", type=int, nargs=2, default=[320, 256], metavar=("W", "H"),
                        help="size of the clips and of the detector's training frames (default 320 256)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrent", action="store_true",
                        help="train the detector in a second process while the pose model trains, one core each; "
                        "once the pose model is done the detector takes every core")
    parser.add_argument("--pose-shared-epochs", type=int, default=None,
                        help="with --concurrent: pose epochs trained beside the detector; the rest resume on "
                        "every core once the detector is done (default: all of them beside it)")
    parser.add_argument("--pose-only", action="store_true",
                        help="only train and score the pose model (on the dataset in --out-dir, made if missing): "
                        "another architecture for the detector and clips of an earlier run, as bench.profiles "
                        "--realtime-pose takes it; writes pose/ and pose_summary.json, not docs/benchmarks.md")
    parser.add_argument("--detector-beside", type=Path, default=None, metavar="RUN",
                        help="train only a detector (--det-seed, --det-epochs or --det-minutes, --det-width, "
                        "--det-imgsz) beside the earlier run RUN, reusing its datasets, pose model and clips (linked, "
                        "the clips copied), then track and score the clips into --out-dir: another detector seed "
                        "of the same recipe")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    parser.add_argument("--rescore", action="store_true",
                        help="only track the clips of the earlier run in --out-dir again, with its weights (after a "
                        "change in tracking); its training numbers are kept")
    return parser


# -- data ------------------------------------------------------------------------------------------


def make_dataset(out: Path, images: int, size: int, seed: int) -> Path:
    from train.synthetic import DatasetSettings, write_dataset

    if not (out / "data.yaml").is_file():
        write_dataset(out, DatasetSettings(num_images=images, width=size, height=size, seed=seed))
    return out


def make_frames(out: Path, clips: int, frames_per_clip: int, video_size: list[int] | tuple[int, int],
                seed: int) -> tuple[Path, dict]:
    """Frames of ``clips`` short clips at ``video_size`` and the held-out clips' frame rate (whose seeds
    ``VIDEO_SEED_OFFSET + ...`` the frames' clips do not use: theirs are drawn from ``[seed, clip]``).
    Returns the folder and the clips and frames per split."""
    from train.synthetic.frames import FrameDatasetSettings, write_frame_dataset

    settings = FrameDatasetSettings(num_clips=clips, frames_per_clip=frames_per_clip, width=video_size[0],
                                    height=video_size[1], fps=CLIP_FPS, seed=seed)
    if not (out / "data.yaml").is_file():
        write_frame_dataset(out, settings)
    clips_per_split = settings.split_sizes()
    frames = {split: n * settings.frames_per_clip for split, n in clips_per_split.items()}
    return out, {"clips": clips_per_split, "frames": frames}


def annotation_file(dataset: Path, split: str) -> Path:
    return dataset / "annotations" / f"ap10k-{split}-split1.json"


# -- pose ------------------------------------------------------------------------------------------


def pose_settings(dataset: Path, out: Path, args: argparse.Namespace, epochs: int, resume: Path | None = None):
    """Training settings; the schedule (learning-rate step, evaluations) follows ``args.pose_epochs`` even
    when this run stops earlier at ``epochs`` (a first part that a ``resume`` run continues)."""
    from pose.model import ARCHITECTURES
    from pose.topdown import SimCCCodec
    from train.augment import AugmentSettings
    from train.train_pose import PoseTrainSettings, default_heatmap_size, recipe_defaults

    size, total = args.pose_input, args.pose_epochs
    augment = AugmentSettings(rotation_factor=args.pose_rotation, rotation_prob=args.pose_rotation_prob,
                              scale_factor=args.pose_scale, half_body_prob=args.pose_half_body)
    # A SimCC model takes its config's optimiser, weight decay and schedule; heatmap models this benchmark's Adam.
    arch = ARCHITECTURES[args.pose_arch]
    simcc = isinstance(arch.codec, SimCCCodec)
    recipe = recipe_defaults(arch) if simcc else {}
    optimisation = {name: recipe[name] for name in ("optimizer", "weight_decay", "lr_schedule", "min_lr_ratio")
                    if name in recipe}
    lr = args.pose_lr if args.pose_lr is not None else (recipe["lr"] if simcc else 2e-3)
    return PoseTrainSettings(
        train_ann=annotation_file(dataset, "train"), val_ann=annotation_file(dataset, "val"),
        test_ann=annotation_file(dataset, "test"), image_root=dataset / "data", output_dir=out,
        arch=args.pose_arch, input_size=(size, size), heatmap_size=default_heatmap_size((size, size), args.pose_arch),
        epochs=epochs, schedule_epochs=total, batch_size=args.pose_batch, lr=lr,
        lr_steps=(max(1, math.ceil(0.8 * total)),), warmup_iters=50, **optimisation, eval_interval=max(1, total // 4),
        workers=0, device=args.device, seed=args.seed, progress=False, resume=resume, augment=augment,
    )


def train_pose(dataset: Path, out: Path, args: argparse.Namespace, epochs: int | None = None,
               resume: bool = False) -> tuple[dict, float]:
    """Train the pose model up to ``epochs`` (default all), continuing ``out/last.pth`` when ``resume``;
    returns the final test metrics (GT boxes, flip test) and the seconds taken."""
    from train.train_pose import train

    epochs = args.pose_epochs if epochs is None else epochs
    start = time.perf_counter()
    result = train(pose_settings(dataset, out, args, epochs, out / "last.pth" if resume else None))
    elapsed = time.perf_counter() - start
    logger.info("pose: up to epoch %d in %.0f s", epochs, elapsed)
    return result.final_metrics, elapsed


def pose_ap(dataset: Path, weights: Path, size: int, device: str, post_process) -> dict[str, float]:
    """COCO keypoint AP of ``weights`` (input ``size`` x ``size`` pixels) on the test split (ground-truth boxes,
    flip test) with ``post_process``."""
    import torch
    from torch.utils.data import DataLoader

    from pose.checkpoint import load_pose_model
    from pose.model import PoseArchitecture
    from pose.topdown import codec_of
    from train.dataset import AP10KDataset
    from train.engine import evaluate
    from train.targets import training_targets

    model, arch = load_pose_model(weights, map_location=device)
    # The crops and decoding of the model's codec: 0.x heatmaps, or 1.x SimCC (which post_process leaves alone).
    heatmap = size // arch.output_stride if isinstance(arch, PoseArchitecture) else size // 4
    targets = training_targets(codec_of(model), (size, size), (heatmap, heatmap))
    test_set = AP10KDataset(annotation_file(dataset, "test"), dataset / "data", train=False, targets=targets)
    result = evaluate(model, DataLoader(test_set, batch_size=32), torch.device(device), test_set.ground_truth(),
                      progress=False, post_process=post_process)
    return {"AP": float(result.metrics.AP), "AP50": float(result.metrics.AP50)}


# -- detector --------------------------------------------------------------------------------------


def detector_name(width: float) -> str:
    """The detector's name, and its folder under ``OUT/detector``: ``yolo11n`` or ``yolo11-w<width>``."""
    return "yolo11n" if width == YOLO11N_WIDTH else f"yolo11-w{width:g}"


def detector_label(width: float) -> str:
    """The detector's architecture in words, for the report."""
    return "YOLO11n" if width == YOLO11N_WIDTH else f"YOLO11 at channel width {width:g} (YOLO11n: {YOLO11N_WIDTH:g})"


def train_yolo(dataset: Path, out: Path, args: argparse.Namespace,
               all_cores_after=None) -> tuple[Path, float, int]:
    """A YOLO11 of width ``--det-width`` from its YAML (no pretrained weights) for ``--det-epochs`` or
    ``--det-minutes``; from the first epoch that starts after the event ``all_cores_after`` is set (a
    ``multiprocessing`` event: the pose model beside it is done), torch runs on every core. Returns
    ``best.pt``, the seconds taken and the epochs trained."""
    from train.train_detector import DetectorTrainSettings, train_detector, yolo11_yaml

    if not logging.getLogger().handlers:  # a spawned process of --concurrent
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    model = "yolo11n.yaml" if args.det_width == YOLO11N_WIDTH else str(yolo11_yaml(out, args.det_width))
    settings = DetectorTrainSettings(data=dataset / "data.yaml", model=model, epochs=args.det_epochs,
                                     minutes=args.det_minutes, image_size=args.det_imgsz, batch=args.det_batch,
                                     device=args.device, workers=0, output_dir=out, name=detector_name(args.det_width),
                                     seed=detector_seed(args), amp=False)
    callbacks = {} if all_cores_after is None else {"on_train_epoch_start": take_all_cores(all_cores_after)}
    start = time.perf_counter()
    weights = train_detector(settings, callbacks)
    elapsed = time.perf_counter() - start
    epochs = epochs_trained(weights.parent.parent)  # RUN/weights/best.pt
    logger.info("detector: %d epochs in %.0f s", epochs, elapsed)
    return weights, elapsed, epochs


def detector_seed(args: argparse.Namespace) -> int:
    """The detector's training seed: ``--det-seed``, else ``--seed``."""
    return args.seed if args.det_seed is None else args.det_seed


def take_all_cores(event):
    """An ultralytics ``on_train_epoch_start`` callback: once ``event`` is set, torch runs on every core."""

    def callback(trainer) -> None:
        import torch

        cores = os.cpu_count() or 1
        if event.is_set() and torch.get_num_threads() < cores:
            torch.set_num_threads(cores)
            logger.info("detector: the pose model is done, %d threads from epoch %d", cores, trainer.epoch + 1)

    return callback


def epochs_trained(run: Path) -> int:
    """Epochs an ultralytics run in folder ``run`` completed (the rows of its ``results.csv``)."""
    results = run / "results.csv"
    if not results.is_file():
        return 0
    return max(0, len(results.read_text().strip().splitlines()) - 1)


def detector_scores(weights: Path, det_dataset: Path, pose_dataset: Path, args: argparse.Namespace
                    ) -> dict[str, float]:
    """Box AP and AP50 on the detector's own test split and, when it trained on clip frames (not the pose
    model's images), AP50 on the pose model's test images too (``AP50_images``)."""
    scores = detector_ap50(weights, det_dataset, args)
    if det_dataset.resolve() != pose_dataset.resolve():
        scores["AP50_images"] = detector_ap50(weights, pose_dataset, args)["AP50"]
    return scores


def detector_ap50(weights: Path, dataset: Path, args: argparse.Namespace) -> dict[str, float]:
    """Box AP and AP50 (pycocotools, one class) of the detector on the held-out test images."""
    import cv2
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from tracking.detector import Detector, DetectorSettings

    gt = json.loads(annotation_file(dataset, "test").read_text())
    for annotation in gt["annotations"]:
        annotation["category_id"] = 1
        annotation.setdefault("iscrowd", 0)
    gt["categories"] = [{"id": 1, "name": "animal"}]
    detector = Detector(DetectorSettings(weights=weights, confidence=0.001, image_size=args.det_imgsz,
                                         device=args.device))
    results = []
    for image in gt["images"]:
        detections = detector(cv2.imread(str(dataset / "data" / image["file_name"])))
        for (x1, y1, x2, y2), score in zip(detections.xyxy.tolist(), detections.scores.tolist()):
            results.append({"image_id": image["id"], "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": score})
    if not results:
        return {"AP": 0.0, "AP50": 0.0}
    coco_gt = COCO()
    coco_gt.dataset = gt
    coco_gt.createIndex()
    evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return {"AP": float(evaluator.stats[0]), "AP50": float(evaluator.stats[1])}


# -- tracking --------------------------------------------------------------------------------------


def native_imgsz(video_size: list[int] | tuple[int, int]) -> int:
    """The detector input size that keeps a ``(width, height)`` clip at its own scale (a multiple of 32)."""
    return 32 * math.ceil(max(video_size) / 32)


def render_clips(out: Path, videos: int, frames: int, video_size: list[int] | tuple[int, int],
                 seed: int) -> list[tuple[Path, dict]]:
    """The held-out clips ``crossing_{k}.mp4`` (seed ``VIDEO_SEED_OFFSET + seed + k``) and their truth, rendering
    those not in ``out`` yet."""
    from train.synthetic import VideoSettings, render_video

    clips = []
    for k in range(videos):
        path = out / f"crossing_{k}.mp4"
        if path.is_file() and path.with_suffix(".json").is_file():
            clips.append((path, json.loads(path.with_suffix(".json").read_text())))
            continue
        settings = VideoSettings(num_animals=3, num_frames=frames, width=video_size[0], height=video_size[1],
                                 fps=CLIP_FPS, seed=VIDEO_SEED_OFFSET + seed + k)
        clips.append((path, render_video(path, settings)))
    return clips


@dataclass(frozen=True)
class TrackOptions:
    """How the clips are tracked: detector input size (pixels), seconds an unseen animal keeps its identity,
    detections before an identity, weight of the appearance cue, IoU of the detector's non-maximum suppression
    (``animalpose track --det-imgsz --max-lost --min-hits --appearance --det-iou``)."""

    det_imgsz: int
    max_lost: float
    min_hits: int
    appearance: float
    det_iou: float


def load_model(pose: Path, det: Path | None, device: str, options: TrackOptions):
    """The :class:`animalpose.Model` that ``animalpose track --pose-weights POSE --det-weights DET --no-flip
    --post-process dark --det-imgsz --det-iou`` loads (``det`` None: the default detector)."""
    import animalpose
    from pose.codec import PostProcess
    from pose.estimator import PoseSettings
    from tracking.detector import DEFAULT_DETECTOR_WEIGHTS, DetectorSettings, is_release_name

    weights = str(det) if det is not None else DEFAULT_DETECTOR_WEIGHTS
    detector = DetectorSettings(weights=weights, image_size=options.det_imgsz, iou=options.det_iou,
                                allow_download=is_release_name(weights))
    return animalpose.load(pose, detector, device=device,
                           pose_settings=PoseSettings(flip_test=False, post_process=PostProcess.DARK))


def track_clip(model, clip: Path, smoothing: str, out: Path, options: TrackOptions) -> tuple[list[dict], float]:
    """Track ``clip`` with ``model`` as ``animalpose track --json --smoothing --max-lost --min-hits --appearance``
    does; returns the JSON frames and the seconds it took."""
    from app.runs import OutputPaths

    json_path = out / f"{clip.stem}_{smoothing}.json"
    outputs = OutputPaths(json=json_path, jsonl=json_path.with_suffix(".jsonl"))
    start = time.perf_counter()
    model.track(clip, outputs=outputs, smoothing=smoothing, max_lost_s=options.max_lost, min_hits=options.min_hits,
                appearance=options.appearance, progress_bar=False)
    return json.loads(json_path.read_text())["frames"], time.perf_counter() - start


def track_all(clips: list[tuple[Path, dict]], pose: Path, det: Path, out: Path, device: str,
              options: TrackOptions) -> dict[str, dict[str, float]]:
    """Mean scores over ``clips`` of ``animalpose track`` in each smoothing mode, and the lowest IDF1 of a
    clip (``idf1_min``)."""
    model = load_model(pose, det, device, options)
    tracking = {}
    for mode in SMOOTHING_MODES:
        rows = []
        for clip, gt in clips:
            frames, seconds = track_clip(model, clip, mode, out, options)
            rows.append({**score_clip(gt, frames), "seconds": seconds})
            logger.info("%s %s: %s", clip.name, mode, rows[-1])
        tracking[mode] = {**mean_scores(rows), "idf1_min": min(row["idf1"] for row in rows)}
    return tracking


def rescore(args: argparse.Namespace) -> dict:
    """Track the clips of the earlier run in ``--out-dir`` again with its weights (after a change in
    tracking or decoding), first rendering the clips up to ``--videos`` it lacks; the training part of its
    summary is kept. Returns the updated summary."""
    out = args.out_dir
    summary = json.loads((out / "summary.json").read_text())
    if not (out / "pose" / "best.pth").is_file():
        raise FileNotFoundError(f"no weights in {out}: run the benchmark without --rescore first")
    clips = render_clips(out / "clips", args.videos, summary["frames"], summary["video_size"], args.seed)
    summary["videos"] = len(clips)
    pose_weights = out / "pose" / "best.pth"
    det_weights = out / "detector" / summary["detector"].get("name", "yolo11n") / "weights" / "best.pt"
    if "AP_dark" not in summary["pose"]:
        from pose.codec import PostProcess

        summary["pose"]["AP_dark"] = pose_ap(out / "dataset", pose_weights, summary["pose"]["input"], args.device,
                                             PostProcess.DARK)["AP"]
    options = track_options(args, summary["video_size"])
    summary.update(tracking_summary(options))
    summary["tracking"] = track_all(clips, pose_weights, det_weights, out / "tracks", args.device, options)
    summary["rescored"] = time.strftime("%Y-%m-%d")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def detector_beside(args: argparse.Namespace) -> dict:
    """``--detector-beside RUN``: a detector of ``--det-seed`` trained on RUN's data, then RUN's clips tracked with
    it and RUN's pose model; the summary (RUN's, its detector, training and tracking replaced) goes to
    ``--out-dir``/summary.json. Returns it."""
    base, out = args.detector_beside, args.out_dir
    summary = json.loads((base / "summary.json").read_text())
    load_start = os.getloadavg()[0]
    out.mkdir(parents=True, exist_ok=True)
    for name in ("dataset", "frames", "pose"):
        if (base / name).exists() and not (out / name).exists():
            (out / name).symlink_to((base / name).resolve(), target_is_directory=True)
    if (base / "clips").is_dir():
        shutil.copytree(base / "clips", out / "clips", dirs_exist_ok=True)
    det_dataset = out / ("frames" if summary["detector"].get("data", "frames") == "frames" else "dataset")
    det_weights, det_seconds, det_epochs = train_yolo(det_dataset, out / "detector", args)
    detector = {key: summary["detector"][key] for key in ("data", "clips", "frames") if key in summary["detector"]}
    detector.update(name=detector_name(args.det_width), width=args.det_width, epochs=det_epochs,
                    minutes=args.det_minutes, seed=detector_seed(args), seconds=det_seconds, imgsz=args.det_imgsz,
                    **detector_scores(det_weights, det_dataset, out / "dataset", args))
    clips = render_clips(out / "clips", args.videos, summary["frames"], summary["video_size"], args.seed)
    options = track_options(args, summary["video_size"])
    summary.update(detector=detector, training_seconds=det_seconds, concurrent=False, detector_all_cores=True,
                   videos=len(clips), beside=str(base), load_start=load_start, **tracking_summary(options),
                   tracking=track_all(clips, out / "pose" / "best.pth", det_weights, out / "tracks", args.device,
                                      options),
                   command="python -m bench.e2e_synthetic " + shlex.join(sys.argv[1:]))
    summary.pop("rescored", None)
    summary["load_end"] = os.getloadavg()[0]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def track_options(args: argparse.Namespace, video_size: list[int] | tuple[int, int]) -> TrackOptions:
    """The tracking options of ``args``; those not given are what ``animalpose track`` ships with."""
    from app.runs import TrackSettings
    from tracking.detector import DetectorSettings

    shipped = TrackSettings()

    def given(value, default):
        return default if value is None else value

    return TrackOptions(det_imgsz=args.track_imgsz or native_imgsz(video_size),
                        max_lost=given(args.max_lost, shipped.max_lost_s),
                        min_hits=given(args.min_hits, shipped.min_hits),
                        appearance=given(args.appearance, shipped.appearance),
                        det_iou=given(args.det_iou, DetectorSettings.iou))


def tracking_summary(options: TrackOptions) -> dict:
    """The summary's record of ``options``."""
    return {"tracking_imgsz": options.det_imgsz, "max_lost_s": options.max_lost, "min_hits": options.min_hits,
            "appearance": options.appearance, "det_iou": options.det_iou}


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.nanmean([row[key] for row in rows])) for key in rows[0]}


# -- report ----------------------------------------------------------------------------------------


def _num(value: float, digits: int) -> str:
    """``value`` rounded, or a dash when it is undefined (no keypoint reported, no track matched)."""
    return f"{value:.{digits}f}" if math.isfinite(value) else "–"


def _yes(value: float, target: float) -> str:
    return "yes" if value >= target else "no"


def _schedule(summary: dict) -> str:
    if summary.get("beside"):
        return "the detector alone"
    if not summary["concurrent"]:
        return "one model after the other"
    shared = summary["pose"].get("shared_epochs")
    if shared is None or shared >= summary["pose"]["epochs"]:
        if summary.get("detector_all_cores"):
            return "both models at once, one core each, then the detector on both cores once the pose model was done"
        return "both models at once, one core each"
    return (f"both models at once, one core each, for the pose model's first {shared} epochs; "
            "its other epochs on both cores after the detector finished")


def _augment_text(pose: dict) -> str:
    """The pose augmentation of a run's summary (runs before it was recorded used the AP-10K recipe)."""
    a = pose.get("augment")
    if a is None:
        return ""
    return (f", augmentation: rotation {a['rotation']:g}° with probability {a['rotation_prob']:g}, scale "
            f"±{a['scale']:g}, half-body crops {a['half_body']:g}")


def _det_data_text(summary: dict) -> str:
    det = summary["detector"]
    if det.get("data") != "frames":
        return "on the pose model's training images"
    return (f"on {det['frames']['train']} frames of {det['clips']['train']} synthetic clips at "
            f"{summary['video_size'][0]}×{summary['video_size'][1]}, other seeds than the held-out clips")


def _det_epochs_text(det: dict) -> str:
    if det.get("minutes") is None:
        return f"{det['epochs']} epochs"
    return f"{det['epochs']} epochs in {det['minutes']:g} min (`--det-minutes`), seed {det.get('seed', 0)}"


def _appearance_text(weight: float) -> str:
    if weight == 0:
        return "no appearance cue"
    return f"colour-histogram appearance cue of weight {weight:g} (`--appearance`)"


def render_table(summary: dict) -> str:
    pose, det, modes = summary["pose"], summary["detector"], summary["tracking"]
    det_split = "test split of its data, held-out clip frames" if det.get("data") == "frames" else "test split"
    lines = [
        f"Synthetic dataset: {summary['images']} images of {summary['image_size']}×{summary['image_size']} "
        f"pixels (80/10/10 train/val/test); {summary['videos']} held-out clips of 3 crossing animals, "
        f"{summary['frames']} frames at {summary['video_size'][0]}×{summary['video_size'][1]}, {CLIP_FPS:g} fps. "
        f"Training on CPU took {summary['training_seconds'] / 60:.1f} min of wall time ({_schedule(summary)}): "
        f"{pose['seconds'] / 60:.1f} min for the pose model ({pose['arch']}, {pose['epochs']} epochs, input "
        f"{pose['input']}×{pose['input']}{_augment_text(pose)}) and {det['seconds'] / 60:.1f} min for the "
        f"detector ({detector_label(det.get('width', YOLO11N_WIDTH))} from its YAML, {_det_epochs_text(det)}, "
        f"imgsz {det['imgsz']}, {_det_data_text(summary)}). Load average "
        f"{summary['load_start']:.1f} at the start, {summary['load_end']:.1f} at the end."
        + (f" Clips tracked again on {summary['rescored']} with the same weights (`--rescore`); the training "
           f"command was `{summary.get('command', 'not recorded')}`." if summary.get("rescored") else "")
        + (f" Only the detector was trained here (`--detector-beside`): the data, pose model and clips are those "
           f"of `{summary['beside']}`." if summary.get("beside") else ""),
        "",
        "### Models on held-out images",
        "",
        "| metric | value | target (30 min of training) | met |",
        "| --- | --- | --- | --- |",
        f"| pose OKS AP, ground-truth boxes, flip test, mmpose's default decoding (test split) | {pose['AP']:.3f} "
        f"| ≥ 0.6 | {_yes(pose['AP'], 0.6)} |",
        f"| pose OKS AP, as above with DARK decoding | {pose['AP_dark']:.3f} | ≥ 0.6 | {_yes(pose['AP_dark'], 0.6)} |",
        f"| detector box AP50 ({det_split}) | {det['AP50']:.3f} | ≥ 0.8 | {_yes(det['AP50'], 0.8)} |",
        *([f"| detector box AP50 on the pose model's test images | {det['AP50_images']:.3f} | – | – |"]
          if "AP50_images" in det else []),
        "",
        "### `animalpose track` on the clips",
        "",
        f"Means over clips. Trained detector (input {summary.get('tracking_imgsz', det['imgsz'])} px, non-maximum "
        f"suppression at IoU {summary.get('det_iou', 0.7):g}, `--det-iou`) and pose model, "
        f"an animal keeps its identity for {summary.get('max_lost_s', 3.0):g} s unseen (`--max-lost`), "
        f"{_appearance_text(summary.get('appearance', 0.0))}, an identity after {summary.get('min_hits', 2)} "
        "detections in a row (`--min-hits`), no flip test, DARK decoding; OKS AP per frame with the "
        "AP-10K sigmas; RMSE and jitter (mean |x(t+1) − 2x(t) + x(t−1)|, pixels/frame²) over the labelled "
        "keypoints of animals matched at IoU ≥ 0.5; truth jitter is the jitter of the true keypoints there; "
        "– where nothing was matched or no keypoint reported. IDF1 with perfect identities scores the same boxes, "
        "each given the identity of the animal it covers: the ceiling the misses and false positives leave, and "
        "its distance to IDF1 what identity errors cost.",
        "",
        ("| smoothing | IDF1 | IDF1 of the worst clip | IDF1 with perfect identities | MOTA | ID switches | OKS AP "
         "| OKS AP50 | RMSE (px) | jitter | truth jitter | s/clip |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode, row in modes.items():
        cells = [_num(row.get(key, math.nan), 3) for key in ("idf1", "idf1_min", "idf1_ideal", "mota")]
        cells += [_num(row["num_switches"], 1)]
        cells += [_num(row[key], 3) for key in ("oks_ap", "oks_ap50")]
        cells += [_num(row[key], 2) for key in ("rmse", "jitter", "truth_jitter")] + [_num(row["seconds"], 1)]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    idf1 = min(row["idf1"] for row in modes.values())
    lines += ["", f"IDF1 target ≥ 0.8 on the 3-animal crossing clips: lowest {idf1:.3f} over the smoothing modes "
              f"({_yes(idf1, 0.8)})."]
    return "\n".join(lines) + "\n"


def check_args(args: argparse.Namespace) -> None:
    """Raise ValueError or FileNotFoundError, in one line, for arguments the run cannot start with."""
    if not 0 < args.det_width <= 1:
        raise ValueError(f"--det-width must be in (0, 1], got {args.det_width}")
    base = args.detector_beside
    if base is not None and not args.rescore:
        if not (base / "summary.json").is_file() or not (base / "pose" / "best.pth").is_file():
            raise FileNotFoundError(f"no finished run in {base}: --detector-beside needs its summary.json and pose "
                                    "model")
        if args.out_dir.resolve() == base.resolve():
            raise ValueError("--out-dir must not be the run given to --detector-beside (its detector would be "
                             "replaced)")


def main(args: argparse.Namespace) -> dict:
    check_args(args)
    if args.rescore:
        return report(rescore(args), args)
    if args.detector_beside is not None:
        return report(detector_beside(args), args)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]
    dataset = make_dataset(out / "dataset", args.images, args.image_size, args.seed)
    if args.pose_only:
        return train_pose_only(dataset, out, args)
    det_dataset, det_counts = make_frames(out / "frames", args.det_clips, args.det_frames_per_clip, args.video_size,
                                          args.seed) \
        if args.det_data == "frames" else (dataset, {})
    start = time.perf_counter()
    if args.concurrent:
        from pose.threads import torch_threads

        # ultralytics trains on cpu_count - 1 threads on the CPU (one here); the pose model takes the other core.
        shared = args.pose_epochs if args.pose_shared_epochs is None else min(args.pose_shared_epochs, args.pose_epochs)
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager, ProcessPoolExecutor(1, mp_context=context) as pool:
            pose_done = manager.Event()
            detector_job = pool.submit(train_yolo, det_dataset, out / "detector", args, pose_done)
            with torch_threads(1):
                pose_metrics, pose_seconds = train_pose(dataset, out / "pose", args, shared)
            pose_done.set()
            det_weights, det_seconds, det_epochs = detector_job.result()
        if shared < args.pose_epochs:
            pose_metrics, more_seconds = train_pose(dataset, out / "pose", args, resume=True)
            pose_seconds += more_seconds
    else:
        pose_metrics, pose_seconds = train_pose(dataset, out / "pose", args)
        det_weights, det_seconds, det_epochs = train_yolo(det_dataset, out / "detector", args)
    training_seconds = time.perf_counter() - start
    det_metrics = {"data": args.det_data, **det_counts, **detector_scores(det_weights, det_dataset, dataset, args)}
    clips = render_clips(out / "clips", args.videos, args.frames, args.video_size, args.seed)
    pose_weights = out / "pose" / "best.pth"
    from pose.codec import PostProcess

    pose_dark = pose_ap(dataset, pose_weights, args.pose_input, args.device, PostProcess.DARK)
    options = track_options(args, args.video_size)
    tracking = track_all(clips, pose_weights, det_weights, out / "tracks", args.device, options)
    summary = {
        "images": args.images, "image_size": args.image_size, "videos": args.videos, "frames": args.frames,
        "video_size": list(args.video_size),
        "pose": {"arch": args.pose_arch, "input": args.pose_input, "epochs": args.pose_epochs, "seconds": pose_seconds,
                 "AP": float(pose_metrics["AP"]), "AP50": float(pose_metrics["AP50"]), "AP_dark": pose_dark["AP"],
                 "shared_epochs": args.pose_shared_epochs if args.concurrent else None,
                 "augment": {"rotation": args.pose_rotation, "rotation_prob": args.pose_rotation_prob,
                             "scale": args.pose_scale, "half_body": args.pose_half_body}},
        "detector": {"name": detector_name(args.det_width), "width": args.det_width, "epochs": det_epochs,
                     "minutes": args.det_minutes, "seed": detector_seed(args),
                     "seconds": det_seconds, "imgsz": args.det_imgsz, **det_metrics},
        "training_seconds": training_seconds, "concurrent": args.concurrent, "detector_all_cores": args.concurrent,
        **tracking_summary(options), "tracking": tracking, "load_start": load_start,
        "load_end": os.getloadavg()[0],
    }
    summary["command"] = "python -m bench.e2e_synthetic " + shlex.join(sys.argv[1:])
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return report(summary, args)


def train_pose_only(dataset: Path, out: Path, args: argparse.Namespace) -> dict:
    """``--pose-only``: train the pose model on ``dataset`` and score it on its test split (ground-truth boxes,
    flip test); the summary goes to ``out/pose_summary.json``."""
    from pose.codec import PostProcess

    metrics, seconds = train_pose(dataset, out / "pose", args)
    dark = pose_ap(dataset, out / "pose" / "best.pth", args.pose_input, args.device, PostProcess.DARK)
    summary = {"arch": args.pose_arch, "input": args.pose_input, "epochs": args.pose_epochs, "seconds": seconds,
               "AP": float(metrics["AP"]), "AP50": float(metrics["AP50"]), "AP_dark": dark["AP"],
               "command": "python -m bench.e2e_synthetic " + shlex.join(sys.argv[1:])}
    (out / "pose_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("pose only: %s", summary)
    return summary


def report(summary: dict, args: argparse.Namespace) -> dict:
    """Print the table and write it to docs/benchmarks.md (unless ``--no-write``)."""
    body = render_table(summary)
    print(body)
    if not args.no_write:
        command = "python -m bench.e2e_synthetic " + shlex.join(sys.argv[1:])
        write_section("e2e-synthetic", body, command, title="End to end on the synthetic world")
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    cli = get_args_parser()
    parsed = cli.parse_args()
    try:
        check_args(parsed)
    except (FileNotFoundError, ValueError) as error:
        cli.error(str(error))
    main(parsed)
