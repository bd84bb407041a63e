"""The RTMCC head of RTMPose (Jiang et al., 2023) in mmpose 1.x's key layout.

A large-kernel conv turns the backbone's ``(N, C, h, w)`` map into one ``h * w`` vector per keypoint,
a ScaleNorm + linear layer embeds each, a gated attention unit (GAU) mixes the keypoints, and two
linear layers classify each keypoint's x and y into ``W * r`` and ``H * r`` bins (SimCC, ``r`` the
split ratio): ``(N, K, W r)`` and ``(N, K, H r)`` logits.

Names follow mmpose's ``RTMCCHead`` (``final_layer``, ``mlp.{0,1}``, ``gau.{uv,o,gamma,beta,ln,
res_scale}``, ``cls_x``, ``cls_y``). The GAU is the configuration RTMPose uses: self-attention, SiLU,
no relative position bias, no rotary embedding, no dropout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pose.keypoints import NUM_KEYPOINTS

__all__ = ["GatedAttentionUnit", "RTMCCHead", "Scale", "ScaleNorm"]


class ScaleNorm(nn.Module):
    """``x / max(||x|| / sqrt(dim), eps) * g`` over the last axis, with one learned scalar ``g``."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.scale = dim**-0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True) * self.scale
        return x / norm.clamp(min=self.eps) * self.g


class Scale(nn.Module):
    """Multiply by a learned vector ``scale`` (the GAU's residual scale)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class GatedAttentionUnit(nn.Module):
    """GAU self-attention over tokens (Hua et al., 2022), with a scaled residual.

    ``u, v, z = split(silu(uv(norm(x))), [e, e, s])``; ``q, k = z * gamma + beta``;
    ``A = relu(q k^T / sqrt(s))^2``; output ``res_scale * x + o(u * (A v))``.

    Args:
        dims: token width (in = out).
        expansion_factor: ``e = dims * expansion_factor``.
        attention_dims: ``s``, the width of the shared query/key projection.
        eps: ScaleNorm's floor.

    Input and output ``(N, T, dims)``.
    """

    def __init__(self, dims: int = 256, expansion_factor: int = 2, attention_dims: int = 128,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.e = int(dims * expansion_factor)
        self.s = attention_dims
        self.sqrt_s = math.sqrt(attention_dims)
        # Registered in mmpose's order, so that state_dict() lists the keys as its checkpoints do.
        self.o = nn.Linear(self.e, dims, bias=False)
        self.uv = nn.Linear(dims, 2 * self.e + self.s, bias=False)
        self.gamma = nn.Parameter(torch.rand(2, self.s))
        self.beta = nn.Parameter(torch.rand(2, self.s))
        self.ln = ScaleNorm(dims, eps=eps)
        self.res_scale = Scale(dims)
        nn.init.xavier_uniform_(self.uv.weight)

    def forward(self, x: Tensor) -> Tensor:
        uv = F.silu(self.uv(self.ln(x)))
        u, v, base = torch.split(uv, [self.e, self.e, self.s], dim=2)
        base = base.unsqueeze(2) * self.gamma[None, None, :] + self.beta  # (N, T, 2, s)
        q, k = torch.unbind(base, dim=2)
        kernel = torch.square(F.relu(torch.bmm(q, k.transpose(1, 2)) / self.sqrt_s))
        return self.res_scale(x) + self.o(u * torch.bmm(kernel, v))


class RTMCCHead(nn.Module):
    """SimCC head: ``(N, in_channels, h, w)`` features -> ``(N, K, W r)`` and ``(N, K, H r)`` logits.

    Args:
        in_channels: channels of the backbone feature map.
        num_keypoints: K.
        input_size: network input ``(W, H)`` in pixels.
        feature_size: backbone feature map ``(w, h)`` (the input over the backbone's stride, 32).
        split_ratio: SimCC bins per input pixel, ``r``.
        final_kernel: kernel size of the first conv.
        hidden_dims: token width of the GAU.
        attention_dims: GAU's ``s``.
        expansion_factor: GAU's expansion.
    """

    def __init__(self, in_channels: int = 768, num_keypoints: int = NUM_KEYPOINTS,
                 input_size: tuple[int, int] = (256, 256), feature_size: tuple[int, int] = (8, 8),
                 split_ratio: float = 2.0, final_kernel: int = 7, hidden_dims: int = 256, attention_dims: int = 128,
                 expansion_factor: int = 2) -> None:
        super().__init__()
        tokens = feature_size[0] * feature_size[1]
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, final_kernel, padding=final_kernel // 2)
        self.mlp = nn.Sequential(ScaleNorm(tokens), nn.Linear(tokens, hidden_dims, bias=False))
        self.gau = GatedAttentionUnit(hidden_dims, expansion_factor, attention_dims)
        self.cls_x = nn.Linear(hidden_dims, int(input_size[0] * split_ratio), bias=False)
        self.cls_y = nn.Linear(hidden_dims, int(input_size[1] * split_ratio), bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """mmpose's initialisation of the head: convs N(0, 0.001), linear layers N(0, 0.01), zero biases."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(module.weight, std=0.001 if isinstance(module, nn.Conv2d) else 0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        tokens = self.gau(self.mlp(torch.flatten(self.final_layer(x), 2)))
        return self.cls_x(tokens), self.cls_y(tokens)
