"""SimCC decoding and the SimCC flip test, as mmpose 1.x does them for RTMPose.

SimCC (Li et al., 2022) classifies each keypoint's x and y separately: ``(N, K, Wx)`` and
``(N, K, Wy)`` logits over bins of ``1 / split_ratio`` input pixels. Our RTMPose model returns both
in one array, x bins then y bins along the last axis, ``(N, K, Wx + Wy)`` (:func:`split_simcc`), so
that every path that runs a network of one output (CUDA graphs, ONNX Runtime, batching) runs it too.

* :func:`decode_simcc`: mmpose's ``SimCCLabel.decode`` without DARK (the RTMPose configs): the argmax
  bin of each axis over the split ratio, in input pixels; the score is the smaller of the two axes'
  maximum logits; where that is <= 0 the location is bin -1 on both axes.
* :func:`merge_flip_simcc` / :func:`merge_flip_simcc_tensor`: the flip test of ``RTMCCHead.predict``:
  the mirrored crop's x logits are relabelled left <-> right and reversed, its y logits relabelled,
  and both averaged with the plain crop's: ``(a + b) * 0.5`` in float32, equal bit for bit in numpy
  and torch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["decode_simcc", "merge_flip_simcc", "merge_flip_simcc_tensor", "split_simcc"]


def split_simcc(logits: np.ndarray, bins_x: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, Wx + Wy) -> the x logits (N, K, Wx) and the y logits (N, K, Wy) (views)."""
    logits = np.asarray(logits)
    if logits.ndim != 3 or not 0 < bins_x < logits.shape[-1]:
        raise ValueError(f"SimCC logits must have shape (N, K, {bins_x} + Wy), got {logits.shape}")
    return logits[..., :bins_x], logits[..., bins_x:]


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = 2.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """SimCC logits -> keypoints in input (crop) pixels and scores (mmpose 1.x ``SimCCLabel.decode``).

    Args:
        simcc_x: (N, K, Wx) x logits.
        simcc_y: (N, K, Wy) y logits.
        split_ratio: bins per input pixel.

    Returns:
        ``keypoints`` (N, K, 2) float32 ``(x, y)``: the first argmax bin of each axis over
        ``split_ratio``; ``(-1, -1) / split_ratio`` where the score is <= 0. ``scores`` (N, K) float32:
        the smaller of the two maximum logits.
    """
    simcc_x, simcc_y = np.asarray(simcc_x), np.asarray(simcc_y)
    if simcc_x.ndim != 3 or simcc_y.shape[:2] != simcc_x.shape[:2] or simcc_y.ndim != 3:
        raise ValueError(f"SimCC logits must be (N, K, Wx) and (N, K, Wy), got {simcc_x.shape} and {simcc_y.shape}")
    locations = np.stack([np.argmax(simcc_x, axis=-1), np.argmax(simcc_y, axis=-1)], axis=-1).astype(np.float32)
    max_x, max_y = np.max(simcc_x, axis=-1), np.max(simcc_y, axis=-1)
    scores = np.where(max_x > max_y, max_y, max_x)
    locations[scores <= 0] = -1
    return locations / np.float32(split_ratio), scores


def _check_flip(logits_shape: tuple[int, ...], flip_index_len: int, bins_x: int) -> None:
    if len(logits_shape) != 3 or logits_shape[1] != flip_index_len or not 0 < bins_x < logits_shape[2]:
        raise ValueError(f"SimCC logits must have shape (N, {flip_index_len}, {bins_x} + Wy), got {logits_shape}")


def merge_flip_simcc(logits: np.ndarray, logits_mirrored: np.ndarray, flip_index: np.ndarray, bins_x: int
                     ) -> np.ndarray:
    """The flip-test logits (N, K, Wx + Wy) of N crops from the logits of the crops and of their mirror
    images (both (N, K, Wx + Wy), float32)."""
    logits, logits_mirrored = np.asarray(logits, np.float32), np.asarray(logits_mirrored, np.float32)
    flip_index = np.asarray(flip_index)
    _check_flip(logits.shape, len(flip_index), bins_x)
    if logits_mirrored.shape != logits.shape:
        raise ValueError(f"logit shapes differ: {logits.shape} and {logits_mirrored.shape}")
    back = logits_mirrored[:, flip_index]
    back = np.concatenate([back[..., bins_x - 1 :: -1], back[..., bins_x:]], axis=-1)
    return (logits + back) * np.float32(0.5)


def merge_flip_simcc_tensor(logits_both: Tensor, flip_index: Tensor, bins_x: int) -> Tensor:
    """:func:`merge_flip_simcc` on a tensor of 2N rows, the N crops then their mirror images (on any device;
    in float32 equal to the numpy function bit for bit)."""
    if logits_both.ndim != 3 or len(logits_both) % 2:
        raise ValueError(f"SimCC logits must have shape (2N, K, Wx + Wy), got {tuple(logits_both.shape)}")
    _check_flip(tuple(logits_both.shape), len(flip_index), bins_x)
    n = len(logits_both) // 2
    back = logits_both[n:].index_select(1, flip_index.to(logits_both.device, torch.long))
    back = torch.cat([back[..., :bins_x].flip(-1), back[..., bins_x:]], dim=-1)
    return (logits_both[:n] + back) * 0.5
