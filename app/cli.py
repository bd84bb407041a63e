"""The ``animalpose`` command line: thin handlers over the library.

Every handler turns its arguments into settings dataclasses, calls the library and returns an exit
code. Errors a user can act on (missing file, bad checkpoint, offline download) are printed as one
line and give exit code 2; nothing is left half-written.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

logger = logging.getLogger("animalpose")

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def _parse_box(text: str) -> tuple[float, float, float, float]:
    """``X,Y,W,H`` in pixels, as Python floats (float64: mmpose computes the box's centre and scale in
    double precision, and so must we to give its numbers)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"box must be X,Y,W,H numbers, got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"box must have 4 numbers X,Y,W,H, got {text!r}")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"box numbers must be finite (no nan or inf), got {text!r}")
    if values[2] <= 0 or values[3] <= 0:
        raise argparse.ArgumentTypeError(f"box width and height must be positive, got {text!r}")
    return values  # type: ignore[return-value]


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


def _join_negative_values(argv: list[str], options: tuple[str, ...] = ("--box",)) -> list[str]:
    """``--box -20,30,100,80`` as ``--box=-20,30,100,80``: argparse takes a value that starts with '-'
    and is not a plain number for an option, but a box left of (or above) the image is natural to type."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in options and i + 1 < len(argv) and re.match(r"^-[\d.]", argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


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


def check_image_output(path: str | Path) -> None:
    """Refuse an image output whose extension OpenCV cannot encode, before any work."""
    import cv2

    suffix = Path(path).suffix.lower()
    if not suffix or not cv2.haveImageWriter(f"x{suffix}"):
        raise UserError(f"--out {path}: cannot write images with the extension {suffix or '(none)'!r}; "
                        "use .jpg or .png")


def cmd_pose(args: argparse.Namespace) -> int:
    """``animalpose pose IMAGE``: keypoints for given boxes (or detected animals) of one image."""
    import numpy as np

    from app.annotate import draw_poses
    from app.files import atomic_write_bytes, atomic_write_json
    from app.outputs import check_outputs, check_writable
    from pose.checkpoint import require_ap10k_keypoints
    from pose.estimator import PoseEstimator
    from pose.keypoints import KEYPOINT_COLORS, SKELETON, SKELETON_COLORS
    from tracking.detector import DetectorError

    if not 0 <= args.kpt_thr <= 1:
        raise UserError(f"--kpt-thr must be in [0, 1], got {args.kpt_thr}")
    outputs = [Path(p) for p in (args.json, args.out) if p]
    check_outputs([args.image], outputs)
    check_writable(outputs)
    if args.out:
        check_image_output(args.out)
    image = read_image(args.image)
    if args.box:
        boxes_xywh = np.array(args.box, np.float64)
        _warn_boxes_outside(boxes_xywh, image.shape[1], image.shape[0])
    else:
        try:
            boxes_xywh = _detect_boxes_xywh(image, args)
        except DetectorError as exc:
            raise UserError(f"no --box given and the detector failed: {exc}") from None
    estimator = PoseEstimator.from_weights(args.pose_weights, pose_settings_from_args(args))
    require_ap10k_keypoints(estimator.num_keypoints, args.pose_weights)
    poses = estimator.estimate_xywh(image, boxes_xywh)
    result = {
        "image": str(args.image),
        "instances": [
            {"bbox": [_finite(v, 3) for v in box], "keypoints": [[_finite(v, 4) for v in kpt] for kpt in kpts]}
            for box, kpts in zip(boxes_xywh, poses.keypoints)
        ],
    }
    try:
        if args.json:
            atomic_write_json(args.json, result, indent=1)
            logger.info("Wrote %d instances to %s", len(poses), args.json)
        if args.out:
            import cv2

            labels = [f"#{i}" for i in range(len(poses))]
            keypoints = np.nan_to_num(poses.keypoints, nan=0.0)  # a NaN keypoint has no confidence to draw
            canvas = draw_poses(
                image, keypoints, SKELETON, KEYPOINT_COLORS, SKELETON_COLORS, poses.boxes, labels, args.kpt_thr
            )
            ok, encoded = cv2.imencode(Path(args.out).suffix, canvas)
            if not ok:
                raise UserError(f"cannot encode the image {args.out}")
            atomic_write_bytes(args.out, encoded.tobytes())
            logger.info("Wrote %s", args.out)
    except OSError as exc:
        raise _write_error(exc) from None
    if not args.json and not args.out:
        import json

        sys.stdout.write(json.dumps(result, allow_nan=False) + "\n")
    return 0


def _finite(value: float, digits: int) -> float | None:
    """``value`` rounded, or None (JSON null) when it is NaN or infinite: our JSON is always standard."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def _warn_boxes_outside(boxes_xywh, width: int, height: int) -> None:
    """Warn about boxes that do not overlap the image at all (their keypoints would lie off the image)."""
    for n, (x, y, w, h) in enumerate(boxes_xywh):
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            logger.warning("box %d (%g,%g,%g,%g) lies entirely outside the %dx%d image: its keypoints are "
                           "guesses off the image", n, x, y, w, h, width, height)


def _write_error(exc: OSError) -> UserError:
    """A one-line :class:`UserError` for a failed write of ``exc.filename``."""
    from app.sinks import sink_error

    return UserError(str(sink_error(exc.filename or "the output", exc)))


def _detect_boxes_xywh(image, args: argparse.Namespace):
    import numpy as np

    from pose.precision import DEFAULT_PRECISION
    from tracking.detector import Detector, DetectorSettings

    device = resolve_device(args.device) if args.device else None
    settings = DetectorSettings(weights=args.det_weights, precision=precision_from_args(args, DEFAULT_PRECISION),
                                cuda_graphs=not args.no_cuda_graphs, **({"device": device} if device else {}))
    detector = Detector(settings)
    detections = detector(image)
    xyxy = detections.xyxy.astype(np.float64)
    logger.info("Detected %d animals", len(xyxy))
    return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)


def cmd_export(args: argparse.Namespace) -> int:
    """``animalpose export``: the pose model as ONNX (dynamic batch), checked against torch."""
    import numpy as np
    import torch

    from app.outputs import check_outputs, check_writable
    from pose.checkpoint import load_pose_checkpoint
    from pose.estimator import PoseSettings
    from pose.export import export_onnx, onnx_session, run_onnx
    from pose.weights import resolve_pose_weights

    if args.out is None and args.det_out is None:
        raise UserError("nothing to export: give --out for the pose model and/or --det-weights W --det-out det.onnx")
    if (args.det_weights is None) != (args.det_out is None):
        raise UserError("--det-weights and --det-out go together")
    for name in ("width", "height"):
        value = getattr(args, name)
        if value is not None and (value < 8 or value % 4):
            raise UserError(f"--{name} must be a multiple of 4 pixels, at least 8, got {value}")
    if not 7 <= args.opset <= 25:
        raise UserError(f"--opset must be an ONNX opset between 7 and 25, got {args.opset}")
    outputs = [Path(p) for p in (args.out, args.det_out) if p]
    check_outputs([p for p in (args.pose_weights, args.det_weights) if p and Path(p).exists()], outputs)
    if args.out is not None and Path(args.out).suffix.lower() != ".onnx":
        raise UserError(f"--out: the file name must end in .onnx, got {args.out}")
    check_writable(outputs)
    if args.det_out is not None:
        from train.export import export_detector_command

        try:
            export_detector_command(args.det_weights, args.det_out, args.det_image_size)
        except (ValueError, RuntimeError) as exc:
            raise UserError(str(exc)) from exc
        logger.info("Exported the detector to %s", args.det_out)
    if args.out is None:
        return 0
    model, arch, recorded = load_pose_checkpoint(resolve_pose_weights(args.pose_weights))
    width, height = recorded or PoseSettings().input_size
    width = args.width if args.width is not None else width
    height = args.height if args.height is not None else height
    out = Path(args.out)
    # Exported and checked under a temporary name; only a checked model gets the final name, and an
    # interrupted export (Ctrl-C, SIGTERM) leaves nothing behind.
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.part.onnx")
    try:
        export_onnx(model, tmp, input_size=(width, height), opset=args.opset)
        inputs = np.random.default_rng(0).standard_normal((2, 3, height, width)).astype(np.float32)
        with torch.inference_mode():
            expected = model(torch.from_numpy(inputs)).numpy()
        got = run_onnx(onnx_session(tmp), inputs)
        error = float(np.abs(got - expected).max() / max(1e-12, float(np.abs(expected).max())))
        if error > 1e-4:
            raise UserError(f"the ONNX export differs from torch by {error:.2e} (relative); nothing was written "
                            f"to {out}")
        os.replace(tmp, out)
    except OSError as exc:
        raise _write_error(exc) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    logger.info("Exported %s (input %dx%d) to %s; max |onnx - torch| / max|torch| = %.2e", arch, width, height, out,
                error)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """``animalpose info``: versions, devices and cached weights."""
    import platform

    import cv2
    import numpy as np
    import torch

    from pose.weights import OFFICIAL_WEIGHTS, cache_dir, cached_weights

    lines = [
        f"animalpose {_version()} on Python {platform.python_version()} ({platform.platform()})",
        f"torch {torch.__version__}, numpy {np.__version__}, opencv {cv2.__version__}",
    ]
    try:
        import onnxruntime as ort

        lines.append(f"onnxruntime {ort.__version__}, providers: {', '.join(ort.get_available_providers())}")
    except ImportError:
        lines.append("onnxruntime: not installed")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            lines.append(f"cuda:{i}: {torch.cuda.get_device_name(i)}")
    else:
        lines.append(f"CUDA: not available; CPU threads: {torch.get_num_threads()}")
    lines.append(f"weights cache: {cache_dir()}")
    cached = cached_weights()
    lines.extend(f"  cached: {p.name}" for p in cached)
    if not cached:
        lines.append("  (empty) official names: " + ", ".join(OFFICIAL_WEIGHTS))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("animalpose")
    except PackageNotFoundError:
        return "(not installed)"


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage stays one ``--help`` away)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {' '.join(message.split())} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="animalpose",
        description="Pose tracking of animals (AP-10K keypoints) in images, videos and live streams.",
        epilog="Run 'animalpose COMMAND --help' for the options of a command.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    pose = sub.add_parser(
        "pose",
        help="keypoints of the animals in one image",
        description="Estimate AP-10K keypoints for boxes in an image (or for the animals the detector finds).",
    )
    pose.add_argument("image", help="image file")
    pose.add_argument(
        "--box", type=_parse_box, action="append", metavar="X,Y,W,H",
        help="animal box in pixels (COCO x, y, width, height); repeat for several animals",
    )
    pose.add_argument("--json", metavar="OUT.json", help="write {image, instances: [{bbox, keypoints}]} here")
    pose.add_argument("--out", metavar="IMG", help="write the image with the skeletons drawn")
    pose.add_argument("--det-weights", default="yolo11n.pt", help="detector weights, used when no --box is given")
    pose.add_argument("--kpt-thr", type=float, default=0.3, help="keypoint score below which nothing is drawn")
    add_pose_model_arguments(pose)
    pose.set_defaults(func=cmd_pose)

    export = sub.add_parser(
        "export", help="write the pose model and/or the detector as ONNX",
        description="Export the pose model and/or the detector to ONNX (dynamic batch) and check the output "
        "against torch."
    )
    export.add_argument("--pose-weights", default="hrnet_w32", metavar="W", help="checkpoint file or official name")
    export.add_argument("--out", default=None, metavar="MODEL.onnx", help="where to write the pose model as ONNX")
    export.add_argument("--det-weights", metavar="W", help="local YOLO .pt weights to export with --det-out")
    export.add_argument("--det-out", metavar="DET.onnx", help="where to write the detector as ONNX (checked against torch)")
    export.add_argument("--det-image-size", type=int, default=640, metavar="PIXELS",
                        help="detector export size (multiple of 32)")
    export.add_argument("--width", type=int, default=None,
                        help="network input width in pixels (default: the size the checkpoint records, else 256)")
    export.add_argument("--height", type=int, default=None,
                        help="network input height in pixels (default: the size the checkpoint records, else 256)")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    export.set_defaults(func=cmd_export)

    info = sub.add_parser("info", help="versions, devices and cached weights")
    info.set_defaults(func=cmd_info)

    for module_name in ("app.cli_track", "app.cli_synth", "app.cli_eval", "app.cli_train", "app.web"):
        module = __import__(module_name, fromlist=["register"])
        module.register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal (SIGTERM, SIGHUP): unwound like Ctrl-C, so that
    every output is closed or left clearly partial and temporary files are removed."""


@contextlib.contextmanager
def stop_signals_as_interrupts() -> Iterator[None]:
    """Inside the block, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame) -> None:
        raise Terminated(signal.Signals(signum).name)

    wanted = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {sig: signal.signal(sig, handler) for sig in wanted}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: Sequence[str] | None = None) -> int:
    # FFmpeg inside OpenCV prints its own complaints about damaged files; our errors say it once.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    parser = build_parser()
    try:
        args = parser.parse_args(_join_negative_values(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as exc:  # --help, --version or a usage error (already printed on one line)
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # the web app's HTTP client would log every request it makes
        logging.getLogger("httpx").setLevel(logging.WARNING)
    from app.sinks import SinkError
    from app.sources import SourceError
    from pose.checkpoint import CheckpointError
    from pose.weights import WeightsError
    from tracking.detector import DetectorError

    name = f"animalpose {args.command}"
    try:
        with stop_signals_as_interrupts():
            return int(args.func(args) or 0)
    except (UserError, WeightsError, CheckpointError, SinkError, SourceError, DetectorError) as exc:
        sys.stderr.write(f"{name}: error: {_one_line(exc)}\n")
        return EXIT_USER_ERROR
    except Terminated as exc:
        sys.stderr.write(f"{name}: stopped by {exc}\n")
        return 128 + signal.Signals[str(exc)].value if str(exc) in signal.Signals.__members__ else 143
    except KeyboardInterrupt:
        sys.stderr.write(f"{name}: interrupted\n")
        return 130
    except Exception as exc:  # a bug or an unforeseen failure: one line for the user, the traceback with -v
        logger.debug("traceback", exc_info=True)
        sys.stderr.write(f"{name}: unexpected error: {type(exc).__name__}: {_one_line(exc)} "
                         f"(run with -v for details and report it)\n")
        return 1


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
