"""CSPNeXt (RTMDet, Lyu et al., 2022), the backbone of RTMPose, in mmdet 3.x's key layout.

A stem of three 3x3 conv-BN-SiLU blocks (the first of stride 2), then four stages, each a stride-2
3x3 conv and a CSP layer; the last stage has a spatial-pyramid-pooling block before its CSP layer
and no residual connections in its blocks. The output is the last stage's feature map, at 1/32 of
the input (``(N, widths[-1], H/32, W/32)``).

Module and attribute names follow mmdet's ``CSPNeXt`` (``stem.0.conv``, ``stage1.1.blocks.0.conv2
.depthwise_conv.bn``, ...), so that the official checkpoints load with no renaming. Batch norms use
PyTorch's defaults (eps 1e-5), as RTMPose's configs (``SyncBN``) do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CSPLayer", "CSPNeXt", "CSPNeXtBlock", "ChannelAttention", "ConvBNAct", "DepthwiseSeparableConv",
           "SPPBottleneck"]


class ConvBNAct(nn.Module):
    """Conv (no bias), BN, SiLU: mmcv's ``ConvModule`` as RTMPose configures it.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel, padded by ``kernel_size // 2`` ("same" at stride 1).
        stride: convolution stride.
        groups: channel groups (``in_channels`` for a depthwise conv).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups,
                              bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparableConv(nn.Module):
    """A depthwise ``kernel_size`` conv-BN-SiLU, then a pointwise 1x1 conv-BN-SiLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.depthwise_conv = ConvBNAct(in_channels, in_channels, kernel_size, groups=in_channels)
        self.pointwise_conv = ConvBNAct(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class CSPNeXtBlock(nn.Module):
    """3x3 conv, then a large-kernel depthwise separable conv, plus the input when ``identity``.

    Args:
        channels: input = output channels.
        kernel_size: kernel of the depthwise conv (5 in RTMPose).
        identity: add the input to the output (a residual block).
    """

    def __init__(self, channels: int, kernel_size: int = 5, identity: bool = True) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(channels, channels, 3)
        self.conv2 = DepthwiseSeparableConv(channels, channels, kernel_size)
        self.identity = identity

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.identity else out


class ChannelAttention(nn.Module):
    """Scale each channel by ``hardsigmoid(fc(global average))`` (an SE block without reduction)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * F.hardsigmoid(self.fc(self.pool(x)))


class CSPLayer(nn.Module):
    """Cross-stage partial layer: a 1x1 "main" branch through the blocks, a 1x1 "short" branch, the two
    concatenated (main first), channel attention, and a 1x1 fusion.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        num_blocks: :class:`CSPNeXtBlock` s on the main branch.
        expand_ratio: width of each branch relative to ``out_channels``.
        kernel_size: depthwise kernel of the blocks.
        identity: residual blocks.
        channel_attention: apply :class:`ChannelAttention` to the concatenation.
    """

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int = 1, expand_ratio: float = 0.5,
                 kernel_size: int = 5, identity: bool = True, channel_attention: bool = True) -> None:
        super().__init__()
        mid = int(out_channels * expand_ratio)
        self.main_conv = ConvBNAct(in_channels, mid, 1)
        self.short_conv = ConvBNAct(in_channels, mid, 1)
        self.final_conv = ConvBNAct(2 * mid, out_channels, 1)
        self.blocks = nn.Sequential(*(CSPNeXtBlock(mid, kernel_size, identity) for _ in range(num_blocks)))
        self.attention = ChannelAttention(2 * mid) if channel_attention else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        both = torch.cat([self.blocks(self.main_conv(x)), self.short_conv(x)], dim=1)
        return self.final_conv(self.attention(both))


class SPPBottleneck(nn.Module):
    """1x1 conv to half the channels, max pools of several sizes (stride 1) concatenated after the
    unpooled map, and a 1x1 conv to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: Sequence[int] = (5, 9, 13)) -> None:
        super().__init__()
        mid = in_channels // 2
        self.conv1 = ConvBNAct(in_channels, mid, 1)
        self.poolings = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes)
        self.conv2 = ConvBNAct(mid * (len(kernel_sizes) + 1), out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x, *(pool(x) for pool in self.poolings)], dim=1))


class CSPNeXt(nn.Module):
    """The CSPNeXt backbone (mmdet's ``CSPNeXt``, arch P5, output of the last stage only).

    Args:
        widths: output channels of the stages (``(96, 192, 384, 768)`` for RTMPose-m, i.e. P5's
            ``(128, 256, 512, 1024)`` times the widen factor 0.75).
        depths: :class:`CSPNeXtBlock` s per stage (``(2, 4, 4, 2)``: P5's ``(3, 6, 6, 3)`` times the
            deepen factor 0.67, rounded).
        stem_width: output channels of the stem; its first two convs have half as many.
        expand_ratio: branch width of the CSP layers relative to the stage width.
        kernel_size: depthwise kernel of the blocks.
        channel_attention: channel attention in every CSP layer.
        spp_kernel_sizes: max-pool sizes of the last stage's SPP block.

    Input ``(N, 3, H, W)``; output ``(N, widths[-1], H / 32, W / 32)``.
    """

    def __init__(self, widths: Sequence[int] = (96, 192, 384, 768), depths: Sequence[int] = (2, 4, 4, 2),
                 stem_width: int = 48, expand_ratio: float = 0.5, kernel_size: int = 5,
                 channel_attention: bool = True, spp_kernel_sizes: Sequence[int] = (5, 9, 13)) -> None:
        super().__init__()
        if len(widths) != len(depths) or not widths:
            raise ValueError(f"widths and depths must have the same positive length, got {widths} and {depths}")
        self.stem = nn.Sequential(
            ConvBNAct(3, stem_width // 2, 3, stride=2),
            ConvBNAct(stem_width // 2, stem_width // 2, 3),
            ConvBNAct(stem_width // 2, stem_width, 3),
        )
        self.num_stages = len(widths)
        in_channels = stem_width
        for index, (width, depth) in enumerate(zip(widths, depths)):
            last = index == len(widths) - 1
            layers: list[nn.Module] = [ConvBNAct(in_channels, width, 3, stride=2)]
            if last:
                layers.append(SPPBottleneck(width, width, spp_kernel_sizes))
            layers.append(CSPLayer(width, width, depth, expand_ratio, kernel_size, identity=not last,
                                   channel_attention=channel_attention))
            self.add_module(f"stage{index + 1}", nn.Sequential(*layers))
            in_channels = width

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for index in range(self.num_stages):
            x = getattr(self, f"stage{index + 1}")(x)
        return x
