"""Each choice of the real-time profile (:mod:`app.profiles`), measured: speed on a 720p clip, and what it
changes in the results on the synthetic world.

Run: ``python -m bench.profiles [--frames 60] [--animals 1 3]`` for the speed part, and add
``--e2e-dir runs/e2e_synthetic`` (the folder of a ``python -m bench.e2e_synthetic`` run: its trained pose
model and detector, its held-out clips) for the accuracy part.

Speed: ``Model.track`` on a synthetic 1280x720 clip (1 or 3 animals) as ``animalpose track --smoothing causal
--out V.mp4 --jsonl F.jsonl`` runs it: the reader thread, the detector, the pose model (ONNX Runtime, what
``--backend auto`` picks on a CPU), the tracker, drawing and H.264 encoding on the writer thread. The networks
have random weights (speed does not depend on them); the detector is YOLO11n run at the profile's input
size for its cost, answering with the clip's true boxes (so that every step sees the same animals). The
choices are added one at a time, from the full profile to the real-time one.

Accuracy: the trained models of the e2e run (its pose architecture for both profiles: RTMPose-m is not
trained there) track the held-out clips with causal smoothing, with each choice alone and all together;
IDF1, OKS AP and keypoint RMSE against the truth, and the keypoint change against the full settings' own
output (animals matched by box IoU >= 0.5, mean distance of keypoints both report above 0.3, in % of the
box's size). The clips are small (320x256), so a smaller detector input is scaled as it is to the full
profile's 640 px (320 px: 160 here).

Written to the ``profiles`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from app.profiles import FULL_CHOICES, REALTIME_CHOICES, ProfileChoices
from bench.report import command_line, markdown_table, write_section
from tracking.matching import box_area, box_iou

logger = logging.getLogger("bench.profiles")

#: The issue's targets (2-core machine, real-time profile, 720p): frames/s with 1 and with 3 animals.
TARGET_FPS = {1: 15.0, 3: 8.0}
#: Detector input sizes measured against the full one (the real-time profile keeps the full size).
SMALLER_DETECTOR_SIZES = (320, 512)


def speed_steps() -> list[tuple[str, ProfileChoices]]:
    """The choices added one at a time, from the full profile to the real-time one, then the real-time one with
    the detector's choices that were not taken (a smaller input, every 3rd frame)."""
    rtm = replace(FULL_CHOICES, pose_weights=REALTIME_CHOICES.pose_weights)
    no_flip = replace(rtm, flip_test=False)
    steps = [("full", FULL_CHOICES), ("RTMPose-m instead of HRNet-w32", rtm), ("+ no flip test", no_flip)]
    if no_flip.det_image_size != REALTIME_CHOICES.det_image_size:
        steps.append((f"+ detector at {REALTIME_CHOICES.det_image_size} px",
                      replace(no_flip, det_image_size=REALTIME_CHOICES.det_image_size)))
    steps.append((f"+ detector every {REALTIME_CHOICES.det_every} frames = realtime", REALTIME_CHOICES))
    steps.append(("realtime, detector every 3rd frame", replace(REALTIME_CHOICES, det_every=3)))
    steps += [(f"realtime, detector at {size} px", replace(REALTIME_CHOICES, det_image_size=size))
              for size in SMALLER_DETECTOR_SIZES]
    return steps


# -- speed -----------------------------------------------------------------------------------------


def _frame_key(image: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(image[::8, ::8]).tobytes(), digest_size=16).digest()


class TimedTruthDetector:
    """Runs ``yolo`` on the frame for its cost, then answers with the true boxes of that frame (found by its
    pixels, so that it is right whichever frames the pipeline sends it)."""

    def __init__(self, yolo, clip: Path, gt: dict) -> None:
        import cv2

        from train.e2e import GroundTruthDetector

        self.yolo = yolo
        self.truth = GroundTruthDetector(gt)
        self.index: dict[bytes, int] = {}
        capture = cv2.VideoCapture(str(clip))
        while True:
            ok, image = capture.read()
            if not ok:
                break
            self.index.setdefault(_frame_key(image), len(self.index))
        capture.release()

    def __call__(self, image: np.ndarray):
        self.yolo(image)
        self.truth.frame = self.index[_frame_key(image)]
        return self.truth(image)


def _estimators(names: set[str]):
    """A random-weight estimator per architecture (ONNX Runtime, as ``--backend auto`` runs on a CPU), and a
    view of it with the flip test (sharing its session)."""
    import torch

    from app.web.models import with_flip_test
    from pose.estimator import Backend, PoseEstimator, PoseSettings
    from pose.model import ARCHITECTURES, build_model

    estimators = {}
    for name in sorted(names):
        torch.manual_seed(0)
        estimator = PoseEstimator(build_model(ARCHITECTURES[name]).eval(),
                                  PoseSettings(device="cpu", flip_test=False, backend=Backend.AUTO))
        estimators[name] = {False: estimator, True: with_flip_test(estimator, True)}
    return estimators


def _warm_up(model, clip: Path) -> None:
    """One call of each network on the clip's first frame (sessions and allocators set up, not timed)."""
    import cv2

    capture = cv2.VideoCapture(str(clip))
    ok, image = capture.read()
    capture.release()
    if ok:
        model.pose(image)


def measure_speed(frames: int, animals: list[int], height: int, folder: Path) -> list[dict]:
    """Frames/s of every step of :func:`speed_steps` for each number of animals."""
    from animalpose import Model
    from app.runs import Models, OutputPaths
    from bench.throughput import make_yolo
    from train.synthetic import VideoSettings, render_video

    steps = speed_steps()
    estimators = _estimators({choices.pose_weights for _, choices in steps})
    yolos = {size: make_yolo(folder, "cpu", size) for size in {choices.det_image_size for _, choices in steps}}
    rows = []
    for count in animals:
        clip = folder / f"clip_{count}.mp4"
        gt = render_video(clip, VideoSettings(num_animals=count, num_frames=frames, width=height * 16 // 9,
                                              height=height, fps=30.0, seed=count))
        for label, choices in steps:
            detector = TimedTruthDetector(yolos[choices.det_image_size], clip, gt)
            model = Model(Models(detector, estimators[choices.pose_weights][choices.flip_test]))
            _warm_up(model, clip)
            outputs = OutputPaths(video=folder / "out.mp4", jsonl=folder / "out.jsonl")
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            summary = model.track(clip, outputs=outputs, smoothing="causal", det_every=choices.det_every,
                                  progress_bar=False)
            wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
            rows.append({"animals": count, "step": label, "choices": choices, "frames": summary.frames,
                         "fps": summary.frames / wall, "cpu_ms": 1e3 * cpu / summary.frames})
            logger.info("%d animals, %s: %.1f frames/s (%.0f CPU ms/frame)", count, label, rows[-1]["fps"],
                        rows[-1]["cpu_ms"])
    return rows


# -- accuracy --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way of tracking the e2e clips: flip test, detector input size (pixels), detector interval, and the pose
    model when it is not the e2e run's own (``--realtime-pose``)."""

    label: str
    flip_test: bool
    det_imgsz: int
    det_every: int
    pose: Path | None = None


def scaled_size(native: int, size: int) -> int:
    """The detector size that is to ``native`` what ``size`` is to the full profile's (a multiple of 32)."""
    return max(32, 32 * round(native * size / FULL_CHOICES.det_image_size / 32))


def accuracy_variants(native: int, realtime_pose: Path | None = None, realtime_arch: str = "") -> list[Variant]:
    """The full settings (flip test, the clips' native detector size, every frame), each real-time choice alone,
    the detector's choices not taken (smaller inputs, every 3rd frame), and the real-time choices together;
    detector sizes scaled as they are to the full profile's. With ``realtime_pose`` (a pose model of another
    architecture, ``realtime_arch``, trained on the same data), that model at the full settings and with the
    real-time choices together too, side by side."""
    every = REALTIME_CHOICES.det_every
    realtime_size = scaled_size(native, REALTIME_CHOICES.det_image_size)
    sizes = sorted({scaled_size(native, size) for size in SMALLER_DETECTOR_SIZES} - {native}, reverse=True)
    variants = [Variant("full (flip test, detector at native size, every frame)", True, native, 1),
                Variant("no flip test", False, native, 1)]
    variants += [Variant(f"detector at {size} px (x{size / native:.2g})", True, size, 1) for size in sizes]
    variants += [Variant(f"detector every {k} frames", True, native, k) for k in sorted({every, every + 1})]
    variants.append(Variant(f"the realtime choices together (no flip, {realtime_size} px, every {every})", False,
                            realtime_size, every))
    if realtime_pose is not None:
        variants += [Variant(f"{realtime_arch}, full settings", True, native, 1, realtime_pose),
                     Variant(f"{realtime_arch}, the realtime choices together", False, realtime_size, every,
                             realtime_pose)]
    return variants


def keypoint_change(reference: list[dict], frames: list[dict], threshold: float = 0.3) -> float:
    """Mean distance between the keypoints of ``frames`` and those of ``reference`` (the JSON frames of two
    runs on one clip), animals matched by box IoU >= 0.5 (greedy, best first), keypoints both report above
    ``threshold``; in % of the reference box's size (square root of its area). NaN when nothing matched."""
    by_index = {frame["frame"]: frame for frame in reference}
    changes = []
    for frame in frames:
        other = by_index.get(frame["frame"])
        if other is None or not frame["animals"] or not other["animals"]:
            continue
        boxes = np.array([a["bbox"] for a in frame["animals"]], float).reshape(-1, 4)
        ref_boxes = np.array([a["bbox"] for a in other["animals"]], float).reshape(-1, 4)
        iou = box_iou(boxes, ref_boxes)
        while iou.size and iou.max() >= 0.5:
            i, j = np.unravel_index(np.argmax(iou), iou.shape)
            iou[i, :] = iou[:, j] = -1
            mine = np.array(frame["animals"][i]["keypoints"], float)
            theirs = np.array(other["animals"][j]["keypoints"], float)
            both = (mine[:, 2] > threshold) & (theirs[:, 2] > threshold)
            if both.any():
                size = math.sqrt(max(box_area(ref_boxes[j:j + 1])[0], 1e-9))
                changes.extend(np.linalg.norm(mine[both, :2] - theirs[both, :2], axis=1) / size)
    return 100.0 * float(np.mean(changes)) if changes else math.nan


PAIRED = ("idf1", "oks_ap")  # scores compared with the full settings clip by clip
TARGET_GAP = 0.03  # issue 24: the realtime profile's IDF1 and OKS AP within this of the full profile's


def _architecture_name(weights: Path) -> str:
    """The name in :data:`pose.model.ARCHITECTURES` of the architecture of a pose checkpoint (its text when none)."""
    from dataclasses import replace as replaced

    from pose.checkpoint import load_pose_checkpoint
    from pose.model import ARCHITECTURES

    _, arch, _ = load_pose_checkpoint(weights)
    for name, known in ARCHITECTURES.items():
        fields = {"input_size": arch.input_size} if hasattr(known, "input_size") else {}
        if replaced(known, **fields) == arch:
            return name
    return str(arch)


def _realtime_pose_note(weights: Path | None, info: dict) -> list[str]:
    """What the ``--realtime-pose`` rows are: the model, how it was trained (its ``pose_summary.json`` from
    ``bench.e2e_synthetic --pose-only``, when beside it) and its test AP beside the e2e run's model."""
    if weights is None:
        return []
    summary_path = weights.parent.parent / "pose_summary.json"
    trained = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    how = (f", trained {trained['epochs']} epochs in {trained['seconds'] / 60:.0f} min, test AP {trained['AP']:.3f} "
           f"(`{trained['command']}`)") if trained else ""
    own = f" against {info['pose_arch']}'s {info['pose_ap']:.3f}" if info.get("pose_ap") is not None and trained else ""
    return ["", f"The last two rows: `{weights}`, {info['realtime_arch']}, the real-time profile's architecture at the "
            f"e2e run's scale, on the same data{how}{own}. Its rows are the model change side by side with the "
            "others; the target compares the e2e run's own model under both profiles' other choices."]


def paired_difference(values: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Mean of ``values - reference`` (aligned per clip, NaN pairs left out) and its standard error."""
    diff = values - reference
    diff = diff[np.isfinite(diff)]
    if len(diff) == 0:
        return math.nan, math.nan
    se = float(np.std(diff, ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.nan
    return float(np.mean(diff)), se


def accuracy_verdicts(rows: list[dict]) -> list[str]:
    """The realtime choices together against the full settings, with the target (the e2e run's own pose model
    in both)."""
    together = [r for r in rows if r["variant"].label.startswith("the realtime choices together")]
    if not together:
        return []
    row, out = together[0], []
    for key, name in (("idf1", "IDF1"), ("oks_ap", "OKS AP")):
        diff, se = row[f"{key}_diff"], row[f"{key}_se"]
        met = abs(diff) <= TARGET_GAP
        out.append(f"- realtime against full, {name}: {diff:+.3f} (standard error {se:.3f} over the clips); target "
                   f"within {TARGET_GAP}: {'met' if met else 'not met'} on this run.")
    return out


def measure_accuracy(e2e_dir: Path, videos: int, folder: Path,
                     realtime_pose: Path | None = None) -> tuple[list[dict], dict]:
    """Scores of every :func:`accuracy_variants` on the e2e run's held-out clips."""
    import animalpose
    from app.runs import OutputPaths
    from bench.e2e_synthetic import CLIP_FPS, native_imgsz, render_clips
    from bench.e2e_synthetic import get_args_parser as e2e_parser
    from pose.codec import PostProcess
    from pose.estimator import PoseSettings
    from tracking.detector import DetectorSettings
    from train.e2e import score_clip

    pose = e2e_dir / "pose" / "best.pth"
    found = sorted((e2e_dir / "detector").glob("*/weights/best.pt"))
    if not pose.is_file() or not found:
        raise FileNotFoundError(f"no trained weights in {e2e_dir} (pose/best.pth, detector/*/weights/best.pt): "
                                "run python -m bench.e2e_synthetic first")
    det = found[0]
    # The run's own record when it finished; else the benchmark's defaults (a run still training its detector).
    summary_path = e2e_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    defaults = e2e_parser().parse_args([])
    video_size = summary.get("video_size", defaults.video_size)
    frames = summary.get("frames", defaults.frames)
    clips = render_clips(e2e_dir / "clips", videos, frames, video_size, summary.get("seed", defaults.seed))
    native = native_imgsz(video_size)
    rows, reference, per_clip = [], {}, {}
    realtime_arch = _architecture_name(realtime_pose) if realtime_pose is not None else ""
    for variant in accuracy_variants(native, realtime_pose, realtime_arch):
        detector = DetectorSettings(weights=str(det), image_size=variant.det_imgsz)
        model = animalpose.load(variant.pose or pose, detector, device="cpu",
                                pose_settings=PoseSettings(flip_test=variant.flip_test, post_process=PostProcess.DARK))
        scores = []
        for clip, gt in clips:
            path = folder / f"{clip.stem}.json"
            start = time.perf_counter()
            model.track(clip, outputs=OutputPaths(json=path, jsonl=path.with_suffix(".jsonl")), smoothing="causal",
                        det_every=variant.det_every, progress_bar=False)
            seconds = time.perf_counter() - start
            frames = json.loads(path.read_text())["frames"]
            row = {**score_clip(gt, frames), "seconds": seconds}
            if not reference.get(clip.stem):
                reference[clip.stem] = frames
                row["change"] = 0.0
            else:
                row["change"] = keypoint_change(reference[clip.stem], frames)
            scores.append(row)
        mean = {key: float(np.nanmean([s[key] for s in scores])) for key in scores[0]}
        if not per_clip:
            per_clip = {key: np.array([s[key] for s in scores]) for key in PAIRED}
        for key in PAIRED:  # paired over the clips: the clips' own difficulty cancels out
            mean[f"{key}_diff"], mean[f"{key}_se"] = paired_difference(np.array([s[key] for s in scores]),
                                                                      per_clip[key])
        rows.append({"variant": variant, **mean})
        logger.info("%s: %s", variant.label, {k: round(v, 3) for k, v in mean.items()})
    return rows, {"clips": len(clips), "video_size": video_size, "fps": CLIP_FPS, "native": native,
                  "realtime_arch": realtime_arch, "pose_ap": summary.get("pose", {}).get("AP"),
                  "detector": det.parent.parent.name,
                  "pose_arch": summary.get("pose", {}).get("arch", defaults.pose_arch)}


# -- report ----------------------------------------------------------------------------------------


def speed_table(rows: list[dict]) -> str:
    columns = ["animals", "step", "pose model", "flip test", "detector px", "detector every", "frames/s",
               "CPU ms/frame"]
    cells = [[row["animals"], row["step"], row["choices"].pose_weights, "yes" if row["choices"].flip_test else "no",
              row["choices"].det_image_size, row["choices"].det_every, f"{row['fps']:.1f}", f"{row['cpu_ms']:.0f}"]
             for row in rows]
    return markdown_table(columns, cells, numeric={0, 4, 5, 6, 7})


def speed_verdicts(rows: list[dict]) -> list[str]:
    out = []
    for count, target in TARGET_FPS.items():
        got = [r["fps"] for r in rows if r["animals"] == count and r["choices"] == REALTIME_CHOICES]
        if got:
            full = [r["fps"] for r in rows if r["animals"] == count and r["choices"] == FULL_CHOICES]
            gain = f", {got[0] / full[0]:.1f}x the full profile's {full[0]:.1f}" if full else ""
            out.append(f"- realtime, {count} animal{'s' if count > 1 else ''}: {got[0]:.1f} frames/s{gain}; target "
                       f">= {target:g}: {'met' if got[0] >= target else 'not met'} on this run.")
    return out


def accuracy_table(rows: list[dict]) -> str:
    columns = ["variant", "detector px", "detector every", "IDF1", "vs full (s.e.)", "OKS AP", "vs full (s.e.)",
               "keypoint RMSE (px)", "jitter", "keypoint change vs full (% of box)", "s/clip"]
    cells = [[row["variant"].label, row["variant"].det_imgsz, row["variant"].det_every, f"{row['idf1']:.3f}",
              _versus(row, "idf1"), f"{row['oks_ap']:.3f}", _versus(row, "oks_ap"), f"{row['rmse']:.2f}",
              f"{row['jitter']:.2f}", f"{row['change']:.2f}", f"{row['seconds']:.1f}"] for row in rows]
    return markdown_table(columns, cells, numeric=set(range(1, 11)))


def _versus(row: dict, key: str) -> str:
    """The paired difference to the full settings and its standard error, as a cell ("" for the full row)."""
    diff, se = row[f"{key}_diff"], row[f"{key}_se"]
    if not math.isfinite(diff) or (diff == 0 and not se):
        return ""
    return f"{diff:+.3f} ({se:.3f})"


def _load_average() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60, help="frames of the speed clip")
    parser.add_argument("--animals", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--height", type=int, default=720, help="height of the speed clip (16:9)")
    parser.add_argument("--e2e-dir", type=Path, default=None,
                        help="a bench.e2e_synthetic run folder: also measure the accuracy of each choice")
    parser.add_argument("--videos", type=int, default=40,
                        help="held-out e2e clips for the accuracy part (rendered into the run's clips folder when it "
                             "has fewer; with 10, one identity switch in one clip moves the mean IDF1 by 0.01-0.03)")
    parser.add_argument("--realtime-pose", type=Path, default=None,
                        help="a pose model of the real-time profile's architecture family trained on the e2e run's "
                             "data (python -m bench.e2e_synthetic --pose-only --pose-arch rtmpose_tiny): also "
                             "measured at the full settings and with the real-time choices, side by side")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    body = [f"Profiles as shipped: full = {FULL_CHOICES.describe()}; realtime = {REALTIME_CHOICES.describe()} "
            "(app/profiles.py)."]
    load_before = _load_average()
    with tempfile.TemporaryDirectory(prefix="bench-profiles-") as tmp:
        if not args.skip_speed:
            rows = measure_speed(args.frames, args.animals, args.height, Path(tmp))
            body += ["", "### Speed", "",
                     f"`Model.track` on a synthetic {args.height * 16 // 9}x{args.height} clip of {args.frames} "
                     "frames (after one warm-up call of each network) as `animalpose track --smoothing causal "
                     "--out V.mp4 --jsonl F` runs it: reader thread, YOLO11n at the step's input size (random "
                     "weights, answering with the true boxes), the pose model on ONNX Runtime (random weights), "
                     "tracker, drawing and H.264 encoding on the writer thread. CPU ms/frame: the process's CPU "
                     "time (all threads) per frame.",
                     "", speed_table(rows), "", *speed_verdicts(rows)]
        if args.e2e_dir is not None:
            rows, info = measure_accuracy(args.e2e_dir, args.videos, Path(tmp), args.realtime_pose)
            body += ["", "### What each choice changes (synthetic world)", "",
                     f"The trained models of `{args.e2e_dir}` (pose: {info['pose_arch']}, the same for every row"
                     f"{' but the last two' if args.realtime_pose else ''}; RTMPose-m is not trained there) on "
                     f"{info['clips']} held-out clips of 3 animals at "
                     f"{info['video_size'][0]}x{info['video_size'][1]}, causal smoothing, DARK decoding. The "
                     f"detector's full size here is the clips' native {info['native']} px, scaled as the profile "
                     "scales 640 px. Keypoint change: the mean distance to the full settings' own keypoints "
                     "(matched animals, keypoints above 0.3 in both), in % of the box's size.",
                     f"The clips run at {info['fps']:g} frames/s, so the detector on every 2nd frame looks at them "
                     f"{info['fps'] / 2:g} times a second (at a camera's 30 frames/s: 15). 'vs full': the mean over "
                     "the clips of each clip's difference to the full settings, with its standard error.",
                     *_realtime_pose_note(args.realtime_pose, info),
                     "", accuracy_table(rows), "", *accuracy_verdicts(rows)]
    body += ["", f"Load average (1, 5, 15 min) before: {load_before}; after: {_load_average()} (2 cores: other "
             "work on the machine slows every row alike only roughly)."]
    text = "\n".join(body)
    print(text)
    if not args.no_write:
        command = command_line("bench.profiles", argv)
        write_section("profiles", text, command, title="Run profiles: full and realtime")
    return 0


if __name__ == "__main__":
    sys.exit(main())
