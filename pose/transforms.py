"""Top-down geometry: boxes -> center/scale -> affine crops, and back to the image.

Reproduces mmpose 0.x (0.19, the AP-10K code) bit for bit, vectorised over the
N instances of a frame. The float32 roundings happen where mmpose rounds, so the
center, scale, affine matrix, crop and network input equal the reference
fixtures exactly (``tests/data/reference/preprocess``).

Conventions:

* Boxes ``xywh`` are COCO ``[x, y, w, h]`` and ``xyxy`` is ``[x1, y1, x2, y2]``
  with ``w = x2 - x1`` (no ``+1``). mmpose 0.x's demo helper ``_xyxy2xywh``
  adds ``+1`` to the width and height; we do not.
* A box is described by ``center`` (N, 2) in image pixels and ``scale`` (N, 2)
  in units of ``pixel_std`` (200) pixels, already enlarged to the model aspect
  ratio and padded by 1.25: the crop covers ``scale * 200`` image pixels.
* ``output_size`` and ``heatmap_size`` are ``(width, height)``.
* Images are RGB ``uint8`` (mmpose reads BGR with OpenCV and converts to RGB).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

PIXEL_STD: float = 200.0
BOX_PADDING: float = 1.25
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {array.shape}")
    return array


def _pairs(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {array.shape}")
    return array


def xyxy_to_xywh(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) ``[x1, y1, x2, y2]`` -> (N, 4) float64 ``[x1, y1, x2 - x1, y2 - y1]``."""
    boxes = _boxes(boxes_xyxy, "boxes_xyxy")
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def xywh_to_xyxy(boxes_xywh: np.ndarray) -> np.ndarray:
    """(N, 4) ``[x, y, w, h]`` -> (N, 4) float64 ``[x, y, x + w, y + h]``."""
    boxes = _boxes(boxes_xywh, "boxes_xywh")
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def clean_boxes_xywh(
    boxes_xywh: np.ndarray, image_width: float | np.ndarray, image_height: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Clip annotation boxes to the image the way mmpose 0.x's COCO loader does.

    ``x1 = max(0, x)``, ``x2 = min(W - 1, x1 + max(0, w - 1))`` (the same for y),
    and the clean box is ``[x1, y1, x2 - x1, y2 - y1]``: the effective width is
    ``w - 1``. mmpose applies this to ground-truth boxes only; detector boxes
    go to :func:`boxes_to_center_scale` unchanged.

    Args:
        boxes_xywh: (N, 4) COCO boxes in image pixels.
        image_width, image_height: image size in pixels, one for all boxes or (N,) arrays.

    Returns:
        ``(clean, valid)``: (N, 4) float64 clean boxes (float64 so that the
        center computed from them rounds like mmpose's Python floats) and an
        (N,) bool mask, False where mmpose drops the annotation (``x2 <= x1``
        or ``y2 <= y1``). Invalid rows are kept, not removed, so indices line
        up with the input.
    """
    boxes = _boxes(boxes_xywh, "boxes_xywh")
    width, height = np.asarray(image_width, np.float64), np.asarray(image_height, np.float64)
    limit = np.stack(np.broadcast_arrays(width, height), -1) - 1.0
    top_left = np.maximum(boxes[:, :2], 0.0)
    bottom_right = np.minimum(limit, top_left + np.maximum(boxes[:, 2:] - 1.0, 0.0))
    clean = np.concatenate([top_left, bottom_right - top_left], axis=1)
    valid = np.all(bottom_right > top_left, axis=1)
    return clean, valid


def boxes_to_center_scale(
    boxes_xywh: np.ndarray,
    aspect_ratio: float = 1.0,
    padding: float = BOX_PADDING,
    pixel_std: float = PIXEL_STD,
) -> tuple[np.ndarray, np.ndarray]:
    """mmpose 0.x ``_xywh2cs`` in test mode (no center jitter).

    The center is the box center; the box is then grown to ``aspect_ratio``
    (model input width / height) and padded. Arithmetic is float64 with float32
    rounding of center and ``w / pixel_std``, then a float32 multiply by
    ``padding``, as in mmpose.

    Args:
        boxes_xywh: (N, 4) boxes in image pixels.
        aspect_ratio: input width / input height of the model (1.0 for 256x256).
        padding: context factor applied to the box size.
        pixel_std: pixels per scale unit.

    Returns:
        ``center`` (N, 2) float32 pixels and ``scale`` (N, 2) float32 in units
        of ``pixel_std`` pixels.
    """
    if aspect_ratio <= 0:
        raise ValueError(f"aspect_ratio must be positive, got {aspect_ratio}")
    boxes = _boxes(boxes_xywh, "boxes_xywh")
    x, y, w, h = boxes.T
    center = np.stack([x + w * 0.5, y + h * 0.5], axis=1).astype(np.float32)
    wider = w > aspect_ratio * h
    taller = w < aspect_ratio * h
    grown_h = np.where(wider, w * 1.0 / aspect_ratio, h)
    grown_w = np.where(taller, h * aspect_ratio, w)
    size = np.stack([grown_w / pixel_std, grown_h / pixel_std], axis=1).astype(np.float32)
    scale = size * np.float32(padding)
    return center, scale


def _third_points(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 2) float32: ``b`` plus ``a - b`` rotated by 90 degrees, in float32."""
    direction = a - b
    return b + np.stack([-direction[:, 1], direction[:, 0]], axis=1)


def get_affine_matrices(
    center: np.ndarray,
    scale: np.ndarray,
    output_size: tuple[int, int],
    rotation: float | np.ndarray = 0.0,
    inverse: bool = False,
    pixel_std: float = PIXEL_STD,
) -> np.ndarray:
    """mmpose 0.x ``get_affine_transform`` (non-UDP) for N boxes.

    Only the x scale sets the source width (a uniform scale): the center goes
    to the output center and ``center + (sin r, -cos r) * scale_x * pixel_std / 2``
    (y down) to the top middle of the output, so with ``r = 90`` the box's right
    edge becomes the crop's top and the content turns counter-clockwise. Three float32 point pairs
    are solved with ``cv2.getAffineTransform`` per box, which is what makes the
    matrices bit-identical to mmpose's.

    Args:
        center: (N, 2) box centers in image pixels.
        scale: (N, 2) box scales in ``pixel_std`` units.
        output_size: ``(width, height)`` of the crop in pixels.
        rotation: degrees ``r``, a scalar or (N,) per box.
        inverse: return the crop -> image matrices instead.
        pixel_std: pixels per scale unit.

    Returns:
        (N, 2, 3) float64 image -> crop matrices (crop -> image if ``inverse``).
    """
    center = _pairs(center, "center")
    scale = _pairs(scale, "scale")
    n = len(center)
    if len(scale) != n:
        raise ValueError(f"center and scale must have the same length, got {n} and {len(scale)}")
    dst_w, dst_h = output_size
    angle = np.pi * np.broadcast_to(np.asarray(rotation, dtype=np.float64), (n,)) / 180
    src_w = (scale * np.float32(pixel_std))[:, 0].astype(np.float64)
    sin, cos = np.sin(angle), np.cos(angle)
    src_dir = np.stack([src_w * 0.5 * sin, src_w * -0.5 * cos], axis=1)

    src = np.empty((n, 3, 2), dtype=np.float32)
    src[:, 0] = center
    src[:, 1] = center.astype(np.float64) + src_dir
    src[:, 2] = _third_points(src[:, 0], src[:, 1])
    dst = np.empty((n, 3, 2), dtype=np.float32)
    dst[:, 0] = (dst_w * 0.5, dst_h * 0.5)
    dst[:, 1] = (dst_w * 0.5, dst_h * 0.5 - dst_w * 0.5)
    dst[:, 2] = _third_points(dst[:, 0], dst[:, 1])
    if inverse:
        src, dst = dst, src
    matrices = np.empty((n, 2, 3), dtype=np.float64)
    for i in range(n):
        matrices[i] = cv2.getAffineTransform(src[i], dst[i])
    return matrices


def get_udp_warp_matrices(
    center: np.ndarray,
    scale: np.ndarray,
    output_size: tuple[int, int],
    rotation: float | np.ndarray = 0.0,
    pixel_std: float = PIXEL_STD,
) -> np.ndarray:
    """mmpose 0.x UDP ``get_warp_matrix(rot, 2 * center, output_size - 1, scale * 200)``.

    Unbiased data processing maps the box (both scales, not only x) onto the
    output with pixel *distances* ``size - 1``: ``x' = (W - 1) / (s_w * 200) *
    (x - c_x + s_w * 200 / 2)`` when unrotated. mmpose stores the matrix in
    float32; it is returned as float64 holding those float32 values.

    Args:
        center: (N, 2) box centers in image pixels.
        scale: (N, 2) box scales in ``pixel_std`` units.
        output_size: ``(width, height)`` of the crop in pixels.
        rotation: degrees, a scalar or (N,) per box.
        pixel_std: pixels per scale unit.

    Returns:
        (N, 2, 3) float64 image -> crop matrices.
    """
    center = _pairs(center, "center").astype(np.float64)
    scale = _pairs(scale, "scale")
    n = len(center)
    theta = np.deg2rad(np.broadcast_to(np.asarray(rotation, dtype=np.float64), (n,)))
    cos, sin = np.cos(theta), np.sin(theta)
    target = (scale * np.float32(pixel_std)).astype(np.float64)
    size_input = center * 2.0
    scale_x = (output_size[0] - 1.0) / target[:, 0]
    scale_y = (output_size[1] - 1.0) / target[:, 1]
    matrices = np.empty((n, 2, 3), dtype=np.float32)
    matrices[:, 0, 0] = cos * scale_x
    matrices[:, 0, 1] = -sin * scale_x
    matrices[:, 0, 2] = scale_x * (
        -0.5 * size_input[:, 0] * cos + 0.5 * size_input[:, 1] * sin + 0.5 * target[:, 0]
    )
    matrices[:, 1, 0] = sin * scale_y
    matrices[:, 1, 1] = cos * scale_y
    matrices[:, 1, 2] = scale_y * (
        -0.5 * size_input[:, 0] * sin - 0.5 * size_input[:, 1] * cos + 0.5 * target[:, 1]
    )
    return matrices.astype(np.float64)


def apply_affine(points: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Map (N, K, 2) points with (N, 2, 3) matrices; returns (N, K, 2) float64."""
    points = np.asarray(points, dtype=np.float64)
    matrices = np.asarray(matrices, dtype=np.float64)
    return points @ matrices[:, :, :2].transpose(0, 2, 1) + matrices[:, None, :, 2]


def warp_crops(
    image_rgb: np.ndarray, matrices: np.ndarray, output_size: tuple[int, int]
) -> np.ndarray:
    """Cut N crops with ``cv2.warpAffine`` (bilinear, constant 0 border), as mmpose.

    Args:
        image_rgb: (H, W, 3) uint8 image.
        matrices: (N, 2, 3) image -> crop matrices.
        output_size: ``(width, height)`` of the crops.

    Returns:
        (N, height, width, 3) uint8 crops. OpenCV 4.x's fixed-point bilinear
        makes them bit-identical to mmpose's; OpenCV 5 differs by a few levels.
    """
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image_rgb must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    matrices = np.asarray(matrices, dtype=np.float64)
    width, height = (int(v) for v in output_size)
    crops = np.empty((len(matrices), height, width, 3), dtype=np.uint8)
    for i, matrix in enumerate(matrices):
        crops[i] = cv2.warpAffine(
            image,
            matrix,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
    return crops


def normalize_crops(
    crops: np.ndarray,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> np.ndarray:
    """(N, h, w, 3) uint8 RGB -> (N, 3, h, w) float32 network input.

    ``x / 255`` then ``(x - mean) / std``, all in float32, which is torchvision's
    ``to_tensor`` followed by ``normalize`` and matches mmpose's input exactly.
    """
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[3] != 3:
        raise ValueError(f"crops must have shape (N, h, w, 3), got {crops.shape}")
    if crops.dtype != np.uint8:
        x = crops.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
        return np.ascontiguousarray((x - _channel_column(mean)) / _channel_column(std))
    # A uint8 value has 256 possible results per channel: look them up (computed with the same float32
    # operations, so the input is identical) instead of computing every pixel: 10x faster.
    n, height, width, _ = crops.shape
    planar = np.ascontiguousarray(crops.transpose(0, 3, 1, 2)).reshape(n, 3, height * width)
    table = normalization_table(tuple(mean), tuple(std))
    out = np.empty((n, 3, height, width), np.float32)
    for c in range(3):
        out[:, c] = cv2.LUT(planar[:, c], table[c]).reshape(n, height, width)
    return out


def _channel_column(values: tuple[float, float, float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)[:, None, None]


@functools.lru_cache(maxsize=8)
def normalization_table(mean: tuple[float, float, float], std: tuple[float, float, float]) -> np.ndarray:
    """(3, 1, 256) float32: ``(v / 255 - mean_c) / std_c`` for every uint8 value ``v`` of each channel, in
    float32 as :func:`normalize_crops` computes it (the lookup table it applies with ``cv2.LUT``)."""
    values = np.arange(256, dtype=np.float32)[None, None, :] / np.float32(255)
    table = (values - _channel_column(mean)) / _channel_column(std)
    table.setflags(write=False)
    return table


def heatmap_coords_to_image(
    coords: np.ndarray,
    center: np.ndarray,
    scale: np.ndarray,
    heatmap_size: tuple[int, int],
    use_udp: bool = False,
    pixel_std: float = PIXEL_STD,
) -> np.ndarray:
    """mmpose 0.x ``transform_preds``: heatmap pixels -> image pixels.

    ``X = x * (s_w * 200 / W) + c_x - s_w * 200 / 2`` (and the same for y), with
    ``W - 1`` as divisor under UDP. No half-pixel term. Computed in float32 in
    mmpose's order, so results are bit-identical.

    Args:
        coords: (N, K, 2) heatmap coordinates (x, y); integer x is a column.
        center: (N, 2) box centers in image pixels.
        scale: (N, 2) box scales in ``pixel_std`` units.
        heatmap_size: ``(width, height)`` of the heatmaps.
        use_udp: use the unbiased (``size - 1``) mapping.
        pixel_std: pixels per scale unit.

    Returns:
        (N, K, 2) float32 image coordinates.
    """
    coords = np.asarray(coords, dtype=np.float32)
    center = _pairs(center, "center")
    box = _pairs(scale, "scale") * np.float32(pixel_std)
    size = np.asarray(heatmap_size, dtype=np.float32) - np.float32(1.0 if use_udp else 0.0)
    factor = box / size
    return coords * factor[:, None, :] + center[:, None, :] - (box * np.float32(0.5))[:, None, :]


def flip_keypoints(
    keypoints: np.ndarray, image_width: int, flip_index: np.ndarray
) -> np.ndarray:
    """Mirror (N, K, D) keypoints horizontally in an image of ``image_width`` pixels.

    ``x' = image_width - 1 - x`` (mmpose's ``fliplr_joints``) and the keypoints are
    relabelled with ``flip_index`` so a left paw stays a left paw. Columns after
    x (y, visibility, score) are carried along unchanged.
    """
    keypoints = np.asarray(keypoints)
    flipped = keypoints[:, np.asarray(flip_index)].copy()
    flipped[..., 0] = image_width - 1 - flipped[..., 0]
    return flipped
