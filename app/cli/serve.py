"""``animalpose serve``: the command line of the Gradio web app (:mod:`app.web`).

Gradio and the models are imported when the server starts, so that ``animalpose --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from app.cli.common import UserError, field_default, options_checked
from app.web import DEFAULT_PORT

logger = logging.getLogger("animalpose")


#: Each option of ``serve`` and the :class:`~app.web.models.WebSettings` field it fills.
OPTION_OF_FIELD: dict[str, str] = {
    "max_upload_mb": "--max-upload-mb", "max_video_s": "--max-video-seconds", "concurrency": "--concurrency",
    "queue_size": "--queue-size", "webcam_streams": "--webcam-streams",
}


def settings_from_args(args: argparse.Namespace):
    """:class:`~app.web.models.WebSettings` from the options of ``animalpose serve``."""
    from app.web.models import WebSettings

    given = dict(pose_weights=tuple(args.pose_weights or ()), det_weights=tuple(args.det_weights or ()))
    with options_checked(OPTION_OF_FIELD):
        return WebSettings(
            **{name: value for name, value in given.items() if value},
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
    settings = settings_from_args(args)
    # A server must never install packages at run time (ultralytics would, for a file it cannot read).
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    demo = build_app(settings)  # checks the weights: the page names those it can use, the log how to fix the rest
    launch(demo, host=args.host, port=args.port, share=args.share, block=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from app.web.models import WebSettings

    def web(name):
        return field_default(WebSettings, name)

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
                       f"(default: {', '.join(web('pose_weights'))}, plus the checkpoints already in the weights "
                       "cache)")
    serve.add_argument("--det-weights", action="append", metavar="W",
                       help="a YOLO weights file offered to visitors; repeat to offer several "
                       f"(default: {', '.join(web('det_weights'))})")
    serve.add_argument("--no-cached", action="store_true", help="do not offer the checkpoints of the weights cache")
    serve.add_argument("--max-upload-mb", type=float, default=web("max_upload_mb"),
                       help=f"largest upload in MB (default {web('max_upload_mb'):g})")
    serve.add_argument("--max-video-seconds", type=float, default=web("max_video_s"),
                       help=f"longest video accepted, in seconds (default {web('max_video_s'):g})")
    serve.add_argument("--concurrency", type=int, default=web("concurrency"),
                       help="image and video jobs run at once; others wait in the queue "
                       f"(default {web('concurrency')})")
    serve.add_argument("--queue-size", type=int, default=web("queue_size"),
                       help=f"jobs that may wait in the queue (default {web('queue_size')})")
    serve.add_argument("--webcam-streams", type=int, default=web("webcam_streams"),
                       help=f"webcam sessions served at once (default {web('webcam_streams')})")
    serve.add_argument("--work-dir", default=None,
                       help="folder for results (default: animalpose-web in the temporary folder)")
    serve.set_defaults(func=cmd_serve)
