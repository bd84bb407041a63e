"""The two top-down recipes a pose model can come with: what its crops are, how its flip test merges,
how its outputs decode. A model carries one (``model.codec``, read off its checkpoint with the
architecture); :class:`pose.estimator.PoseEstimator` only calls it.

* :class:`HeatmapCodec`: mmpose 0.x's ``TopDown`` with heatmaps (the HRNets and SimpleBaselines of
  AP-10K): boxes cleaned as its AP-10K loader cleans ground truth, detector boxes ``w = x2 - x1 + 1``,
  center/scale in units of 200 pixels, its affine (or UDP), ImageNet normalisation of ``x / 255``;
  flip test by flipping heatmaps back (with the one-column shift); heatmap decoding
  (:mod:`pose.transforms`, :mod:`pose.codec`).
* :class:`SimCCCodec`: mmpose 1.x's ``TopdownPoseEstimator`` with SimCC (RTMPose): boxes as its
  inference API takes them (``xyxy``, nothing cleaned unless asked), center/scale in pixels, its affine,
  normalisation on the 0..255 scale; flip test on the SimCC vectors; argmax decoding
  (:mod:`pose.transforms_v1`, :mod:`pose.simcc`).

Both have the same methods, so the estimator never asks which one it has.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
from torch import Tensor, nn

from pose import transforms_v1
from pose.codec import PostProcess, decode_heatmaps, flip_back, merge_flip
from pose.device_flip import merge_flip_tensor
from pose.keypoints import FLIP_INDEX
from pose.simcc import decode_simcc, merge_flip_simcc, merge_flip_simcc_tensor, split_simcc
from pose.transforms import (
    boxes_to_center_scale,
    clean_boxes_xywh,
    get_affine_matrices,
    get_udp_warp_matrices,
    normalize_crops,
    warp_crops,
    xyxy_to_xywh,
)

if TYPE_CHECKING:
    from pose.estimator import PoseSettings

__all__ = ["Codec", "HeatmapCodec", "PreparedBatch", "SimCCCodec", "codec_of", "prepare_inputs"]


@dataclass(frozen=True)
class PreparedBatch:
    """Network inputs for N boxes and what is needed to map the outputs back.

    Attributes:
        inputs: (N, 3, H, W) float32 normalised RGB crops.
        center: (N, 2) box centres in image pixels (float32; for a :class:`SimCCCodec`, float64 unless
            the boxes were float32, as in mmpose 1.x).
        scale: (N, 2) padded box sizes, in the codec's unit: units of 200 pixels for a
            :class:`HeatmapCodec` (mmpose 0.x), pixels for a :class:`SimCCCodec` (mmpose 1.x).
    """

    inputs: np.ndarray
    center: np.ndarray
    scale: np.ndarray


def _check_image(image_bgr: np.ndarray) -> None:
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 BGR array, got {image_bgr.shape} {image_bgr.dtype}")


def prepare_inputs(
    image_bgr: np.ndarray, boxes_xywh: np.ndarray, settings: PoseSettings, clean: bool = True
) -> PreparedBatch:
    """Crops and normalises the boxes of one BGR uint8 frame exactly as mmpose 0.x does.

    ``boxes_xywh`` are (N, 4) COCO boxes (x, y, width, height) in pixels. With ``clean`` they first
    go through the AP-10K dataset's box cleaning (clip to the image, effective width w-1), as
    mmpose's evaluation does with ground-truth boxes; rows that cleaning empties are kept as given.
    """
    _check_image(image_bgr)
    height, width = image_bgr.shape[:2]
    boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    if clean:
        cleaned, valid = clean_boxes_xywh(boxes, width, height)
        boxes = np.where(valid[:, None], cleaned, boxes)
    # A box of zero size has no crop: give it one pixel so that the affine matrix stays invertible.
    boxes = np.concatenate([boxes[:, :2], np.maximum(boxes[:, 2:], 1.0)], axis=1)
    aspect = settings.input_size[0] / settings.input_size[1]
    center, scale = boxes_to_center_scale(boxes, aspect_ratio=aspect, padding=settings.padding)
    if settings.use_udp:
        matrices = get_udp_warp_matrices(center, scale, settings.input_size)
    else:
        matrices = get_affine_matrices(center, scale, settings.input_size)
    crops = warp_crops(image_bgr, matrices, settings.input_size)
    # The warp acts on each channel alone, so BGR->RGB on the small crops equals mmpose's
    # conversion of the whole frame, at a fraction of the cost.
    inputs = normalize_crops(crops[..., ::-1])
    return PreparedBatch(inputs=inputs, center=center, scale=scale)


class Codec(Protocol):
    """What :class:`pose.estimator.PoseEstimator` needs from a model's recipe (see the module docstring).

    Attributes:
        output_names: the ONNX outputs of the network (their concatenation on the last axis is the
            network's one output).
        fixed_input_size: the only input ``(width, height)`` the network takes, or None (any multiple of 4).
        cleans_boxes: whether :meth:`prepare_xywh` cleans boxes unless told otherwise.
    """

    output_names: tuple[str, ...]
    fixed_input_size: tuple[int, int] | None
    cleans_boxes: bool

    def configured(self, settings: PoseSettings) -> Codec: ...

    def prepare_xywh(self, image_bgr: np.ndarray, boxes_xywh: np.ndarray, settings: PoseSettings,
                     clean: bool) -> PreparedBatch: ...

    def prepare_xyxy(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray, settings: PoseSettings
                     ) -> PreparedBatch: ...

    def merge_flip(self, outputs: np.ndarray, outputs_mirrored: np.ndarray) -> np.ndarray: ...

    def merge_flip_tensor(self, outputs_both: Tensor, flip_index: Tensor) -> Tensor: ...

    def decode(self, outputs: np.ndarray, batch: PreparedBatch) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class HeatmapCodec:
    """mmpose 0.x top-down heatmaps (see the module docstring).

    Attributes:
        shift: flip test: shift the flipped-back heatmaps one column right (``shift_heatmap``).
        post_process: heatmap decoding (:class:`pose.codec.PostProcess`).
        kernel: Gaussian kernel of DARK and UDP decoding.

    The model's codec has the AP-10K test settings; :meth:`configured` takes those of a
    :class:`~pose.estimator.PoseSettings`.
    """

    shift: bool = True
    post_process: PostProcess = PostProcess.DEFAULT
    kernel: int = 11

    output_names = ("heatmaps",)
    fixed_input_size = None
    cleans_boxes = True

    def configured(self, settings: PoseSettings) -> HeatmapCodec:
        return replace(self, shift=settings.shift_heatmap, post_process=settings.post_process, kernel=settings.kernel)

    def prepare_xywh(self, image_bgr: np.ndarray, boxes_xywh: np.ndarray, settings: PoseSettings,
                     clean: bool) -> PreparedBatch:
        """:func:`prepare_inputs` (cleaned as the AP-10K loader cleans ground truth when ``clean``)."""
        return prepare_inputs(image_bgr, boxes_xywh, settings, clean=clean)

    def prepare_xyxy(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray, settings: PoseSettings) -> PreparedBatch:
        """mmpose 0.x's inference path for ``bbox_format='xyxy'``: ``w = x2 - x1 + 1``, no cleaning."""
        boxes_xywh = xyxy_to_xywh(np.asarray(boxes_xyxy, np.float32).reshape(-1, 4).astype(np.float64))
        boxes_xywh[:, 2:] += 1.0
        return prepare_inputs(image_bgr, boxes_xywh, settings, clean=False)

    def merge_flip(self, outputs: np.ndarray, outputs_mirrored: np.ndarray) -> np.ndarray:
        return merge_flip(outputs, flip_back(outputs_mirrored, FLIP_INDEX, shift=self.shift))

    def merge_flip_tensor(self, outputs_both: Tensor, flip_index: Tensor) -> Tensor:
        return merge_flip_tensor(outputs_both, flip_index, shift=self.shift)

    def decode(self, outputs: np.ndarray, batch: PreparedBatch) -> tuple[np.ndarray, np.ndarray]:
        return decode_heatmaps(outputs, batch.center, batch.scale, post_process=self.post_process,
                               kernel=self.kernel)


@dataclass(frozen=True)
class SimCCCodec:
    """mmpose 1.x SimCC (RTMPose; see the module docstring).

    Attributes:
        input_size: the network input ``(width, height)``; the head is built for it.
        split_ratio: SimCC bins per input pixel.

    The network's output is ``(N, K, Wx + Wy)``: x logits then y logits (:func:`pose.simcc.split_simcc`).
    ``PoseSettings.shift_heatmap``, ``post_process`` and ``kernel`` do not apply.
    """

    input_size: tuple[int, int] = (256, 256)
    split_ratio: float = 2.0

    output_names = ("simcc_x", "simcc_y")
    cleans_boxes = False

    def __post_init__(self) -> None:
        if len(self.input_size) != 2 or min(self.input_size) < 1 or self.split_ratio <= 0:
            raise ValueError(f"input_size must be two positive sizes and split_ratio positive, got "
                             f"{self.input_size} and {self.split_ratio}")
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))

    @property
    def fixed_input_size(self) -> tuple[int, int]:
        return self.input_size

    @property
    def bins(self) -> tuple[int, int]:
        """SimCC bins ``(Wx, Wy)``."""
        return int(self.input_size[0] * self.split_ratio), int(self.input_size[1] * self.split_ratio)

    def configured(self, settings: PoseSettings) -> SimCCCodec:
        return self

    def prepare_xywh(self, image_bgr: np.ndarray, boxes_xywh: np.ndarray, settings: PoseSettings,
                     clean: bool) -> PreparedBatch:
        """COCO boxes as mmpose 1.x's ``inference_topdown(..., bboxes=[[x, y, x + w, y + h]])`` takes them
        (float64, nothing cleaned); with ``clean``, clipped as its AP-10K loader clips ground truth."""
        _check_image(image_bgr)
        boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
        if clean:
            xyxy = transforms_v1.clip_boxes_xywh(boxes, image_bgr.shape[1], image_bgr.shape[0])
        else:
            xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
        return self._prepare(image_bgr, xyxy, settings.padding)

    def prepare_xyxy(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray, settings: PoseSettings) -> PreparedBatch:
        """Detector boxes as mmpose 1.x takes them from mmdet: float32 ``xyxy``, as they are."""
        _check_image(image_bgr)
        return self._prepare(image_bgr, np.asarray(boxes_xyxy, np.float32).reshape(-1, 4), settings.padding)

    def _prepare(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray, padding: float) -> PreparedBatch:
        width, height = self.input_size
        center, scale = transforms_v1.boxes_to_center_scale(boxes_xyxy, padding)
        scale = transforms_v1.fix_aspect_ratio(scale, width / height)
        # A box under a pixel wide has no crop (mmpose's matrix would be singular): make it one pixel.
        scale = np.maximum(scale, scale.dtype.type(padding))
        crops = warp_crops(image_bgr, transforms_v1.warp_matrices(center, scale, self.input_size), self.input_size)
        return PreparedBatch(transforms_v1.normalize_crops(crops[..., ::-1]), center, scale)

    def merge_flip(self, outputs: np.ndarray, outputs_mirrored: np.ndarray) -> np.ndarray:
        return merge_flip_simcc(outputs, outputs_mirrored, FLIP_INDEX, self.bins[0])

    def merge_flip_tensor(self, outputs_both: Tensor, flip_index: Tensor) -> Tensor:
        return merge_flip_simcc_tensor(outputs_both, flip_index, self.bins[0])

    def decode(self, outputs: np.ndarray, batch: PreparedBatch) -> tuple[np.ndarray, np.ndarray]:
        simcc_x, simcc_y = split_simcc(outputs, self.bins[0])
        keypoints, scores = decode_simcc(simcc_x, simcc_y, self.split_ratio)
        return transforms_v1.input_to_image(keypoints, batch.center, batch.scale, self.input_size), scores


def codec_of(model: nn.Module) -> Codec:
    """The recipe a model carries (``model.codec``); a network without one is taken for an mmpose 0.x
    heatmap model."""
    return getattr(model, "codec", None) or HeatmapCodec()
