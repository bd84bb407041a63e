"""The RTMCC head: mmpose's key layout, ScaleNorm and GAU arithmetic, SimCC output shapes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pose.rtmcc import GatedAttentionUnit, RTMCCHead, ScaleNorm


def test_rtmpose_m_head_has_the_official_keys(rtmpose_manifest) -> None:
    with torch.device("meta"):
        head = RTMCCHead()
    expected = [(key.removeprefix("head."), shape) for key, shape, _ in rtmpose_manifest if key.startswith("head.")]
    assert [(key, list(value.shape)) for key, value in head.state_dict().items()] == expected


@pytest.mark.parametrize(("dim", "g"), [(4, 1.0), (64, 2.5)])
def test_scale_norm_gives_each_vector_rms_g(dim: int, g: float) -> None:
    norm = ScaleNorm(dim)
    with torch.no_grad():
        norm.g.fill_(g)
    x = torch.randn(3, 5, dim) * 7
    out = norm(x)
    torch.testing.assert_close(out.square().mean(-1).sqrt(), torch.full((3, 5), g))
    torch.testing.assert_close(out / out.norm(dim=-1, keepdim=True), x / x.norm(dim=-1, keepdim=True))


def test_scale_norm_floors_tiny_norms() -> None:
    assert torch.equal(ScaleNorm(4)(torch.zeros(1, 4)), torch.zeros(1, 4))


def test_gau_is_the_gated_attention_formula() -> None:
    torch.manual_seed(0)
    gau = GatedAttentionUnit(dims=8, expansion_factor=2, attention_dims=4)
    with torch.no_grad():
        gau.res_scale.scale.uniform_(0.5, 1.5)
    x = torch.randn(2, 5, 8)
    uv = F.silu(gau.uv(gau.ln(x)))
    u, v, z = uv[..., :16], uv[..., 16:32], uv[..., 32:]
    q, k = z * gau.gamma[0] + gau.beta[0], z * gau.gamma[1] + gau.beta[1]
    attention = F.relu(q @ k.transpose(1, 2) / math.sqrt(4)) ** 2
    expected = x * gau.res_scale.scale + gau.o(u * (attention @ v))
    torch.testing.assert_close(gau(x), expected)


@pytest.mark.parametrize(("input_size", "split_ratio"), [((256, 256), 2.0), ((192, 256), 2.0), ((64, 96), 1.5)])
def test_head_gives_one_logit_per_bin(input_size: tuple[int, int], split_ratio: float) -> None:
    feature_size = (input_size[0] // 32, input_size[1] // 32)
    head = RTMCCHead(16, num_keypoints=3, input_size=input_size, feature_size=feature_size, split_ratio=split_ratio,
                     hidden_dims=8, attention_dims=4)
    x, y = head(torch.randn(2, 16, feature_size[1], feature_size[0]))
    assert x.shape == (2, 3, int(input_size[0] * split_ratio)) and y.shape == (2, 3, int(input_size[1] * split_ratio))


def test_head_tokens_must_match_the_feature_map() -> None:
    head = RTMCCHead(16, input_size=(64, 64), feature_size=(2, 2), hidden_dims=8, attention_dims=4)
    with pytest.raises(RuntimeError):
        head(torch.randn(1, 16, 3, 3))
