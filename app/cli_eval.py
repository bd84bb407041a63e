"""``animalpose eval``: COCO keypoint AP of a results file against COCO keypoint GT.

    animalpose eval --gt GT.json --pred PRED.json [--json OUT] [--mmpose-nms]
                    [--per-family] [--per-species]

Prints a table of the ten COCO keypoint numbers (and per-group AP when asked). ``--json``
writes ``{"AP": ..., ..., "ARL": ...}``, plus ``"per_family"``/``"per_species"`` tables
when those flags are given. A missing or malformed input exits with status 2 and one
line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from train.metrics import Grouping, KeypointMetrics, evaluate_keypoints, per_group_ap

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


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the tables, write ``--json``; 2 on a missing or malformed input."""
    try:
        metrics = evaluate_keypoints(args.gt, args.pred, mmpose_nms=args.mmpose_nms)
        groups = {
            key: per_group_ap(args.gt, args.pred, grouping, mmpose_nms=args.mmpose_nms)
            for key, grouping, wanted in (
                ("per_family", Grouping.FAMILY, args.per_family),
                ("per_species", Grouping.SPECIES, args.per_species),
            )
            if wanted
        }
    except (FileNotFoundError, ValueError) as error:
        sys.stderr.write(f"animalpose eval: error: {error}\n")
        return EXIT_BAD_INPUT
    sections = [format_metrics(metrics)]
    sections += [format_groups(key.removeprefix("per_"), table) for key, table in groups.items()]
    sys.stdout.write("\n\n".join(sections) + "\n")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**metrics.to_dict(), **groups}, indent=2) + "\n", encoding="utf-8")
    return EXIT_OK
