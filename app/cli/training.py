"""``animalpose train pose|detector``: training from the command line.

    animalpose train pose --data-root data/ap10k --output-dir runs/w32            # official recipe
    animalpose train pose --weights hrnet_w32 --epochs 20 --lr 5e-5 ...            # fine-tune
    animalpose train pose --arch rtmpose_m --data-root data/ap10k                 # RTMPose-m, its config's recipe
    animalpose train pose --weights rtmpose_m --epochs 20 --lr 4e-4 ...            # fine-tune RTMPose-m (SimCC)
    animalpose train pose --train-families Felidae Canidae --eval-families Ursidae  # held-out families
    animalpose train detector --data-root data/ap10k --model yolo11n.pt --epochs 50

The options are those of ``python -m train.train_pose`` and ``python -m train.train_detector``
(multi-GPU: ``torchrun --nproc_per_node N -m train.train_pose ...``). A missing or malformed
input exits with status 2 and one line on stderr. Heatmap models (the HRNets, SimpleBaselines) train
with heatmap targets and JointsMSE, SimCC models (RTMPose) with SimCC targets and KLDiscretLoss, as
their codecs say; the optimisation options not given come from the model's recipe.
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` with the sub-commands ``pose`` and ``detector``; handlers are ``args.func``."""
    from train.train_detector import get_args_parser as detector_parser
    from train.train_pose import get_args_parser as pose_parser

    parser = subparsers.add_parser(
        "train",
        help="train a pose model or fine-tune the detector",
        description="Train a top-down pose model on AP-10K-style data, or fine-tune a YOLO detector.",
    )
    which = parser.add_subparsers(dest="train_command", metavar="WHAT", required=True)
    pose = which.add_parser(
        "pose",
        parents=[pose_parser(add_help=False)],
        help="train a pose model (official AP-10K HRNet recipe by default; --arch rtmpose_m: RTMPose's)",
        description=pose_parser().description,
    )
    pose.set_defaults(func=run_pose)
    detector = which.add_parser(
        "detector",
        parents=[detector_parser(add_help=False)],
        help="fine-tune a YOLO detector on AP-10K boxes (ultralytics)",
        description=detector_parser().description,
    )
    detector.set_defaults(func=run_detector)


def _guarded(command: str, function, args: argparse.Namespace) -> int:
    from pose.checkpoint import CheckpointError

    try:
        return int(function(args) or EXIT_OK)
    except (FileNotFoundError, ValueError, CheckpointError) as error:
        sys.stderr.write(f"animalpose train {command}: error: {error}\n")
        return EXIT_BAD_INPUT


def run_pose(args: argparse.Namespace) -> int:
    """Train a pose model: :func:`train.train_pose.main`."""
    from train.train_pose import main

    return _guarded("pose", main, args)


def run_detector(args: argparse.Namespace) -> int:
    """Convert AP-10K to YOLO and train: :func:`train.train_detector.main`."""
    from train.train_detector import main

    return _guarded("detector", main, args)
