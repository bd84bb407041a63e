"""Seeded random weights for the RTMPose-m key manifest, the same in any Python/numpy/torch.

Both the reference script (run with mmpose 1.3.2 in its own virtual environment) and the tests
import this file, so the 13.6 M weights need not be stored: they are drawn again from the seed.
The draws use only PCG64's raw 64-bit stream (stable across numpy versions by numpy's policy) turned
into doubles by hand, and IEEE arithmetic, so every float32 value is the same everywhere;
``reference.json`` records the SHA-256 of the result to prove it.

Tensors are drawn in manifest order, each from the next ``prod(shape)`` raw numbers:

* conv and linear weights: uniform with variance ``1 / fan_in`` (fan_in = prod(shape[1:]));
* conv biases: U(-0.1, 0.1);
* BN: weight U(0.6, 1.4), bias U(-0.2, 0.2), running_mean U(-0.2, 0.2), running_var U(0.5, 1.5),
  num_batches_tracked 0;
* ScaleNorm ``g``: U(0.8, 1.2); GAU ``gamma`` and ``beta``: U(-1, 1); ``res_scale.scale``: U(0.5, 1.5).

With drawn BN statistics the activations of so deep a random network fade and every crop gives the
same logits, so the reference network (:func:`reference_state_dict`) takes its BN running means and
variances from ``bn_stats.npz`` (93 KB): statistics of the reference crops measured by mmpose and
perturbed (``make_reference.calibrate_batchnorm``).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "state_dict_manifest.json"
BN_STATS = HERE / "bn_stats.npz"
SEED = 24


def uniform(bits: np.random.PCG64, n: int) -> np.ndarray:
    """``n`` doubles in [0, 1) from the raw stream: the top 53 bits of each 64-bit draw."""
    raw = bits.random_raw(n) if n else np.zeros(0, np.uint64)
    return (np.asarray(raw, np.uint64) >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _value(key: str, shape: tuple[int, ...], u: np.ndarray) -> np.ndarray:
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_mean" or (leaf == "bias" and ".bn." in key):
        return 0.2 * (2.0 * u - 1.0)
    if leaf == "running_var":
        return 0.5 + u
    if leaf == "weight" and ".bn." in key:
        return 0.6 + 0.8 * u
    if leaf == "bias":
        return 0.1 * (2.0 * u - 1.0)
    if leaf == "weight":
        fan_in = math.prod(shape[1:])
        return (2.0 * u - 1.0) * math.sqrt(3.0 / fan_in)
    if leaf == "g":
        return 0.8 + 0.4 * u
    if leaf in ("gamma", "beta"):
        return 2.0 * u - 1.0
    if leaf == "scale":
        return 0.5 + u
    raise ValueError(f"no rule for {key}")


def random_state_dict(seed: int = SEED, manifest: Path = MANIFEST) -> dict[str, np.ndarray]:
    """``{key: array}`` in manifest order: float32 arrays, int64 ``num_batches_tracked`` scalars (0)."""
    bits = np.random.PCG64(seed)
    out: dict[str, np.ndarray] = {}
    for key, shape, dtype in json.loads(Path(manifest).read_text()):
        shape = tuple(shape)
        if dtype == "int64":
            out[key] = np.zeros(shape, np.int64)
            continue
        u = uniform(bits, math.prod(shape)).reshape(shape)
        out[key] = np.ascontiguousarray(_value(key, shape, u).astype(np.float32))
    return out


def reference_state_dict() -> dict[str, np.ndarray]:
    """The weights of the reference outputs: :func:`random_state_dict` with the BN statistics of
    ``bn_stats.npz``."""
    weights = random_state_dict()
    with np.load(BN_STATS) as stats:
        for key in stats.files:
            if key not in weights or weights[key].shape != stats[key].shape:
                raise ValueError(f"{BN_STATS.name}: {key} does not fit the manifest")
            weights[key] = stats[key]
    return weights


def digest(state_dict: dict[str, np.ndarray]) -> str:
    """SHA-256 over the keys and the little-endian bytes of every array, in order."""
    h = hashlib.sha256()
    for key, value in state_dict.items():
        h.update(key.encode())
        h.update(np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()
