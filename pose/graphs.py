"""A network replayed from CUDA graphs: one graph per batch-size bucket and input shape, captured on first use.

Launching the thousand small kernels of an HRNet one by one from Python costs more on a fast GPU than
computing them (docs/gpu.md). A CUDA graph records the launches once and replays them in one call.
A graph replays fixed shapes on fixed buffers, so :class:`GraphedForward`

* pads a batch of N rows up to the smallest bucket that holds it (1, 2, 3, 4, 6, 8, ... by default), copies
  it into that bucket's static input, replays, and keeps the first N rows of the static output (the
  padding rows' outputs are dropped; each row of a convolutional network is computed on its own);
* splits a batch larger than the largest bucket into chunks of that size;
* captures a bucket's graph lazily, the first time a batch needs it, after warm-up runs on a side
  stream as torch's documentation asks;
* falls back to running the network eagerly, for good and with one logged warning, when a capture
  fails.

Replays run the kernels that eager calls on the same padded batch run, so their outputs are equal
bit for bit. The capture is a parameter (:data:`Capture`): :func:`capture_cuda_graph` on a GPU,
:func:`capture_eager` (a stand-in that replays by calling the network) in tests on the CPU.

:func:`to_device` and :func:`to_host` move arrays through pinned host memory with non-blocking copies.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

Forward = Callable[[Tensor], Tensor]


def batch_buckets(max_batch: int) -> tuple[int, ...]:
    """Batch sizes with a graph each: the powers of two and their halfway points (1, 2, 3, 4, 6, 8, 12,
    16, 24, ...) below ``max_batch``, then ``max_batch``: a batch is padded by a third at most, and the
    6 crops of 3 animals with the flip test fill a bucket exactly. ``(1, 2, 3, 4, 6, 8, 12, 16, 24, 32,
    48, 64)`` for 64."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    sizes = set()
    power = 1
    while power < max_batch:
        sizes.update(size for size in (power, 3 * power // 2) if size < max_batch)
        power *= 2
    return (*sorted(sizes), max_batch)


def check_buckets(buckets: Sequence[int]) -> tuple[int, ...]:
    """``buckets`` as a strictly increasing tuple of positive batch sizes, or a ValueError naming them."""
    out = tuple(int(b) for b in buckets)
    if not out or out[0] < 1 or any(b >= c for b, c in itertools.pairwise(out)):
        raise ValueError(f"buckets must be increasing positive batch sizes, got {tuple(buckets)}")
    return out


def bucket_for(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds ``n`` rows (``1 <= n <= max(buckets)``)."""
    for bucket in buckets:
        if n <= bucket:
            if n < 1:
                break
            return bucket
    raise ValueError(f"a batch of {n} rows fits none of the buckets {tuple(buckets)}")


def chunk_ranges(n: int, size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` splitting ``n`` rows into chunks of at most ``size``."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    return [(start, min(start + size, n)) for start in range(0, n, size)]


class Replayable(Protocol):
    """A captured forward: fill ``static_input``, call ``replay()``, read ``static_output``."""

    static_input: Tensor
    static_output: Tensor

    def replay(self) -> None: ...


#: ``capture(forward, static_input) -> Replayable``: records ``forward`` on the buffer ``static_input``.
Capture = Callable[[Forward, Tensor], Replayable]


@dataclass
class CapturedGraph:
    """``forward`` recorded in a CUDA graph on ``static_input``; ``static_output`` holds its result after
    ``replay()``. ``keepalive`` holds tensors made outside the capture that the graph reads (a module's
    cached anchors, say), so that their memory is not handed out again while the graph lives."""

    graph: torch.cuda.CUDAGraph
    static_input: Tensor
    static_output: Tensor
    keepalive: tuple = ()

    def replay(self) -> None:
        self.graph.replay()


def capture_cuda_graph(forward: Forward, static_input: Tensor, warmup: int = 3) -> CapturedGraph:
    """Record ``forward(static_input)`` in a CUDA graph, after ``warmup`` eager runs on a side stream (they
    let cuDNN and the caching allocator set themselves up outside the capture, as torch's docs ask).

    The capture's error mode is ``thread_local``: other threads may keep using the GPU meanwhile."""
    device = static_input.device
    with torch.cuda.device(device):
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                forward(static_input)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_output = forward(static_input)
    return CapturedGraph(graph, static_input, static_output)


@dataclass
class EagerReplay:
    """A stand-in for a captured graph: ``replay()`` runs ``forward`` on ``static_input`` eagerly and
    writes the result into ``static_output``. For tests of the bucketing on the CPU."""

    forward: Forward
    static_input: Tensor
    static_output: Tensor

    def replay(self) -> None:
        self.static_output.copy_(self.forward(self.static_input))


def capture_eager(forward: Forward, static_input: Tensor) -> EagerReplay:
    """A :data:`Capture` that records nothing: its replays call ``forward`` (see :class:`EagerReplay`)."""
    return EagerReplay(forward, static_input, forward(static_input).clone())


class GraphedForward:
    """``forward`` over batches of any size, replayed from one captured graph per bucket.

    Args:
        forward: the network, ``(B, ...) -> (B, ...)`` on ``device``; each output row depends on its
            input row alone. It is both what is captured and what runs eagerly.
        device: where ``forward`` runs; inputs on another device are copied there (non-blocking).
        buckets: the batch sizes with a graph, increasing (see :func:`batch_buckets`). Batches are
            padded up to a bucket; larger batches are split into chunks of the largest bucket, also
            when running eagerly.
        capture: how a graph is recorded (:func:`capture_cuda_graph`); None runs ``forward`` eagerly.
        max_graphs: at most this many graphs are kept (one per bucket and input shape); batches of
            further shapes run eagerly.
        name: what the warning of a failed capture calls the network.

    Calls run under ``torch.inference_mode()`` and are serialised by a lock: replays share their static
    buffers.
    """

    def __init__(self, forward: Forward, device: str | torch.device, buckets: Sequence[int],
                 capture: Capture | None = capture_cuda_graph, max_graphs: int = 16, name: str = "network") -> None:
        if max_graphs < 0:
            raise ValueError(f"max_graphs must be at least 0, got {max_graphs}")
        self.forward = forward
        self.device = torch.device(device)
        self.buckets = check_buckets(buckets)
        self.capture = capture
        self.max_graphs = max_graphs
        self.name = name
        self.graphs: dict[tuple, Replayable] = {}
        self.failed: Exception | None = None
        self._full_logged = False
        self._lock = threading.Lock()

    @property
    def uses_graphs(self) -> bool:
        """Whether batches are (still) replayed from graphs: a capture is set and none has failed."""
        return self.capture is not None and self.failed is None

    def __call__(self, x: Tensor) -> Tensor:
        """``forward(x)`` for ``x`` of N rows, as a new tensor on ``device`` (N rows)."""
        with torch.inference_mode(), self._lock:
            if len(x) == 0:
                return self.forward(x.to(self.device))
            outputs = [self._run_chunk(x[start:stop]) for start, stop in chunk_ranges(len(x), self.buckets[-1])]
            return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def _run_chunk(self, chunk: Tensor) -> Tensor:
        n = len(chunk)
        graph = self._graph_for(bucket_for(n, self.buckets), chunk) if self.uses_graphs else None
        if graph is None:
            return self.forward(chunk.to(self.device, non_blocking=True))
        graph.static_input[:n].copy_(chunk, non_blocking=True)
        graph.replay()
        return graph.static_output[:n].clone()

    def _graph_for(self, bucket: int, chunk: Tensor) -> Replayable | None:
        key = (bucket, tuple(chunk.shape[1:]), chunk.dtype)
        graph = self.graphs.get(key)
        if graph is not None:
            return graph
        if len(self.graphs) >= self.max_graphs:
            if not self._full_logged:
                logger.info("%s: %d CUDA graphs kept already; batches of new shapes run eagerly", self.name,
                            self.max_graphs)
                self._full_logged = True
            return None
        static_input = torch.zeros((bucket, *chunk.shape[1:]), dtype=chunk.dtype, device=self.device)
        try:
            graph = self.capture(self.forward, static_input)
        except Exception as error:  # noqa: BLE001 - any failure of the capture means: run eagerly
            self.failed = error
            logger.warning("CUDA graph capture of the %s failed (%s: %s); running it eagerly from now on",
                           self.name, type(error).__name__, error)
            return None
        self.graphs[key] = graph
        logger.debug("%s: captured a CUDA graph for batches of %d, input %s", self.name, bucket, key[1])
        return graph


def to_device(array: np.ndarray, device: torch.device) -> Tensor:
    """``array`` on ``device``: on CUDA through a pinned host buffer and a non-blocking copy (torch's
    caching host allocator keeps the buffer until the copy is done); on the CPU a view of it."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor.to(device)
    pinned = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    pinned.copy_(tensor)
    return pinned.to(device, non_blocking=True)


def to_host(tensor: Tensor) -> np.ndarray:
    """``tensor`` as a numpy array: from CUDA through a non-blocking copy into pinned memory, then a wait
    for the device's current stream."""
    if tensor.device.type != "cuda":
        return tensor.detach().numpy()
    pinned = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    pinned.copy_(tensor, non_blocking=True)
    torch.cuda.current_stream(tensor.device).synchronize()
    return pinned.numpy()
