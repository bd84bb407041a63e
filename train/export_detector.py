"""ONNX export of an ultralytics YOLO detector, checked against torch before it is kept.

The pose model's export lives in :mod:`pose.export`; this is its detector counterpart, for
``animalpose export --det-weights W --det-out det.onnx``. ultralytics' own exporter writes the
file (``format="onnx"``, dynamic batch and image size, no onnxslim), so the result loads in
:class:`tracking.detector.Detector` like any ultralytics ONNX model.

Nothing is downloaded: the weights must be a local file, ultralytics' automatic ``pip install``
of missing requirements is switched off for the call (with ``simplify=False`` the ONNX export
needs only the ``onnx`` package), and torch's CPU thread count, which ultralytics changes, is
restored afterwards.

The export runs in a temporary folder next to ``out`` (so nothing appears beside the weights),
then the torch model and ONNX Runtime are run on the same input; the file is moved to ``out``
only if their raw outputs agree.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from pose.export import onnx_session
from pose.threads import torch_threads
from tracking.detector import first_tensor

logger = logging.getLogger(__name__)

#: Raw outputs agree when ``|onnx - torch| <= ATOL + RTOL * |torch|`` everywhere. Boxes are in
#: input pixels (up to ``image_size``), scores in [0, 1].
ATOL = 1e-3
RTOL = 1e-3


@contextlib.contextmanager
def _no_autoinstall() -> Iterator[None]:
    """Stop ultralytics from ``pip install``-ing a missing requirement during the block."""
    from ultralytics.utils import checks

    saved = checks.AUTOINSTALL
    checks.AUTOINSTALL = False
    try:
        yield
    finally:
        checks.AUTOINSTALL = saved


def parity_input(image_size: int, image: str | Path | None = None) -> np.ndarray:
    """A (2, 3, S, S) float32 RGB batch in [0, 1], S = ``image_size`` pixels: ``image`` resized
    to S x S and its mirror image, or two seeded random images when ``image`` is None."""
    if image is None:
        return np.random.default_rng(0).uniform(0, 1, (2, 3, image_size, image_size)).astype(np.float32)
    import cv2

    bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read the parity-check image {image}")
    rgb = cv2.resize(bgr, (image_size, image_size), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    chw = rgb.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    return np.ascontiguousarray(np.stack([chw, chw[:, :, ::-1]]))


def _torch_output(yolo, images: np.ndarray) -> np.ndarray:
    model = yolo.model.float().eval()
    with torch.inference_mode():
        return first_tensor(model(torch.from_numpy(images))).numpy()


def check_parity(expected: np.ndarray, got: np.ndarray, atol: float = ATOL, rtol: float = RTOL) -> float:
    """Largest ``|got - expected|``; raises RuntimeError when shapes differ or values exceed the tolerance."""
    if got.shape != expected.shape:
        raise RuntimeError(f"the ONNX detector outputs {got.shape}, torch {expected.shape}")
    error = np.abs(got - expected)
    bad = error > atol + rtol * np.abs(expected)
    if bad.any():
        raise RuntimeError(
            f"the ONNX detector differs from torch at {int(bad.sum())} of {bad.size} outputs "
            f"(max |difference| {float(error.max()):.3g}, tolerance {atol} + {rtol} * |torch|)"
        )
    return float(error.max())


def export_detector_onnx(
    weights: str | Path, out: str | Path, image_size: int = 640, check_image: str | Path | None = None
) -> Path:
    """Export the YOLO ``weights`` file to ONNX at ``out`` (dynamic batch and size), checked against torch.

    ``image_size`` is the export and check size in pixels (a multiple of 32). The check runs the
    torch model and ONNX Runtime on :func:`parity_input` (``check_image`` or random images) and
    raises RuntimeError if :func:`check_parity` fails; ``out`` is then left untouched.
    """
    from ultralytics import YOLO

    weights, out = Path(weights), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    images = parity_input(image_size, check_image)
    with (torch_threads(), _no_autoinstall(),
          tempfile.TemporaryDirectory(dir=out.parent, prefix=".det-export-") as tmp):
        local = Path(tmp) / (weights.stem + ".pt")
        shutil.copyfile(weights, local)
        yolo = YOLO(str(local))
        expected = _torch_output(yolo, images)
        exported = Path(yolo.export(format="onnx", imgsz=image_size, dynamic=True, simplify=False, device="cpu"))
        got = onnx_session(exported).run(None, {"images": images})[0]
        error = check_parity(expected, got)
        os.replace(exported, out)
    logger.info("Exported detector %s to %s; max |onnx - torch| = %.2e on %s", weights, out, error, images.shape)
    return out


def export_detector_command(det_weights: str | Path, det_out: str | Path, image_size: int = 640) -> None:
    """``animalpose export --det-weights W --det-out det.onnx``: validate the arguments, export, check.

    Raises ValueError for bad arguments and RuntimeError when ultralytics cannot export the
    weights or the ONNX model disagrees with torch.
    """
    weights, out = Path(det_weights), Path(det_out)
    if not weights.is_file():
        raise ValueError(f"--det-weights: no such file {weights}; give a local YOLO .pt file (nothing is downloaded)")
    if weights.suffix != ".pt":
        raise ValueError(f"--det-weights: expected an ultralytics .pt file, got {weights}")
    if out.suffix != ".onnx":
        raise ValueError(f"--det-out: the file name must end in .onnx, got {out}")
    if image_size <= 0 or image_size % 32:
        raise ValueError(f"image size must be a positive multiple of 32 pixels, got {image_size}")
    try:
        export_detector_onnx(weights, out, image_size)
    except RuntimeError:
        raise
    except Exception as error:  # ultralytics raises many kinds; the user needs the file and the cause
        raise RuntimeError(f"could not export the detector {weights} to ONNX: {error}") from error
