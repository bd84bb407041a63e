"""Top-down pose model (backbone + heatmap head) and its constructors.

``TopDownModel`` has the attribute names of mmpose 0.x's ``TopDown`` (``backbone``,
``keypoint_head``), so its ``state_dict`` is the official checkpoint layout.
:class:`PoseArchitecture` describes a model completely; ``build_model`` turns
it into modules, and :func:`pose.checkpoint.infer_architecture` reads it off a
checkpoint. The constructors are the four official AP-10K models:

    hrnet_w32()  hrnet_w48()  res50()  res101()
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from torch import Tensor, nn

from pose.heads import HeatmapHead
from pose.hrnet import HRNet
from pose.keypoints import NUM_KEYPOINTS
from pose.resnet import ResNet

__all__ = [
    "BackboneKind",
    "PoseArchitecture",
    "TopDownModel",
    "build_model",
    "hrnet_w32",
    "hrnet_w48",
    "res50",
    "res101",
]


class TopDownModel(nn.Module):
    """Backbone then heatmap head.

    Args:
        backbone: maps ``(N, 3, H, W)`` images to one feature map.
        keypoint_head: maps that feature map to ``(N, K, h, w)`` heatmaps.

    For the AP-10K models, input ``(N, 3, H, W)`` normalised RGB gives
    ``(N, K, H/4, W/4)`` heatmaps.
    """

    def __init__(self, backbone: nn.Module, keypoint_head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.keypoint_head = keypoint_head

    def forward(self, x: Tensor) -> Tensor:
        return self.keypoint_head(self.backbone(x))


class BackboneKind(enum.Enum):
    HRNET = "hrnet"
    RESNET = "resnet"


@dataclass(frozen=True)
class PoseArchitecture:
    """Everything needed to build a :class:`TopDownModel`.

    Attributes:
        kind: backbone family.
        num_keypoints: heatmap channels.
        stem_channels: width of the stem convs (both families).
        widths: HRNet only: channels of the four branches, finest first.
        num_modules: HRNet only: HRModules in stages 2, 3, 4.
        num_blocks: HRNet only: BasicBlocks per branch in stages 2, 3, 4.
        stage1_channels: HRNet only: inner width of ``layer1``'s Bottlenecks.
        stage1_blocks: HRNet only: Bottlenecks in ``layer1``.
        layers: ResNet only: Bottlenecks in each of the four stages.
        base_channels: ResNet only: inner width of the first stage.
        num_deconv_layers: stride-2 deconvolutions of the head.
        deconv_channels: filters of each deconvolution.
        deconv_kernel: deconvolution kernel size.
        final_kernel: kernel size of the head's final conv.

    Fields of the other family keep their defaults and are ignored.
    """

    kind: BackboneKind
    num_keypoints: int = NUM_KEYPOINTS
    stem_channels: int = 64
    widths: tuple[int, ...] = (32, 64, 128, 256)
    num_modules: tuple[int, ...] = (1, 4, 3)
    num_blocks: tuple[int, ...] = (4, 4, 4)
    stage1_channels: int = 64
    stage1_blocks: int = 4
    layers: tuple[int, ...] = (3, 4, 6, 3)
    base_channels: int = 64
    num_deconv_layers: int = 0
    deconv_channels: int = 256
    deconv_kernel: int = 4
    final_kernel: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.kind, BackboneKind):
            raise ValueError(f"kind must be a BackboneKind, got {self.kind!r}")
        for name, length in (("widths", 4), ("num_modules", 3), ("num_blocks", 3), ("layers", 4)):
            value = tuple(int(v) for v in getattr(self, name))
            if len(value) != length or min(value) < 1:
                raise ValueError(f"{name} must be {length} positive integers, got {getattr(self, name)}")
            object.__setattr__(self, name, value)
        for name in ("num_keypoints", "stem_channels", "stage1_channels", "stage1_blocks", "base_channels",
                     "deconv_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_deconv_layers < 0:
            raise ValueError(f"num_deconv_layers must be >= 0, got {self.num_deconv_layers}")

    def __str__(self) -> str:
        if self.kind is BackboneKind.HRNET:
            backbone = (
                f"HRNet(widths={self.widths}, num_modules={self.num_modules}, num_blocks={self.num_blocks}, "
                f"stage1={self.stage1_blocks}x{self.stage1_channels}, stem={self.stem_channels})"
            )
        else:
            backbone = f"ResNet(layers={self.layers}, stem={self.stem_channels}, base={self.base_channels})"
        deconvs = (
            f"{self.num_deconv_layers}x deconv {self.deconv_kernel}x{self.deconv_kernel}/{self.deconv_channels}, "
            if self.num_deconv_layers
            else ""
        )
        final = f"{self.final_kernel}x{self.final_kernel} conv -> {self.num_keypoints}"
        return f"{backbone} + HeatmapHead({deconvs}{final})"

    @property
    def feature_channels(self) -> int:
        """Channels of the backbone output (the head's input)."""
        if self.kind is BackboneKind.HRNET:
            return self.widths[0]
        return self.base_channels * 8 * 4

    @property
    def output_stride(self) -> int:
        """Input pixels per heatmap pixel (4 for all official AP-10K models)."""
        backbone_stride = 4 if self.kind is BackboneKind.HRNET else 32
        return backbone_stride // 2**self.num_deconv_layers


def build_model(arch: PoseArchitecture) -> TopDownModel:
    """Build an initialised (untrained) model in train mode."""
    if arch.kind is BackboneKind.HRNET:
        backbone: nn.Module = HRNet(
            widths=arch.widths,
            num_modules=arch.num_modules,
            num_blocks=arch.num_blocks,
            stage1_channels=arch.stage1_channels,
            stage1_blocks=arch.stage1_blocks,
            stem_channels=arch.stem_channels,
        )
    else:
        backbone = ResNet(
            layers=arch.layers,
            stem_channels=arch.stem_channels,
            base_channels=arch.base_channels,
        )
    head = HeatmapHead(
        arch.feature_channels,
        num_keypoints=arch.num_keypoints,
        num_deconv_layers=arch.num_deconv_layers,
        deconv_channels=arch.deconv_channels,
        deconv_kernel=arch.deconv_kernel,
        final_kernel=arch.final_kernel,
    )
    return TopDownModel(backbone, head)


#: Every architecture by name: the official AP-10K models and the small ones of the tests and the synthetic
#: benchmark (the one table; training, benchmarks and the functions below read it).
ARCHITECTURES: dict[str, PoseArchitecture] = {
    "hrnet_w32": PoseArchitecture(BackboneKind.HRNET, widths=(32, 64, 128, 256)),
    "hrnet_w48": PoseArchitecture(BackboneKind.HRNET, widths=(48, 96, 192, 384)),
    "res50": PoseArchitecture(BackboneKind.RESNET, layers=(3, 4, 6, 3), num_deconv_layers=3),
    "res101": PoseArchitecture(BackboneKind.RESNET, layers=(3, 4, 23, 3), num_deconv_layers=3),
    # The full HRNet depth at widths 8..64 (2.1 M parameters), as tests/data/reference/hrnet_small.
    "hrnet_small": PoseArchitecture(BackboneKind.HRNET, widths=(8, 16, 32, 64)),
    # One module per stage, two blocks per branch (0.35 M parameters): quick CPU runs and tests.
    "hrnet_tiny": PoseArchitecture(
        BackboneKind.HRNET, widths=(8, 16, 32, 64), num_modules=(1, 1, 1), num_blocks=(2, 2, 2),
        stage1_blocks=1, stage1_channels=32, stem_channels=32,
    ),
    # hrnet_tiny with one stride-2 deconvolution in the head: heatmaps at half the input size instead of
    # a quarter, for small inputs (at 96 px, 48x48 heatmaps instead of 24x24; docs/benchmarks.md).
    "hrnet_tiny_s2": PoseArchitecture(
        BackboneKind.HRNET, widths=(8, 16, 32, 64), num_modules=(1, 1, 1), num_blocks=(2, 2, 2),
        stage1_blocks=1, stage1_channels=32, stem_channels=32, num_deconv_layers=1, deconv_channels=16,
    ),
}


def hrnet_w32(num_keypoints: int = NUM_KEYPOINTS) -> TopDownModel:
    """HRNet-W32 with a 1x1 head: the official ``hrnet_w32_ap10k_256x256``."""
    return build_model(replace(ARCHITECTURES["hrnet_w32"], num_keypoints=num_keypoints))


def hrnet_w48(num_keypoints: int = NUM_KEYPOINTS) -> TopDownModel:
    """HRNet-W48 with a 1x1 head: the official ``hrnet_w48_ap10k_256x256``."""
    return build_model(replace(ARCHITECTURES["hrnet_w48"], num_keypoints=num_keypoints))


def res50(num_keypoints: int = NUM_KEYPOINTS) -> TopDownModel:
    """SimpleBaseline ResNet-50 (three 256-filter deconvolutions): ``res50_ap10k_256x256``."""
    return build_model(replace(ARCHITECTURES["res50"], num_keypoints=num_keypoints))


def res101(num_keypoints: int = NUM_KEYPOINTS) -> TopDownModel:
    """SimpleBaseline ResNet-101 (three 256-filter deconvolutions): ``res101_ap10k_256x256``."""
    return build_model(replace(ARCHITECTURES["res101"], num_keypoints=num_keypoints))
