"""ResNet backbone (He et al., 2016) in torchvision's key layout, as used by SimpleBaseline.

The mmpose 0.x ``ResNet`` of the AP-10K res50/res101 configs ("pytorch" style:
the stride sits in the 3x3 conv) has exactly torchvision's ``state_dict`` without
``fc.*``: ``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``layer4.2.bn3``. The stem
and base widths are arguments so that narrow test networks share the layout.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "make_bottleneck_layer"]


def _conv1x1_bn(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """Projection shortcut: 1x1 conv (no bias) then BN; keys ``0.weight``, ``1.*``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (expansion 1).

    Args:
        in_channels: channels of the input.
        channels: channels of both convs and of the output.
        stride: stride of the first conv; a projection shortcut is added when
            the stride or the width changes.
    """

    expansion: int = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        needs_projection = stride != 1 or in_channels != channels
        self.downsample = _conv1x1_bn(in_channels, channels, stride) if needs_projection else None

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, with a residual connection.

    Args:
        in_channels: channels of the input.
        channels: width of the inner 1x1 and 3x3 convs; the output has
            ``channels * 4``.
        stride: stride of the 3x3 conv ("pytorch" style); a projection shortcut
            is added when the stride or the width changes.
    """

    expansion: int = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        needs_projection = stride != 1 or in_channels != out_channels
        self.downsample = _conv1x1_bn(in_channels, out_channels, stride) if needs_projection else None

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def make_bottleneck_layer(in_channels: int, channels: int, num_blocks: int, stride: int = 1) -> nn.Sequential:
    """``num_blocks`` Bottlenecks; the first takes ``in_channels`` and the stride."""
    blocks = [Bottleneck(in_channels, channels, stride)]
    blocks += [Bottleneck(channels * Bottleneck.expansion, channels) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class ResNet(nn.Module):
    """Bottleneck ResNet returning the stride-32 feature map of its last stage.

    Args:
        layers: Bottleneck count of each of the four stages, e.g. ``(3, 4, 6, 3)``
            for ResNet-50 and ``(3, 4, 23, 3)`` for ResNet-101.
        stem_channels: output channels of the 7x7 stride-2 stem conv.
        base_channels: inner width of the first stage's Bottlenecks; stage ``i``
            uses ``base_channels * 2**i`` and outputs four times that.
        in_channels: channels of the input image.

    Input ``(N, in_channels, H, W)``; output ``(N, base_channels * 32, H/32, W/32)``.
    """

    def __init__(
        self,
        layers: tuple[int, ...] = (3, 4, 6, 3),
        stem_channels: int = 64,
        base_channels: int = 64,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must be four positive block counts, got {layers}")
        if stem_channels < 1 or base_channels < 1:
            raise ValueError(
                f"stem_channels and base_channels must be positive, got {stem_channels} and {base_channels}"
            )
        self.conv1 = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths = [base_channels * 2**i for i in range(4)]
        ins = [stem_channels] + [w * Bottleneck.expansion for w in widths[:3]]
        self.layer1 = make_bottleneck_layer(ins[0], widths[0], layers[0], stride=1)
        self.layer2 = make_bottleneck_layer(ins[1], widths[1], layers[1], stride=2)
        self.layer3 = make_bottleneck_layer(ins[2], widths[2], layers[2], stride=2)
        self.layer4 = make_bottleneck_layer(ins[3], widths[3], layers[3], stride=2)
        self.out_channels: int = widths[3] * Bottleneck.expansion
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

