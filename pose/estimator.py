"""``PoseEstimator(image, boxes) -> Poses``: mmpose 0.x's top-down test path, batched.

For every box of a frame: clean it (ground-truth boxes, as the AP-10K evaluation does), take
center/scale (padding 1.25, square), warp the crop, normalise, run the network on all crops (and
their mirror images for the flip test) in one batch, merge the flipped heatmaps, decode and map
back to image pixels.
"""

from __future__ import annotations

import enum
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pose.checkpoint import load_pose_checkpoint
from pose.codec import PostProcess, decode_heatmaps, flip_back
from pose.export import export_onnx, onnx_session, run_onnx
from pose.keypoints import FLIP_INDEX
from pose.structures import Poses
from pose.transforms import (
    boxes_to_center_scale,
    clean_boxes_xywh,
    get_affine_matrices,
    get_udp_warp_matrices,
    normalize_crops,
    warp_crops,
    xyxy_to_xywh,
)
from pose.weights import resolve_pose_weights

logger = logging.getLogger(__name__)


class Backend(enum.Enum):
    """What runs the network. AUTO: ONNX Runtime on the CPU when it is installed (about 1.6x faster
    than torch there, same keypoints), torch on CUDA (fp16, channels-last)."""

    TORCH = "torch"
    ONNXRUNTIME = "onnxruntime"
    AUTO = "auto"


def resolve_backend(backend: Backend, device: str | torch.device) -> Backend:
    """The backend :class:`PoseEstimator` uses for ``backend`` on ``device`` (AUTO resolved)."""
    if backend is not Backend.AUTO:
        return backend
    if torch.device(device).type != "cpu":
        return Backend.TORCH
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return Backend.TORCH
    return Backend.ONNXRUNTIME


@dataclass(frozen=True)
class PoseSettings:
    """How the pose model is run.

    Attributes:
        input_size: network input (width, height) in pixels; AP-10K models use 256x256.
        flip_test: also run the mirrored crop and average the heatmaps (mmpose's AP-10K default).
        shift_heatmap: shift the flipped-back heatmap one column right (mmpose's default).
        post_process: heatmap decoding: DEFAULT (quarter-pixel shift), DARK, UDP or NONE.
        kernel: Gaussian kernel size used by DARK and UDP.
        padding: box enlargement factor before cropping.
        device: "cpu", "cuda" or "cuda:N".
        half: run in float16 (CUDA only; ignored on the CPU).
        channels_last: channels-last memory format (CUDA only).
        tf32: let cuDNN run float32 convolutions in TF32 (CUDA on Ampere or later GPUs): faster, but
            the keypoints drift from mmpose's float32 ones (see ``docs/benchmarks.md``, "CUDA paths").
        backend: torch, ONNX Runtime (from our own export of the same weights, made when the
            estimator is built) or AUTO (see :class:`Backend`).
        max_batch: the most crops sent to the network at once (flip copies included).
        flush_denormal: on the CPU, treat denormal floats as zero. Networks whose activations
            underflow (small or freshly trained ones) otherwise run up to 10x slower; outputs
            change by far less than the float32 tolerance of the reference tests.
    """

    input_size: tuple[int, int] = (256, 256)
    flip_test: bool = True
    shift_heatmap: bool = True
    post_process: PostProcess = PostProcess.DEFAULT
    kernel: int = 11
    padding: float = 1.25
    device: str = "cpu"
    half: bool = False
    channels_last: bool = True
    tf32: bool = False
    backend: Backend = Backend.TORCH
    max_batch: int = 64
    flush_denormal: bool = True

    def __post_init__(self) -> None:
        if len(self.input_size) != 2 or min(self.input_size) < 8 or any(s % 4 for s in self.input_size):
            raise ValueError(f"input_size must be (width, height), multiples of 4, got {self.input_size}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd number, got {self.kernel}")
        if self.padding <= 0:
            raise ValueError(f"padding must be positive, got {self.padding}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")

    @property
    def use_udp(self) -> bool:
        return self.post_process is PostProcess.UDP


@dataclass(frozen=True)
class PreparedBatch:
    """Network inputs for N boxes and what is needed to map the outputs back.

    Attributes:
        inputs: (N, 3, H, W) float32 normalised RGB crops.
        center: (N, 2) float32 box centres in image pixels.
        scale: (N, 2) float32 box sizes in units of 200 pixels (padded, square).
    """

    inputs: np.ndarray
    center: np.ndarray
    scale: np.ndarray


def prepare_inputs(
    image_bgr: np.ndarray, boxes_xywh: np.ndarray, settings: PoseSettings, clean: bool = True
) -> PreparedBatch:
    """Crops and normalises the boxes of one BGR uint8 frame exactly as mmpose 0.x does.

    ``boxes_xywh`` are (N, 4) COCO boxes (x, y, width, height) in pixels. With ``clean`` they first
    go through the AP-10K dataset's box cleaning (clip to the image, effective width w-1), as
    mmpose's evaluation does with ground-truth boxes; rows that cleaning empties are kept as given.
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 BGR array, got {image_bgr.shape} {image_bgr.dtype}")
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


@contextmanager
def cudnn_tf32(allowed: bool) -> Iterator[None]:
    """cuDNN's TF32 convolutions allowed or not inside the block (a process-wide flag, restored after)."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before


class PoseEstimator:
    """Top-down pose estimation of every box of a frame, in one batch.

    Example::

        estimator = PoseEstimator.from_weights("hrnet_w32", PoseSettings(device="cuda"))
        poses = estimator(frame_bgr, detections.xyxy)
    """

    def __init__(self, model: nn.Module, settings: PoseSettings = PoseSettings(), onnx_path: Path | None = None):
        self.settings = settings
        self.device = torch.device(settings.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; use --device cpu")
        if settings.flush_denormal and self.device.type == "cpu":
            torch.set_flush_denormal(True)
        self.half = settings.half and self.device.type == "cuda"
        self.channels_last = settings.channels_last and self.device.type == "cuda"
        # cuDNN's flag is process-wide: touched around CUDA batches only, never on the CPU path.
        self._precision = (lambda: cudnn_tf32(settings.tf32)) if self.device.type == "cuda" else nullcontext
        model = model.eval().to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.half:
            model = model.half()
        self.model = model
        self.num_keypoints = int(self._probe_num_keypoints())
        self._session = None
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self.backend = resolve_backend(settings.backend, self.device)
        if self.backend is Backend.ONNXRUNTIME:
            if onnx_path is None:
                self._tmpdir = tempfile.TemporaryDirectory(prefix="animalpose-onnx-")
                onnx_path = export_onnx(model.float(), Path(self._tmpdir.name) / "pose.onnx", settings.input_size)
                if self.half:
                    model.half()
            self._session = onnx_session(onnx_path, device=settings.device)

    @classmethod
    def from_weights(cls, weights: str | Path, settings: PoseSettings = PoseSettings(),
                     checkpoint_input_size: bool = True) -> "PoseEstimator":
        """Load a checkpoint (a path or an official model name) with its architecture read off the file.

        With ``checkpoint_input_size`` (the default) a checkpoint that records the input size it was
        trained at (our training does) runs at that size instead of ``settings.input_size``: a model
        fed crops at another scale than it learned places its keypoints wrongly. Official AP-10K
        checkpoints record none and run at ``settings.input_size`` (256x256 by default, theirs).
        """
        path = resolve_pose_weights(weights)
        model, arch, input_size = load_pose_checkpoint(path)
        if checkpoint_input_size and input_size is not None and input_size != tuple(settings.input_size):
            logger.info("Pose model %s was trained at %dx%d input; running it at that size", path, *input_size)
            settings = replace(settings, input_size=input_size)
        logger.info("Loaded pose model %s from %s", arch, path)
        return cls(model, settings)

    def _probe_num_keypoints(self) -> int:
        head = getattr(self.model, "keypoint_head", None)
        final = getattr(head, "final_layer", None)
        if isinstance(final, nn.Conv2d):
            return final.out_channels
        width, height = self.settings.input_size
        with torch.inference_mode():
            dtype = torch.float16 if self.half else torch.float32
            out = self.model(torch.zeros(1, 3, height, width, device=self.device, dtype=dtype))
        return out.shape[1]

    def infer_heatmaps(self, inputs: np.ndarray) -> np.ndarray:
        """Run the network: (N, 3, H, W) float32 -> (N, K, H/s, W/s) float32 heatmaps (s: the model's output
        stride, 4 for the official models), in chunks of max_batch."""
        outputs = []
        for start in range(0, len(inputs), self.settings.max_batch):
            chunk = inputs[start : start + self.settings.max_batch]
            if self._session is not None:
                outputs.append(run_onnx(self._session, chunk))
                continue
            with torch.inference_mode(), self._precision():
                x = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.device, non_blocking=True)
                if self.half:
                    x = x.half()
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                outputs.append(self.model(x).float().cpu().numpy())
        return np.concatenate(outputs, axis=0)

    def heatmaps_with_flip(self, inputs: np.ndarray) -> np.ndarray:
        """Heatmaps of ``inputs``, flip-test averaged when the settings ask for it."""
        n = len(inputs)
        if not self.settings.flip_test:
            return self.infer_heatmaps(inputs)
        both = np.concatenate([inputs, inputs[..., ::-1]], axis=0)
        heatmaps = self.infer_heatmaps(both)
        if self.num_keypoints != len(FLIP_INDEX):
            raise ValueError(
                f"flip test needs the AP-10K flip pairs but the model has {self.num_keypoints} keypoints; "
                "turn flip_test off"
            )
        flipped = flip_back(heatmaps[n:], FLIP_INDEX, shift=self.settings.shift_heatmap)
        return (heatmaps[:n] + flipped) * np.float32(0.5)

    def estimate_xywh(self, image_bgr: np.ndarray, boxes_xywh: np.ndarray, clean: bool = True) -> Poses:
        """Poses for COCO (x, y, w, h) boxes of one BGR frame; keypoints in image pixels.

        With ``clean`` (the default) boxes are cleaned as mmpose's AP-10K evaluation cleans
        ground-truth boxes, which reproduces mmpose's test numbers exactly.
        """
        boxes_xywh = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
        xyxy = np.concatenate([boxes_xywh[:, :2], boxes_xywh[:, :2] + boxes_xywh[:, 2:]], axis=1)
        if len(boxes_xywh) == 0:
            return Poses(np.zeros((0, self.num_keypoints, 3), np.float32), xyxy)
        batch = prepare_inputs(image_bgr, boxes_xywh, self.settings, clean=clean)
        heatmaps = self.heatmaps_with_flip(batch.inputs)
        keypoints, scores = decode_heatmaps(
            heatmaps, batch.center, batch.scale, post_process=self.settings.post_process, kernel=self.settings.kernel
        )
        return Poses(np.concatenate([keypoints, scores[..., None]], axis=2), xyxy)

    def __call__(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray) -> Poses:
        """Poses for (N, 4) detector boxes ``xyxy`` of one BGR uint8 frame: keypoints (N, K, 3) = (x, y, score).

        Detector boxes follow mmpose 0.x's inference path for ``bbox_format='xyxy'``: width and
        height are ``x2 - x1 + 1`` and ``y2 - y1 + 1`` (inclusive pixel boxes) and there is no
        cleaning.
        """
        boxes_xyxy = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
        boxes_xywh = xyxy_to_xywh(boxes_xyxy.astype(np.float64))
        boxes_xywh[:, 2:] += 1.0
        poses = self.estimate_xywh(image_bgr, boxes_xywh, clean=False)
        return Poses(poses.keypoints, boxes_xyxy)
