"""Model definitions: official key layouts, output shapes, argument checks, a training step."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from pose.heads import HeatmapHead
from pose.hrnet import HRModule, HRNet
from pose.model import (
    ARCHITECTURES,
    BackboneKind,
    PoseArchitecture,
    RTMPoseArchitecture,
    RTMPoseModel,
    TopDownModel,
    build_model,
    hrnet_w32,
    hrnet_w48,
    res50,
    res101,
    rtmpose_m,
)
from pose.resnet import ResNet

HRNET_SMALL = PoseArchitecture(BackboneKind.HRNET, widths=(8, 16, 32, 64))
RESNET_SMALL = PoseArchitecture(
    BackboneKind.RESNET, stem_channels=16, base_channels=8, num_deconv_layers=3, deconv_channels=32
)

CONSTRUCTORS: dict[str, Callable[[], TopDownModel]] = {
    "hrnet_w32": hrnet_w32,
    "hrnet_w48": hrnet_w48,
    "res50": res50,
    "res101": res101,
    "hrnet_small": lambda: build_model(HRNET_SMALL),
    "resnet_small": lambda: build_model(RESNET_SMALL),
}

MANIFESTS = {
    "hrnet_w32": "state_dict_manifest/hrnet_w32_ap10k_256x256.json",
    "hrnet_w48": "state_dict_manifest/hrnet_w48_ap10k_256x256.json",
    "res50": "state_dict_manifest/res50_ap10k_256x256.json",
    "res101": "state_dict_manifest/res101_ap10k_256x256.json",
    "hrnet_small": "hrnet_small/state_dict_manifest.json",
    "resnet_small": "resnet_small/state_dict_manifest.json",
}


def _layout(model: nn.Module) -> list[list[object]]:
    return [
        [key, list(value.shape), str(value.dtype).removeprefix("torch.")] for key, value in model.state_dict().items()
    ]


@pytest.mark.parametrize("name", list(MANIFESTS))
def test_state_dict_equals_official_manifest(name: str, reference_dir: Path) -> None:
    expected = json.loads((reference_dir / MANIFESTS[name]).read_text())
    with torch.device("meta"):
        model = CONSTRUCTORS[name]()
    assert _layout(model) == expected


@pytest.mark.parametrize(
    ("name", "num_parameters"),
    [("hrnet_w32", 28_536_113), ("hrnet_w48", 63_595_745), ("res50", 33_999_697), ("res101", 52_991_825)],
)
def test_parameter_counts(name: str, num_parameters: int) -> None:
    with torch.device("meta"):
        model = CONSTRUCTORS[name]()
    assert sum(p.numel() for p in model.parameters()) == num_parameters


@pytest.mark.parametrize("num_keypoints", [17, 5])
@pytest.mark.parametrize("constructor", [hrnet_w32, res50])
def test_num_keypoints_sets_final_layer(constructor: Callable[..., TopDownModel], num_keypoints: int) -> None:
    with torch.device("meta"):
        model = constructor(num_keypoints=num_keypoints)
    assert model.keypoint_head.final_layer.out_channels == num_keypoints


@pytest.mark.parametrize("arch", [HRNET_SMALL, RESNET_SMALL], ids=["hrnet_small", "resnet_small"])
@pytest.mark.parametrize(("height", "width"), [(256, 256), (256, 192), (64, 96)])
def test_heatmaps_are_a_quarter_of_the_input(arch: PoseArchitecture, height: int, width: int) -> None:
    model = build_model(arch).eval()
    with torch.inference_mode():
        heatmaps = model(torch.randn(2, 3, height, width))
    assert arch.output_stride == 4
    assert heatmaps.shape == (2, 17, height // 4, width // 4)


@pytest.mark.parametrize("name", ["hrnet_w32", "hrnet_w48", "res50", "res101", "hrnet_small", "resnet_small"])
def test_forward_backward_smoke(name: str) -> None:
    torch.manual_seed(0)
    model = CONSTRUCTORS[name]().train()
    images = torch.randn(2, 3, 64, 64)
    heatmaps = model(images)
    assert heatmaps.shape == (2, 17, 16, 16)
    loss = (heatmaps - torch.rand_like(heatmaps)).square().mean()
    loss.backward()
    assert torch.isfinite(loss)
    missing = [key for key, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_hrnet_returns_finest_branch_only() -> None:
    backbone = HRNet(widths=(8, 16, 32, 64)).eval()
    with torch.inference_mode():
        features = backbone(torch.randn(1, 3, 128, 96))
    assert features.shape == (1, 8, 32, 24)
    assert backbone.out_channels == 8


def test_hrmodule_fusion_reaches_every_output_from_every_branch() -> None:
    module = HRModule((4, 8, 16), num_blocks=1).eval()
    inputs = [torch.randn(1, 4, 16, 16), torch.randn(1, 8, 8, 8), torch.randn(1, 16, 4, 4)]
    with torch.inference_mode():
        outputs = module([x.clone() for x in inputs])
        changed = module([inputs[0], inputs[1], inputs[2] + 1.0])
    assert [tuple(y.shape) for y in outputs] == [(1, 4, 16, 16), (1, 8, 8, 8), (1, 16, 4, 4)]
    assert all(not torch.equal(a, b) for a, b in zip(outputs, changed))


def test_single_output_module_has_one_fuse_row() -> None:
    module = HRModule((4, 8), num_blocks=1, multiscale_output=False)
    assert len(module.fuse_layers) == 1


def test_resnet_output_channels() -> None:
    backbone = ResNet(stem_channels=16, base_channels=8).eval()
    with torch.inference_mode():
        features = backbone(torch.randn(1, 3, 64, 64))
    assert features.shape == (1, 256, 2, 2)
    assert backbone.out_channels == 256


@pytest.mark.parametrize(
    ("kernel", "num_layers"), [(4, 1), (3, 2), (2, 3)]
)
def test_head_deconvolutions_double_resolution(kernel: int, num_layers: int) -> None:
    head = HeatmapHead(8, num_keypoints=3, num_deconv_layers=num_layers, deconv_channels=4, deconv_kernel=kernel)
    with torch.inference_mode():
        heatmaps = head.eval()(torch.randn(1, 8, 5, 6))
    assert heatmaps.shape == (1, 3, 5 * 2**num_layers, 6 * 2**num_layers)


def test_head_without_deconvolutions_keeps_resolution() -> None:
    head = HeatmapHead(8, num_keypoints=17, num_deconv_layers=0, final_kernel=3)
    assert [key for key in head.state_dict()] == ["final_layer.weight", "final_layer.bias"]
    assert head(torch.randn(1, 8, 7, 5)).shape == (1, 17, 7, 5)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: HRNet(widths=(8, 16, 32)), "widths"),
        (lambda: HRNet(num_modules=(1, 0, 3)), "num_modules"),
        (lambda: HRNet(num_blocks=(4, 4)), "num_blocks"),
        (lambda: HRNet(stage1_blocks=0), "stage1_blocks"),
        (lambda: HRModule((8,), num_blocks=1), "two branches"),
        (lambda: ResNet(layers=(3, 4, 6)), "layers"),
        (lambda: ResNet(base_channels=0), "base_channels"),
        (lambda: HeatmapHead(8, deconv_kernel=5), "deconv_kernel"),
        (lambda: HeatmapHead(8, final_kernel=2), "final_kernel"),
        (lambda: HeatmapHead(8, num_deconv_layers=-1), "num_deconv_layers"),
        (lambda: PoseArchitecture("hrnet"), "kind"),  # type: ignore[arg-type]
        (lambda: PoseArchitecture(BackboneKind.HRNET, widths=(8, 16)), "widths"),
        (lambda: PoseArchitecture(BackboneKind.RESNET, num_keypoints=0), "num_keypoints"),
    ],
)
def test_invalid_arguments_raise(factory: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


def test_architecture_coerces_lists_to_tuples() -> None:
    arch = PoseArchitecture(BackboneKind.HRNET, widths=[8, 16, 32, 64])  # type: ignore[arg-type]
    assert arch == HRNET_SMALL
    assert "HRNet(widths=(8, 16, 32, 64)" in str(arch)


# --- RTMPose ---------------------------------------------------------------------------------------------------------

RTMPOSE_SMALL = RTMPoseArchitecture(input_size=(64, 96), widths=(8, 16, 32, 64), depths=(1, 2, 1, 1), stem_width=8,
                                    hidden_dims=16, attention_dims=8)


def test_rtmpose_m_state_dict_equals_official_manifest(rtmpose_manifest) -> None:
    with torch.device("meta"):
        model = rtmpose_m()
    assert _layout(model) == rtmpose_manifest


def test_rtmpose_m_parameter_count() -> None:
    with torch.device("meta"):
        model = rtmpose_m()
    assert sum(p.numel() for p in model.parameters()) == 13_624_475
    assert sum(v.numel() for v in model.state_dict().values()) == 13_647_764  # the manifest's count


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_named_architecture_builds(name: str) -> None:
    with torch.device("meta"):
        model = build_model(ARCHITECTURES[name])
    assert isinstance(model, RTMPoseModel if isinstance(ARCHITECTURES[name], RTMPoseArchitecture) else TopDownModel)


def test_rtmpose_gives_x_then_y_logits() -> None:
    model = build_model(RTMPOSE_SMALL).eval()
    with torch.inference_mode():
        x = torch.randn(2, 3, 96, 64)
        logits, (simcc_x, simcc_y) = model(x), model.forward_xy(x)
    assert simcc_x.shape == (2, 17, 128) and simcc_y.shape == (2, 17, 192)
    assert torch.equal(logits, torch.cat([simcc_x, simcc_y], dim=-1))
    assert model.codec.bins == (128, 192) and RTMPOSE_SMALL.feature_size == (2, 3)


def test_rtmpose_forward_backward_smoke() -> None:
    torch.manual_seed(0)
    model = build_model(RTMPOSE_SMALL).train()
    simcc_x, simcc_y = model.forward_xy(torch.randn(2, 3, 96, 64))
    loss = -(simcc_x.log_softmax(-1)[..., 10].mean() + simcc_y.log_softmax(-1)[..., 20].mean())
    loss.backward()
    assert torch.isfinite(loss)
    missing = [key for key, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_rtmpose_m_num_keypoints_and_description() -> None:
    with torch.device("meta"):
        model = rtmpose_m(num_keypoints=5)
    assert model.head.final_layer.out_channels == 5
    assert str(ARCHITECTURES["rtmpose_m"]) == (
        "CSPNeXt(widths=(96, 192, 384, 768), depths=(2, 4, 4, 2), stem=48) + RTMCCHead(7x7 conv, GAU 256, "
        "SimCC 512x512 bins -> 17) at 256x256")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": (250, 256)}, "input_size"),
        ({"input_size": (256,)}, "input_size"),
        ({"widths": (8, 16), "depths": (1,)}, "widths and depths"),
        ({"depths": (2, 0, 4, 2)}, "widths and depths"),
        ({"hidden_dims": 0}, "hidden_dims"),
        ({"expand_ratio": 1.5}, "expand_ratio"),
        ({"split_ratio": 0.0}, "split_ratio"),
    ],
)
def test_invalid_rtmpose_architectures_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RTMPoseArchitecture(**kwargs)
