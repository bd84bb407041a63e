"""Write one benchmark's section of ``docs/benchmarks.md`` without touching the others."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import sys
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
_HEADER = "# Benchmarks\n\nEach section is rewritten by the script named in it. Numbers are what that run measured.\n"


def machine_description() -> str:
    """One line naming the CPU, core count and, when present, the GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text


def write_section(name: str, body: str, command: str, title: str | None = None, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section ``name`` with ``body`` under the heading ``title`` (``## title``),
    stamped with machine, command and date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.exists() else _HEADER
    stamp = (
        f"- machine: {machine_description()}\n"
        f"- command: `{command}`\n"
        f"- date: {_dt.date.today().isoformat()}\n"
    )
    heading = f"## {title}\n\n" if title else ""
    block = f"<!-- begin {name} -->\n{heading}{stamp}\n{body.rstrip()}\n<!-- end {name} -->"
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def markdown_table(columns: list[str], rows: list[list[object]], numeric: set[int] = frozenset()) -> str:
    """A Markdown table: ``columns`` as the header, one line per row (cells as given, ``str()``'d); the
    columns whose index is in ``numeric`` are right-aligned."""
    lines = ["| " + " | ".join(columns) + " |",
             "| " + " | ".join("---:" if i in numeric else "---" for i in range(len(columns))) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line(module: str, argv: list[str] | None) -> str:
    """How a benchmark was run, for :func:`write_section`: ``python -m MODULE`` and its arguments (``argv``, or
    the process's own when None)."""
    return " ".join(["python -m", module, *(argv if argv is not None else sys.argv[1:])])
