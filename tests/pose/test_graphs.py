"""Bucketed graph replay on the CPU: which bucket, padding and dropping, chunks, fallback; with stand-in captures."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from pose.graphs import (
    GraphedForward,
    batch_buckets,
    bucket_for,
    capture_eager,
    check_buckets,
    chunk_ranges,
    to_device,
    to_host,
)

BUCKETS = batch_buckets(64)


def row_forward(x: torch.Tensor) -> torch.Tensor:
    """A network whose output rows depend on their input rows alone (as a CNN's do): (B, 3, 4) -> (B, 2)."""
    return torch.stack([x.sum(dim=(1, 2)), x.amax(dim=(1, 2)) * 2], dim=1)


class RecordingCapture:
    """A stand-in capture that records the buckets it captured; its graphs replay eagerly."""

    def __init__(self) -> None:
        self.buckets: list[int] = []

    def __call__(self, forward, static_input):
        self.buckets.append(len(static_input))
        return capture_eager(forward, static_input)


def failing_capture(forward, static_input):
    raise RuntimeError("operation not permitted when stream is capturing")


def rows(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, 3, 4)).astype(np.float32))


@pytest.mark.parametrize(
    ("max_batch", "expected"),
    [
        (64, (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)),
        (6, (1, 2, 3, 4, 6)),
        (5, (1, 2, 3, 4, 5)),
        (1, (1,)),
        (2, (1, 2)),
        (100, (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 100)),
    ],
)
def test_batch_buckets(max_batch, expected):
    assert batch_buckets(max_batch) == expected


@pytest.mark.parametrize(
    ("n", "bucket"), [(1, 1), (2, 2), (3, 3), (5, 6), (6, 6), (7, 8), (9, 12), (13, 16), (33, 48), (49, 64), (64, 64)]
)
def test_bucket_for_is_the_smallest_that_holds_the_batch(n, bucket):
    assert bucket_for(n, BUCKETS) == bucket


@pytest.mark.parametrize("n", [0, -1, 65])
def test_bucket_for_rejects_batches_no_bucket_holds(n):
    with pytest.raises(ValueError, match="buckets"):
        bucket_for(n, BUCKETS)


@pytest.mark.parametrize("buckets", [(), (0, 2), (2, 2), (4, 2)])
def test_check_buckets_rejects_bad_buckets(buckets):
    with pytest.raises(ValueError, match="buckets"):
        check_buckets(buckets)


@pytest.mark.parametrize(
    ("n", "size", "expected"),
    [(0, 64, []), (5, 64, [(0, 5)]), (64, 64, [(0, 64)]), (130, 64, [(0, 64), (64, 128), (128, 130)])],
)
def test_chunk_ranges(n, size, expected):
    assert chunk_ranges(n, size) == expected


@pytest.mark.parametrize(
    ("n", "captured"),
    [(1, [1]), (3, [3]), (5, [6]), (7, [8]), (64, [64]), (65, [64, 1]), (130, [64, 2]), (133, [64, 6]),
     (200, [64, 8])],
)
def test_a_batch_is_padded_to_its_bucket_and_larger_batches_are_chunked(n, captured):
    capture = RecordingCapture()
    runner = GraphedForward(row_forward, "cpu", BUCKETS, capture=capture)
    x = rows(n)
    out = runner(x)
    assert capture.buckets == captured
    assert out.shape == (n, 2)
    torch.testing.assert_close(out, row_forward(x), rtol=0, atol=0)


def test_each_bucket_is_captured_once_and_padding_rows_are_dropped():
    capture = RecordingCapture()
    runner = GraphedForward(row_forward, "cpu", BUCKETS, capture=capture)
    big = rows(8, seed=1)
    runner(big)  # leaves 8 rows of other data in bucket 8's static input
    for n, seed in [(7, 2), (8, 3), (7, 4), (8, 5)]:
        x = rows(n, seed)
        torch.testing.assert_close(runner(x), row_forward(x), rtol=0, atol=0)
    assert capture.buckets == [8]
    assert list(runner.graphs) == [(8, (3, 4), torch.float32)]


def test_without_a_capture_the_network_runs_eagerly_in_chunks():
    seen: list[int] = []

    def forward(x):
        seen.append(len(x))
        return row_forward(x)

    runner = GraphedForward(forward, "cpu", (1, 2, 4), capture=None)
    x = rows(11)
    torch.testing.assert_close(runner(x), row_forward(x), rtol=0, atol=0)
    assert seen == [4, 4, 3]  # no padding when eager, chunks of the largest bucket
    assert not runner.uses_graphs and not runner.graphs


def test_a_failed_capture_falls_back_to_eager_for_good_with_one_warning(caplog):
    calls = []

    def capture(forward, static_input):
        calls.append(len(static_input))
        return failing_capture(forward, static_input)

    runner = GraphedForward(row_forward, "cpu", BUCKETS, capture=capture, name="test network")
    with caplog.at_level(logging.WARNING, logger="pose.graphs"):
        for n in (3, 3, 9, 1):
            x = rows(n, seed=n)
            torch.testing.assert_close(runner(x), row_forward(x), rtol=0, atol=0)
    assert calls == [3]  # never tried again
    assert not runner.uses_graphs and isinstance(runner.failed, RuntimeError)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "test network" in warnings[0].getMessage()


def test_beyond_max_graphs_new_shapes_run_eagerly(caplog):
    capture = RecordingCapture()
    runner = GraphedForward(row_forward, "cpu", BUCKETS, capture=capture, max_graphs=1)
    with caplog.at_level(logging.INFO, logger="pose.graphs"):
        for n in (2, 5, 6, 2):
            x = rows(n, seed=n)
            torch.testing.assert_close(runner(x), row_forward(x), rtol=0, atol=0)
    assert capture.buckets == [2]
    assert runner.uses_graphs  # still replays bucket 2
    assert sum("kept already" in r.getMessage() for r in caplog.records) == 1


def test_graphs_are_kept_per_input_shape():
    capture = RecordingCapture()
    runner = GraphedForward(row_forward, "cpu", (1,), capture=capture)
    for shape in [(1, 3, 4), (1, 5, 4), (1, 3, 4)]:
        x = torch.ones(shape)
        torch.testing.assert_close(runner(x), row_forward(x))
    assert capture.buckets == [1, 1]
    assert sorted(key[1] for key in runner.graphs) == [(3, 4), (5, 4)]


def test_an_empty_batch_runs_eagerly():
    runner = GraphedForward(row_forward, "cpu", BUCKETS, capture=RecordingCapture())
    assert runner(rows(0)).shape == (0, 2)


def test_outputs_are_copies_not_the_static_buffers():
    runner = GraphedForward(row_forward, "cpu", BUCKETS, capture=RecordingCapture())
    first = runner(rows(3, seed=1))
    kept = first.clone()
    runner(rows(3, seed=2))
    torch.testing.assert_close(first, kept, rtol=0, atol=0)


def test_host_transfers_round_trip_on_the_cpu():
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)[..., ::-1]  # not contiguous
    tensor = to_device(array, torch.device("cpu"))
    assert tensor.is_contiguous()
    np.testing.assert_array_equal(to_host(tensor), array)


@pytest.mark.parametrize("max_graphs", [-1])
def test_runner_arguments_are_validated(max_graphs):
    with pytest.raises(ValueError, match="max_graphs"):
        GraphedForward(row_forward, "cpu", BUCKETS, max_graphs=max_graphs)
