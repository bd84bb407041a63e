"""The flip test on torch tensors, on whatever device they are: mirrored crops, flip-back and average.

These are :func:`pose.codec.flip_back` and :func:`pose.codec.merge_flip` for tensors, so that on a GPU
the mirrored copies are made and merged where the network runs and only the merged heatmaps go back
to the host. In float32 the results equal the numpy functions' bit for bit: the flips are copies and
the average is the same two IEEE operations, ``(a + b) * 0.5``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def with_mirrored(crops: Tensor) -> Tensor:
    """(N, C, H, W) crops followed by their horizontal mirror images: (2N, C, H, W)."""
    return torch.cat([crops, crops.flip(-1)])


def flip_back_tensor(heatmaps_flipped: Tensor, flip_index: Tensor | np.ndarray, shift: bool = True) -> Tensor:
    """Undo a horizontal input flip on (N, K, H, W) heatmaps, as :func:`pose.codec.flip_back` does:
    channels relabelled with ``flip_index`` (left <-> right), the width axis mirrored, and with
    ``shift`` the maps moved one column right, column 0 keeping its value."""
    if heatmaps_flipped.ndim != 4:
        raise ValueError(f"heatmaps must have shape (N, K, H, W), got {tuple(heatmaps_flipped.shape)}")
    if isinstance(flip_index, Tensor):
        index = flip_index.to(device=heatmaps_flipped.device, dtype=torch.long)
    else:
        index = torch.tensor(np.asarray(flip_index), dtype=torch.long, device=heatmaps_flipped.device)
    if index.shape != (heatmaps_flipped.shape[1],):
        raise ValueError(f"flip_index must have shape ({heatmaps_flipped.shape[1]},), got {tuple(index.shape)}")
    back = heatmaps_flipped.index_select(1, index).flip(-1)
    if shift:
        back = torch.cat([back[..., :1], back[..., :-1]], dim=-1)
    return back


def merge_flip_tensor(heatmaps_both: Tensor, flip_index: Tensor | np.ndarray, shift: bool = True) -> Tensor:
    """The flip-test heatmaps of N crops from the network's output on the 2N crops of
    :func:`with_mirrored`: ``(heatmaps + flip_back(mirrored)) * 0.5``, (N, K, H, W) in the input's dtype."""
    if heatmaps_both.ndim != 4 or len(heatmaps_both) % 2:
        raise ValueError(f"heatmaps must have shape (2N, K, H, W), got {tuple(heatmaps_both.shape)}")
    n = len(heatmaps_both) // 2
    return (heatmaps_both[:n] + flip_back_tensor(heatmaps_both[n:], flip_index, shift=shift)) * 0.5
