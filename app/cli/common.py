"""What the commands share: the one-line :class:`UserError`, argument types, the pose-model options and the
settings they make."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

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


def field_default(cls: type, name: str) -> Any:
    """The default of the dataclass field ``name`` of ``cls``: the one place every default is written."""
    for item in dataclasses.fields(cls):
        if item.name == name:
            if item.default is not dataclasses.MISSING:
                return item.default
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
            raise ValueError(f"{cls.__name__}.{name} has no default")
    raise ValueError(f"{cls.__name__} has no field {name!r}")


@contextlib.contextmanager
def options_checked(flags: Mapping[str, str]) -> Iterator[None]:
    """Turn the ``ValueError`` of a settings dataclass into a :class:`UserError` that names the option:
    ``"det_every must be ..."`` becomes ``"--det-every must be ..."`` for ``{"det_every": "--det-every"}``."""
    try:
        yield
    except ValueError as exc:
        message = str(exc)
        for name, flag in flags.items():
            if message.startswith(f"{name} "):
                message = flag + message[len(name):]
                break
        raise UserError(message) from None


def add_pose_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs the pose model; defaults from :class:`PoseSettings`."""
    from app.profiles import REALTIME_CHOICES
    from pose.codec import PostProcess
    from pose.estimator import Backend, PoseSettings
    from pose.precision import Precision
    from pose.weights import DEFAULT_POSE_WEIGHTS, OFFICIAL_WEIGHTS

    group = parser.add_argument_group("pose model")
    group.add_argument(
        "--pose-weights",
        default=None,
        metavar="W",
        help=f"checkpoint file, or an official AP-10K model name to download: {', '.join(OFFICIAL_WEIGHTS)} "
        f"(default: {DEFAULT_POSE_WEIGHTS}; {REALTIME_CHOICES.pose_weights} with --profile realtime)",
    )
    device = field_default(PoseSettings, "device")
    group.add_argument("--device", default=device,
                       help=f"auto (CUDA when torch sees a GPU), cpu, cuda or cuda:N (default: {device})")
    backend = field_default(PoseSettings, "backend").value
    group.add_argument(
        "--backend", choices=[b.value for b in Backend], default=backend,
        help="what runs the pose and detector networks: auto picks ONNX Runtime on the CPU (pose model about 1.6x, "
        "detector about 1.3x faster there, same keypoints, boxes within 0.1 px; the models are exported at "
        f"start-up) and torch on CUDA (default: {backend})",
    )
    group.add_argument(
        "--precision", choices=[p.value for p in Precision], default=None,
        help="on a GPU: exact (float32, mmpose's keypoints) or fast (float16, channels-last; about 2x faster, "
        "a few keypoints move) (default: exact, fast for live); the CPU always runs exact",
    )
    group.add_argument("--half", action="store_true", help="the same as --precision fast")
    group.add_argument("--no-cuda-graphs", action="store_true",
                       help="on a GPU, run the networks eagerly instead of replaying CUDA graphs (for debugging)")
    flip = group.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip_test", action="store_const", const=True, default=None,
                      help="run the flip test: the mirrored crop too, averaged in (the default, but not with "
                      "--profile realtime)")
    flip.add_argument("--no-flip", dest="flip_test", action="store_const", const=False,
                      help="skip the flip test (about 2x faster, less accurate)")
    post = field_default(PoseSettings, "post_process").value
    group.add_argument(
        "--post-process", choices=[p.value for p in PostProcess], default=post,
        help=f"heatmap decoding: mmpose's quarter-pixel shift (default), DARK, UDP or plain argmax (default: {post}); "
        "SimCC models (rtmpose_m) decode by their own argmax and ignore it",
    )


def pose_settings_from_args(args: argparse.Namespace, default_precision=None, flip_test: bool | None = None):
    """Build ``PoseSettings`` from the options of :func:`add_pose_model_arguments`; ``default_precision``
    (a :class:`pose.precision.Precision`; None: :data:`pose.precision.DEFAULT_PRECISION`) applies when
    neither ``--precision`` nor ``--half`` is given, ``flip_test`` (None: ``PoseSettings``' default) when
    neither ``--flip`` nor ``--no-flip`` is."""
    from pose.codec import PostProcess
    from pose.estimator import Backend, PoseSettings
    from pose.precision import DEFAULT_PRECISION

    if args.flip_test is not None:
        flip_test = args.flip_test
    with options_checked({"device": "--device"}):
        return PoseSettings(
            flip_test=PoseSettings.flip_test if flip_test is None else flip_test,
            post_process=PostProcess(args.post_process),
            device=resolve_device(args.device),
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
    """The torch device for ``--device`` (None or "auto": cuda when torch sees a GPU, else cpu).

    Raises:
        UserError: not a device name, or a CUDA device that torch does not see here.
    """
    from pose.devices import AUTO
    from pose.devices import resolve_device as resolve

    try:
        return resolve(AUTO if device is None else device)
    except ValueError as exc:
        raise UserError(f"--{exc}".replace("use the CPU", "use --device cpu")) from None


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
