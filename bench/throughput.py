"""End-to-end frames/s of the video pipeline against a naive loop and against the models' own cost.

Run: ``python -m bench.throughput [--frames 30] [--animals 1 3] [--backend onnxruntime] [--pose hrnet_w32]``
or, to compare the GPU paths: ``python -m bench.throughput --device cuda --modes today exact fast
--animals 1 3 8 --heights 720 1080 --frames 60`` (:func:`compare_modes`).

On a synthetic 1280x720 clip (ground truth known), for 1 and 3 animals:
- ``pipeline``: :func:`app.pipeline.run_frames` with the reader thread of
  :class:`app.sources.VideoFileSource` and a writer thread (drawing, MP4 encoding, JSON Lines), the
  pose model on ``--backend`` (onnxruntime: what ``--backend auto`` picks on a CPU);
- ``naive``: one thread: read a frame, detect, estimate each animal's crop alone, draw, encode;
  measured twice: with the pose model in torch as loaded from its checkpoint (the loop one writes
  by hand) and with the pipeline's own pose backend (what the wiring alone gains);
- ``limit``: the detector's and the pose model's own time in the same pipeline run (what the
  models alone need: the best any wiring can do on this machine).
The detector is YOLO11n (random weights, ultralytics) at 640; its boxes are replaced by the
clip's ground truth so that the pose model sees the real number of animals. The pose model is
HRNet-w32 (random weights) with the flip test, as in the default CLI. Written to the ``pipeline``
section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from animalpose import Model
from app.drawing import DrawSettings, draw_frame
from app.pipeline import run_frames
from app.runs import Models
from app.sinks import JsonLinesSink, VideoSink
from app.sources import VideoFileSource
from bench.pose import timeit
from bench.report import command_line, write_section
from pose.estimator import Backend, PoseEstimator, PoseSettings
from pose.model import hrnet_w32, res50
from pose.structures import Detections, FrameResult
from train.e2e import GroundTruthDetector

logger = logging.getLogger("bench.throughput")


class TimedGroundTruthDetector:
    """Runs a real YOLO for its cost, then answers with the clip's ground-truth boxes."""

    def __init__(self, yolo, gt: dict) -> None:
        self.yolo = yolo
        self.truth = GroundTruthDetector(gt, auto_advance=True)

    def rewind(self) -> None:
        """Start again from the clip's first frame."""
        self.truth.calls = 0

    def __call__(self, image: np.ndarray) -> Detections:
        self.yolo(image)
        return self.truth(image)


def make_yolo(folder: Path, device: str, image_size: int = 640):
    """YOLO11n with random weights (saved in ``folder``) at ``image_size``, keeping boxes above 0.5."""
    from ultralytics import YOLO

    from tracking.detector import Detector, DetectorSettings

    path = folder / "yolo11n_random.pt"
    if not path.is_file():
        YOLO("yolo11n.yaml").save(str(path))
    return Detector(DetectorSettings(weights=path, confidence=0.5, image_size=image_size, device=device))


def naive_run(path: Path, detector, estimator: PoseEstimator, out: Path) -> tuple[int, float]:
    """Everything in one thread, one crop per pose call. Returns (frames, seconds)."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    draw = DrawSettings()
    frames = 0
    start = time.perf_counter()
    while True:
        ok, image = capture.read()
        if not ok:
            break
        detections = detector(image)
        keypoints = [estimator(image, box[None]).keypoints[0] for box in detections.xyxy]
        n = len(keypoints)
        result = FrameResult(
            frames, frames / fps, np.arange(1, n + 1), detections.xyxy, detections.scores,
            np.stack(keypoints) if n else np.zeros((0, 17, 3)), np.ones((n, 17), np.uint8),
        )
        writer.write(draw_frame(image, result, draw))
        frames += 1
    elapsed = time.perf_counter() - start
    writer.release()
    capture.release()
    return frames, elapsed


def pipeline_run(path: Path, detector, estimator: PoseEstimator, folder: Path) -> tuple[int, float, float]:
    """Returns (frames, seconds, seconds the models alone took)."""
    pipeline = Model(Models(detector, estimator)).pipeline(smoothing="causal", min_hits=1)
    with VideoFileSource(path) as source, VideoSink(folder / "out.mp4", source.info) as video, \
            JsonLinesSink(folder / "out.jsonl") as lines:
        stats = run_frames(source, pipeline, [video, lines])
    return stats.frames, stats.wall_s, stats.times.detect + stats.times.pose


#: The paths compared by ``--modes``: today's (eager networks, the detector in line), and the two
#: precisions with CUDA graphs and the detector running ahead (what ``animalpose track`` does on a GPU).
MODES: dict[str, dict[str, object]] = {
    "today": {"precision": "exact", "cuda_graphs": False, "ahead": False},
    "exact": {"precision": "exact", "cuda_graphs": True, "ahead": True},
    "fast": {"precision": "fast", "cuda_graphs": True, "ahead": True},
}


class GroundTruthOf:
    """A real detector for its cost (and its settings: device, precision) answering with the truth's boxes."""

    def __init__(self, detector, gt: dict) -> None:
        self.detector = detector
        self.settings = detector.settings
        self.truth = GroundTruthDetector(gt, auto_advance=True)

    def __call__(self, image: np.ndarray) -> Detections:
        self.detector(image)
        return self.truth(image)


def mode_run(clip: Path, gt: dict, mode: str, device: str, folder: Path, repeats: int = 20) -> dict[str, float]:
    """One row of ``--modes``: frames/s of the whole pipeline (reading, detecting, tracking, pose, drawing,
    encoding, writing) on ``clip`` in ``mode``, and the models alone at the batch sizes the run used
    (the detector on one frame, the pose model on the most animals of a frame with the flip test),
    replayed from their CUDA graphs when the mode uses them."""
    from dataclasses import replace as replace_settings

    from ultralytics import YOLO

    from tracking.detector import Detector, DetectorSettings

    options = MODES[mode]
    weights = folder / "yolo11n_random.pt"
    if not weights.exists():
        YOLO("yolo11n.yaml").save(str(weights))
    torch.manual_seed(0)
    estimator = PoseEstimator(hrnet_w32().eval(), PoseSettings(device=device, backend=Backend.TORCH,
                                                                precision=options["precision"],
                                                                cuda_graphs=options["cuda_graphs"]))
    yolo = Detector(DetectorSettings(weights=weights, confidence=0.5, device=device, precision=options["precision"],
                                     cuda_graphs=options["cuda_graphs"]))
    detector = GroundTruthOf(yolo, gt)
    pipeline = Model(Models(detector, estimator)).pipeline(smoothing="causal", min_hits=1)
    if not options["ahead"]:
        pipeline.settings = replace_settings(pipeline.settings, detect_ahead=0)
    with VideoFileSource(clip) as source:
        height, width = source.info.height, source.info.width
        blank = np.zeros((height, width, 3), np.uint8)
        animals = max(len(f["animals"]) for f in gt["frames"])
        boxes = np.array([[10 + 60 * i, 10, 210 + 60 * i, 260] for i in range(animals)], np.float32)
        yolo(blank)  # warm-up: the first call sets ultralytics up, captures graphs
        estimator(blank, boxes)
        with VideoSink(folder / f"{mode}.mp4", source.info) as video, JsonLinesSink(folder / f"{mode}.jsonl") as lines:
            stats = run_frames(source, pipeline, [video, lines])
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    detect_ms = 1e3 * timeit(lambda: yolo(blank), repeats, warmup=2, sync=sync)
    pose_ms = 1e3 * timeit(lambda: estimator(blank, boxes), repeats, warmup=2, sync=sync)
    return {"fps": stats.frames / stats.wall_s, "detect_ms": detect_ms, "pose_ms": pose_ms,
            "limit_fps": 1e3 / (detect_ms + pose_ms), "frames": stats.frames, "animals": animals,
            "detect_ahead": pipeline.settings.detect_ahead, "graphs": estimator.uses_graphs}


def compare_modes(args: argparse.Namespace) -> str:
    """``--modes``: a table of frames/s per mode, clip size and number of animals."""
    from train.synthetic import VideoSettings, render_video

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-modes-") as tmp:
        folder = Path(tmp)
        for height in args.heights:
            width = height * 16 // 9
            for animals in args.animals:
                clip = folder / f"clip{height}_{animals}.mp4"
                gt = render_video(clip, VideoSettings(num_animals=animals, num_frames=args.frames, width=width,
                                                      height=height, fps=25, seed=animals, num_occluders=0))
                for mode in args.modes:
                    row = mode_run(clip, gt, mode, args.device, folder, getattr(args, "repeats", 20))
                    rows.append((height, animals, mode, row))
                    logger.info("%dp, %d animals, %s: %s", height, animals, mode, row)
    lines = [
        f"Device `{args.device}`, HRNet-w32 (flip test, random weights) and YOLO11n at 640 (random weights; the "
        f"clip's ground-truth boxes passed on), synthetic 16:9 clips of {args.frames} frames; the whole pipeline "
        "(reading, detecting, tracking, pose, causal smoothing, drawing, MP4 encoding, JSON Lines). Modes: `today` "
        "eager networks with the detector in line; `exact` / `fast`: CUDA graphs and the detector running ahead, "
        "float32 / float16. Limit: the detector on one frame plus the pose model on the most animals of a "
        f"frame, as the mode runs them (replayed graphs), median of {getattr(args, 'repeats', 20)}.",
        "",
        "| size | animals | mode | frames/s | detector ms | pose ms | models-alone limit fps | pipeline / limit |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for height, animals, mode, row in rows:
        lines.append(f"| {height}p | {animals} | {mode} | {row['fps']:.1f} | {row['detect_ms']:.2f} | "
                     f"{row['pose_ms']:.2f} | {row['limit_fps']:.1f} | {row['fps'] / row['limit_fps']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--animals", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--backend", choices=["torch", "onnxruntime"], default="onnxruntime")
    parser.add_argument("--pose", choices=["hrnet_w32", "res50"], default="hrnet_w32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES),
                        help="instead: compare these paths (today, exact, fast) at --heights and --animals")
    parser.add_argument("--heights", type=int, nargs="+", default=[720, 1080], help="clip heights for --modes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.modes:
        body = compare_modes(args)
        if args.no_write:
            sys.stdout.write(body + "\n")
        else:
            command = command_line("bench.throughput", argv)
            write_section("modes-" + args.device.split(":")[0], body, command,
                          title=f"Pipeline paths: today, exact, fast ({args.device})")
        return 0
    from train.synthetic import VideoSettings, render_video

    torch.manual_seed(0)
    model = {"hrnet_w32": hrnet_w32, "res50": res50}[args.pose]().eval()
    estimator = PoseEstimator(model, PoseSettings(device=args.device, backend=Backend(args.backend)))
    by_hand = PoseEstimator(model, PoseSettings(device=args.device, backend=Backend.TORCH))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        folder = Path(tmp)
        yolo = make_yolo(folder, args.device)
        for animals in args.animals:
            clip = folder / f"clip{animals}.mp4"
            gt = render_video(clip, VideoSettings(num_animals=animals, num_frames=args.frames, width=1280,
                                                  height=720, fps=25, seed=animals, num_occluders=0))
            visible = np.mean([len(f["animals"]) for f in gt["frames"]])
            det = TimedGroundTruthDetector(yolo, gt)
            # Warm up what runs first in the timed loops: the detector (its first call on CUDA sets
            # itself up for seconds) and the pose model at each batch size the runs use.
            blank = np.zeros((720, 1280, 3), np.uint8)
            yolo(blank)
            for pose in (estimator, by_hand):
                for n in sorted({1, animals}):
                    pose(blank, np.array([[0, 0, 100, 100]] * n, np.float32))
            n_hand, t_hand = naive_run(clip, det, by_hand, folder / "naive.mp4")
            det.rewind()
            n_naive, t_naive = naive_run(clip, det, estimator, folder / "naive.mp4")
            det.rewind()
            n_pipe, t_pipe, t_models = pipeline_run(clip, det, estimator, folder)
            rows.append((animals, visible, n_hand / t_hand, n_naive / t_naive, n_pipe / t_pipe, n_pipe / t_models))
            logger.info("%d animals (%.1f visible): naive torch %.2f fps, naive %s %.2f fps, pipeline %.2f fps, "
                        "models-only limit %.2f fps", animals, visible, rows[-1][2], args.backend, *rows[-1][3:])
    same = " (again)" if args.backend == "torch" else ""
    lines = [
        f"Device `{args.device}`, pose {args.pose} (flip test on, random weights), detector YOLO11n at 640 (torch, "
        f"random weights; ground-truth boxes), synthetic 1280x720 clip, {args.frames} frames. The pipeline runs "
        f"the pose model on {args.backend}; the naive loop is measured with the pose model in torch (as "
        f"loaded) and on {args.backend} (the pipeline's backend).",
        "",
        f"| animals (mean visible) | naive loop, torch fps | naive loop, {args.backend} fps{same} | pipeline fps | "
        "models-only limit fps | pipeline / naive torch | pipeline / naive same backend | pipeline / limit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for animals, visible, hand, naive, pipe, limit in rows:
        lines.append(f"| {animals} ({visible:.1f}) | {hand:.2f} | {naive:.2f} | {pipe:.2f} | {limit:.2f} | "
                     f"{pipe / hand:.2f} | {pipe / naive:.2f} | {pipe / limit:.2f} |")
    body = "\n".join(lines)
    if args.no_write:
        sys.stdout.write(body + "\n")
    else:
        command = command_line("bench.throughput", argv)
        write_section("pipeline-" + args.device.split(":")[0], body, command,
                      title=f"Video pipeline end to end ({args.device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
