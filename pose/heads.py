"""Top-down heatmap head (SimpleBaseline, Xiao et al., 2018) in mmpose 0.x's key layout.

mmpose 0.x calls it ``TopdownHeatmapSimpleHead``: optional stride-2 deconvolutions
(``deconv_layers.{0,3,6,...}`` with BN at ``{1,4,7,...}``), then one conv to
``num_keypoints`` heatmaps (``final_layer``). HRNet uses no deconvolutions and a
1x1 final conv; SimpleBaseline uses three 4x4 deconvolutions of 256 filters.
"""

from __future__ import annotations

from torch import Tensor, nn

from pose.keypoints import NUM_KEYPOINTS

__all__ = ["HeatmapHead"]

# kernel -> (padding, output_padding) so that a stride-2 deconvolution doubles H and W.
_DECONV_PADDING: dict[int, tuple[int, int]] = {4: (1, 0), 3: (1, 1), 2: (0, 0)}


class HeatmapHead(nn.Module):
    """Deconvolutions (each doubling the resolution) and a final conv to heatmaps.

    Args:
        in_channels: channels of the backbone feature map.
        num_keypoints: heatmap channels, one per keypoint.
        num_deconv_layers: stride-2 ConvTranspose2d + BN + ReLU blocks.
        deconv_channels: filters of every deconvolution.
        deconv_kernel: deconvolution kernel size, 2, 3 or 4.
        final_kernel: kernel size of the final conv, 1 or 3 (with bias).

    Input ``(N, in_channels, h, w)``; output
    ``(N, num_keypoints, h * 2**num_deconv_layers, w * 2**num_deconv_layers)``.
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int = NUM_KEYPOINTS,
        num_deconv_layers: int = 3,
        deconv_channels: int = 256,
        deconv_kernel: int = 4,
        final_kernel: int = 1,
    ) -> None:
        super().__init__()
        if num_deconv_layers < 0:
            raise ValueError(f"num_deconv_layers must be >= 0, got {num_deconv_layers}")
        if deconv_kernel not in _DECONV_PADDING:
            raise ValueError(f"deconv_kernel must be one of {sorted(_DECONV_PADDING)}, got {deconv_kernel}")
        if final_kernel not in (1, 3):
            raise ValueError(f"final_kernel must be 1 or 3, got {final_kernel}")
        if min(in_channels, num_keypoints, deconv_channels) < 1:
            raise ValueError(
                "in_channels, num_keypoints and deconv_channels must be positive, got "
                f"{in_channels}, {num_keypoints}, {deconv_channels}"
            )
        if num_deconv_layers:
            self.deconv_layers: nn.Module = self._make_deconv_layers(
                in_channels, num_deconv_layers, deconv_channels, deconv_kernel
            )
            in_channels = deconv_channels
        else:
            self.deconv_layers = nn.Identity()
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, final_kernel, padding=final_kernel // 2)
        self._init_weights()

    @staticmethod
    def _make_deconv_layers(in_channels: int, num_layers: int, channels: int, kernel: int) -> nn.Sequential:
        padding, output_padding = _DECONV_PADDING[kernel]
        layers: list[nn.Module] = []
        for index in range(num_layers):
            layers += [
                nn.ConvTranspose2d(
                    in_channels if index == 0 else channels,
                    channels,
                    kernel,
                    stride=2,
                    padding=padding,
                    output_padding=output_padding,
                    bias=False,
                ),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        """mmpose's initialisation: N(0, 0.001) weights, zero bias, unit BN."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(module.weight, std=0.001)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.final_layer(self.deconv_layers(x))
