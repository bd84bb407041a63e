"""Training augmentation of top-down crops: flip, half body, scale, rotation, centre shift.

The recipe is mmpose 0.x's AP-10K training pipeline (``TopDownRandomFlip``,
``TopDownHalfBodyTransform``, ``TopDownGetRandomScaleRotation``, then ``TopDownAffine``),
with the box-centre jitter of its loader. Nothing here touches pixels: :func:`sample_crop`
draws a :class:`Crop` (where to cut, how to turn, whether to mirror) and
:func:`crop_matrix` turns it into one image -> crop affine matrix for the keypoints, with
the flip folded in.

Conventions are those of :mod:`pose.transforms`: ``center`` in image pixels, ``scale``
in units of 200 pixels (padded, aspect ratio of the model input), ``rotation`` in degrees,
``input_size`` as ``(width, height)``. A mirrored crop sees the image flipped by
``x -> W - 1 - x`` (mmpose's ``fliplr_joints``) with left/right keypoints swapped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pose.keypoints import FLIP_INDEX, UPPER_BODY_IDS
from pose.transforms import PIXEL_STD, get_affine_matrices

__all__ = [
    "AugmentSettings",
    "Crop",
    "crop_matrix",
    "flip_crop_keypoints",
    "fold_flip",
    "half_body_box",
    "random_scale_rotation",
    "sample_crop",
]


@dataclass(frozen=True)
class AugmentSettings:
    """Random crop augmentation; the defaults are the official AP-10K HRNet recipe.

    Attributes:
        flip_prob: probability of a horizontal flip (left/right keypoints swapped).
        half_body_prob: probability of cropping the upper or lower body only, tried when
            more than ``half_body_min_joints`` keypoints are labelled.
        half_body_min_joints: mmpose's ``num_joints_half_body``.
        half_body_padding: enlargement of the half-body box (mmpose: 1.5).
        scale_factor: the box scale is multiplied by ``clip(1 + randn * f, 1 - f, 1 + f)``.
            The AP-10K configs use 0.5; 0.35 is the default of mmpose's transform.
        rotation_factor: rotation ``clip(randn * f, -2f, 2f)`` degrees ...
        rotation_prob: ... drawn with this probability, else 0.
        shift_prob: probability of moving the box centre ...
        shift_factor: ... by up to this fraction of the box width and height (uniform).
            mmpose draws this once when loading the annotations (prob 0.3, +-0.2);
            here it is drawn afresh for every sample.
    """

    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8
    half_body_padding: float = 1.5
    scale_factor: float = 0.5
    rotation_factor: float = 40.0
    rotation_prob: float = 0.6
    shift_prob: float = 0.3
    shift_factor: float = 0.2

    def __post_init__(self) -> None:
        for name in ("flip_prob", "half_body_prob", "rotation_prob", "shift_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.scale_factor < 1.0:
            raise ValueError(f"scale_factor must be in [0, 1), got {self.scale_factor}")
        if not 0.0 <= self.rotation_factor <= 90.0:
            raise ValueError(f"rotation_factor must be in [0, 90] degrees, got {self.rotation_factor}")
        if not 0.0 <= self.shift_factor <= 0.5:
            raise ValueError(f"shift_factor must be in [0, 0.5], got {self.shift_factor}")
        if self.half_body_min_joints < 2:
            raise ValueError(f"half_body_min_joints must be >= 2, got {self.half_body_min_joints}")
        if self.half_body_padding <= 0:
            raise ValueError(f"half_body_padding must be positive, got {self.half_body_padding}")

    @classmethod
    def disabled(cls) -> AugmentSettings:
        """No augmentation at all: the crop is the (padded) box, as at test time."""
        return cls(flip_prob=0.0, half_body_prob=0.0, scale_factor=0.0, rotation_factor=0.0,
                   rotation_prob=0.0, shift_prob=0.0)


@dataclass(frozen=True)
class Crop:
    """Where one training crop is cut.

    Attributes:
        center: (2,) float32 crop centre in the (flipped, if ``flipped``) image, pixels.
        scale: (2,) float32 crop size in units of 200 pixels.
        rotation: degrees, as :func:`pose.transforms.get_affine_matrices` takes them.
        flipped: the image is mirrored (``x -> W - 1 - x``) before cutting.
    """

    center: np.ndarray
    scale: np.ndarray
    rotation: float = 0.0
    flipped: bool = False


def random_scale_rotation(
    rng: np.random.Generator, scale_factor: float, rotation_factor: float, rotation_prob: float
) -> tuple[float, float]:
    """mmpose's ``TopDownGetRandomScaleRotation``: ``(scale multiplier, rotation in degrees)``."""
    multiplier = float(np.clip(rng.standard_normal() * scale_factor + 1, 1 - scale_factor, 1 + scale_factor))
    rotation = float(np.clip(rng.standard_normal() * rotation_factor, -2 * rotation_factor, 2 * rotation_factor))
    if rng.random() > rotation_prob:
        rotation = 0.0
    return multiplier, rotation


def half_body_box(
    keypoints: np.ndarray,
    visible: np.ndarray,
    aspect_ratio: float,
    rng: np.random.Generator,
    padding: float = 1.5,
    upper_body_ids: tuple[int, ...] = UPPER_BODY_IDS,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Centre and scale of the box around the labelled upper- or lower-body keypoints.

    mmpose's ``half_body_transform``: the upper body is chosen when ``randn < 0.5`` (about
    69% of the time, a quirk kept from mmpose) and it has more than two labelled
    keypoints, else the lower body if it has more than two, else the upper body. Returns
    None when the chosen half has fewer than two.

    Args:
        keypoints: (K, 2) keypoints in image pixels.
        visible: (K,) labelled flags.
        aspect_ratio: input width / height of the model.
        rng: random source.
        padding: enlargement of the tight box.
        upper_body_ids: indices of the upper-body keypoints; the others are lower body.

    Returns:
        ``(center (2,), scale (2,))`` float32, or None.
    """
    labelled = np.asarray(visible) > 0
    upper = np.zeros(len(labelled), dtype=bool)
    upper[list(upper_body_ids)] = True
    upper_points = np.asarray(keypoints, np.float32)[labelled & upper]
    lower_points = np.asarray(keypoints, np.float32)[labelled & ~upper]
    if rng.standard_normal() < 0.5 and len(upper_points) > 2:
        chosen = upper_points
    elif len(lower_points) > 2:
        chosen = lower_points
    else:
        chosen = upper_points
    if len(chosen) < 2:
        return None
    center = chosen.mean(axis=0)
    w, h = (chosen.max(axis=0) - chosen.min(axis=0)).astype(np.float64)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float32) * np.float32(padding)
    return center.astype(np.float32), scale


def sample_crop(
    rng: np.random.Generator,
    center: np.ndarray,
    scale: np.ndarray,
    box_size: np.ndarray,
    keypoints: np.ndarray,
    visible: np.ndarray,
    image_width: int,
    aspect_ratio: float,
    settings: AugmentSettings,
) -> Crop:
    """Draw the crop of one training instance: shift, flip, half body, then scale and rotation.

    Args:
        rng: random source (one draw sequence per sample).
        center, scale: (2,) the instance's test-time crop (:func:`pose.transforms.boxes_to_center_scale`).
        box_size: (2,) the box's width and height in pixels (for the centre shift).
        keypoints: (K, 2) keypoints in image pixels.
        visible: (K,) labelled flags.
        image_width: width of the image in pixels (for the flip).
        aspect_ratio: input width / height of the model.
        settings: what to draw.
    """
    center = np.asarray(center, np.float32).copy()
    scale = np.asarray(scale, np.float32).copy()
    if settings.shift_prob > 0 and rng.random() < settings.shift_prob:
        offset = rng.uniform(-settings.shift_factor, settings.shift_factor, 2) * np.asarray(box_size, np.float64)
        center = (center + offset).astype(np.float32)
    flipped = bool(settings.flip_prob > 0 and rng.random() <= settings.flip_prob)
    if flipped:
        center[0] = image_width - 1 - center[0]
        keypoints, visible = flip_crop_keypoints(keypoints, visible, image_width)
    if (
        settings.half_body_prob > 0
        and np.count_nonzero(np.asarray(visible) > 0) > settings.half_body_min_joints
        and rng.random() < settings.half_body_prob
    ):
        half = half_body_box(keypoints, visible, aspect_ratio, rng, settings.half_body_padding)
        if half is not None:
            center, scale = half
    rotation = 0.0
    if settings.scale_factor > 0 or settings.rotation_factor > 0:
        multiplier, rotation = random_scale_rotation(
            rng, settings.scale_factor, settings.rotation_factor, settings.rotation_prob
        )
        scale = (scale * np.float32(multiplier)).astype(np.float32)
    return Crop(center=center, scale=scale, rotation=rotation, flipped=flipped)


def flip_crop_keypoints(
    keypoints: np.ndarray, visible: np.ndarray, image_width: int, flip_index: np.ndarray = FLIP_INDEX
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror (K, 2) keypoints (``x -> W - 1 - x``) and relabel them and their (K,) flags."""
    keypoints = np.asarray(keypoints, np.float32)[flip_index].copy()
    keypoints[:, 0] = image_width - 1 - keypoints[:, 0]
    return keypoints, np.asarray(visible)[flip_index].copy()


def crop_matrix(crop: Crop, image_width: int, input_size: tuple[int, int]) -> np.ndarray:
    """(2, 3) float64 matrix from the *unflipped* image to the crop, the flip folded in."""
    matrix = get_affine_matrices(crop.center[None], crop.scale[None], input_size, crop.rotation)[0]
    return fold_flip(matrix, image_width) if crop.flipped else matrix


def fold_flip(matrix: np.ndarray, image_width: int) -> np.ndarray:
    """A (2, 3) matrix from the mirrored image (``x -> W - 1 - x``) as one from the unflipped image (a copy)."""
    # x_flipped = W - 1 - x: negate the x column and move the offset.
    matrix = np.array(matrix, np.float64)
    matrix[:, 2] += matrix[:, 0] * (image_width - 1)
    matrix[:, 0] = -matrix[:, 0]
    return matrix
