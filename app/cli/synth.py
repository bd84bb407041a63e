"""``animalpose synth``: write synthetic datasets and videos (see :mod:`train.synthetic`).

Usage::

    animalpose synth dataset --n 2000 --out DIR [--size 256 | 320x240] [--format ap10k yolo yolo-pose]
    animalpose synth video --animals 3 --frames 300 --out clip.mp4 [--gt clip.json] [--size 640x360]
    animalpose synth frames --clips 100 --frames-per-clip 20 --out DIR [--size 320x256] [--format ap10k yolo]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from train.synthetic.dataset import DATASET_FORMATS, DatasetSettings, write_dataset
from train.synthetic.frames import FrameDatasetSettings, write_frame_dataset
from train.synthetic.video import VideoSettings, render_video

logger = logging.getLogger(__name__)

#: Exit status of a command whose settings are invalid (argparse uses 2 for bad usage too).
EXIT_BAD_SETTINGS: int = 2


def parse_size(text: str) -> tuple[int, int]:
    """``"256"`` -> (256, 256); ``"640x360"`` -> (640, 360) as (width, height)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"size must be N or WxH with positive integers, got {text!r}")
    return values[0], values[1]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``synth`` command with its ``dataset``, ``video`` and ``frames`` sub-commands."""
    synth = subparsers.add_parser("synth", help="write synthetic quadruped datasets and videos with exact ground truth")
    commands = synth.add_subparsers(dest="synth_command", required=True, metavar="{dataset,video,frames}")

    dataset = commands.add_parser("dataset", help="AP-10K-format keypoint dataset and YOLO detection dataset")
    dataset.add_argument("--n", type=int, default=2000, help="number of images over all splits (default: 2000)")
    dataset.add_argument("--out", type=Path, required=True, help="output folder")
    dataset.add_argument("--seed", type=int, default=0)
    dataset.add_argument("--size", type=parse_size, default=(256, 256), help="N or WxH pixels (default: 256)")
    dataset.add_argument("--val-fraction", type=float, default=0.1)
    dataset.add_argument("--test-fraction", type=float, default=0.1)
    dataset.add_argument("--max-animals", type=int, default=3, help="at most this many animals per image")
    dataset.add_argument("--format", nargs="+", choices=DATASET_FORMATS, default=["ap10k", "yolo"], dest="formats",
                         help="formats to write (default: ap10k yolo)")
    dataset.add_argument("--backgrounds", type=Path, default=None, help="folder of photos to crop backgrounds from")
    dataset.add_argument("--workers", type=int, default=1, help="rendering processes (default: 1)")
    dataset.set_defaults(func=run_dataset)

    video = commands.add_parser("video", help="clip of walking, crossing animals and its ground-truth JSON")
    video.add_argument("--animals", type=int, default=3)
    video.add_argument("--frames", type=int, default=300)
    video.add_argument("--out", type=Path, required=True, help="output video (.mp4)")
    video.add_argument("--gt", type=Path, default=None, help="ground-truth JSON (default: next to the video, .json)")
    video.add_argument("--seed", type=int, default=0)
    video.add_argument("--size", type=parse_size, default=(640, 360), help="N or WxH pixels (default: 640x360)")
    video.add_argument("--fps", type=float, default=30.0)
    video.add_argument("--occluders", type=int, default=1, help="foreground trunks and bushes (default: 1)")
    video.add_argument("--backgrounds", type=Path, default=None, help="folder of photos for the background")
    video.set_defaults(func=run_video)

    frames = commands.add_parser("frames", help="dataset of frames sampled from many short clips (for a detector "
                                 "that will run on video), in the formats of synth dataset")
    frames.add_argument("--clips", type=int, default=100, help="clips over all splits (default: 100)")
    frames.add_argument("--frames-per-clip", type=int, default=20, help="frames kept per clip (default: 20)")
    frames.add_argument("--frame-step", type=int, default=8, help="frames between two kept frames (default: 8)")
    frames.add_argument("--out", type=Path, required=True, help="output folder")
    frames.add_argument("--seed", type=int, default=0)
    frames.add_argument("--size", type=parse_size, default=(320, 256), help="N or WxH pixels (default: 320x256)")
    frames.add_argument("--fps", type=float, default=15.0, help="frame rate of the clips (default: 15)")
    frames.add_argument("--max-animals", type=int, default=4, help="each clip has 1 to this many animals (default: 4)")
    frames.add_argument("--max-occluders", type=int, default=2,
                        help="each clip has 0 to this many trunks and bushes (default: 2)")
    frames.add_argument("--val-fraction", type=float, default=0.1, help="share of clips (default: 0.1)")
    frames.add_argument("--test-fraction", type=float, default=0.1, help="share of clips (default: 0.1)")
    frames.add_argument("--format", nargs="+", choices=DATASET_FORMATS, default=["ap10k", "yolo"], dest="formats",
                        help="formats to write (default: ap10k yolo)")
    frames.add_argument("--backgrounds", type=Path, default=None, help="folder of photos for the backgrounds")
    frames.add_argument("--workers", type=int, default=1, help="rendering processes (default: 1)")
    frames.set_defaults(func=run_frames)


def run_dataset(args: argparse.Namespace) -> int:
    """Handler of ``synth dataset``."""
    width, height = args.size
    try:
        settings = DatasetSettings(
            num_images=args.n, width=width, height=height, seed=args.seed, val_fraction=args.val_fraction,
            test_fraction=args.test_fraction, max_animals=args.max_animals, formats=tuple(args.formats),
            background_dir=args.backgrounds, workers=args.workers,
        )
    except ValueError as exc:
        logger.error("synth dataset: %s", exc)
        return EXIT_BAD_SETTINGS
    summary = write_dataset(args.out, settings)
    logger.info("images per split %s, animals per split %s", summary.images, summary.annotations)
    return 0


def run_video(args: argparse.Namespace) -> int:
    """Handler of ``synth video``."""
    width, height = args.size
    try:
        settings = VideoSettings(
            num_animals=args.animals, num_frames=args.frames, width=width, height=height, fps=args.fps,
            seed=args.seed, background_dir=args.backgrounds, num_occluders=args.occluders,
        )
    except ValueError as exc:
        logger.error("synth video: %s", exc)
        return EXIT_BAD_SETTINGS
    render_video(args.out, settings, args.gt)
    return 0


def run_frames(args: argparse.Namespace) -> int:
    """Handler of ``synth frames``."""
    width, height = args.size
    try:
        settings = FrameDatasetSettings(
            num_clips=args.clips, frames_per_clip=args.frames_per_clip, frame_step=args.frame_step, width=width,
            height=height, fps=args.fps, max_animals=args.max_animals, max_occluders=args.max_occluders,
            seed=args.seed, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
            formats=tuple(args.formats), background_dir=args.backgrounds, workers=args.workers,
        )
    except ValueError as exc:
        logger.error("synth frames: %s", exc)
        return EXIT_BAD_SETTINGS
    summary = write_frame_dataset(args.out, settings)
    logger.info("frames per split %s, animals per split %s", summary.images, summary.annotations)
    return 0
