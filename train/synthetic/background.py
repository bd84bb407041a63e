"""Backgrounds for the synthetic world: procedural textures and crops of real photos.

Every generator takes a ``numpy.random.Generator`` and is deterministic given its state.
Photos are optional: pass the arrays returned by :func:`load_photos` for a folder of images
(any folder; the package ships none).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: Background kinds; a dataset image records ``BACKGROUND_KINDS.index(kind) + 1`` as its ``background``.
BACKGROUND_KINDS: tuple[str, ...] = ("noise", "landscape", "stripes", "clutter", "photo")
_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@functools.lru_cache(maxsize=4)
def load_photos(directory: Path, max_side: int = 640) -> tuple[np.ndarray, ...]:
    """All images under ``directory`` (recursively, sorted by path) as BGR uint8 arrays,
    downscaled so that their longer side is at most ``max_side`` pixels. Cached per folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"background folder {directory} does not exist")
    paths = sorted(p for p in directory.rglob("*") if p.suffix.lower() in _PHOTO_SUFFIXES)
    photos = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            logger.warning("skipping unreadable background image %s", path)
            continue
        factor = max_side / max(image.shape[:2])
        if factor < 1:
            image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        image.setflags(write=False)
        photos.append(image)
    if not photos:
        raise ValueError(f"no readable images ({', '.join(_PHOTO_SUFFIXES)}) under {directory}")
    logger.info("loaded %d background photos from %s", len(photos), directory)
    return tuple(photos)


def sample_background(
    rng: np.random.Generator, width: int, height: int, photos: Sequence[np.ndarray] = ()
) -> tuple[np.ndarray, int]:
    """A random (height, width, 3) BGR uint8 background and its kind index into
    :data:`BACKGROUND_KINDS`. Photos, when given, are picked a third of the time."""
    if photos and rng.random() < 1 / 3:
        kind = BACKGROUND_KINDS.index("photo")
        image = photo_crop(rng, photos, width, height)
    else:
        kind = int(rng.integers(BACKGROUND_KINDS.index("photo")))
        image = _GENERATORS[kind](rng, width, height)
    if rng.random() < 0.3:
        image = _add_grass(rng, image)
    return image, kind


def _color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def value_noise(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """(height, width) float32 smooth noise in about [0, 1] with ``cells`` features across."""
    cells_y = max(2, round(cells * height / width))
    grid = rng.random((cells_y, cells), dtype=np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


def _colorize(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours from ``a`` (t = 0) to ``b`` (t = 1) for a float map ``t``."""
    ramp = np.linspace(0, 1, 256)[:, None]
    lut = np.clip(a + ramp * (b - a), 0, 255).astype(np.uint8)[None]
    index = cv2.convertScaleAbs(t, alpha=255.0)
    return cv2.LUT(cv2.merge([index, index, index]), lut)


def _add_detail(image: np.ndarray, noise: np.ndarray, amplitude: float) -> np.ndarray:
    """Add ``(noise - 0.5) * amplitude`` grey levels to every channel (``noise`` float in [0, 1])."""
    detail = cv2.convertScaleAbs(noise, alpha=255.0)
    return cv2.addWeighted(image, 1.0, cv2.merge([detail, detail, detail]), amplitude / 255, -amplitude / 2)


def _noise(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    image = _colorize(value_noise(rng, width, height, int(rng.integers(2, 8))), _color(rng), _color(rng))
    detail = value_noise(rng, width, height, int(rng.integers(16, 48)))
    return _add_detail(image, detail, rng.uniform(10, 60))


def _landscape(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    horizon = rng.uniform(0.1, 0.6) * height
    hills = horizon - value_noise(rng, width, 2, int(rng.integers(3, 10)))[0] * rng.uniform(0, 0.25) * height
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    sky = np.ascontiguousarray(np.broadcast_to(_colorize(rows, _color(rng), _color(rng)), (height, width, 3)))
    ground = _colorize(value_noise(rng, width, height, int(rng.integers(4, 20))), _color(rng), _color(rng))
    ground = _add_detail(ground, value_noise(rng, width, height, int(rng.integers(30, 80))), 40)
    is_ground = (np.arange(height)[:, None] >= hills[None, :]).astype(np.uint8)
    return cv2.copyTo(ground, is_ground, sky)


def _stripes(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    angle = rng.uniform(0, math.pi)
    frequency = 2 * math.pi / rng.uniform(6, 60)
    xs = np.arange(width, dtype=np.float32) * np.float32(math.cos(angle) * frequency)
    ys = np.arange(height, dtype=np.float32)[:, None] * np.float32(math.sin(angle) * frequency)
    sharp = np.float32(rng.uniform(0.5, 3))
    t = np.clip(np.sin(xs + ys) * sharp + np.float32(0.5), 0, 1) * value_noise(rng, width, height, 4)
    return _colorize(t, _color(rng), _color(rng))


def _clutter(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Random blobs, boxes and strokes: things that are not animals."""
    image = _noise(rng, width, height)
    size = min(width, height)
    for _ in range(int(rng.integers(5, 25))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(width)), int(rng.integers(height))
        r = int(rng.uniform(0.02, 0.2) * size) + 1
        shape = rng.integers(3)
        if shape == 0:
            axes = (r, int(r * rng.uniform(0.3, 1)) + 1)
            cv2.ellipse(image, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
        elif shape == 1:
            cv2.rectangle(image, (x - r, y - r // 2), (x + r, y + r // 2), color, -1)
        else:
            end = (x + int(rng.integers(-2 * r, 2 * r + 1)), y + int(rng.integers(-2 * r, 2 * r + 1)))
            cv2.line(image, (x, y), end, color, max(1, r // 4), cv2.LINE_AA)
    return cv2.GaussianBlur(image, (3, 3), 0) if rng.random() < 0.5 else image


def photo_crop(rng: np.random.Generator, photos: Sequence[np.ndarray], width: int, height: int) -> np.ndarray:
    """A random crop of a random photo, resized to (height, width), maybe mirrored."""
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    aspect = width / height
    crop_w = min(pw, ph * aspect) * rng.uniform(0.3, 1.0)
    crop_h = crop_w / aspect
    x0 = rng.uniform(0, pw - crop_w)
    y0 = rng.uniform(0, ph - crop_h)
    crop = photo[int(y0):int(y0 + crop_h) + 1, int(x0):int(x0 + crop_w) + 1]
    image = cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
    return image[:, ::-1].copy() if rng.random() < 0.5 else image


def _add_grass(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Thin blades along the bottom of the background (behind the animals)."""
    height, width = image.shape[:2]
    n = int(rng.integers(20, 80))
    base_x = rng.uniform(0, width, n)
    base_y = rng.uniform(0.6, 1.05, n) * height
    tip = np.stack([base_x + rng.normal(0, 4, n), base_y - rng.uniform(0.02, 0.12, n) * height], 1)
    green = np.array([30, 140, 60]) * rng.uniform(0.5, 1.3)
    lines = np.round(np.stack([np.stack([base_x, base_y], 1), tip], 1) * 16).astype(np.int32)
    color = tuple(int(c) for c in np.clip(green, 0, 255))
    cv2.polylines(image, list(lines), False, color, 1, cv2.LINE_AA, 4)
    return image


_GENERATORS = (_noise, _landscape, _stripes, _clutter)
