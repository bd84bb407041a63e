"""The ``animalpose`` command line: thin handlers over the library, one module per group of commands.

Every handler turns its arguments into settings dataclasses, calls the library and returns an exit
code. Errors a user can act on (missing file, bad checkpoint, offline download) are printed as one
line and give exit code 2; nothing is left half-written. This package's :func:`main` is the entry
point; nothing else imports the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from app.cli.common import EXIT_USER_ERROR, UserError

logger = logging.getLogger("animalpose")


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

    from app.cli import evaluate, pose, serve, synth, training, video

    for module in (pose, video, synth, evaluate, training, serve):
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
    from tracking.smoothing import SpillError

    name = f"animalpose {args.command}"
    try:
        with stop_signals_as_interrupts():
            return int(args.func(args) or 0)
    except (UserError, WeightsError, CheckpointError, SinkError, SourceError, DetectorError, SpillError) as exc:
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
