"""bench.throughput --modes: the table of pipeline paths runs end to end (here on the CPU, tiny)."""

from __future__ import annotations

import argparse

import pytest

from bench.throughput import MODES, compare_modes


def test_modes_are_today_exact_and_fast():
    assert MODES["today"]["cuda_graphs"] is False and MODES["today"]["ahead"] is False
    assert MODES["exact"]["precision"] == "exact" and MODES["fast"]["precision"] == "fast"


@pytest.mark.timeout(300)
def test_compare_modes_writes_a_row_per_size_animals_and_mode(one_torch_thread):
    args = argparse.Namespace(heights=[72], animals=[1], modes=["today", "exact"], frames=2, device="cpu", repeats=1)
    table = compare_modes(args)
    rows = [line for line in table.splitlines() if line.startswith("| 72p")]
    assert [row.split("|")[3].strip() for row in rows] == ["today", "exact"]
    assert all(float(row.split("|")[4]) > 0 for row in rows)
