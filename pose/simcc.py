"""SimCC decoding and the SimCC flip test, as mmpose 1.x does them for RTMPose.

SimCC (Li et al., 2022) classifies each keypoint's x and y separately: ``(N, K, Wx)`` and
``(N, K, Wy)`` logits over bins of ``1 / split_ratio`` input pixels. Our RTMPose model returns both
in one array, x bins then y bins along the last axis, ``(N, K, Wx + Wy)`` (:func:`split_simcc`), so
that every path that runs a network of one output (CUDA graphs, ONNX Runtime, batching) runs it too.

* :func:`encode_simcc`: the training targets of mmpose's ``SimCCLabel.encode`` with Gaussian label
  smoothing (the RTMPose configs: ``smoothing_type='gaussian'``, ``normalize=False``): each labelled
  keypoint's bin ``round(x * split_ratio)`` (halves to even, as ``np.around``) gets an unnormalised
  Gaussian of ``sigma`` bins over all bins of its axis; a keypoint whose Gaussian (to 3 sigma) misses
  the bins entirely gets weight 0, an unlabelled one (visibility < 0.5) no target and its visibility as
  weight.
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

__all__ = ["decode_simcc", "encode_simcc", "merge_flip_simcc", "merge_flip_simcc_tensor", "split_simcc"]


def split_simcc(logits: np.ndarray, bins_x: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, Wx + Wy) -> the x logits (N, K, Wx) and the y logits (N, K, Wy) (views)."""
    logits = np.asarray(logits)
    if logits.ndim != 3 or not 0 < bins_x < logits.shape[-1]:
        raise ValueError(f"SimCC logits must have shape (N, K, {bins_x} + Wy), got {logits.shape}")
    return logits[..., :bins_x], logits[..., bins_x:]


def encode_simcc(
    keypoints: np.ndarray,
    visible: np.ndarray,
    input_size: tuple[int, int],
    sigma: tuple[float, float] = (5.66, 5.66),
    split_ratio: float = 2.0,
    normalize: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SimCC targets of keypoints in input (crop) pixels (mmpose 1.x ``SimCCLabel.encode``, Gaussian smoothing).

    Args:
        keypoints: (N, K, 2) ``(x, y)`` in input pixels.
        visible: (N, K) visibilities; under 0.5 a keypoint is unlabelled.
        input_size: network input ``(width, height)`` in pixels.
        sigma: Gaussian sigma ``(x, y)`` in bins (RTMPose AP-10K at 256x256: 5.66 both).
        split_ratio: bins per input pixel.
        normalize: divide the Gaussians by ``sigma * sqrt(2 pi)`` (RTMPose: no).

    Returns:
        ``target_x`` (N, K, Wx) and ``target_y`` (N, K, Wy) float32, ``Wx = round(width * split_ratio)``,
        and ``weights`` (N, K) float32: the visibility, 0 where the Gaussian misses the bins.
    """
    keypoints = np.asarray(keypoints, np.float32)
    visible = np.asarray(visible, np.float32)
    if keypoints.ndim != 3 or keypoints.shape[-1] != 2 or visible.shape != keypoints.shape[:2]:
        raise ValueError(f"keypoints must be (N, K, 2) and visible (N, K), got {keypoints.shape} and {visible.shape}")
    sigma_xy = np.asarray(sigma, np.float64)
    if sigma_xy.shape != (2,) or (sigma_xy <= 0).any() or split_ratio <= 0:
        raise ValueError(f"sigma must be two positive values and split_ratio positive, got {sigma} and {split_ratio}")
    bins = np.around(np.asarray(input_size, np.float64) * split_ratio).astype(np.int64)
    centers = np.around(keypoints * np.float32(split_ratio)).astype(np.int64)  # (N, K, 2)
    radius = 3 * sigma_xy
    overlaps = ((centers - radius < bins) & (centers + radius + 1 >= 0)).all(axis=-1)
    labelled = visible >= 0.5
    weights = np.where(labelled & ~overlaps, np.float32(0), visible).astype(np.float32)
    kept = (labelled & overlaps)[..., None]
    targets = []
    for axis in (0, 1):
        # float32 throughout, as mmpose's arrays are: (bin - center)^2 / (2 sigma^2), then exp.
        distance = np.arange(bins[axis], dtype=np.float32) - centers[..., axis, None].astype(np.float32)
        target = np.exp(-np.square(distance) / np.float32(2 * sigma_xy[axis] ** 2))
        if normalize:
            target = target / np.float32(sigma_xy[axis] * np.sqrt(2 * np.pi))
        targets.append(np.where(kept, target, np.float32(0)).astype(np.float32))
    return targets[0], targets[1], weights


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
