"""What the commands share: the one-line :class:`UserError`, argument types, the pose-model options and the
settings they make."""

from __future__ import annotations

import argparse
import logging
import math
import re
from pathlib import Path

logger = logging.getLogger("animalpose")

EXIT_USER_ERROR = 2

class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""

def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value

def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value

def add_pose_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs the pose model."""
    from pose.precision import Precision
    from pose.weights import DEFAULT_POSE_WEIGHTS, OFFICIAL_WEIGHTS

    group = parser.add_argument_group("pose model")
    group.add_argument(
        "--pose-weights",
        default=DEFAULT_POSE_WEIGHTS,
        metavar="W",
        help=f"checkpoint file, or an official AP-10K model name to download: {', '.join(OFFICIAL_WEIGHTS)} "
        f"(default: {DEFAULT_POSE_WEIGHTS})",
    )
    group.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    group.add_argument(
        "--backend", choices=["auto", "torch", "onnxruntime"], default="auto",
        help="what runs the pose network: auto picks ONNX Runtime on the CPU (about 1.6x faster there, same "
        "keypoints; the model is exported at start-up) and torch on CUDA (default: auto)",
    )
    group.add_argument(
        "--precision", choices=[p.value for p in Precision], default=None,
        help="on a GPU: exact (float32, mmpose's keypoints) or fast (float16, channels-last; about 2x faster, "
        "a few keypoints move) (default: exact, fast for live); the CPU always runs exact",
    )
    group.add_argument("--half", action="store_true", help="the same as --precision fast")
    group.add_argument("--no-cuda-graphs", action="store_true",
                       help="on a GPU, run the networks eagerly instead of replaying CUDA graphs (for debugging)")
    group.add_argument("--no-flip", action="store_true", help="skip the flip test (about 2x faster, less accurate)")
    group.add_argument(
        "--post-process",
        choices=["default", "dark", "udp", "none"],
        default="default",
        help="heatmap decoding: mmpose's quarter-pixel shift (default), DARK, UDP or plain argmax",
    )

def pose_settings_from_args(args: argparse.Namespace, default_precision=None):
    """Build ``PoseSettings`` from the options of :func:`add_pose_model_arguments`; ``default_precision``
    (a :class:`pose.precision.Precision`; None: :data:`pose.precision.DEFAULT_PRECISION`) applies when
    neither ``--precision`` nor ``--half`` is given."""
    from pose.codec import PostProcess
    from pose.estimator import Backend, PoseSettings
    from pose.precision import DEFAULT_PRECISION

    device = resolve_device(args.device)
    post = {"default": PostProcess.DEFAULT, "dark": PostProcess.DARK, "udp": PostProcess.UDP, "none": PostProcess.NONE}
    return PoseSettings(
        flip_test=not args.no_flip,
        post_process=post[args.post_process],
        device=device,
        precision=precision_from_args(args, default_precision or DEFAULT_PRECISION),
        cuda_graphs=not args.no_cuda_graphs,
        backend=Backend(args.backend),
    )

def precision_from_args(args: argparse.Namespace, default):
    """The :class:`pose.precision.Precision` of ``--precision`` / ``--half``, else ``default``."""
    from pose.precision import Precision

    if args.half and args.precision == Precision.EXACT.value:
        raise UserError("--half asks for --precision fast; give one of them")
    if args.half:
        return Precision.FAST
    return Precision(args.precision) if args.precision else default

def resolve_device(device: str | None) -> str:
    """The torch device for ``--device`` (None: cuda when torch sees a GPU, else cpu).

    Raises:
        UserError: not a device name, or a CUDA device that torch does not see here.
    """
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    text = device.strip().lower()
    if text == "cpu":
        return text
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise UserError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    if not torch.cuda.is_available():
        raise UserError(f"--device {device}: torch {torch.__version__} sees no CUDA GPU here; use --device cpu "
                        "(or install a CUDA build of torch on a machine with an NVIDIA GPU)")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: there are only {torch.cuda.device_count()} CUDA devices "
                        f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return text

def read_image(path: str | Path):
    """Read an image file as a BGR uint8 array, or raise :class:`UserError` saying why not
    (missing, not an image, or damaged, e.g. a JPEG cut short)."""
    from app.sources import ImageReadError, read_image_file

    try:
        return read_image_file(path)
    except ImageReadError as exc:
        raise UserError(str(exc)) from None

def write_error(exc: OSError) -> UserError:
    """A one-line :class:`UserError` for a failed write of ``exc.filename``."""
    from app.sinks import sink_error

    return UserError(str(sink_error(exc.filename or "the output", exc)))
