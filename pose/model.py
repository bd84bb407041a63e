"""Top-down pose models and their constructors.

Two families, each with the attribute names of its official checkpoints so that ``state_dict`` is
their key layout:

* :class:`TopDownModel` (backbone + heatmap head), mmpose 0.x's ``TopDown`` (``backbone``,
  ``keypoint_head``), described by :class:`PoseArchitecture`;
* :class:`RTMPoseModel` (CSPNeXt + RTMCC SimCC head), mmpose 1.x's ``TopdownPoseEstimator``
  (``backbone``, ``head``), described by :class:`RTMPoseArchitecture`.

``build_model`` turns an architecture into modules, and :func:`pose.checkpoint.infer_architecture`
reads it off a checkpoint. Each model carries its ``codec`` (:mod:`pose.topdown`): how its crops are
made, its flip test merged and its outputs decoded. The constructors are the official AP-10K models:

    hrnet_w32()  hrnet_w48()  res50()  res101()  rtmpose_m()
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from pose.cspnext import CSPNeXt
from pose.heads import HeatmapHead
from pose.hrnet import HRNet
from pose.keypoints import NUM_KEYPOINTS
from pose.resnet import ResNet
from pose.rtmcc import RTMCCHead
from pose.topdown import HeatmapCodec, SimCCCodec

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "BackboneKind",
    "PoseArchitecture",
    "PoseModel",
    "RTMPoseArchitecture",
    "RTMPoseModel",
    "TopDownModel",
    "build_model",
    "hrnet_w32",
    "hrnet_w48",
    "res50",
    "res101",
    "rtmpose_m",
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
        self.codec = HeatmapCodec()

    def forward(self, x: Tensor) -> Tensor:
        return self.keypoint_head(self.backbone(x))


class RTMPoseModel(nn.Module):
    """CSPNeXt backbone then RTMCC head, with the SimCC logits of both axes in one tensor.

    Args:
        backbone: maps ``(N, 3, H, W)`` images to one ``(N, C, H/32, W/32)`` feature map.
        head: maps it to x and y logits (:class:`pose.rtmcc.RTMCCHead`).
        codec: the :class:`~pose.topdown.SimCCCodec` the head was built for.

    Input ``(N, 3, H, W)`` normalised RGB; output ``(N, K, Wx + Wy)``: the x logits then the y logits
    (:func:`pose.simcc.split_simcc`), one tensor so that CUDA graphs, ONNX Runtime and batching treat it
    as any pose network. :meth:`forward_xy` gives the two apart (for training).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, codec: SimCCCodec) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.codec = codec

    def forward_xy(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, K, Wx)`` x logits and ``(N, K, Wy)`` y logits."""
        return self.head(self.backbone(x))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(self.forward_xy(x), dim=-1)


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

    @property
    def codec(self) -> HeatmapCodec:
        """The recipe of the model (:mod:`pose.topdown`): mmpose 0.x heatmaps."""
        return HeatmapCodec()

    @property
    def fixed_input_size(self) -> None:
        """None: a heatmap model takes any input of multiples of 4 pixels."""
        return None


#: The stride of CSPNeXt's output: the stem and each of the four stages halve the input.
CSPNEXT_STRIDE = 32


@dataclass(frozen=True)
class RTMPoseArchitecture:
    """Everything needed to build an :class:`RTMPoseModel` (defaults: RTMPose-m for AP-10K at 256x256).

    Attributes:
        num_keypoints: K.
        input_size: network input ``(width, height)``, multiples of 32; the head is built for it.
        widths: CSPNeXt stage widths.
        depths: blocks per CSPNeXt stage.
        stem_width: CSPNeXt stem width.
        expand_ratio: CSP branch width relative to the stage width.
        block_kernel: depthwise kernel of the CSPNeXt blocks.
        channel_attention: CSP layers with channel attention.
        final_kernel: kernel of the head's first conv.
        hidden_dims: the GAU's token width.
        attention_dims: the GAU's ``s``.
        expansion_factor: the GAU's expansion.
        split_ratio: SimCC bins per input pixel.

    The checkpoint gives all but ``split_ratio`` (2.0 in every RTMPose config; the number of bins is
    ``input_size * split_ratio``), the SiLU activations and the SPP pool sizes (5, 9, 13).
    """

    num_keypoints: int = NUM_KEYPOINTS
    input_size: tuple[int, int] = (256, 256)
    widths: tuple[int, ...] = (96, 192, 384, 768)
    depths: tuple[int, ...] = (2, 4, 4, 2)
    stem_width: int = 48
    expand_ratio: float = 0.5
    block_kernel: int = 5
    channel_attention: bool = True
    final_kernel: int = 7
    hidden_dims: int = 256
    attention_dims: int = 128
    expansion_factor: int = 2
    split_ratio: float = 2.0

    def __post_init__(self) -> None:
        for name in ("input_size", "widths", "depths"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if len(self.input_size) != 2 or min(self.input_size) < CSPNEXT_STRIDE or any(
                s % CSPNEXT_STRIDE for s in self.input_size):
            raise ValueError(f"input_size must be (width, height), multiples of {CSPNEXT_STRIDE}, "
                             f"got {self.input_size}")
        if len(self.widths) != len(self.depths) or not self.widths or min(self.widths + self.depths) < 1:
            raise ValueError(f"widths and depths must be positive and as many, got {self.widths} and {self.depths}")
        for name in ("num_keypoints", "stem_width", "block_kernel", "final_kernel", "hidden_dims", "attention_dims",
                     "expansion_factor"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.expand_ratio <= 1 or self.split_ratio <= 0:
            raise ValueError(f"expand_ratio must be in (0, 1] and split_ratio positive, got {self.expand_ratio} and "
                             f"{self.split_ratio}")

    def __str__(self) -> str:
        return (f"CSPNeXt(widths={self.widths}, depths={self.depths}, stem={self.stem_width}) + "
                f"RTMCCHead({self.final_kernel}x{self.final_kernel} conv, GAU {self.hidden_dims}, "
                f"SimCC {self.codec.bins[0]}x{self.codec.bins[1]} bins -> {self.num_keypoints}) "
                f"at {self.input_size[0]}x{self.input_size[1]}")

    @property
    def feature_size(self) -> tuple[int, int]:
        """The backbone's output ``(width, height)``."""
        return self.input_size[0] // CSPNEXT_STRIDE, self.input_size[1] // CSPNEXT_STRIDE

    @property
    def codec(self) -> SimCCCodec:
        """The recipe of the model (:mod:`pose.topdown`): mmpose 1.x SimCC."""
        return SimCCCodec(self.input_size, self.split_ratio)

    @property
    def fixed_input_size(self) -> tuple[int, int]:
        """The only input ``(width, height)`` the model takes (its head is built for it)."""
        return self.input_size


#: A description of any model :func:`build_model` builds.
Architecture = PoseArchitecture | RTMPoseArchitecture
#: Any model :func:`build_model` builds.
PoseModel = TopDownModel | RTMPoseModel


def build_model(arch: Architecture) -> PoseModel:
    """Build an initialised (untrained) model in train mode: a :class:`TopDownModel` for a
    :class:`PoseArchitecture`, an :class:`RTMPoseModel` for an :class:`RTMPoseArchitecture`."""
    if isinstance(arch, RTMPoseArchitecture):
        return _build_rtmpose(arch)
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


def _build_rtmpose(arch: RTMPoseArchitecture) -> RTMPoseModel:
    backbone = CSPNeXt(widths=arch.widths, depths=arch.depths, stem_width=arch.stem_width,
                       expand_ratio=arch.expand_ratio, kernel_size=arch.block_kernel,
                       channel_attention=arch.channel_attention)
    head = RTMCCHead(arch.widths[-1], num_keypoints=arch.num_keypoints, input_size=arch.input_size,
                     feature_size=arch.feature_size, split_ratio=arch.split_ratio, final_kernel=arch.final_kernel,
                     hidden_dims=arch.hidden_dims, attention_dims=arch.attention_dims,
                     expansion_factor=arch.expansion_factor)
    return RTMPoseModel(backbone, head, arch.codec)


#: Every architecture by name: the official AP-10K models and the small ones of the tests and the synthetic
#: benchmark (the one table; training, benchmarks and the functions below read it). ``rtmpose_m`` and
#: ``rtmpose_tiny`` are :class:`RTMPoseArchitecture` s (SimCC, no heatmaps: no ``output_stride``).
ARCHITECTURES: dict[str, Architecture] = {
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
    # CSPNeXt-m (P5 with widen 0.75, deepen 0.67) + RTMCC: the official rtmpose-m_simcc-ap10k_..._256x256.
    "rtmpose_m": RTMPoseArchitecture(),
    # RTMPose-m's design at hrnet_tiny_s2's size (0.43 M parameters at 96 px): the real-time profile's model in
    # the synthetic end-to-end benchmark, where RTMPose-m itself takes hours an epoch-set to train on a CPU.
    "rtmpose_tiny": RTMPoseArchitecture(widths=(16, 32, 64, 128), depths=(1, 1, 1, 1), stem_width=16,
                                        hidden_dims=64, attention_dims=32),
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


def rtmpose_m(num_keypoints: int = NUM_KEYPOINTS) -> RTMPoseModel:
    """RTMPose-m at 256x256 (CSPNeXt-m + RTMCC, SimCC): the official ``rtmpose-m_simcc-ap10k_256x256``."""
    return build_model(replace(ARCHITECTURES["rtmpose_m"], num_keypoints=num_keypoints))
