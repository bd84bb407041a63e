"""Top-down geometry as mmpose 1.x does it (RTMPose), vectorised over the N boxes of a frame.

mmpose 1.x differs from 0.x (:mod:`pose.transforms`) in every step, so it has its own functions:

* boxes are ``xyxy``, used as given by the inference API (no ``+1``, no cleaning); the AP-10K
  loader's ground-truth cleaning is :func:`clip_boxes_xywh`;
* ``center = (x1 + x2) / 2`` and ``scale = (x2 - x1, y2 - y1) * padding`` in **pixels**
  (``GetBBoxCenterScale``), computed in the boxes' own precision (float32 boxes, as a detector gives,
  stay float32; anything else is float64), then grown to the input's aspect ratio (``TopdownAffine``);
* the affine matrix maps the center to the crop center and ``center - (scale_x / 2, 0)`` to the
  middle of the crop's left edge (``get_warp_matrix``), solved by ``cv2.getAffineTransform`` on
  float32 points as mmpose does, so the matrices are the same bit for bit;
* the crop is warped from the BGR image and normalised as ``(pixel - mean) / std`` in float32 with
  mean and std on the 0..255 scale, RGB order (``PoseDataPreprocessor`` with ``bgr_to_rgb``);
* keypoints go back with ``kp / input_size * scale + center - scale / 2``, in float64 rounded to float32.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "BOX_PADDING", "PIXEL_MEAN", "PIXEL_STD_RGB", "boxes_to_center_scale", "clip_boxes_xywh", "fix_aspect_ratio",
    "input_to_image", "normalize_crops", "warp_matrices",
]

BOX_PADDING: float = 1.25
#: ``PoseDataPreprocessor``'s mean and std of RTMPose's configs, RGB, on the 0..255 scale.
PIXEL_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
PIXEL_STD_RGB: tuple[float, float, float] = (58.395, 57.12, 57.375)


def _float_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(boxes)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {array.shape}")
    return array if array.dtype == np.float32 else array.astype(np.float64)


def clip_boxes_xywh(boxes_xywh: np.ndarray, image_width: float, image_height: float) -> np.ndarray:
    """mmpose 1.x's COCO-style loader on ground-truth boxes: ``x1 = clip(x, 0, W - 1)``, ``x2 = clip(x + w,
    0, W - 1)`` (the same for y), as float32 ``xyxy`` (N, 4). Unlike 0.x, no ``w - 1`` and no dropping."""
    boxes = _float_boxes(boxes_xywh, "boxes_xywh").astype(np.float64)
    x, y, w, h = boxes.T
    right, bottom = image_width - 1, image_height - 1
    return np.stack([np.clip(x, 0, right), np.clip(y, 0, bottom), np.clip(x + w, 0, right), np.clip(y + h, 0, bottom)],
                    axis=1).astype(np.float32)


def boxes_to_center_scale(boxes_xyxy: np.ndarray, padding: float = BOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """``GetBBoxCenterScale``: (N, 4) ``xyxy`` -> ``center`` (N, 2) and ``scale`` (N, 2) in pixels, padded.

    Computed in the boxes' precision: float32 for float32 boxes, float64 otherwise (as numpy computes
    mmpose's expressions on the arrays it is handed).
    """
    boxes = _float_boxes(boxes_xyxy, "boxes_xyxy")
    scale = (boxes[:, 2:] - boxes[:, :2]) * padding
    center = (boxes[:, 2:] + boxes[:, :2]) * 0.5
    return center, scale


def fix_aspect_ratio(scale: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """Grow (N, 2) box sizes to ``aspect_ratio`` (input width / height): ``(w, w / a)`` if ``w > h a``,
    else ``(h a, h)``, in the array's precision."""
    w, h = scale[:, :1], scale[:, 1:]
    return np.where(w > h * aspect_ratio, np.hstack([w, w / aspect_ratio]), np.hstack([h * aspect_ratio, h]))


def warp_matrices(center: np.ndarray, scale: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """mmpose 1.x ``get_warp_matrix`` without rotation or shift, for N boxes: (N, 2, 3) float64 image -> crop.

    The center goes to the crop center and ``center - (scale_x / 2, 0)`` to the middle of the left edge
    (a uniform scale set by the x size); the third point of each triple is the second turned by 90
    degrees about the first, in float32.
    """
    center = np.asarray(center)
    scale = np.asarray(scale)
    n = len(center)
    dst_w, dst_h = output_size
    src = np.empty((n, 3, 2), np.float32)
    src[:, 0] = center.astype(np.float64)
    half = (scale[:, 0] * -0.5).astype(np.float64)  # in the scale's precision, as mmpose's src_dir
    src[:, 1] = center.astype(np.float64) + np.stack([half, np.zeros(n)], axis=1)
    src[:, 2] = _third_points(src[:, 0], src[:, 1])
    dst = np.empty((n, 3, 2), np.float32)
    dst[:, 0] = (dst_w * 0.5, dst_h * 0.5)
    dst[:, 1] = (dst_w * 0.5 - dst_w * 0.5, dst_h * 0.5)
    dst[:, 2] = _third_points(dst[:, 0], dst[:, 1])
    return np.stack([cv2.getAffineTransform(s, d) for s, d in zip(src, dst)]) if n else np.zeros((0, 2, 3))


def _third_points(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    direction = a - b
    return b + np.stack([-direction[:, 1], direction[:, 0]], axis=1)


def normalize_crops(crops_rgb: np.ndarray, mean: tuple[float, float, float] = PIXEL_MEAN,
                    std: tuple[float, float, float] = PIXEL_STD_RGB) -> np.ndarray:
    """(N, h, w, 3) uint8 RGB -> (N, 3, h, w) float32 ``(pixel - mean) / std``, in float32 as mmpose 1.x."""
    crops = np.asarray(crops_rgb)
    if crops.ndim != 4 or crops.shape[3] != 3:
        raise ValueError(f"crops must have shape (N, h, w, 3), got {crops.shape}")
    x = crops.transpose(0, 3, 1, 2).astype(np.float32)
    mean_, std_ = (np.asarray(v, np.float32)[:, None, None] for v in (mean, std))
    return np.ascontiguousarray((x - mean_) / std_)


def input_to_image(keypoints: np.ndarray, center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int]
                   ) -> np.ndarray:
    """(N, K, 2) keypoints in input (crop) pixels -> image pixels, float32: ``kp / input_size * scale +
    center - 0.5 * scale`` in float64 (``TopdownPoseEstimator.add_pred_to_datasample``)."""
    keypoints = np.asarray(keypoints, np.float32).astype(np.float64)
    center, scale = np.asarray(center), np.asarray(scale)
    size = np.asarray(input_size, np.int64)
    image = keypoints / size * scale[:, None].astype(np.float64) + center[:, None].astype(np.float64)
    return (image - (0.5 * scale)[:, None].astype(np.float64)).astype(np.float32)
