"""``animalpose serve``: the command line of the Gradio web app (:mod:`app.web`).

Gradio and the models are imported when the server starts, so that ``animalpose --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from app.cli.common import UserError
from app.web import DEFAULT_PORT

logger = logging.getLogger("animalpose")


def settings_from_args(args: argparse.Namespace):
    """:class:`~app.web.models.WebSettings` from the options of ``animalpose serve``."""
    from app.web.models import WebSettings
    from pose.weights import DEFAULT_POSE_WEIGHTS

    return WebSettings(
        pose_weights=tuple(args.pose_weights or [DEFAULT_POSE_WEIGHTS]),
        det_weights=tuple(args.det_weights or ["yolo11n.pt"]),
        offer_cached=not args.no_cached,
        max_upload_mb=args.max_upload_mb, max_video_s=args.max_video_seconds,
        concurrency=args.concurrency, queue_size=args.queue_size, webcam_streams=args.webcam_streams,
        work_dir=Path(args.work_dir) if args.work_dir else None,
    )

def cmd_serve(args: argparse.Namespace) -> int:
    """``animalpose serve``: run the web app until Ctrl-C."""
    from app.web import build_app, launch

    if args.port is not None and not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in [0, 65535], got {args.port}")
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    # A server must never install packages at run time (ultralytics would, for a file it cannot read).
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    demo = build_app(settings)  # checks the weights: the page names those it can use, the log how to fix the rest
    launch(demo, host=args.host, port=args.port, share=args.share, block=True)
    return 0

def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="the web app: images, videos and the webcam in a browser",
        description="Serve a Gradio web app with an Image tab (boxes, skeletons, keypoint table, JSON), a Video "
        "tab (labeled video, JSON/CSV downloads, confidence plot) and a Webcam tab (the browser's camera "
        "through the pipeline). Visitors choose among the weights named here, never a path of their own. The "
        "weights are checked at start-up without loading them: those that cannot be used (a missing file, an "
        "official name neither cached nor downloadable from here) are not offered, the page says so, and this "
        "console says what to do.",
        epilog="Example: animalpose serve --port 7860 --pose-weights hrnet_w32 --det-weights yolo11n.pt",
    )
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; 0.0.0.0 for every network interface)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    serve.add_argument("--share", action="store_true", help="also publish a temporary public gradio.live link")
    serve.add_argument("--pose-weights", action="append", metavar="W",
                       help="a pose checkpoint file or official name offered to visitors; repeat to offer several "
                       "(default: hrnet_w32, plus the checkpoints already in the weights cache)")
    serve.add_argument("--det-weights", action="append", metavar="W",
                       help="a YOLO weights file offered to visitors; repeat to offer several (default: yolo11n.pt)")
    serve.add_argument("--no-cached", action="store_true", help="do not offer the checkpoints of the weights cache")
    serve.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload in MB (default 200)")
    serve.add_argument("--max-video-seconds", type=float, default=600.0,
                       help="longest video accepted, in seconds (default 600)")
    serve.add_argument("--concurrency", type=int, default=1,
                       help="image and video jobs run at once; others wait in the queue (default 1)")
    serve.add_argument("--queue-size", type=int, default=16, help="jobs that may wait in the queue (default 16)")
    serve.add_argument("--webcam-streams", type=int, default=2, help="webcam sessions served at once (default 2)")
    serve.add_argument("--work-dir", default=None,
                       help="folder for results (default: animalpose-web in the temporary folder)")
    serve.set_defaults(func=cmd_serve)
