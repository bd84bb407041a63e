"""Heatmap encode/decode and the flip-test merge, as mmpose 0.x top-down does them.

Shapes follow mmpose 1.x codecs: keypoints are (N, K, 2) ``(x, y)``, heatmaps
(N, K, H, W). Heatmap pixel ``[i, j]`` is the integer point ``x = j, y = i``.

Decoding (:func:`decode_heatmaps`) reproduces ``keypoints_from_heatmaps`` of
mmpose 0.19: argmax, an optional sub-pixel refinement chosen by
:class:`PostProcess`, then :func:`pose.transforms.heatmap_coords_to_image`.
Encoding (:func:`encode_heatmaps`) reproduces ``TopDownGenerateTarget``'s
MSRA Gaussian targets (and the UDP variant) for training.
"""

from __future__ import annotations

import enum

import cv2
import numpy as np

from pose.transforms import PIXEL_STD, heatmap_coords_to_image

#: Floor of the log-heatmap in DARK decoding (mmpose's value).
_DARK_LOG_FLOOR = 1e-10
#: Clip range of the blurred heatmap before the log in UDP decoding.
_UDP_CLIP = (0.001, 50.0)


class PostProcess(enum.Enum):
    """Sub-pixel refinement applied after the argmax.

    * ``NONE``: integer argmax (mmpose ``post_process=None``).
    * ``DEFAULT``: a quarter-pixel step towards the higher neighbour
      (mmpose ``'default'``, the AP-10K setting).
    * ``DARK``: Gaussian modulation and a Taylor step (mmpose ``'unbiased'``).
    * ``UDP``: blurred log-heatmap Newton step with the unbiased (``size - 1``)
      mapping back to the image (mmpose ``use_udp=True``, ``'default'``).
    """

    NONE = "none"
    DEFAULT = "default"
    DARK = "dark"
    UDP = "udp"


def _check_heatmaps(heatmaps: np.ndarray) -> np.ndarray:
    array = np.asarray(heatmaps, dtype=np.float32)
    if array.ndim != 4:
        raise ValueError(f"heatmaps must have shape (N, K, H, W), got {array.shape}")
    return array


def _check_kernel(kernel: int) -> None:
    if kernel < 1 or kernel % 2 != 1:
        raise ValueError(f"kernel must be a positive odd integer, got {kernel}")


def get_max_preds(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax of each heatmap.

    Args:
        heatmaps: (N, K, H, W) heatmaps.

    Returns:
        ``coords`` (N, K, 2) float32 integer ``(x, y)`` of the first maximum in
        row-major order, ``(-1, -1)`` where the maximum is <= 0, and
        ``maxvals`` (N, K) float32 raw maxima.
    """
    heatmaps = _check_heatmaps(heatmaps)
    n, k, h, w = heatmaps.shape
    if heatmaps.size == 0:
        return np.zeros((n, k, 2), np.float32), np.zeros((n, k), np.float32)
    flat = heatmaps.reshape(n, k, h * w)
    index = np.argmax(flat, axis=2)
    maxvals = np.take_along_axis(flat, index[..., None], axis=2)[..., 0]
    coords = np.stack([index % w, index // w], axis=-1).astype(np.float32)
    coords[maxvals <= 0] = -1
    return coords, maxvals


def _at(heatmaps: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Values ``heatmaps[n, k, y[n, k], x[n, k]]`` for (N, K) index arrays."""
    n, k = y.shape
    return heatmaps[np.arange(n)[:, None], np.arange(k)[None, :], y, x]


def _refine_default(heatmaps: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """+-0.25 px towards the higher neighbour, only for 1 < x < W-1 and 1 < y < H-1."""
    _, _, h, w = heatmaps.shape
    x = coords[..., 0].astype(np.int64)
    y = coords[..., 1].astype(np.int64)
    inside = (x > 1) & (x < w - 1) & (y > 1) & (y < h - 1)
    xs, ys = np.where(inside, x, 1), np.where(inside, y, 1)
    diff = np.stack(
        [
            _at(heatmaps, ys, xs + 1) - _at(heatmaps, ys, xs - 1),
            _at(heatmaps, ys + 1, xs) - _at(heatmaps, ys - 1, xs),
        ],
        axis=-1,
    )
    step = np.sign(diff) * np.float32(0.25)
    return np.where(inside[..., None], coords + step, coords)


def _dark_modulate(heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """Zero-padded Gaussian blur rescaled to each map's original max, then log."""
    n, k, h, w = heatmaps.shape
    border = (kernel - 1) // 2
    padded = np.zeros((n * k, h + 2 * border, w + 2 * border), dtype=np.float32)
    padded[:, border : border + h, border : border + w] = heatmaps.reshape(n * k, h, w)
    blurred = np.stack([cv2.GaussianBlur(p, (kernel, kernel), 0) for p in padded])
    blurred = blurred[:, border : border + h, border : border + w].reshape(n, k, h, w)
    origin_max = heatmaps.max(axis=(2, 3), keepdims=True)
    blurred *= origin_max / blurred.max(axis=(2, 3), keepdims=True)
    return np.log(np.maximum(blurred, np.float32(_DARK_LOG_FLOOR)))


def _solve_step(
    dx: np.ndarray, dy: np.ndarray, dxx: np.ndarray, dxy: np.ndarray, dyy: np.ndarray
) -> np.ndarray:
    """Newton offset ``-H^-1 g`` for (N, K) gradients and Hessians, as (N, K, 2)."""
    det = dxx * dyy - dxy * dxy
    safe = np.where(det == 0, 1.0, det)
    offset_x = -(dyy * dx - dxy * dy) / safe
    offset_y = -(-dxy * dx + dxx * dy) / safe
    return np.stack([offset_x, offset_y], axis=-1)


def _refine_dark(heatmaps: np.ndarray, coords: np.ndarray, kernel: int) -> np.ndarray:
    """DARK: Taylor step on the modulated log-heatmap, only for 1 < x < W-2, 1 < y < H-2."""
    _, _, h, w = heatmaps.shape
    logmap = _dark_modulate(heatmaps, kernel).astype(np.float64)
    x = coords[..., 0].astype(np.int64)
    y = coords[..., 1].astype(np.int64)
    inside = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2)
    xs, ys = np.where(inside, x, 2), np.where(inside, y, 2)

    def at(oy: int, ox: int) -> np.ndarray:
        return _at(logmap, ys + oy, xs + ox)

    centre = at(0, 0)
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    dyy = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    apply = inside & (dxx * dyy - dxy**2 != 0)
    offset = _solve_step(dx, dy, dxx, dxy, dyy)
    return np.where(apply[..., None], coords + offset, coords).astype(np.float32)


def _refine_udp(
    heatmaps: np.ndarray, coords: np.ndarray, maxvals: np.ndarray, kernel: int
) -> np.ndarray:
    """UDP: reflect-101 blur, clip, log, edge pad, Newton step with ``H + eps I``.

    (mmpose pads with ``BORDER_REFLECT``, which for a 1-pixel pad repeats the edge.)

    mmpose also "refines" maps whose max is <= 0 by indexing around (-1, -1)
    with wrap-around, which is meaningless; here those stay at (-1, -1).
    """
    n, k, h, w = heatmaps.shape
    blurred = np.stack(
        [cv2.GaussianBlur(m, (kernel, kernel), 0) for m in heatmaps.reshape(n * k, h, w)]
    ).reshape(n, k, h, w)
    logmap = np.log(np.clip(blurred, *_UDP_CLIP))
    padded = np.pad(logmap, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    valid = maxvals > 0
    xs = np.where(valid, coords[..., 0], 0).astype(np.int64) + 1
    ys = np.where(valid, coords[..., 1], 0).astype(np.int64) + 1

    def at(oy: int, ox: int) -> np.ndarray:
        return _at(padded, ys + oy, xs + ox)

    centre = at(0, 0)
    x1, x1_ = at(0, 1), at(0, -1)
    y1, y1_ = at(1, 0), at(-1, 0)
    dx = 0.5 * (x1 - x1_)
    dy = 0.5 * (y1 - y1_)
    dxx = x1 - 2 * centre + x1_
    dyy = y1 - 2 * centre + y1_
    dxy = 0.5 * (at(1, 1) - x1 - y1 + centre + centre - x1_ - y1_ + at(-1, -1))
    eps = float(np.finfo(np.float32).eps)
    hessian = np.stack([dxx, dxy, dxy, dyy], axis=-1).astype(np.float64).reshape(n, k, 2, 2)
    hessian = hessian + eps * np.eye(2)
    gradient = np.stack([dx, dy], axis=-1).astype(np.float64)[..., None]
    step = (np.linalg.inv(hessian) @ gradient)[..., 0]
    return np.where(valid[..., None], coords - step, coords).astype(np.float32)


def decode_heatmaps(
    heatmaps: np.ndarray,
    center: np.ndarray,
    scale: np.ndarray,
    post_process: PostProcess = PostProcess.DEFAULT,
    kernel: int = 11,
    pixel_std: float = PIXEL_STD,
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps -> keypoints in image pixels (mmpose 0.x ``keypoints_from_heatmaps``).

    Args:
        heatmaps: (N, K, H, W) network output (the flip-merged one for flip test).
        center: (N, 2) box centers in image pixels.
        scale: (N, 2) box scales in ``pixel_std`` units.
        post_process: sub-pixel refinement, see :class:`PostProcess`.
        kernel: odd Gaussian kernel size for ``DARK`` and ``UDP`` (sigma follows
            OpenCV's rule, 2.0 for 11).
        pixel_std: pixels per scale unit.

    Returns:
        ``keypoints`` (N, K, 2) float32 image pixels and ``scores`` (N, K)
        float32, the raw heatmap maxima. Maps whose maximum is <= 0 decode to
        heatmap point (-1, -1) mapped to the image, as in mmpose.
    """
    heatmaps = _check_heatmaps(heatmaps)
    _check_kernel(kernel)
    n, _, h, w = heatmaps.shape
    if np.shape(center) != (n, 2) or np.shape(scale) != (n, 2):
        raise ValueError(
            f"center and scale must have shape ({n}, 2), "
            f"got {np.shape(center)} and {np.shape(scale)}"
        )
    coords, maxvals = get_max_preds(heatmaps)
    if heatmaps.size == 0:
        pass
    elif post_process is PostProcess.DEFAULT:
        coords = _refine_default(heatmaps, coords)
    elif post_process is PostProcess.DARK:
        coords = _refine_dark(heatmaps, coords, kernel)
    elif post_process is PostProcess.UDP:
        coords = _refine_udp(heatmaps, coords, maxvals, kernel)
    elif post_process is not PostProcess.NONE:
        raise ValueError(f"post_process must be a PostProcess, got {post_process!r}")
    keypoints = heatmap_coords_to_image(
        coords, center, scale, (w, h), use_udp=post_process is PostProcess.UDP, pixel_std=pixel_std
    )
    return keypoints, maxvals


def flip_back(
    heatmaps_flipped: np.ndarray, flip_index: np.ndarray, shift: bool = True
) -> np.ndarray:
    """Undo a horizontal input flip on (N, K, H, W) heatmaps (mmpose 0.x ``flip_back``).

    Channels are relabelled with ``flip_index`` (left <-> right), the width axis
    is mirrored, and with ``shift`` (mmpose ``shift_heatmap=True``) the maps move
    one column right, column 0 keeping its value: ``new[..., 1:] = old[..., :-1]``.
    Returns a new float32 array.
    """
    heatmaps = _check_heatmaps(heatmaps_flipped)
    flip_index = np.asarray(flip_index)
    if flip_index.shape != (heatmaps.shape[1],):
        raise ValueError(
            f"flip_index must have shape ({heatmaps.shape[1]},), got {flip_index.shape}"
        )
    back = heatmaps[:, flip_index, :, ::-1]
    if shift:
        back = np.concatenate([back[..., :1], back[..., :-1]], axis=-1)
    return np.ascontiguousarray(back)


def merge_flip(heatmaps: np.ndarray, heatmaps_flipped_back: np.ndarray) -> np.ndarray:
    """Flip-test average ``(heatmaps + heatmaps_flipped_back) * 0.5`` in float32."""
    a = _check_heatmaps(heatmaps)
    b = _check_heatmaps(heatmaps_flipped_back)
    if a.shape != b.shape:
        raise ValueError(f"heatmap shapes differ: {a.shape} and {b.shape}")
    return (a + b) * np.float32(0.5)


def encode_heatmaps(
    keypoints: np.ndarray,
    visible: np.ndarray,
    input_size: tuple[int, int] = (256, 256),
    heatmap_size: tuple[int, int] = (64, 64),
    sigma: float = 2.0,
    use_udp: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian heatmap targets (mmpose 0.x ``TopDownGenerateTarget``, MSRA or UDP).

    Each keypoint is snapped to the heatmap pixel ``mu = int(p / stride + 0.5)``
    and an unnormalised Gaussian (peak 1) is drawn within ``3 * sigma`` of it.
    With ``use_udp`` the stride is ``(input - 1) / (heatmap - 1)`` and the
    Gaussian is centred on the exact sub-pixel position. The weight is
    ``visible``, set to 0 when the Gaussian window lies fully outside the map;
    a map is drawn only when its weight is > 0.5.

    Args:
        keypoints: (N, K, 2) keypoints in model-input (crop) pixels.
        visible: (N, K) visibility weights, 0 or 1.
        input_size: ``(width, height)`` of the model input.
        heatmap_size: ``(width, height)`` of the heatmaps.
        sigma: Gaussian standard deviation in heatmap pixels.
        use_udp: use the unbiased (UDP) encoding.

    Returns:
        ``targets`` (N, K, H, W) float32 and ``target_weights`` (N, K) float32.
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.ndim != 3 or keypoints.shape[2] != 2:
        raise ValueError(f"keypoints must have shape (N, K, 2), got {keypoints.shape}")
    weights = np.asarray(visible, dtype=np.float32)
    if weights.shape != keypoints.shape[:2]:
        raise ValueError(f"visible must have shape {keypoints.shape[:2]}, got {weights.shape}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    w, h = heatmap_size
    size_hm = np.array([w, h], dtype=np.float64)
    size_in = np.asarray(input_size, dtype=np.float64)
    stride = (size_in - 1.0) / (size_hm - 1.0) if use_udp else size_in / size_hm

    tmp_size = sigma * 3
    exact = keypoints.astype(np.float64) / stride
    mu = np.trunc(exact + 0.5)
    upper_left = np.trunc(mu - tmp_size)
    bottom_right = np.trunc(mu + tmp_size + 1)
    outside = np.any(upper_left >= size_hm, axis=-1) | np.any(bottom_right < 0, axis=-1)
    weights = np.where(outside, np.float32(0), weights)

    centre = upper_left + (2 * tmp_size + 1) // 2
    if use_udp:
        centre = centre + (exact - mu)
    window = (upper_left, bottom_right, centre)
    dx, inside_x = _gaussian_axis(w, *(v[..., 0] for v in window), tmp_size)
    dy, inside_y = _gaussian_axis(h, *(v[..., 1] for v in window), tmp_size)
    targets = np.exp(-(dx[..., None, :] ** 2 + dy[..., :, None] ** 2) / np.float32(2 * sigma**2))
    drawn = inside_y[..., :, None] & inside_x[..., None, :] & (weights > 0.5)[..., None, None]
    return np.where(drawn, targets, np.float32(0)), weights


def _gaussian_axis(
    length: int,
    upper_left: np.ndarray,
    bottom_right: np.ndarray,
    centre: np.ndarray,
    tmp_size: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the Gaussian centre and the drawn window along one heatmap axis.

    mmpose pastes ``g[p - ul]``, a patch of ``len(arange(2 * tmp_size + 1))``
    samples, onto pixels ``p`` in ``[max(0, ul), min(br, length))``; patch index
    ``i`` lies at distance ``i - size // 2`` (plus the UDP sub-pixel offset) from
    the centre. Inputs are (N, K); outputs are (N, K, length), float32 and bool.
    """
    patch_len = len(np.arange(0, 2 * tmp_size + 1, 1))
    pixels = np.arange(length, dtype=np.float64)
    index = pixels - upper_left[..., None]
    inside = (index >= 0) & (index < np.minimum(bottom_right - upper_left, patch_len)[..., None])
    return (pixels - centre[..., None]).astype(np.float32), inside
