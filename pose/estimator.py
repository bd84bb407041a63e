"""``PoseEstimator(image, boxes) -> Poses``: mmpose's top-down test path, batched.

For every box of a frame: take center/scale (padding 1.25, the input's aspect ratio), warp the crop,
normalise, run the network on all crops (and their mirror images for the flip test) in one batch,
merge the flipped outputs, decode and map back to image pixels. How each step is done is the
model's recipe (``model.codec``, :mod:`pose.topdown`), read off its checkpoint with the architecture:

* mmpose 0.x heatmap models (the HRNets, SimpleBaselines): ground-truth boxes cleaned as its AP-10K
  evaluation does, detector boxes ``w = x2 - x1 + 1``, the heatmap flip test and decoding;
* mmpose 1.x SimCC models (RTMPose): boxes as its ``inference_topdown`` takes them, its crops and
  normalisation, the SimCC flip test and argmax decoding.

Where the network runs (:class:`Execution`, chosen by :func:`resolve_execution`):

* torch on the CPU (``HOST``): numpy crops in chunks of ``max_batch``, the flip merge in numpy;
* ONNX Runtime (``ONNXRUNTIME``): the same with our ONNX export of the weights;
* torch on CUDA (``DEVICE_GRAPHS``, or ``DEVICE_EAGER`` with ``cuda_graphs=False`` or after a failed
  capture): the crops go to the GPU once through pinned memory, their mirror images are made there,
  the network runs on both (replayed from a CUDA graph per batch bucket, :mod:`pose.graphs`), the
  flip merge runs there and only the merged outputs come back.

The precision switch (:class:`pose.precision.Precision`) picks float32 without TF32 (EXACT) or
float16 (FAST) on CUDA; on the CPU both run float32.
"""

from __future__ import annotations

import enum
import logging
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pose.checkpoint import load_pose_checkpoint
from pose.codec import PostProcess
from pose.device_flip import with_mirrored
from pose.devices import AUTO, check_device_name, resolve_device
from pose.export import export_onnx, onnx_session, run_onnx
from pose.graphs import Capture, Forward, GraphedForward, batch_buckets, capture_cuda_graph, to_device, to_host
from pose.keypoints import FLIP_INDEX
from pose.precision import ComputePlan, Precision, as_precision, compute_plan, cudnn_tf32
from pose.structures import Poses
from pose.topdown import Codec, HeatmapCodec, PreparedBatch, codec_of, prepare_inputs
from pose.weights import resolve_pose_weights

logger = logging.getLogger(__name__)

__all__ = [
    "Backend", "DeviceNetwork", "Execution", "PoseEstimator", "PoseSettings", "Precision", "PreparedBatch",
    "cudnn_tf32", "network_forward", "prepare_inputs", "resolve_backend", "resolve_execution",
]


class Backend(enum.Enum):
    """What runs the network. AUTO: ONNX Runtime on the CPU when it is installed (about 1.6x faster
    than torch there, same keypoints), torch on CUDA (in the settings' precision, with CUDA graphs)."""

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


class Execution(enum.Enum):
    """Which path runs the network (see the module docstring)."""

    HOST = "host"
    ONNXRUNTIME = "onnxruntime"
    DEVICE_EAGER = "device-eager"
    DEVICE_GRAPHS = "device-graphs"


def resolve_execution(backend: Backend, device: str | torch.device, cuda_graphs: bool) -> Execution:
    """The :class:`Execution` of a resolved ``backend`` (not AUTO) on ``device``."""
    if backend is Backend.AUTO:
        raise ValueError("resolve the backend first (resolve_backend)")
    if backend is Backend.ONNXRUNTIME:
        return Execution.ONNXRUNTIME
    if torch.device(device).type != "cuda":
        return Execution.HOST
    return Execution.DEVICE_GRAPHS if cuda_graphs else Execution.DEVICE_EAGER


@dataclass(frozen=True)
class PoseSettings:
    """How the pose model is run.

    Attributes:
        input_size: network input (width, height) in pixels; AP-10K models use 256x256 (an RTMPose
            model takes only the size its head was built for; :meth:`PoseEstimator.from_weights` sets it).
        flip_test: also run the mirrored crop and average the outputs (mmpose's AP-10K default, both
            generations).
        shift_heatmap: shift the flipped-back heatmap one column right (mmpose's default). Heatmap models only.
        post_process: heatmap decoding: DEFAULT (quarter-pixel shift), DARK, UDP or NONE. Heatmap models only.
        kernel: Gaussian kernel size used by DARK and UDP.
        padding: box enlargement factor before cropping.
        device: "auto" (the default: CUDA when torch sees a GPU), "cpu", "cuda" or "cuda:N"
            (:mod:`pose.devices`); the estimator's own ``settings`` hold the resolved device.
        precision: the switch between EXACT (float32 without TF32: mmpose's keypoints) and FAST
            (float16 and channels-last: about 2x faster again on a GPU, keypoints moved a little:
            docs/gpu.md); a
            :class:`~pose.precision.Precision` or its value ("exact", "fast"). CUDA only: on the CPU
            both run float32 and give the same keypoints.
        half: float16 on CUDA, the spelling from before ``precision``: ``half=True`` runs as FAST does,
            whatever ``precision`` says. Ignored on the CPU.
        channels_last: channels-last memory format, in both precisions (CUDA only).
        tf32: a finer control of EXACT: let cuDNN run float32 convolutions in TF32 (CUDA on Ampere or
            later GPUs): faster, but the keypoints drift from mmpose's float32 ones (see
            ``docs/benchmarks.md``, "CUDA paths"). FAST allows TF32 whatever this says.
        backend: AUTO (the default: ONNX Runtime on the CPU, torch on CUDA; see :class:`Backend`), torch,
            or ONNX Runtime (from our own export of the same weights, made when the estimator is built).
        max_batch: the most crops sent to the network at once (flip copies included); on CUDA also the
            largest batch bucket of the CUDA graphs (:func:`pose.graphs.batch_buckets`: 1, 2, 3, 4, 6, 8, ... 64).
        cuda_graphs: on CUDA with the torch backend, replay the network from CUDA graphs, one per batch
            bucket, captured the first time a batch needs it (the few crops of a video frame are
            launch-bound when called eagerly: issue 20 measured HRNet-w32 on 6 crops at 20 ms eager,
            11 ms replayed on an H200); False, or a failed capture (one warning), runs it eagerly. Replays equal
            eager runs of the same padded batch exactly. Ignored on the CPU and by ONNX Runtime.
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
    device: str = AUTO
    half: bool = False
    channels_last: bool = True
    tf32: bool = False
    backend: Backend = Backend.AUTO
    max_batch: int = 64
    flush_denormal: bool = True
    precision: Precision = Precision.EXACT
    cuda_graphs: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", as_precision(self.precision))
        if len(self.input_size) != 2 or min(self.input_size) < 8 or any(s % 4 for s in self.input_size):
            raise ValueError(f"input_size must be (width, height), multiples of 4, got {self.input_size}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd number, got {self.kernel}")
        if self.padding <= 0:
            raise ValueError(f"padding must be positive, got {self.padding}")
        object.__setattr__(self, "device", check_device_name(self.device))
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")

    @property
    def use_udp(self) -> bool:
        return self.post_process is PostProcess.UDP

    def compute_plan(self, device: str | torch.device | None = None) -> ComputePlan:
        """What the network runs with on ``device`` (default: the settings' device): see :mod:`pose.precision`."""
        return compute_plan(self.precision, resolve_device(self.device) if device is None else device, half=self.half,
                            tf32=self.tf32, channels_last=self.channels_last)


def network_forward(model: nn.Module, plan: ComputePlan) -> Forward:
    """``model`` as one function of float32 (N, 3, H, W) crops on its device -> its float32 output, with the
    input conversion of ``plan`` (dtype, memory format) inside: what is captured in a CUDA graph and
    what runs eagerly are the same operations."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        if x.dtype != plan.dtype:
            x = x.to(plan.dtype)
        if plan.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return model(x).float()

    return forward


class DeviceNetwork:
    """The pose network on a torch device, with the crops crossing to it once.

    The crops go up through pinned memory (non-blocking); with the flip test their mirror images are
    made on the device, the network runs on both in one batch (:class:`pose.graphs.GraphedForward`:
    CUDA graphs per batch bucket, or eagerly), the mirrored outputs are merged there by the codec, and
    only the merged float32 outputs come back. In float32 the merge equals the numpy one bit for bit.

    Args:
        forward: the network (:func:`network_forward`).
        device: where it runs.
        buckets: batch sizes with a graph (:func:`pose.graphs.batch_buckets`); also the chunk size.
        capture: :func:`pose.graphs.capture_cuda_graph`, a stand-in, or None to run eagerly.
        tf32: cuDNN's TF32 flag while the network runs (None: leave it as it is, e.g. on the CPU).
        codec: the model's recipe (:mod:`pose.topdown`), which merges the flip test (default: mmpose 0.x
            heatmaps with the shift).
    """

    def __init__(self, forward: Forward, device: str | torch.device, buckets: tuple[int, ...],
                 capture: Capture | None = capture_cuda_graph, tf32: bool | None = None,
                 codec: Codec | None = None) -> None:
        self.device = torch.device(device)
        self.codec = codec or HeatmapCodec()
        self.runner = GraphedForward(forward, self.device, buckets, capture=capture, name="pose network")
        self._precision = (lambda: cudnn_tf32(tf32)) if tf32 is not None else nullcontext
        self._flip_index = torch.tensor(np.asarray(FLIP_INDEX), dtype=torch.long, device=self.device)

    @property
    def uses_graphs(self) -> bool:
        return self.runner.uses_graphs

    def outputs(self, inputs: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 crops -> the network's float32 outputs (heatmaps, or SimCC logits)."""
        with torch.inference_mode(), self._precision():
            return to_host(self.runner(to_device(inputs, self.device)))

    def outputs_with_flip(self, inputs: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 crops -> the float32 flip-test outputs (AP-10K flip pairs)."""
        with torch.inference_mode(), self._precision():
            both = self.runner(with_mirrored(to_device(inputs, self.device)))
            if both.shape[1] != len(self._flip_index):
                raise ValueError(
                    f"flip test needs the AP-10K flip pairs but the model has {both.shape[1]} keypoints; "
                    "turn flip_test off"
                )
            return to_host(self.codec.merge_flip_tensor(both, self._flip_index))

    heatmaps = outputs
    heatmaps_with_flip = outputs_with_flip


class PoseEstimator:
    """Top-down pose estimation of every box of a frame, in one batch.

    Example::

        estimator = PoseEstimator.from_weights("hrnet_w32", PoseSettings(device="cuda", precision="fast"))
        poses = estimator(frame_bgr, detections.xyxy)

    ``execution`` says which path runs the network (:class:`Execution`); on CUDA, ``uses_graphs``
    whether it is (still) replayed from CUDA graphs. ``codec`` is the model's recipe
    (:mod:`pose.topdown`: mmpose 0.x heatmaps or mmpose 1.x SimCC), configured by the settings; a
    network without ``model.codec`` is taken for a heatmap model.
    """

    def __init__(self, model: nn.Module, settings: PoseSettings = PoseSettings(), onnx_path: Path | None = None):
        settings = replace(settings, device=resolve_device(settings.device))  # "auto" -> "cuda" or "cpu"
        self.codec: Codec = codec_of(model).configured(settings)
        fixed = self.codec.fixed_input_size
        if fixed is not None and tuple(settings.input_size) != tuple(fixed):
            raise ValueError(f"input_size must be {fixed[0]}x{fixed[1]} for this model (its head is built for it), "
                             f"got {settings.input_size[0]}x{settings.input_size[1]}")
        self.settings = settings
        self.device = torch.device(settings.device)
        if settings.flush_denormal and self.device.type == "cpu":
            torch.set_flush_denormal(True)
        self.plan = settings.compute_plan()
        self.half = self.plan.half
        self.channels_last = self.plan.channels_last
        model = model.eval().to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.half:
            model = model.half()
        self.model = model
        self.num_keypoints = int(self._probe_num_keypoints())
        self._session = None
        self.backend = resolve_backend(settings.backend, self.device)
        if self.backend is Backend.ONNXRUNTIME:
            if onnx_path is None:
                # ONNX Runtime reads the file when the session is made: the export lives only that long.
                with tempfile.TemporaryDirectory(prefix="animalpose-onnx-") as tmp:
                    path = export_onnx(model.float(), Path(tmp) / "pose.onnx", settings.input_size)
                    self._session = onnx_session(path, device=settings.device)
                if self.half:
                    model.half()
            else:
                self._session = onnx_session(onnx_path, device=settings.device)
        self.execution = resolve_execution(self.backend, self.device, settings.cuda_graphs)
        self._device_network: DeviceNetwork | None = None
        if self.execution in (Execution.DEVICE_GRAPHS, Execution.DEVICE_EAGER):
            capture = capture_cuda_graph if self.execution is Execution.DEVICE_GRAPHS else None
            self._device_network = DeviceNetwork(network_forward(self.model, self.plan), self.device,
                                                 batch_buckets(settings.max_batch), capture=capture,
                                                 tf32=self.plan.tf32, codec=self.codec)
            logger.info("pose model on %s: %s, %s%s", self.device, "float16" if self.half else "float32",
                        "TF32 allowed" if self.plan.tf32 else "no TF32",
                        ", CUDA graphs" if capture is not None else ", eager")

    @property
    def uses_graphs(self) -> bool:
        """Whether the network is replayed from CUDA graphs (CUDA, ``cuda_graphs``, and no capture has failed)."""
        return self._device_network is not None and self._device_network.uses_graphs

    @classmethod
    def from_weights(cls, weights: str | Path, settings: PoseSettings = PoseSettings(),
                     checkpoint_input_size: bool = True) -> PoseEstimator:
        """Load a checkpoint (a path or an official model name) with its architecture read off the file.

        With ``checkpoint_input_size`` (the default) a checkpoint that records the input size it was
        trained at (our training does) runs at that size instead of ``settings.input_size``: a model
        fed crops at another scale than it learned places its keypoints wrongly. Official AP-10K
        heatmap checkpoints record none and run at ``settings.input_size`` (256x256 by default, theirs);
        an RTMPose checkpoint always runs at the size its head is built for.
        """
        path = resolve_pose_weights(weights)
        model, arch, input_size = load_pose_checkpoint(path)
        if arch.fixed_input_size is not None:
            input_size, checkpoint_input_size = arch.fixed_input_size, True
        if checkpoint_input_size and input_size is not None and input_size != tuple(settings.input_size):
            logger.info("Pose model %s was trained at %dx%d input; running it at that size", path, *input_size)
            settings = replace(settings, input_size=input_size)
        logger.info("Loaded pose model %s from %s", arch, path)
        return cls(model, settings)

    def _probe_num_keypoints(self) -> int:
        head = getattr(self.model, "keypoint_head", None) or getattr(self.model, "head", None)
        final = getattr(head, "final_layer", None)
        if isinstance(final, nn.Conv2d):
            return final.out_channels
        width, height = self.settings.input_size
        with torch.inference_mode():
            dtype = torch.float16 if self.half else torch.float32
            out = self.model(torch.zeros(1, 3, height, width, device=self.device, dtype=dtype))
        return out.shape[1]

    def infer(self, inputs: np.ndarray) -> np.ndarray:
        """Run the network on (N, 3, H, W) float32 crops, in chunks of max_batch: float32 (N, K, H/s, W/s)
        heatmaps (s: the model's output stride, 4 for the official models), or (N, K, Wx + Wy) SimCC logits
        (:func:`pose.simcc.split_simcc`)."""
        if self._device_network is not None:
            return self._device_network.outputs(inputs)
        outputs = []
        for start in range(0, len(inputs), self.settings.max_batch):
            chunk = inputs[start : start + self.settings.max_batch]
            if self._session is not None:
                outputs.append(run_onnx(self._session, chunk))
                continue
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.device)
                outputs.append(self.model(x).float().cpu().numpy())
        return np.concatenate(outputs, axis=0)

    def infer_with_flip(self, inputs: np.ndarray) -> np.ndarray:
        """:meth:`infer`, flip-test merged by the model's codec when the settings ask for it (on the device
        on CUDA)."""
        n = len(inputs)
        if not self.settings.flip_test:
            return self.infer(inputs)
        if self.num_keypoints != len(FLIP_INDEX):
            raise ValueError(
                f"flip test needs the AP-10K flip pairs but the model has {self.num_keypoints} keypoints; "
                "turn flip_test off"
            )
        if self._device_network is not None:
            return self._device_network.outputs_with_flip(inputs)
        both = self.infer(np.concatenate([inputs, inputs[..., ::-1]], axis=0))
        return self.codec.merge_flip(both[:n], both[n:])

    #: The names from before SimCC models (the outputs of a heatmap model are heatmaps).
    infer_heatmaps = infer
    heatmaps_with_flip = infer_with_flip

    def _poses(self, batch: PreparedBatch, boxes_xyxy: np.ndarray) -> Poses:
        keypoints, scores = self.codec.decode(self.infer_with_flip(batch.inputs), batch)
        return Poses(np.concatenate([keypoints, scores[..., None]], axis=2), boxes_xyxy)

    def estimate_xywh(self, image_bgr: np.ndarray, boxes_xywh: np.ndarray, clean: bool | None = None) -> Poses:
        """Poses for COCO (x, y, w, h) boxes of one BGR frame; keypoints in image pixels.

        ``clean`` (None: the model's generation decides) says whether the boxes are ground truth, to be
        cleaned as that mmpose's AP-10K loader cleans them, which reproduces its test numbers. An mmpose
        0.x heatmap model cleans by default (clip, effective width ``w - 1``); an mmpose 1.x model does
        not: the box ``[x, y, x + w, y + h]`` goes in as ``inference_topdown`` takes it (with ``clean``,
        clipped to the image as its loader does).
        """
        boxes_xywh = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
        xyxy = np.concatenate([boxes_xywh[:, :2], boxes_xywh[:, :2] + boxes_xywh[:, 2:]], axis=1)
        if len(boxes_xywh) == 0:
            return Poses(np.zeros((0, self.num_keypoints, 3), np.float32), xyxy)
        clean = self.codec.cleans_boxes if clean is None else clean
        return self._poses(self.codec.prepare_xywh(image_bgr, boxes_xywh, self.settings, clean), xyxy)

    def __call__(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray) -> Poses:
        """Poses for (N, 4) detector boxes ``xyxy`` of one BGR uint8 frame: keypoints (N, K, 3) = (x, y, score).

        Detector boxes follow the inference path of the model's mmpose for ``bbox_format='xyxy'``, with
        no cleaning: for a 0.x heatmap model width and height are ``x2 - x1 + 1`` and ``y2 - y1 + 1``
        (inclusive pixel boxes); for a 1.x model (RTMPose) they are ``x2 - x1`` and ``y2 - y1``, in
        float32 as mmdet's boxes reach mmpose.
        """
        boxes_xyxy = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
        if len(boxes_xyxy) == 0:
            return Poses(np.zeros((0, self.num_keypoints, 3), np.float32), boxes_xyxy)
        return self._poses(self.codec.prepare_xyxy(image_bgr, boxes_xyxy, self.settings), boxes_xyxy)
