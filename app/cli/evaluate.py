"""``animalpose eval``: COCO keypoint AP of a results file against COCO keypoint GT.

    animalpose eval --gt GT.json --pred PRED.json [--json OUT] [--mmpose-nms]
                    [--per-family] [--per-species]

Prints a table of the ten COCO keypoint numbers (and per-group AP when asked). ``--json``
writes ``{"AP": ..., ..., "ARL": ...}``, plus ``"per_family"``/``"per_species"`` tables
when those flags are given.

A missing, unreadable or malformed input, or an ``--json`` path that cannot be written
(a folder, a read-only place, a full disk, or the ``--gt``/``--pred`` file itself), exits
with status 2 and one line on stderr, ``animalpose eval: error: ...``. The ``--json``
path is checked before the evaluation and written atomically (a temporary file in the
same folder, then a rename), so an existing file is either replaced whole or left as it
was. Inputs that evaluate but probably not as meant (missing keypoints, no predictions,
unknown categories) give a warning line; see :mod:`train.metrics`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from app.outputs import check_outputs, check_writable
from app.sinks import SinkError, atomic_write_json, sink_error
from train.metrics import Grouping, KeypointMetrics, evaluate_with_groups

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand; its handler is ``args.func`` (returns the exit status)."""
    parser = subparsers.add_parser(
        "eval",
        help="COCO keypoint AP/AR of predictions (AP-10K sigmas)",
        description="COCO keypoint evaluation with the AP-10K OKS sigmas through pycocotools.",
    )
    parser.add_argument("--gt", type=Path, required=True, help="COCO keypoint annotation JSON")
    parser.add_argument("--pred", type=Path, required=True, help="COCO keypoint results JSON")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the metrics here")
    parser.add_argument(
        "--mmpose-nms",
        action="store_true",
        help="rescore and OKS-NMS first, as mmpose 0.x's AP-10K evaluation does",
    )
    parser.add_argument("--per-family", action="store_true", help="also report AP per family")
    parser.add_argument("--per-species", action="store_true", help="also report AP per species")
    parser.set_defaults(func=run)


def format_metrics(metrics: KeypointMetrics) -> str:
    """A two-column text table of the ten metrics (-1 shown as 'n/a')."""
    rows = [(name, "n/a" if value < 0 else f"{value:.4f}") for name, value in metrics.to_dict().items()]
    return _table(("metric", "value"), rows)


def format_groups(title: str, table: dict[str, float]) -> str:
    """A two-column text table of per-group AP."""
    rows = [(name, "n/a" if value < 0 else f"{value:.4f}") for name, value in table.items()]
    return _table((title, "AP"), rows)


def _table(header: tuple[str, str], rows: list[tuple[str, str]]) -> str:
    left = max(len(header[0]), *(len(name) for name, _ in rows)) if rows else len(header[0])
    right = max(len(header[1]), *(len(value) for _, value in rows)) if rows else len(header[1])
    lines = [f"{header[0]:<{left}}  {header[1]:>{right}}", f"{'-' * left}  {'-' * right}"]
    lines += [f"{name:<{left}}  {value:>{right}}" for name, value in rows]
    return "\n".join(lines)


def check_output(out: Path, gt: Path, pred: Path) -> None:
    """Make sure the metrics can be written to ``out`` before any long evaluation: not a folder,
    not the ``--gt`` or ``--pred`` file, in a folder that takes a new file.

    Raises:
        app.sinks.SinkError: with the reason in words.
    """
    check_outputs([gt, pred], [out])
    check_writable([out])


def write_json(out: Path, obj: object) -> None:
    """Write ``obj`` as indented JSON to ``out`` atomically (``out`` is replaced whole or left as it was).

    Raises:
        app.sinks.SinkError: with the reason in words.
    """
    try:
        atomic_write_json(out, obj, indent=2)
    except OSError as error:
        raise sink_error(out, error) from None


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------
def _groupings(args: argparse.Namespace) -> Sequence[tuple[str, Grouping]]:
    wanted = (("per_family", Grouping.FAMILY, args.per_family), ("per_species", Grouping.SPECIES, args.per_species))
    return [(key, grouping) for key, grouping, on in wanted if on]


def _fail(message: str) -> int:
    one_line = " ".join(message.splitlines())
    sys.stderr.write(f"animalpose eval: error: {one_line}\n")
    return EXIT_BAD_INPUT


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the tables, write ``--json``; 2 on a bad input or an unwritable output."""
    groupings = _groupings(args)
    try:
        if args.json is not None:
            check_output(args.json, args.gt, args.pred)
        metrics, tables = evaluate_with_groups(
            args.gt, args.pred, [grouping for _, grouping in groupings], mmpose_nms=args.mmpose_nms
        )
    except (SinkError, OSError, ValueError) as error:
        return _fail(str(error))
    groups = {key: tables[grouping] for key, grouping in groupings}
    sections = [format_metrics(metrics)]
    sections += [format_groups(key.removeprefix("per_"), table) for key, table in groups.items()]
    sys.stdout.write("\n\n".join(sections) + "\n")
    if args.json is not None:
        try:
            write_json(args.json, {**metrics.to_dict(), **groups})
        except SinkError as error:
            return _fail(str(error))
    return EXIT_OK
