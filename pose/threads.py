"""torch's intra-op thread count, set for a block of code and put back after it.

ultralytics sets the count for the whole process (``cpu_count - 1`` on the CPU, one thread on a
2-core machine), which would also slow the pose model; and two processes each running torch on
every core slow each other down many times over. Both are handled with :func:`torch_threads`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(threads: int | None = None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op torch threads (None: the current count), then put the
    count back to what it was before the block, whatever the block set it to."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    before = torch.get_num_threads()
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
