"""HRNet backbone (Sun et al., 2019) in the key layout of mmpose 0.x, as used by AP-10K.

The network keeps a stride-4 branch from start to end and adds a branch of half
the resolution and twice the width (by default) in each of stages 2, 3 and 4:

    stem (two 3x3 stride-2 convs) -> layer1 (Bottlenecks)
    -> transition1 -> stage2 (2 branches) -> transition2 -> stage3 (3 branches)
    -> transition3 -> stage4 (4 branches, fused into the stride-4 branch only)

Each stage is a sequence of HRModules: BasicBlocks per branch, then
every output branch sums all input branches resampled to its resolution.

The module names reproduce mmpose's ``state_dict`` exactly, irregularities
included (``transition1.0.*`` beside ``transition1.1.0.*``, empty slots for
unchanged branches, ``fuse_layers.i.j`` numbering), so official checkpoints load
with ``strict=True``. Unchanged branches and ``fuse_layers.i.i`` are
``nn.Identity`` here (mmpose stores ``None``); neither has parameters.
"""

from __future__ import annotations

from torch import Tensor, nn

from pose.resnet import BasicBlock, Bottleneck, make_bottleneck_layer

__all__ = ["HRModule", "HRNet"]


def _conv_bn(in_channels: int, out_channels: int, stride: int, relu: bool) -> nn.Sequential:
    """3x3 conv (no bias), BN and optionally ReLU; keys ``0.weight``, ``1.*``."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _upsample_from(in_channels: int, out_channels: int, factor: int) -> nn.Sequential:
    """Fuse path from a coarser branch: 1x1 conv, BN, nearest upsampling by ``factor``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.Upsample(scale_factor=factor, mode="nearest"),
    )


def _downsample_from(in_channels: int, out_channels: int, steps: int) -> nn.Sequential:
    """Fuse path from a finer branch: ``steps`` 3x3 stride-2 conv+BN blocks.

    All but the last keep ``in_channels`` and end with a ReLU; the last maps to
    ``out_channels`` without one.
    """
    blocks = [_conv_bn(in_channels, in_channels, stride=2, relu=True) for _ in range(steps - 1)]
    blocks.append(_conv_bn(in_channels, out_channels, stride=2, relu=False))
    return nn.Sequential(*blocks)


class HRModule(nn.Module):
    """Parallel branches of BasicBlocks followed by a multi-resolution fusion.

    Args:
        widths: channels of each branch, finest first; branch ``i`` has stride
            ``4 * 2**i`` in the network.
        num_blocks: BasicBlocks per branch.
        multiscale_output: if False only the finest branch is fused and returned
            (the last module of HRNet's last stage).

    ``forward`` takes and returns a list of ``(N, widths[i], H_i, W_i)`` tensors.
    """

    def __init__(self, widths: tuple[int, ...], num_blocks: int, multiscale_output: bool = True) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"an HRModule needs at least two branches, got widths={widths}")
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be positive, got {num_blocks}")
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(width, width) for _ in range(num_blocks)]) for width in widths
        )
        num_outputs = len(widths) if multiscale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse_path(widths, i, j) for j in range(len(widths))) for i in range(num_outputs)
        )
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _fuse_path(widths: tuple[int, ...], i: int, j: int) -> nn.Module:
        """Module resampling branch ``j`` to the resolution and width of output ``i``."""
        if j > i:
            return _upsample_from(widths[j], widths[i], 2 ** (j - i))
        if j < i:
            return _downsample_from(widths[j], widths[i], i - j)
        return nn.Identity()

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        x = [branch(xi) for branch, xi in zip(self.branches, x)]
        fused = []
        for paths in self.fuse_layers:
            y = paths[0](x[0])
            for path, xj in zip(paths[1:], x[1:]):
                y = y + path(xj)
            fused.append(self.relu(y))
        return fused


def _stage(widths: tuple[int, ...], num_modules: int, num_blocks: int, multiscale_output: bool) -> nn.Sequential:
    """``num_modules`` HRModules; only the last one may drop the coarse outputs."""
    modules = [
        HRModule(widths, num_blocks, multiscale_output or index < num_modules - 1) for index in range(num_modules)
    ]
    return nn.Sequential(*modules)


def _transition(in_widths: tuple[int, ...], out_widths: tuple[int, ...]) -> nn.ModuleList:
    """Adapt the branches of one stage to the next and add one coarser branch.

    An existing branch gets a 3x3 conv+BN+ReLU only if its width changes
    (``transitionK.i.{0,1}``); the new branch is a stride-2 conv+BN+ReLU from
    the coarsest existing branch, one level deeper (``transitionK.n.0.{0,1}``).
    """
    if len(out_widths) != len(in_widths) + 1:
        raise ValueError(f"a transition adds exactly one branch, got {in_widths} -> {out_widths}")
    paths: list[nn.Module] = [
        _conv_bn(w_in, w_out, stride=1, relu=True) if w_in != w_out else nn.Identity()
        for w_in, w_out in zip(in_widths, out_widths)
    ]
    paths.append(nn.Sequential(_conv_bn(in_widths[-1], out_widths[-1], stride=2, relu=True)))
    return nn.ModuleList(paths)


def _apply_transition(transition: nn.ModuleList, x: list[Tensor]) -> list[Tensor]:
    """Existing branches go through their own path; the new one starts from the coarsest."""
    return [path(xi) for path, xi in zip(transition, x)] + [transition[-1](x[-1])]


class HRNet(nn.Module):
    """HRNet returning its stride-4 branch.

    Args:
        widths: channels of the four branches, finest first; stage ``k`` (2..4)
            uses the first ``k``. ``(32, 64, 128, 256)`` is HRNet-W32 and
            ``(48, 96, 192, 384)`` HRNet-W48.
        num_modules: HRModules in stages 2, 3 and 4.
        num_blocks: BasicBlocks per branch in each module of stages 2, 3 and 4.
        stage1_channels: inner width of the Bottlenecks of ``layer1``; it outputs
            four times that.
        stage1_blocks: Bottlenecks in ``layer1``.
        stem_channels: channels of the two stride-2 stem convs.
        in_channels: channels of the input image.

    Input ``(N, in_channels, H, W)`` with H and W multiples of 32; output
    ``(N, widths[0], H/4, W/4)``.
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        num_modules: tuple[int, ...] = (1, 4, 3),
        num_blocks: tuple[int, ...] = (4, 4, 4),
        stage1_channels: int = 64,
        stage1_blocks: int = 4,
        stem_channels: int = 64,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"widths must be four positive channel counts, got {widths}")
        for name, value in (("num_modules", num_modules), ("num_blocks", num_blocks)):
            if len(value) != 3 or min(value) < 1:
                raise ValueError(f"{name} must be three positive counts (stages 2-4), got {value}")
        if min(stage1_channels, stage1_blocks, stem_channels) < 1:
            raise ValueError(
                "stage1_channels, stage1_blocks and stem_channels must be positive, got "
                f"{stage1_channels}, {stage1_blocks}, {stem_channels}"
            )
        self.conv1 = nn.Conv2d(in_channels, stem_channels, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.conv2 = nn.Conv2d(stem_channels, stem_channels, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_bottleneck_layer(stem_channels, stage1_channels, stage1_blocks)
        stage1_width = stage1_channels * Bottleneck.expansion
        self.transition1 = _transition((stage1_width,), widths[:2])
        self.stage2 = _stage(widths[:2], num_modules[0], num_blocks[0], multiscale_output=True)
        self.transition2 = _transition(widths[:2], widths[:3])
        self.stage3 = _stage(widths[:3], num_modules[1], num_blocks[1], multiscale_output=True)
        self.transition3 = _transition(widths[:3], widths)
        self.stage4 = _stage(widths, num_modules[2], num_blocks[2], multiscale_output=False)
        self.out_channels: int = widths[0]
        self._init_weights()

    def _init_weights(self) -> None:
        """mmpose's initialisation when training without pretrained weights."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.001)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        branches = _apply_transition(self.transition1, [x])
        branches = self.stage2(branches)
        branches = self.stage3(_apply_transition(self.transition2, branches))
        branches = self.stage4(_apply_transition(self.transition3, branches))
        return branches[0]
