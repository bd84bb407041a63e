"""The ``animalpose`` command line: thin handlers over the library.

Every handler turns its arguments into settings dataclasses, calls the library and returns an exit
code. Errors a user can act on (missing file, bad checkpoint, offline download) are printed as one
line and give exit code 2; nothing is left half-written.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("animalpose")

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def _parse_box(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"box must be X,Y,W,H numbers, got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"box must have 4 numbers X,Y,W,H, got {text!r}")
    if values[2] <= 0 or values[3] <= 0:
        raise argparse.ArgumentTypeError(f"box width and height must be positive, got {text!r}")
    return values  # type: ignore[return-value]


def add_pose_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs the pose model."""
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
    group.add_argument("--half", action="store_true", help="float16 inference (CUDA only)")
    group.add_argument("--no-flip", action="store_true", help="skip the flip test (about 2x faster, less accurate)")
    group.add_argument(
        "--post-process",
        choices=["default", "dark", "udp", "none"],
        default="default",
        help="heatmap decoding: mmpose's quarter-pixel shift (default), DARK, UDP or plain argmax",
    )


def pose_settings_from_args(args: argparse.Namespace):
    """Build ``PoseSettings`` from the options of :func:`add_pose_model_arguments`."""
    import torch

    from pose.codec import PostProcess
    from pose.estimator import Backend, PoseSettings

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    post = {"default": PostProcess.DEFAULT, "dark": PostProcess.DARK, "udp": PostProcess.UDP, "none": PostProcess.NONE}
    return PoseSettings(
        flip_test=not args.no_flip,
        post_process=post[args.post_process],
        device=device,
        half=args.half,
        backend=Backend(args.backend),
    )


def read_image(path: str | Path):
    """Read an image file as a BGR uint8 array, or raise :class:`UserError` saying why not."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise UserError(f"image {path} does not exist")
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{path} is not an image OpenCV can read (corrupt or unsupported format)")
    return image


def cmd_pose(args: argparse.Namespace) -> int:
    """``animalpose pose IMAGE``: keypoints for given boxes (or detected animals) of one image."""
    import numpy as np

    from app.annotate import draw_poses
    from app.files import atomic_write_bytes, atomic_write_json
    from pose.estimator import PoseEstimator
    from pose.keypoints import KEYPOINT_COLORS, SKELETON, SKELETON_COLORS

    image = read_image(args.image)
    if args.box:
        boxes_xywh = np.array(args.box, np.float32)
    else:
        boxes_xywh = _detect_boxes_xywh(image, args)
    estimator = PoseEstimator.from_weights(args.pose_weights, pose_settings_from_args(args))
    poses = estimator.estimate_xywh(image, boxes_xywh)
    result = {
        "image": str(args.image),
        "instances": [
            {"bbox": [float(v) for v in box], "keypoints": kpts.astype(float).round(4).tolist()}
            for box, kpts in zip(boxes_xywh, poses.keypoints)
        ],
    }
    if args.json:
        atomic_write_json(args.json, result, indent=1)
        logger.info("Wrote %d instances to %s", len(poses), args.json)
    if args.out:
        import cv2

        labels = [f"#{i}" for i in range(len(poses))]
        canvas = draw_poses(
            image, poses.keypoints, SKELETON, KEYPOINT_COLORS, SKELETON_COLORS, poses.boxes, labels, args.kpt_thr
        )
        suffix = Path(args.out).suffix or ".jpg"
        ok, encoded = cv2.imencode(suffix, canvas)
        if not ok:
            raise UserError(f"cannot encode an image with the extension {suffix!r}; use .jpg or .png")
        atomic_write_bytes(args.out, encoded.tobytes())
        logger.info("Wrote %s", args.out)
    if not args.json and not args.out:
        import json

        sys.stdout.write(json.dumps(result) + "\n")
    return 0


def _detect_boxes_xywh(image, args: argparse.Namespace):
    import numpy as np

    try:
        from tracking.detector import Detector, DetectorSettings
    except ImportError as exc:  # pragma: no cover - the detector ships with the package
        raise UserError(f"no --box given and the detector is unavailable ({exc})") from exc
    device = args.device or None
    detector = Detector(DetectorSettings(weights=args.det_weights, **({"device": device} if device else {})))
    detections = detector(image)
    xyxy = detections.xyxy
    logger.info("Detected %d animals", len(xyxy))
    return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1).astype(np.float32)


def cmd_export(args: argparse.Namespace) -> int:
    """``animalpose export``: the pose model as ONNX (dynamic batch), checked against torch."""
    import numpy as np
    import torch

    from pose.checkpoint import load_pose_checkpoint
    from pose.estimator import PoseSettings
    from pose.export import export_onnx, onnx_session, run_onnx
    from pose.weights import resolve_pose_weights

    if args.out is None and args.det_out is None:
        raise UserError("nothing to export: give --out for the pose model and/or --det-weights W --det-out det.onnx")
    if (args.det_weights is None) != (args.det_out is None):
        raise UserError("--det-weights and --det-out go together")
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
    width, height = args.width or width, args.height or height
    path = export_onnx(model, args.out, input_size=(width, height), opset=args.opset)
    inputs = np.random.default_rng(0).standard_normal((2, 3, height, width)).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(inputs)).numpy()
    got = run_onnx(onnx_session(path), inputs)
    error = float(np.abs(got - expected).max() / max(1e-12, float(np.abs(expected).max())))
    logger.info("Exported %s (input %dx%d) to %s; max |onnx - torch| / max|torch| = %.2e", arch, width, height, path,
                error)
    if error > 1e-4:
        raise UserError(f"the ONNX model in {path} differs from torch by {error:.2e} (relative); do not use it")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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


def main(argv: Sequence[str] | None = None) -> int:
    # FFmpeg inside OpenCV prints its own complaints about damaged files; our errors say it once.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from pose.checkpoint import CheckpointError
    from pose.weights import WeightsError

    try:
        return int(args.func(args) or 0)
    except (UserError, WeightsError, CheckpointError) as exc:
        sys.stderr.write(f"animalpose {args.command}: error: {exc}\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
