"""What a model trains on, chosen by its codec (:mod:`pose.topdown`): crops, targets and loss.

A training sample is cut, normalised and encoded the way the model's inference path
(:class:`pose.topdown.HeatmapCodec` or :class:`pose.topdown.SimCCCodec`) expects it:

* :class:`HeatmapTargets` (mmpose 0.x heatmap models, the HRNets and SimpleBaselines): boxes cleaned as
  the AP-10K loader cleans them (``w - 1``), ``scale`` in units of 200 pixels, 0.x's affine and
  ``x / 255`` ImageNet normalisation; Gaussian heatmaps (:func:`pose.codec.encode_heatmaps`) and
  :class:`train.engine.JointsMSELoss`.
* :class:`SimCCTargets` (mmpose 1.x RTMPose): ground-truth boxes clipped as 1.x's loader clips them,
  ``scale`` in pixels padded by 1.25 and grown to the input's aspect ratio, 1.x's affine and
  normalisation on the 0..255 scale (the test-time crop is the one :class:`~pose.topdown.SimCCCodec`
  cuts at inference, bit for bit); SimCC targets (:func:`pose.simcc.encode_simcc`, x bins then y bins
  on one axis, as the model outputs them) and :class:`train.engine.KLDiscretLoss` as the RTMPose config
  sets it (``beta=10``, ``label_softmax=True``, target weights).

:func:`training_targets` picks one for a model's codec. Augmented crops (:mod:`train.augment`) are drawn
in units of 200 pixels for both and turned by 0.x's affine, which for a SimCC model is 1.x's up to
float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from pose import transforms_v1
from pose.codec import encode_heatmaps
from pose.simcc import encode_simcc
from pose.topdown import Codec, HeatmapCodec, SimCCCodec
from pose.transforms import PIXEL_STD, boxes_to_center_scale, get_affine_matrices, normalize_crops
from train.engine import JointsMSELoss, KLDiscretLoss

__all__ = ["HeatmapTargets", "SimCCTargets", "Targets", "training_targets"]


@dataclass(frozen=True)
class HeatmapTargets:
    """mmpose 0.x top-down heatmap training (see the module docstring).

    Attributes:
        input_size: network input ``(width, height)`` in pixels.
        heatmap_size: heatmap ``(width, height)``.
        sigma: Gaussian sigma in heatmap pixels.
    """

    input_size: tuple[int, int] = (256, 256)
    heatmap_size: tuple[int, int] = (64, 64)
    sigma: float = 2.0

    #: Pixels per unit of ``scale``.
    scale_unit = PIXEL_STD

    def centers_scales(self, boxes_xywh: np.ndarray, cleaned_xywh: np.ndarray, image_sizes: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Test-time crops of (N, 4) boxes: ``center`` (N, 2) pixels, ``scale`` (N, 2) in units of 200 px,
        from the boxes as 0.x's loader cleans them (``cleaned_xywh``)."""
        return boxes_to_center_scale(cleaned_xywh, aspect_ratio=self.input_size[0] / self.input_size[1])

    def warp_matrix(self, center: np.ndarray, scale: np.ndarray, rotation: float = 0.0) -> np.ndarray:
        """(2, 3) image -> crop matrix of one crop (0.x ``get_affine_transform``)."""
        return get_affine_matrices(center[None], scale[None], self.input_size, rotation)[0]

    def normalize(self, crops_rgb: np.ndarray) -> np.ndarray:
        """(N, h, w, 3) uint8 RGB -> (N, 3, h, w) float32 network inputs."""
        return normalize_crops(crops_rgb)

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, 2) crop keypoints and (N, K) flags -> targets (N, K, h, w) and weights (N, K), float32."""
        target, weight = encode_heatmaps(keypoints, visible, self.input_size, self.heatmap_size, self.sigma)
        return target.astype(np.float32), weight.reshape(weight.shape[:2]).astype(np.float32)

    def criterion(self) -> nn.Module:
        return JointsMSELoss(use_target_weight=True)


@dataclass(frozen=True)
class SimCCTargets:
    """mmpose 1.x SimCC training (RTMPose; see the module docstring).

    Attributes:
        codec: the model's :class:`~pose.topdown.SimCCCodec` (input size, split ratio).
        sigma: Gaussian label smoothing ``(x, y)`` in bins (the RTMPose AP-10K config: 5.66 both at 256x256;
            its 256x192 configs use (4.9, 5.66)).
        padding: box padding (``GetBBoxCenterScale``: 1.25).
    """

    codec: SimCCCodec = SimCCCodec()
    sigma: tuple[float, float] = (5.66, 5.66)
    padding: float = transforms_v1.BOX_PADDING

    scale_unit = 1.0

    def __post_init__(self) -> None:
        sigma = tuple(float(v) for v in self.sigma)
        if len(sigma) != 2 or min(sigma) <= 0:
            raise ValueError(f"sigma must be two positive values (bins), got {self.sigma}")
        object.__setattr__(self, "sigma", sigma)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.codec.input_size

    def centers_scales(self, boxes_xywh: np.ndarray, cleaned_xywh: np.ndarray, image_sizes: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Test-time crops of (N, 4) ground-truth boxes as 1.x cuts them: clipped to the (N, 2) image sizes,
        ``center`` (N, 2) and ``scale`` (N, 2) in pixels, float32 (what :meth:`SimCCCodec.prepare_xywh`
        computes with ``clean=True``)."""
        sizes = np.asarray(image_sizes, np.float64).reshape(-1, 2)
        xyxy = transforms_v1.clip_boxes_xywh(np.asarray(boxes_xywh, np.float64).reshape(-1, 4), sizes[:, 0],
                                             sizes[:, 1])
        center, scale = transforms_v1.boxes_to_center_scale(xyxy, self.padding)
        scale = transforms_v1.fix_aspect_ratio(scale, self.input_size[0] / self.input_size[1])
        return center, np.maximum(scale, scale.dtype.type(self.padding))

    def warp_matrix(self, center: np.ndarray, scale: np.ndarray, rotation: float = 0.0) -> np.ndarray:
        """(2, 3) image -> crop matrix: 1.x's ``get_warp_matrix`` without rotation (bit for bit the inference
        crop); with one, the same transform through 0.x's function with ``scale`` in pixels."""
        if rotation == 0:
            return transforms_v1.warp_matrices(center[None], scale[None], self.input_size)[0]
        return get_affine_matrices(center[None], scale[None], self.input_size, rotation, pixel_std=1.0)[0]

    def normalize(self, crops_rgb: np.ndarray) -> np.ndarray:
        return transforms_v1.normalize_crops(crops_rgb)

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, 2) crop keypoints and (N, K) flags -> targets (N, K, Wx + Wy) and weights (N, K), float32."""
        target_x, target_y, weights = encode_simcc(keypoints, visible, self.input_size, self.sigma,
                                                   self.codec.split_ratio)
        return np.concatenate([target_x, target_y], axis=-1), weights

    def criterion(self) -> nn.Module:
        return KLDiscretLoss(self.codec.bins[0], beta=10.0, label_softmax=True, use_target_weight=True)


#: Either recipe; both have the same methods.
Targets = HeatmapTargets | SimCCTargets


def training_targets(codec: Codec, input_size: tuple[int, int], heatmap_size: tuple[int, int] = (64, 64),
                     sigma: float = 2.0, simcc_sigma: tuple[float, float] = (5.66, 5.66)) -> Targets:
    """The training recipe of a model's codec (``model.codec``, :func:`pose.topdown.codec_of`).

    ``heatmap_size`` and ``sigma`` apply to heatmap models, ``simcc_sigma`` to SimCC models (whose input
    size is the codec's; a different ``input_size`` is refused).
    """
    if isinstance(codec, SimCCCodec):
        if tuple(input_size) != codec.input_size:
            raise ValueError(f"the SimCC model is built for {codec.input_size[0]}x{codec.input_size[1]} inputs, "
                             f"not {input_size[0]}x{input_size[1]}")
        return SimCCTargets(codec, simcc_sigma)
    if isinstance(codec, HeatmapCodec):
        return HeatmapTargets(tuple(input_size), tuple(heatmap_size), float(sigma))
    raise TypeError(f"no training recipe for a {type(codec).__name__}")
