"""Animal detection with any ultralytics YOLO weights file; the only module that imports ultralytics.

Works with a COCO model (``yolo11n.pt`` and friends), a model fine-tuned on AP-10K, or
MegaDetector's ultralytics-format releases (MDv1000-larch, -sorrel). Which classes count as animals:

* named in :class:`DetectorSettings.classes`, if given;
* else, for a COCO model (its names include "person" and the COCO animals): the ten COCO animals;
* else, for a model with an "animal" class (MegaDetector: animal, person, vehicle): "animal";
* else every class of the weights (a model trained on animals only, such as AP-10K species).

Weights are read from a local file. A missing file is an error unless ``allow_download`` lets
ultralytics fetch a released model by name; a failed download is reported as such.

ultralytics' device selection sets torch's CPU thread count to ``cpu_count - 1``, which slows every
other model in the process; the detector restores the caller's thread count after each call.

On CUDA (:class:`DetectorPath`) the detector takes ultralytics' ``predict`` apart
(:class:`GraphedYolo`): ultralytics' own letterbox on the CPU, the letterboxed frame up through pinned
memory, the network (with the uint8 -> float conversion in front of it) replayed from a CUDA graph per
letterboxed shape, and ultralytics' own NMS and box scaling on the GPU: the boxes of ``predict``, with
the network's thousand kernel launches made in one. On the CPU (``backend`` AUTO, the default, or
ONNXRUNTIME) it takes ``predict`` apart the same way with the network in ONNX Runtime
(:class:`OnnxYolo`, our export of the same fused network when the detector is built): about twice as fast
as torch there (YOLO11n at 640x384 on 2 cores: 23 against 48 ms), boxes within 0.1 px of predict's. For
models that cannot be taken apart (exported formats, end-to-end heads, segment and pose tasks), with
``cuda_graphs=False`` on CUDA and with ``backend`` TORCH on the CPU it calls ``predict``.
"""

from __future__ import annotations

import enum
import logging
import tempfile
import warnings
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pose.devices import AUTO, check_device_name, resolve_device
from pose.estimator import Backend, resolve_backend
from pose.export import onnx_session
from pose.graphs import Capture, CapturedGraph, GraphedForward, capture_cuda_graph, to_device
from pose.precision import ComputePlan, Precision, as_precision, compute_plan, cudnn_tf32
from pose.structures import Detections
from pose.threads import torch_threads

logger = logging.getLogger(__name__)

#: The animal classes of the COCO detection label set.
COCO_ANIMAL_CLASSES: tuple[str, ...] = (
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
)


#: The detector used unless another is named: the released COCO YOLO11n (its ten animal classes).
DEFAULT_DETECTOR_WEIGHTS = "yolo11n.pt"


class DetectorError(RuntimeError):
    """The detector could not be built or run (missing or unreadable weights, failed download, bad classes)."""


@dataclass(frozen=True)
class DetectorSettings:
    """How to load and run the detector.

    Attributes:
        weights: path of an ultralytics weights file (``.pt``, or an exported format ultralytics loads).
        classes: class names to keep; None for the default rule of the module docstring.
        confidence: lowest detection score kept, in [0, 1].
        iou: IoU threshold of non-maximum suppression, in [0, 1] (0.6, under ultralytics' 0.7: fewer duplicate
            boxes on one animal; docs/tuning.md).
        image_size: inference size in pixels (a multiple of 32).
        device: "auto" (the default: the first CUDA GPU when torch sees one, else the CPU), "cpu", "cuda"
            or "cuda:N" (:mod:`pose.devices`; None is taken as "auto").
        half: FP16 inference (CUDA only; ignored on the CPU), the spelling from before ``precision``:
            ``half=True`` runs as FAST does, whatever ``precision`` says.
        max_detections: most boxes per image.
        agnostic_nms: suppress overlapping boxes across classes, so one animal is not reported both
            as a dog and as a cat.
        allow_download: let ultralytics download ``weights`` by name when no such file exists.
        precision: EXACT (float32 with cuDNN's TF32 off: the CPU's boxes within float32 rounding) or
            FAST (float16, as ultralytics' ``half``); a :class:`~pose.precision.Precision` or its
            value. CUDA only: on the CPU both run float32. (ultralytics' own default on CUDA is float32
            with TF32 convolutions, PyTorch's default: neither of the two.)
        cuda_graphs: on CUDA, replay the network from a CUDA graph per letterboxed frame shape
            (:class:`GraphedYolo`), falling back to eager calls of the same network, with one warning,
            when a capture fails; False calls ultralytics' ``predict`` (in the same precision).
            Ignored on the CPU.
        backend: what runs the network on the CPU (:class:`~pose.estimator.Backend`, as for the pose model):
            AUTO (the default) and ONNXRUNTIME run our ONNX export of it in ONNX Runtime (:class:`OnnxYolo`),
            TORCH calls ultralytics' ``predict``. On CUDA torch runs it whatever this says.
    """

    weights: str | Path
    classes: tuple[str, ...] | None = None
    confidence: float = 0.25
    iou: float = 0.6
    image_size: int = 640
    device: str | None = AUTO
    half: bool = False
    max_detections: int = 100
    agnostic_nms: bool = True
    allow_download: bool = False
    precision: Precision = Precision.EXACT
    cuda_graphs: bool = True
    backend: Backend = Backend.AUTO

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", as_precision(self.precision))
        if not isinstance(self.backend, Backend):
            try:
                object.__setattr__(self, "backend", Backend(self.backend))
            except ValueError:
                raise ValueError(f"backend must be one of {[b.value for b in Backend]}, got {self.backend!r}") from None
        object.__setattr__(self, "device", check_device_name(AUTO if self.device is None else self.device))
        if not isinstance(self.weights, (str, Path)) or not str(self.weights):
            raise ValueError(f"weights must be a non-empty path, got {self.weights!r}")
        if self.classes is not None:
            if isinstance(self.classes, str) or not all(isinstance(c, str) and c for c in self.classes):
                raise ValueError(f"classes must be a tuple of class names or None, got {self.classes!r}")
            object.__setattr__(self, "classes", tuple(self.classes))
        for name in ("confidence", "iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not isinstance(self.image_size, int) or self.image_size < 32 or self.image_size % 32:
            raise ValueError(f"image_size must be a positive multiple of 32, got {self.image_size}")
        if not isinstance(self.max_detections, int) or self.max_detections < 1:
            raise ValueError(f"max_detections must be a positive integer, got {self.max_detections}")

    @property
    def resolved_device(self) -> str:
        """The torch device of :attr:`device` ("auto" resolved; ValueError for a GPU torch does not see)."""
        return resolve_device(self.device)

    def compute_plan(self) -> ComputePlan:
        """What the network runs with (see :mod:`pose.precision`); the detector keeps ultralytics' memory format."""
        return compute_plan(self.precision, self.resolved_device, half=self.half, channels_last=False)


class DetectorPath(enum.Enum):
    """What runs a frame: ultralytics' ``predict``, :class:`GraphedYolo` with graphs or (after a failed
    capture) eagerly, or :class:`OnnxYolo` on the CPU."""

    PREDICT = "predict"
    GRAPHS = "graphs"
    EAGER = "eager"
    ONNXRUNTIME = "onnxruntime"


def wants_graphs(settings: DetectorSettings, cuda_available: bool | None = None) -> bool:
    """Whether ``settings`` ask for :class:`GraphedYolo` on a CUDA device (``cuda_available``: torch's answer
    unless given)."""
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    on_cuda = settings.device.startswith("cuda") or settings.device == AUTO
    return settings.cuda_graphs and cuda_available and on_cuda


def wants_onnx(settings: DetectorSettings) -> bool:
    """Whether ``settings`` ask for :class:`OnnxYolo`: the network on the CPU, its backend AUTO (with ONNX
    Runtime installed) or ONNXRUNTIME."""
    device = settings.resolved_device
    return torch.device(device).type == "cpu" and resolve_backend(settings.backend, device) is Backend.ONNXRUNTIME


def default_classes(names: Mapping[int, str]) -> tuple[str, ...]:
    """The class names kept by default for a model with these ``names`` (see the module docstring)."""
    values = set(names.values())
    if "person" in values and set(COCO_ANIMAL_CLASSES) <= values:
        return COCO_ANIMAL_CLASSES
    if "animal" in values:
        return ("animal",)
    return tuple(names[i] for i in sorted(names))


def class_ids_for(names: Mapping[int, str], classes: tuple[str, ...]) -> list[int]:
    """Indices of ``classes`` in the model's ``names``; raises DetectorError naming unknown classes."""
    index = {name: i for i, name in names.items()}
    unknown = [c for c in classes if c not in index]
    if unknown:
        raise DetectorError(f"classes {unknown} are not in the model, which has {sorted(index)}")
    return sorted(index[c] for c in classes)


def is_release_name(weights: str | Path) -> bool:
    """True for a bare model name such as ``yolo11n.pt`` (no folder, and no such file here): one that
    ultralytics can download, which is what ``allow_download`` is for."""
    text = str(weights)
    return "/" not in text and "\\" not in text and not Path(text).exists()


def _load_model(settings: DetectorSettings):
    from ultralytics import YOLO

    path = Path(settings.weights)
    if not path.is_file() and not settings.allow_download:
        raise DetectorError(
            f"detector weights file not found: {path}. Give the path of a local YOLO weights file "
            "(e.g. yolo11n.pt, an AP-10K fine-tune or MDV1000-larch), or set allow_download=True to let "
            "ultralytics download a released model by name."
        )
    try:
        model = YOLO(str(path) if path.is_file() else str(settings.weights))
    except Exception as error:  # ultralytics raises many kinds; the user needs the path and the cause
        if path.is_file():
            raise DetectorError(f"could not load YOLO weights from {path}: {error}") from error
        raise DetectorError(
            f"could not download detector weights {settings.weights!r} (offline?): {error}. "
            "Download the file elsewhere and give its local path."
        ) from error
    if model.task not in ("detect", "segment", "pose"):
        raise DetectorError(f"{path} is a YOLO '{model.task}' model; a detect, segment or pose model is needed")
    return model


def _class_names(model, settings: DetectorSettings) -> dict[int, str]:
    """The class names of a loaded model. Reading them loads a file ultralytics did not read at once
    (a ``.pth``, an exported model), whose failure is reported here as a :class:`DetectorError`."""
    try:
        return {int(i): str(n) for i, n in model.names.items()}
    except Exception as error:  # ultralytics raises many kinds (AssertionError for a wrong suffix)
        raise DetectorError(f"{settings.weights} is not a YOLO weights file ultralytics can load "
                            f"({' '.join(str(error).split())}); give a .pt file or an exported YOLO model") from error


def _precision_arguments(half: bool) -> dict[str, object]:
    """FP16 flag in the spelling of the installed ultralytics (``quantize`` replaced ``half`` in 8.4)."""
    if not half:
        return {}
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return {"quantize": 16} if "quantize" in DEFAULT_CFG_DICT else {"half": True}


def first_tensor(output: object) -> torch.Tensor:
    """The predictions of a YOLO network's output (ONNX ``output0``): the tensor itself, or the first of a (nested)
    list or tuple; RuntimeError for anything else."""
    while isinstance(output, (list, tuple)):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise RuntimeError(f"unexpected YOLO model output of type {type(output).__name__}")
    return output


def cached_tensors(module: torch.nn.Module) -> tuple[torch.Tensor, ...]:
    """Tensors that ``module``'s submodules hold as plain attributes (not parameters or buffers), such as
    the anchors a YOLO head caches for the last input shape and replaces for the next one."""
    return tuple(value for m in module.modules() for value in vars(m).values() if isinstance(value, torch.Tensor))


def unsupported_reason(backend: object, task: str) -> str | None:
    """Why :class:`GraphedYolo` cannot run ultralytics' AutoBackend ``backend`` of a ``task`` model, or None."""
    if task != "detect":
        return f"a YOLO '{task}' model"
    if not (getattr(backend, "format", None) == "pt" or getattr(backend, "pt", False) is True):
        return f"an exported model (format {getattr(backend, 'format', '?')!r})"
    net = getattr(backend, "model", None)
    if not isinstance(net, torch.nn.Module):
        return "a model without its torch network"
    layers = getattr(net, "model", None)
    head = layers[-1] if isinstance(layers, torch.nn.Sequential) and len(layers) else None
    if getattr(backend, "end2end", False) or getattr(net, "end2end", False) or getattr(head, "end2end", False):
        return "an end-to-end (NMS-free) model"
    return None


def _ultralytics_nms():
    try:
        from ultralytics.utils.nms import non_max_suppression
    except ImportError:  # ultralytics before 8.3.1xx kept it in ops
        from ultralytics.utils.ops import non_max_suppression
    return non_max_suppression


class _YoloSteps:
    """ultralytics' ``predict`` of one frame, taken apart around its network (subclasses run the network):

    1. ultralytics' ``LetterBox`` as ``predict`` builds it (the settings' size checked against the
       model's stride, the smallest stride-multiple rectangle: ``auto=True``), on the CPU;
    2. the network on the letterboxed uint8 BGR frame, with ``predict``'s ``preprocess`` in front of it:
       BGR -> RGB, HWC -> CHW, float (or half) / 255 (:class:`_FromUint8`);
    3. ultralytics' ``non_max_suppression`` and ``scale_boxes`` with ``predict``'s arguments; then boxes,
       scores and classes to the host.

    Args:
        backend: ultralytics' AutoBackend of a set-up predictor (``YOLO.predictor.model``): the network
            ``predict`` runs, so that the same kernels run on the same weights.
        settings: image size, thresholds, NMS options.
        classes: class ids kept by NMS (None: all).
    """

    def __init__(self, backend: torch.nn.Module, settings: DetectorSettings, classes: list[int] | None = None) -> None:
        import torchvision  # noqa: F401 - ultralytics' NMS uses torchvision's kernel once imported, as after predict
        from ultralytics.data.augment import LetterBox
        from ultralytics.utils.checks import check_imgsz
        from ultralytics.utils.ops import scale_boxes

        self.backend = backend
        self.network: torch.nn.Module = backend.model  # the torch network inside (not a submodule in 8.4)
        self.settings = settings
        self.classes = classes
        self.device = torch.device(backend.device)
        self.half = bool(backend.fp16)
        stride = int(max(backend.stride) if isinstance(backend.stride, (list, tuple)) else backend.stride)
        self.letterbox = LetterBox(check_imgsz(settings.image_size, stride=stride, min_dim=2), auto=True,
                                   stride=stride)
        self._nms = _ultralytics_nms()
        self._scale_boxes = scale_boxes

    def predictions(self, image: np.ndarray) -> torch.Tensor:
        """The network's (1, 4 + classes, anchors) for one letterboxed (h, w, 3) uint8 BGR frame."""
        raise NotImplementedError

    def __call__(self, frame_bgr: np.ndarray) -> Detections:
        """Detections of one (H, W, 3) uint8 BGR frame, in its pixels."""
        image = self.letterbox(image=frame_bgr)
        predictions = self.predictions(image)
        s = self.settings
        boxes = self._nms(predictions, s.confidence, s.iou, self.classes, s.agnostic_nms, max_det=s.max_detections,
                          nc=0)[0]
        if len(boxes) == 0:
            return Detections.empty()
        boxes[:, :4] = self._scale_boxes(image.shape[:2], boxes[:, :4], frame_bgr.shape)
        boxes = boxes.float().cpu()
        return Detections(boxes[:, :4].numpy(), boxes[:, 4].numpy(), boxes[:, 5].long().numpy())


class _FromUint8(torch.nn.Module):
    """``network`` behind ``predict``'s ``preprocess``: (B, h, w, 3) uint8 BGR -> the network's first output,
    (B, 4 + classes, anchors)."""

    def __init__(self, network: torch.nn.Module, half: bool = False) -> None:
        super().__init__()
        self.network = network
        self.half = half

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).contiguous().flip(1)
        x = (x.half() if self.half else x.float()).div_(255)
        return first_tensor(self.network(x))


class GraphedYolo(_YoloSteps):
    """:class:`_YoloSteps` on CUDA: the letterboxed frame up through pinned memory (non-blocking), the
    network (with the uint8 -> float conversion) replayed from a CUDA graph, NMS and scaling on the device.

    One graph per letterboxed shape (one per video), at most ``max_graphs``; others run eagerly.

    Args:
        backend, settings, classes: as :class:`_YoloSteps`.
        capture: :func:`pose.graphs.capture_cuda_graph`, a stand-in, or None to run eagerly.
    """

    def __init__(self, backend: torch.nn.Module, settings: DetectorSettings, classes: list[int] | None = None,
                 capture: Capture | None = capture_cuda_graph, max_graphs: int = 8) -> None:
        super().__init__(backend, settings, classes)
        self._from_uint8 = _FromUint8(backend, self.half)  # the AutoBackend's forward, as predict calls it
        if capture is capture_cuda_graph:
            capture = self._capture_keeping_cached_tensors
        self.runner = GraphedForward(self.forward, self.device, (1,), capture=capture, max_graphs=max_graphs,
                                     name="detector network")

    def _capture_keeping_cached_tensors(self, forward, static_input: torch.Tensor) -> CapturedGraph:
        graph = capture_cuda_graph(forward, static_input)
        graph.keepalive = cached_tensors(self.network)  # anchors made for this shape: kept for this graph
        return graph

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, h, w, 3) uint8 BGR letterboxed frames on the device -> the network's (B, 4 + classes, anchors)."""
        return self._from_uint8(images)

    def predictions(self, image: np.ndarray) -> torch.Tensor:
        return self.runner(to_device(image[None], self.device))


#: Names of the inputs and the output of :class:`OnnxYolo`'s export.
ONNX_INPUT, ONNX_OUTPUT = "images", "predictions"


def export_yolo_onnx(network: torch.nn.Module, path: str | Path, opset: int = 17) -> Path:
    """Write ``network`` (a fused YOLO detection network on the CPU, float32) behind ``predict``'s
    pre-processing as ONNX: (B, h, w, 3) uint8 BGR letterboxed frames, every axis but the channels dynamic
    -> (B, 4 + classes, anchors). Uses the TorchScript-based exporter, which needs no extra package."""
    path = Path(path)
    example = torch.zeros(1, 64, 96, 3, dtype=torch.uint8)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_FromUint8(network).eval(), (example,), str(path), dynamo=False, input_names=[ONNX_INPUT],
                          output_names=[ONNX_OUTPUT], opset_version=opset, do_constant_folding=True,
                          dynamic_axes={ONNX_INPUT: {0: "batch", 1: "height", 2: "width"},
                                        ONNX_OUTPUT: {0: "batch", 2: "anchors"}})
    return path


class OnnxYolo(_YoloSteps):
    """:class:`_YoloSteps` on the CPU with the network (and the uint8 -> float conversion) in ONNX Runtime:
    one export with dynamic frame sizes (:func:`export_yolo_onnx`), made when this is built and read into
    the session at once (the file is not kept); ONNX Runtime's threads do not spin between runs, as the pose
    model's (:func:`pose.export.onnx_session`). NMS and scaling run in torch on the CPU, as ``predict``'s.

    Args:
        backend, settings, classes: as :class:`_YoloSteps`; the network must be on the CPU in float32.
        threads: ONNX Runtime's intra-op threads (None: its default, every core).
    """

    def __init__(self, backend: torch.nn.Module, settings: DetectorSettings, classes: list[int] | None = None,
                 threads: int | None = None) -> None:
        super().__init__(backend, settings, classes)
        if self.device.type != "cpu" or self.half:
            raise ValueError(f"OnnxYolo needs a float32 network on the CPU, got {self.device} (half={self.half})")
        with tempfile.TemporaryDirectory(prefix="animalpose-detector-onnx-") as folder:
            path = export_yolo_onnx(self.network, Path(folder) / "detector.onnx")
            self.session = onnx_session(path, device="cpu", threads=threads)

    def predictions(self, image: np.ndarray) -> torch.Tensor:
        output = self.session.run(None, {ONNX_INPUT: np.ascontiguousarray(image[None])})[0]
        return torch.from_numpy(output)


class Detector:
    """``Detector(settings)(frame_bgr) -> Detections`` for one BGR image.

    ``path`` says what runs a frame (:class:`DetectorPath`).

    Raises:
        DetectorError: on a missing or unreadable weights file, a failed download or unknown classes.
    """

    def __init__(self, settings: DetectorSettings) -> None:
        if not isinstance(settings, DetectorSettings):
            raise ValueError(f"settings must be a DetectorSettings, got {settings!r}")
        self.settings = settings
        with torch_threads():  # reading names of an exported model sets up ultralytics' predictor
            self.model = _load_model(settings)
            self.names: dict[int, str] = _class_names(self.model, settings)
        self.classes = settings.classes if settings.classes is not None else default_classes(self.names)
        self.class_ids = class_ids_for(self.names, self.classes)
        self._keep_all = len(self.class_ids) == len(self.names)
        self.plan = settings.compute_plan()
        cuda = settings.resolved_device.startswith("cuda") and torch.cuda.is_available()
        self._precision = (lambda: cudnn_tf32(self.plan.tf32)) if cuda else nullcontext
        self._taken_apart: _YoloSteps | None = None
        if wants_graphs(settings):
            self._taken_apart = self._take_predict_apart(GraphedYolo)
        elif wants_onnx(settings):
            self._taken_apart = self._take_predict_apart(OnnxYolo)
        logger.info("detector %s: keeping classes %s", settings.weights, ", ".join(self.classes))

    @property
    def path(self) -> DetectorPath:
        if self._taken_apart is None:
            return DetectorPath.PREDICT
        if isinstance(self._taken_apart, OnnxYolo):
            return DetectorPath.ONNXRUNTIME
        return DetectorPath.GRAPHS if self._taken_apart.runner.uses_graphs else DetectorPath.EAGER

    def _predict_arguments(self) -> dict[str, object]:
        s = self.settings
        return dict(conf=s.confidence, iou=s.iou, imgsz=s.image_size, device=s.resolved_device,
                    max_det=s.max_detections, agnostic_nms=s.agnostic_nms,
                    classes=None if self._keep_all else self.class_ids, verbose=False,
                    **_precision_arguments(self.plan.half))

    def _take_predict_apart(self, kind: type[GraphedYolo] | type[OnnxYolo]) -> _YoloSteps | None:
        """``kind`` on the network of ultralytics' predictor, set up by one ``predict`` of a blank frame; None
        (``predict`` then runs every frame) for a model it cannot run or, for :class:`OnnxYolo`, a failed
        export (with a warning)."""
        with torch_threads(), self._precision():
            self.model.predict(np.zeros((64, 64, 3), np.uint8), **self._predict_arguments())
        backend = self.model.predictor.model
        reason = unsupported_reason(backend, self.model.task)
        without = "without CUDA graphs" if kind is GraphedYolo else "in torch"
        if reason is not None:
            logger.info("detector %s is %s: running ultralytics' predict, %s", self.settings.weights, reason, without)
            return None
        classes = None if self._keep_all else self.class_ids
        if kind is GraphedYolo:
            return GraphedYolo(backend, self.settings, classes=classes)
        try:
            with torch_threads():
                return OnnxYolo(backend, self.settings, classes=classes)
        except Exception as error:  # the exporter and ONNX Runtime raise many kinds; predict still works
            logger.warning("detector %s could not run in ONNX Runtime (%s): running ultralytics' predict in torch",
                           self.settings.weights, " ".join(str(error).split())[:300])
            return None

    def __call__(self, frame_bgr: np.ndarray) -> Detections:
        """Detect animals in one (H, W, 3) uint8 BGR image; boxes are in its pixels."""
        frame = np.asarray(frame_bgr)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
            raise ValueError(f"frame_bgr must be an (H, W, 3) image, got shape {frame.shape}")
        if frame.dtype != np.uint8:
            raise ValueError(f"frame_bgr must be uint8, got {frame.dtype}")
        with torch_threads(), self._precision():
            if self._taken_apart is not None:
                return self._taken_apart(np.ascontiguousarray(frame))
            results = self.model.predict(np.ascontiguousarray(frame), **self._predict_arguments())
        boxes = results[0].boxes
        if boxes is None or len(boxes) == 0:
            return Detections.empty()
        return Detections(
            boxes.xyxy.float().cpu().numpy(), boxes.conf.float().cpu().numpy(), boxes.cls.long().cpu().numpy()
        )
