"""``animalpose pose`` (keypoints of the animals in one image), ``export`` (ONNX) and ``info``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
from pathlib import Path

from app.cli.common import (
    UserError,
    add_pose_model_arguments,
    field_default,
    pose_settings_from_args,
    read_image,
    write_error,
)

logger = logging.getLogger("animalpose")


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

    import animalpose
    from app.drawing import DrawSettings, draw_frame
    from app.outputs import check_outputs, check_writable
    from app.results_json import image_document, image_result
    from app.sinks import atomic_write_bytes, atomic_write_json
    from pose.precision import DEFAULT_PRECISION
    from tracking.detector import DetectorError, DetectorSettings, is_release_name

    if not 0 <= args.kpt_thr <= 1:
        raise UserError(f"--kpt-thr must be in [0, 1], got {args.kpt_thr}")
    outputs = [Path(p) for p in (args.json, args.out) if p]
    check_outputs([args.image], outputs)
    check_writable(outputs)
    if args.out:
        check_image_output(args.out)
    image = read_image(args.image)
    pose_settings = pose_settings_from_args(args, DEFAULT_PRECISION)
    detector = None if args.box else DetectorSettings(weights=args.det_weights, cuda_graphs=pose_settings.cuda_graphs,
                                                      backend=pose_settings.backend,
                                                      allow_download=is_release_name(args.det_weights))
    try:
        model = animalpose.load(args.pose_weights, detector, device=pose_settings.device,
                                precision=pose_settings.precision, pose_settings=pose_settings)
        if args.box:  # ground-truth style COCO boxes, cleaned as mmpose's AP-10K evaluation does
            boxes_xywh = np.array(args.box, np.float64)
            _warn_boxes_outside(boxes_xywh, image.shape[1], image.shape[0])
            result = image_result(model.pose(image, boxes_xywh, box_format="xywh"))
        else:  # detector boxes follow mmpose's inference convention, as in track, live and the web app
            detections = model.detect(image)
            logger.info("Detected %d animals", len(detections))
            result = image_result(model.pose(image, detections.xyxy), detections.scores)
    except DetectorError as exc:
        raise UserError(f"no --box given and the detector failed: {exc}") from None
    document = image_document(str(args.image), image.shape[1], image.shape[0], result)
    try:
        if args.json:
            atomic_write_json(args.json, document, indent=1)
            logger.info("Wrote %d animals to %s", len(result), args.json)
        if args.out:
            import cv2

            canvas = draw_frame(image, result, DrawSettings(kpt_thr=args.kpt_thr))
            ok, encoded = cv2.imencode(Path(args.out).suffix, canvas)
            if not ok:
                raise UserError(f"cannot encode the image {args.out}")
            atomic_write_bytes(args.out, encoded.tobytes())
            logger.info("Wrote %s", args.out)
    except OSError as exc:
        raise write_error(exc) from None
    if not args.json and not args.out:
        import json

        sys.stdout.write(json.dumps(document, allow_nan=False) + "\n")
    return 0


def _warn_boxes_outside(boxes_xywh, width: int, height: int) -> None:
    """Warn about boxes that do not overlap the image at all (their keypoints would lie off the image)."""
    for n, (x, y, w, h) in enumerate(boxes_xywh):
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            logger.warning("box %d (%g,%g,%g,%g) lies entirely outside the %dx%d image: its keypoints are "
                           "guesses off the image", n, x, y, w, h, width, height)


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
        from train.export_detector import export_detector_command

        try:
            export_detector_command(args.det_weights, args.det_out, args.det_image_size)
        except (ValueError, RuntimeError) as exc:
            raise UserError(str(exc)) from exc
        logger.info("Exported the detector to %s", args.det_out)
    if args.out is None:
        return 0
    model, arch, recorded = load_pose_checkpoint(resolve_pose_weights(args.pose_weights))
    fixed = arch.fixed_input_size
    asked = (args.width, args.height)
    if fixed is not None and any(a is not None and a != f for a, f in zip(asked, fixed, strict=True)):
        raise UserError(f"--width/--height: {args.pose_weights} takes only {fixed[0]}x{fixed[1]} input "
                        "(its head is built for that size)")
    width, height = fixed or recorded or PoseSettings().input_size
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
        raise write_error(exc) from None
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


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``pose``, ``export`` and ``info``."""
    from app.drawing import DrawSettings
    from pose.weights import DEFAULT_POSE_WEIGHTS
    from tracking.detector import DEFAULT_DETECTOR_WEIGHTS

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
    pose.add_argument("--json", metavar="OUT.json",
                      help="write the results here, in the layout of the video results (docs/formats.md)")
    pose.add_argument("--out", metavar="IMG", help="write the image with the skeletons drawn")
    pose.add_argument("--det-weights", default=DEFAULT_DETECTOR_WEIGHTS,
                      help=f"detector weights, used when no --box is given (default {DEFAULT_DETECTOR_WEIGHTS})")
    kpt_thr = field_default(DrawSettings, "kpt_thr")
    pose.add_argument("--kpt-thr", type=float, default=kpt_thr,
                      help=f"keypoint score below which nothing is drawn (default {kpt_thr})")
    add_pose_model_arguments(pose)
    pose.set_defaults(func=cmd_pose)

    export = sub.add_parser(
        "export", help="write the pose model and/or the detector as ONNX",
        description="Export the pose model and/or the detector to ONNX (dynamic batch) and check the output "
        "against torch."
    )
    export.add_argument("--pose-weights", default=DEFAULT_POSE_WEIGHTS, metavar="W",
                        help=f"checkpoint file or official name (default {DEFAULT_POSE_WEIGHTS})")
    export.add_argument("--out", default=None, metavar="MODEL.onnx", help="where to write the pose model as ONNX")
    export.add_argument("--det-weights", metavar="W", help="local YOLO .pt weights to export with --det-out")
    export.add_argument("--det-out", metavar="DET.onnx",
                        help="where to write the detector as ONNX (checked against torch)")
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

