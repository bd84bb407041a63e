"""``animalpose track`` (files, folders, image sequences) and ``animalpose live`` (cameras, streams)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from app.cli.common import UserError, field_default, options_checked, positive_float

logger = logging.getLogger("animalpose")

#: What ``--save`` can name (``app.runs.SAVE_SUFFIXES`` says the file each gives).
SAVE_CHOICES = ("video", "json", "jsonl", "csv", "coco", "dlc", "dlc-csv", "sleap", "slp", "nwb")
#: The options that name one output file each (``--out`` is the video).
SINGLE_OUTPUT_OPTIONS = ("out", "json", "jsonl", "csv", "coco", "dlc", "sleap", "nwb")


def add_detector_and_tracker_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--det-*`` and tracking options; their defaults are those of :class:`DetectorSettings` and
    :class:`app.runs.TrackSettings`."""
    from app.pipeline import PoseOrder
    from app.profiles import REALTIME_CHOICES
    from app.runs import TrackSettings
    from tracking.detector import DEFAULT_DETECTOR_WEIGHTS, DetectorSettings

    def det(name):
        return field_default(DetectorSettings, name)

    def track(name):
        return field_default(TrackSettings, name)

    group = parser.add_argument_group("detector")
    group.add_argument(
        "--det-weights", default=DEFAULT_DETECTOR_WEIGHTS,
        help="ultralytics YOLO weights: a COCO model such as yolo11n.pt (downloaded by ultralytics when it is "
        f"only a name), an AP-10K fine-tune or MegaDetector MDV1000 (default: {DEFAULT_DETECTOR_WEIGHTS})",
    )
    group.add_argument("--det-conf", type=float, default=det("confidence"),
                       help=f"lowest detection score kept (default {det('confidence')})")
    group.add_argument("--det-iou", type=float, default=det("iou"),
                       help="IoU above which the detector's non-maximum suppression drops the weaker of two boxes "
                       f"(default {det('iou')}; lower: fewer duplicate boxes on one animal, but animals that overlap "
                       "that much lose one box)")
    realtime_size = ("" if REALTIME_CHOICES.det_image_size == det("image_size")
                     else f"; {REALTIME_CHOICES.det_image_size} with --profile realtime")
    group.add_argument("--det-imgsz", type=int, default=None,
                       help=f"detector input size in pixels, a multiple of 32 (default {det('image_size')}"
                       f"{realtime_size})")
    group.add_argument("--det-every", type=int, default=None, metavar="K",
                       help="run the detector every K frames; tracks are predicted in between "
                       f"(default {track('det_every')}; {REALTIME_CHOICES.det_every} with --profile realtime)")
    group = parser.add_argument_group("tracking and smoothing")
    group.add_argument("--smoothing", choices=["causal", "offline", "none"], default=None,
                       help="keypoint smoothing: causal Kalman filter, offline RTS smoother over the whole file "
                       "(files only; lowest error) or none (default: offline for files, causal for live)")
    group.add_argument("--pose-order", choices=[o.value for o in PoseOrder], default=track("pose_order").value,
                       help="run the pose model after tracking, on tracked animals only, or before, on every "
                       f"detection so that keypoints help keep identities (default {track('pose_order').value})")
    group.add_argument("--max-lost", type=float, default=track("max_lost_s"), metavar="SECONDS",
                       help="seconds an animal may be unseen (hidden or out of the frame) and keep its identity "
                       f"when it comes back (default {track('max_lost_s'):g})")
    group.add_argument("--min-hits", type=int, default=track("min_hits"), metavar="N",
                       help="detections (the first two in a row) before an animal gets an identity (more: fewer "
                       "identities started on false or duplicate boxes, a later start for real ones) "
                       f"(default {track('min_hits')})")
    group.add_argument("--appearance", type=float, default=track("appearance"), metavar="W",
                       help="weight in [0, 1] of a colour-histogram appearance cue in the tracker's association: "
                       "animals that come back get their own identity back by their colours "
                       f"(default {track('appearance'):g}: boxes, keypoints and motion only)")


#: Each option of the video commands and the settings field it fills (for errors that name the option).
OPTION_OF_FIELD: dict[str, str] = {
    "det_every": "--det-every", "max_lost_s": "--max-lost", "min_hits": "--min-hits", "appearance": "--appearance",
    "fps": "--fps", "kpt_thr": "--kpt-thr", "trail_length": "--trails", "confidence": "--det-conf",
    "iou": "--det-iou", "image_size": "--det-imgsz", "max_reconnect_s": "--max-reconnect",
}


def add_profile_argument(parser: argparse.ArgumentParser, live: bool) -> None:
    """``--profile`` (:mod:`app.profiles`)."""
    from app.profiles import FULL_CHOICES, REALTIME_CHOICES, Profile

    default = ("realtime on a machine without a CUDA GPU, full with one" if live else "full")
    parser.add_argument(
        "--profile", choices=[p.value for p in Profile], default=None,
        help=f"full: the most accurate keypoints ({FULL_CHOICES.describe()}); realtime: real time on a CPU "
        f"({REALTIME_CHOICES.describe()}); options given explicitly win over the profile (default: {default})",
    )


def profile_from_args(args: argparse.Namespace, live: bool):
    """The :class:`app.profiles.ProfileChoices` of ``--profile`` (or of the default profile for the device
    and source), with the options given explicitly in place of the profile's; the choices are logged
    when a live run starts and when the profile was asked for."""
    from dataclasses import replace as replace_fields

    from app.cli.common import resolve_device
    from app.profiles import Profile, default_profile, profile_choices

    asked = args.profile is not None
    if asked:
        profile = Profile(args.profile)
    else:  # resolve_device reports a bad --device as one line
        profile = default_profile(live, resolve_device(args.device))
    chosen = profile_choices(profile)
    given = {"pose_weights": args.pose_weights, "flip_test": args.flip_test, "det_image_size": args.det_imgsz,
             "det_every": args.det_every}
    with options_checked(OPTION_OF_FIELD):
        choices = replace_fields(chosen, **{name: value for name, value in given.items() if value is not None})
    if asked or live:
        why = "" if asked else (" (no CUDA GPU here; --profile full for the full models)"
                                if profile is Profile.REALTIME else " (--profile realtime for a CPU)")
        logger.info("profile %s%s: %s", profile.value, why, choices.describe())
    return choices


def detector_settings_from_args(args: argparse.Namespace, pose_settings, choices=None):
    """``tracking.detector.DetectorSettings`` for the ``--det-*`` options (the input size: that of ``choices``,
    :func:`profile_from_args`; None: those of a file source), on the pose model's device and in its precision;
    a bare released name such as ``yolo11n.pt`` (no folder, no such file here) may be downloaded by ultralytics."""
    from tracking.detector import DetectorSettings, is_release_name

    choices = choices or profile_from_args(args, live=False)

    with options_checked(OPTION_OF_FIELD):
        return DetectorSettings(weights=str(args.det_weights), confidence=args.det_conf, iou=args.det_iou,
                                image_size=choices.det_image_size, device=pose_settings.device,
                                precision=pose_settings.precision, half=pose_settings.half,
                                cuda_graphs=pose_settings.cuda_graphs, backend=pose_settings.backend,
                                allow_download=is_release_name(args.det_weights))


def models_from_args(args: argparse.Namespace, choices, live: bool = False):
    """The :class:`animalpose.Model` of the ``--pose-*`` and ``--det-*`` options and the profile's ``choices``
    (:func:`profile_from_args`; ``live``: the live default precision, :data:`pose.precision.LIVE_PRECISION`)."""
    import animalpose
    from app.cli.common import pose_settings_from_args
    from pose.precision import DEFAULT_PRECISION, LIVE_PRECISION

    pose_settings = pose_settings_from_args(args, LIVE_PRECISION if live else DEFAULT_PRECISION, choices.flip_test)
    detector = detector_settings_from_args(args, pose_settings, choices)
    return animalpose.load(choices.pose_weights, detector, device=pose_settings.device,
                           precision=pose_settings.precision, pose_settings=pose_settings)


def track_settings_from_args(args: argparse.Namespace, live: bool, choices):
    """:class:`app.runs.TrackSettings` for the tracking, drawing and output options and the profile's
    ``choices`` (:func:`profile_from_args`); the detector's options are checked at once, before any model
    loads."""
    from app.drawing import DrawSettings
    from app.pipeline import PoseOrder
    from app.runs import TrackSettings
    from app.sinks import CsvLayout
    from tracking.detector import DetectorSettings
    from tracking.smoothing import SmoothingMode

    if live and args.smoothing == "offline":
        raise UserError("--smoothing offline needs the whole file; live streams use causal or none")
    with options_checked(OPTION_OF_FIELD):
        DetectorSettings(weights=str(args.det_weights), confidence=args.det_conf, iou=args.det_iou,
                         image_size=choices.det_image_size)
        return TrackSettings(
            det_every=choices.det_every, smoothing=SmoothingMode(args.smoothing) if args.smoothing else None,
            pose_order=PoseOrder(args.pose_order), max_lost_s=args.max_lost,
            min_hits=args.min_hits, appearance=args.appearance,
            draw=DrawSettings(kpt_thr=args.kpt_thr, trail_length=args.trails), csv_layout=CsvLayout(args.csv_layout),
            fps=getattr(args, "fps", None), progress_bar=not getattr(args, "quiet", False),
        )


def _single_output_named(args: argparse.Namespace) -> bool:
    """Whether an option that names one output file was given (``--out``, ``--json``, ``--dlc``...)."""
    return any(getattr(args, name, None) for name in SINGLE_OUTPUT_OPTIONS)


def _single_outputs(args: argparse.Namespace, stem: str):
    from app.runs import OutputPaths, outputs_in_folder

    def path(name: str) -> Path | None:
        value = getattr(args, name, None)
        return Path(value) if value else None

    dlc, sleap = path("dlc"), path("sleap")
    explicit = OutputPaths(
        video=path("out"), json=path("json"), jsonl=path("jsonl"), csv=path("csv"), coco=path("coco"),
        dlc=dlc if dlc is not None and dlc.suffix.lower() != ".csv" else None,
        dlc_csv=dlc if dlc is not None and dlc.suffix.lower() == ".csv" else None,
        sleap=sleap if sleap is not None and sleap.suffix.lower() != ".slp" else None,
        slp=sleap if sleap is not None and sleap.suffix.lower() == ".slp" else None,
        nwb=path("nwb"),
    )
    if explicit.requested():
        if explicit.json is not None and explicit.jsonl is None:
            if explicit.json.suffix.lower() == ".jsonl":
                raise UserError(f"--json {explicit.json}: the frames are streamed to FILE.jsonl beside the JSON; "
                                "give the JSON the extension .json (or use --jsonl for JSON Lines alone)")
            explicit = replace(explicit, jsonl=explicit.json.with_suffix(".jsonl"))
        return explicit
    return outputs_in_folder(stem, Path(args.out_dir), args.save, args.video_suffix)


def cmd_track(args: argparse.Namespace) -> int:
    """``animalpose track SOURCE``: one video / image sequence, or every video of a folder or glob."""
    from app.sources import SourceKind, source_kind

    kind = source_kind(args.source)
    if kind is SourceKind.LIVE:
        raise UserError(f"{args.source} is a camera or stream: use 'animalpose live {args.source}'")
    choices = profile_from_args(args, live=False)
    settings = track_settings_from_args(args, live=False, choices=choices)
    if kind is not SourceKind.VIDEOS:
        return _track_one(args, settings, choices)
    return _track_folder(args, settings, choices)


def _track_one(args: argparse.Namespace, settings, choices) -> int:
    from app.runs import check_track_outputs

    stem = Path(str(args.source).rstrip("/")).stem or "frames"
    outputs = _single_outputs(args, stem)
    check_track_outputs(args.source, outputs)  # before the models load: a mistake is told at once
    summary = models_from_args(args, choices).track(str(args.source), outputs=outputs, settings=settings)
    if summary.frames_skipped:
        logger.warning("%s: %d unreadable frames were skipped (named above); the outputs hold the other %d",
                       args.source, summary.frames_skipped, summary.frames)
    return 0


def _track_folder(args: argparse.Namespace, settings, choices) -> int:
    from app.runs import check_folder_outputs, folder_plan
    from app.sources import expand_video_inputs

    if _single_output_named(args):
        raise UserError("a folder or glob of videos writes into --out-dir (choose formats with --save), "
                        "not to single files given with --out/--json/--jsonl/--csv/--coco/--dlc/--sleap/--nwb")
    # Every output of the run against every video and every other output, before the models load.
    check_folder_outputs(folder_plan(expand_video_inputs(args.source), Path(args.out_dir), args.save,
                                     args.video_suffix))
    summary = models_from_args(args, choices).track(args.source, save=args.save, out_dir=args.out_dir,
                                           video_suffix=args.video_suffix, overwrite=args.overwrite,
                                           settings=settings)
    if summary.failed:
        sys.stderr.write("animalpose track: failed: " + ", ".join(str(video) for video, _ in summary.failed) + "\n")
        return 1
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    """``animalpose live SOURCE``: a camera or stream, newest frame first, until Ctrl-C or --max-frames.

    The outputs hold every processed frame on every way out: Ctrl-C, SIGTERM, ``--max-frames``, the end
    of a file, and a stream that could not be reconnected (then the exit code is 1).
    """
    from app.drawing import draw_frame
    from app.outputs import check_outputs, check_writable
    from app.pipeline import LatencyHistogram, run_frames
    from app.runs import OutputPaths, check_output_formats, final_sinks
    from app.sources import LiveSettings, LiveSource, SourceError

    choices = profile_from_args(args, live=True)
    settings = track_settings_from_args(args, live=True, choices=choices)
    if args.max_frames < 0:
        raise UserError(f"--max-frames must be 0 (no limit) or more, got {args.max_frames}")
    with options_checked(OPTION_OF_FIELD):
        live_settings = LiveSettings(max_reconnect_s=args.max_reconnect)
    outputs = _single_outputs(args, "live") if _single_output_named(args) else OutputPaths()
    source_file = Path(str(args.source))
    check_outputs([source_file] if source_file.is_file() else [], outputs.requested())
    check_output_formats(outputs)
    check_writable(outputs.requested())
    model = models_from_args(args, choices, live=True)
    spec = int(args.source) if str(args.source).isdigit() else str(args.source)
    show = args.show and _has_screen()
    if args.show and not show:
        logger.warning("no screen here (DISPLAY is not set): not showing a window; use --out to save the video")
    latencies = LatencyHistogram()
    window = {"show": show}
    stop = {"now": False}
    lost: SourceError | None = None

    def on_sigterm(*_):
        stop["now"] = True

    def on_result(frame, result) -> None:
        latencies.add(time.monotonic() - frame.captured_at)
        if window["show"]:
            import cv2

            try:
                cv2.imshow("animalpose", draw_frame(frame.image, result, settings.draw))
                if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                    stop["now"] = True
            except cv2.error as exc:  # an OpenCV built without a window system (opencv-python-headless)
                logger.warning("cannot show a window (%s); going on without it", str(exc).strip().splitlines()[-1])
                window["show"] = False

    def should_stop() -> bool:
        return stop["now"] or bool(args.max_frames and latencies.count >= args.max_frames)

    in_main_thread = threading.current_thread() is threading.main_thread()  # signals go to the main thread
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main_thread else None
    try:
        with LiveSource(spec, live_settings) as source, ExitStack() as stack:
            pipeline = model.pipeline(live=True, fps=source.info.fps, settings=settings)
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="animalpose-")))
            sinks = final_sinks(stack, outputs, source.info, settings, tmp, stream_jsonl=True)
            start = time.perf_counter()
            try:
                run_frames(source, pipeline, sinks, on_result=on_result, stop=should_stop)
            except KeyboardInterrupt:
                logger.info("interrupted: outputs closed")
            except SourceError as exc:  # the stream is gone: keep what was processed
                lost = exc
            wall = time.perf_counter() - start
            stats = source.stats
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    if latencies.count:
        logger.info(
            "%d frames in %.1f s (%.2f frames/s); latency p50 %.0f ms, p95 %.0f ms; %s",
            latencies.count, wall, latencies.count / wall, 1e3 * latencies.percentile(50),
            1e3 * latencies.percentile(95), stats.describe(),
        )
    if lost is not None:
        kept = f"; the outputs hold the {latencies.count} frames processed" if outputs.requested() else ""
        sys.stderr.write(f"animalpose live: error: {lost}{kept}\n")
        return 1
    return 0


def _has_screen() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in ("win32", "darwin")


def _add_output_arguments(parser: argparse.ArgumentParser, folder_mode: bool) -> None:
    from app.drawing import DrawSettings
    from app.runs import TrackSettings
    from app.sinks import CsvLayout

    layout = field_default(TrackSettings, "csv_layout").value
    group = parser.add_argument_group("outputs")
    group.add_argument("--out", metavar="VIDEO",
                       help="labeled video: .mp4 (H.264: plays in browsers, phones and players), .webm (VP9), .mkv "
                       "(H.264) or .avi (Motion JPEG)")
    group.add_argument("--json", metavar="FILE",
                       help="all results as one JSON document (plus FILE.jsonl streamed per frame)")
    group.add_argument("--jsonl", metavar="FILE", help="JSON Lines, one frame per line, flushed as it runs")
    group.add_argument("--csv", metavar="FILE", help="keypoints as CSV (see --csv-layout)")
    group.add_argument("--csv-layout", choices=[c.value for c in CsvLayout], default=layout,
                       help="long: a row per frame x animal x keypoint; wide: DeepLabCut-style, a row per frame "
                       f"(default: {layout})")
    group.add_argument("--coco", metavar="FILE", help="COCO keypoint results (one entry per frame x animal)")
    group.add_argument("--dlc", metavar="FILE",
                       help="DeepLabCut multi-animal pose file: FILE.h5 or FILE.csv (needs animalpose[formats])")
    group.add_argument("--sleap", metavar="FILE",
                       help="SLEAP pose file: FILE.h5 (analysis HDF5) or FILE.slp (labels) (needs animalpose[formats])")
    group.add_argument("--nwb", metavar="FILE",
                       help="NWB file with ndx-pose (Neurodata Without Borders) (needs animalpose[formats])")
    group.add_argument("--trails", type=int, default=field_default(DrawSettings, "trail_length"), metavar="N",
                       help="draw the last N positions of each animal")
    kpt_thr = field_default(DrawSettings, "kpt_thr")
    group.add_argument("--kpt-thr", type=float, default=kpt_thr,
                       help=f"keypoints below this confidence are not drawn (default {kpt_thr})")
    if folder_mode:
        group.add_argument("--out-dir", default="animalpose_out",
                           help="folder for results when no single output is named, and for folder/glob sources "
                           "(default: animalpose_out)")
        group.add_argument("--save", nargs="+", choices=SAVE_CHOICES, default=["video", "json"],
                           help="what to write into --out-dir for each video (default: video json; json also "
                           "streams a .jsonl; dlc: NAME.dlc.h5, dlc-csv: NAME.dlc.csv, sleap: NAME.sleap.h5, "
                           "slp: NAME.slp, nwb: NAME.nwb, which need animalpose[formats])")
        group.add_argument("--video-suffix", default=".mp4", choices=[".mp4", ".webm", ".mkv", ".mov", ".avi"],
                           help="container of the labeled videos in --out-dir (default .mp4: H.264, plays "
                           "everywhere)")
        group.add_argument("--overwrite", action="store_true", help="redo videos whose outputs already exist")
        group.add_argument("--fps", type=positive_float, default=None,
                           help="frame rate of an image-folder source (default 1)")


def register(subparsers: argparse._SubParsersAction) -> None:
    from app.cli.common import add_pose_model_arguments
    from app.sources import LiveSettings

    track = subparsers.add_parser(
        "track",
        help="track animals and their keypoints in a video, a folder of videos or an image sequence",
        description="Detect, track and estimate the pose of every animal in a video file (anything FFmpeg reads), "
        "every video of a folder or glob (finished videos are skipped, so an interrupted run resumes), or a "
        "folder of images. Writes a labeled video and the keypoints as JSON/CSV/COCO.",
        epilog="Example: animalpose track safari.mp4 --out safari_labeled.mp4 --json safari.json",
    )
    track.add_argument("source", help="video file, folder or glob of videos (quote the glob), or image folder")
    _add_output_arguments(track, folder_mode=True)
    add_profile_argument(track, live=False)
    add_detector_and_tracker_arguments(track)
    add_pose_model_arguments(track)
    track.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    track.set_defaults(func=cmd_track)

    live = subparsers.add_parser(
        "live",
        help="track animals live from a webcam or an RTSP/HTTP stream",
        description="Process a camera (index, e.g. 0) or a network stream (rtsp://, http://) newest frame first: "
        "stale frames are dropped, so results never fall behind. Reconnects when the stream drops. "
        "Stop with Ctrl-C (outputs are closed properly).",
        epilog="Example: animalpose live rtsp://camera.local/stream --show",
    )
    live.add_argument("source", help="camera index or stream URL")
    _add_output_arguments(live, folder_mode=False)
    live.add_argument("--show", action="store_true", help="show the labeled stream in a window (needs a screen)")
    live.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: run until stopped)")
    reconnect = field_default(LiveSettings, "max_reconnect_s")
    live.add_argument("--max-reconnect", type=float, default=reconnect, metavar="SECONDS",
                      help=f"give up when the stream stays down this long (default {reconnect:g})")
    add_profile_argument(live, live=True)
    add_detector_and_tracker_arguments(live)
    add_pose_model_arguments(live)
    live.set_defaults(func=cmd_live)
