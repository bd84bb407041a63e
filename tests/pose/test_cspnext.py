"""CSPNeXt: mmdet's key layout, output stride and shapes, block wiring, argument checks."""

from __future__ import annotations

import pytest
import torch

from pose.cspnext import ChannelAttention, CSPLayer, CSPNeXt, CSPNeXtBlock, SPPBottleneck


def test_rtmpose_m_backbone_has_the_official_keys(rtmpose_manifest) -> None:
    with torch.device("meta"):
        backbone = CSPNeXt()
    expected = [(key.removeprefix("backbone."), shape) for key, shape, _ in rtmpose_manifest
                if key.startswith("backbone.")]
    assert [(key, list(value.shape)) for key, value in backbone.state_dict().items()] == expected


@pytest.mark.parametrize(("height", "width"), [(256, 256), (256, 192), (64, 96)])
def test_output_is_the_last_stage_at_a_32nd(height: int, width: int) -> None:
    backbone = CSPNeXt(widths=(8, 16, 32, 64), depths=(1, 1, 1, 1), stem_width=8).eval()
    with torch.inference_mode():
        features = backbone(torch.randn(2, 3, height, width))
    assert features.shape == (2, 64, height // 32, width // 32)


@pytest.mark.parametrize(
    ("kwargs", "present", "absent"),
    [
        ({}, ["stage4.1.conv1.conv.weight", "stage3.1.attention.fc.weight"], ["stage3.2.main_conv.conv.weight"]),
        ({"channel_attention": False}, ["stage4.2.main_conv.conv.weight"], ["stage1.1.attention.fc.weight"]),
        ({"widths": (8, 16, 32), "depths": (1, 2, 1)},
         ["stage3.1.conv1.conv.weight", "stage2.1.blocks.1.conv1.conv.weight"], ["stage4.0.conv.weight"]),
    ],
)
def test_stages_blocks_and_spp_are_where_mmdet_puts_them(kwargs, present, absent) -> None:
    arguments = {"widths": (8, 16, 32, 64), "depths": (1, 1, 1, 1), "stem_width": 8} | kwargs
    with torch.device("meta"):
        keys = set(CSPNeXt(**arguments).state_dict())
    assert set(present) <= keys and not set(absent) & keys


@pytest.mark.parametrize(("identity", "zero_gives_input"), [(True, True), (False, False)])
def test_block_adds_its_input_only_with_identity(identity: bool, zero_gives_input: bool) -> None:
    block = CSPNeXtBlock(4, kernel_size=5, identity=identity).eval()
    for parameter in block.parameters():  # every conv-BN-SiLU then outputs silu(0) = 0
        torch.nn.init.zeros_(parameter)
    x = torch.randn(1, 4, 6, 6)
    with torch.inference_mode():
        out = block(x)
    assert torch.equal(out, x) is zero_gives_input


def test_channel_attention_gates_each_channel_by_its_mean() -> None:
    attention = ChannelAttention(2)
    with torch.no_grad():
        attention.fc.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1) * 6.0)
        attention.fc.bias.zero_()
    x = torch.stack([torch.full((3, 3), 1.0), torch.full((3, 3), -1.0)])[None]
    out = attention(x)  # hardsigmoid(6) = 1 keeps channel 0; hardsigmoid(-6) = 0 zeroes channel 1
    assert torch.equal(out[0, 0], x[0, 0]) and torch.equal(out[0, 1], torch.zeros(3, 3))


def test_spp_and_csp_layer_shapes() -> None:
    x = torch.randn(2, 16, 8, 8)
    assert SPPBottleneck(16, 24).eval()(x).shape == (2, 24, 8, 8)
    layer = CSPLayer(16, 32, num_blocks=2, expand_ratio=0.5)
    assert layer.main_conv.conv.out_channels == 16 and layer.final_conv.conv.in_channels == 32
    assert layer.eval()(x).shape == (2, 32, 8, 8)


def test_mismatched_widths_and_depths_raise() -> None:
    with pytest.raises(ValueError, match="widths and depths"):
        CSPNeXt(widths=(8, 16), depths=(1,))
