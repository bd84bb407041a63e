"""The web app's settings and the models it shares between visitors (no gradio here).

:class:`WebSettings` is fixed when the server starts; :class:`RunOptions` is what one visitor chose
in the page, naming weights only by the labels the server offered (never a path a visitor typed),
resolved by :meth:`app.web_jobs.WebJobs.spec` into a :class:`ModelSpec`. Models are loaded with the
command line's own :func:`app.track.load_models`, once per spec, and shared by every visitor,
each network behind a lock so that two jobs never run it from two threads at once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SMOOTHING_CHOICES: tuple[str, ...] = ("offline", "causal", "none")


class WebError(RuntimeError):
    """A problem the visitor can act on (bad upload, missing weights); shown in the page as is."""


def _user_error_types() -> tuple[type[BaseException], ...]:
    from app.cli import UserError
    from app.sinks import SinkError
    from app.sources import SourceError
    from pose.checkpoint import CheckpointError
    from pose.weights import WeightsError
    from tracking.detector import DetectorError

    return UserError, SinkError, SourceError, CheckpointError, WeightsError, DetectorError


def as_web_error(exc: BaseException, upload: Path | None = None) -> WebError | None:
    """The :class:`WebError` for a library error a visitor can act on; None for a bug.

    The server's path of an upload is replaced by its file name: visitors need not see it.
    """
    if isinstance(exc, WebError):
        return exc
    if not isinstance(exc, _user_error_types()):
        return None
    message = str(exc)
    if upload is not None:
        message = message.replace(str(upload), upload.name)
    return WebError(message)


@contextlib.contextmanager
def visitor_errors(upload: Path | None = None) -> Iterator[None]:
    """Re-raise the library errors a visitor can act on as :class:`WebError` (see :func:`as_web_error`);
    any other exception passes unchanged."""
    try:
        yield
    except Exception as exc:
        error = as_web_error(exc, upload)
        if error is None or error is exc:
            raise
        raise error from None


# --------------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class WebSettings:
    """How the server runs; fixed at start-up (``animalpose serve`` options).

    Attributes:
        pose_weights: pose checkpoints a visitor may choose from: files on the server or official
            names (downloaded into the cache on first use). Checkpoints already in the cache are
            offered too when ``offer_cached`` is set. A visitor never types a path.
        det_weights: YOLO weights files (or released names, fetched by ultralytics) to choose from.
        offer_cached: also offer the pose checkpoints found in the weights cache.
        examples: sample images offered on the Image tab; None: those shipped in the repository
            (none when the package is installed without its tests folder).
        max_upload_mb: largest upload accepted, in megabytes.
        max_video_s: longest video accepted, in seconds.
        concurrency: image and video jobs run at the same time; more wait in the queue.
        queue_size: jobs that may wait; a visitor beyond that is told the server is busy.
        webcam_streams: webcam sessions served at the same time.
        webcam_time_limit_s: a webcam session ends after this many seconds (the visitor may restart it).
        webcam_max_side: webcam frames are shrunk to at most this many pixels on their longer side.
        work_dir: where results are written; None: a folder in the system's temporary folder.
        keep_results_s: results older than this are deleted when a new job starts.
    """

    pose_weights: tuple[str, ...] = ("hrnet_w32",)
    det_weights: tuple[str, ...] = ("yolo11n.pt",)
    offer_cached: bool = True
    examples: tuple[Path, ...] | None = None
    max_upload_mb: float = 200.0
    max_video_s: float = 600.0
    concurrency: int = 1
    queue_size: int = 16
    webcam_streams: int = 2
    webcam_time_limit_s: float = 600.0
    webcam_max_side: int = 640
    work_dir: Path | None = None
    keep_results_s: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("pose_weights", "det_weights"):
            value = tuple(str(v) for v in getattr(self, name))
            if not value or not all(value):
                raise ValueError(f"{name} must name at least one weights file or model, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        if self.examples is not None:
            object.__setattr__(self, "examples", tuple(Path(p) for p in self.examples))
        for name in ("max_upload_mb", "max_video_s", "webcam_time_limit_s", "keep_results_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        for name in ("concurrency", "queue_size", "webcam_streams", "webcam_max_side"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.webcam_max_side < 64:
            raise ValueError(f"webcam_max_side must be at least 64 pixels, got {self.webcam_max_side}")


@dataclass(frozen=True)
class RunOptions:
    """What a visitor chose in the Settings panel (weights by their label in the lists offered).

    Attributes:
        pose, detector: labels of :meth:`WebJobs.pose_choices` / :meth:`WebJobs.detector_choices`.
        device: "cpu", "cuda" or "cuda:N" (one of :func:`available_devices`).
        det_conf: lowest detection score kept, in [0, 1].
        kpt_thr: keypoints below this confidence are not drawn, in [0, 1].
        smoothing: "offline" (videos only; the webcam then uses "causal"), "causal" or "none".
        det_every: run the detector every this many frames (videos and webcam).
        flip_test: average the pose network over the image and its mirror (slower, more accurate).
    """

    pose: str
    detector: str
    device: str = "cpu"
    det_conf: float = 0.25
    kpt_thr: float = 0.3
    smoothing: str = "offline"
    det_every: int = 1
    flip_test: bool = True

    def __post_init__(self) -> None:
        for name in ("det_conf", "kpt_thr"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise WebError(f"{name} must be between 0 and 1, got {value}")
            object.__setattr__(self, name, value)
        if self.smoothing not in SMOOTHING_CHOICES:
            raise WebError(f"smoothing must be one of {', '.join(SMOOTHING_CHOICES)}, got {self.smoothing!r}")
        det_every = int(self.det_every)
        if det_every != self.det_every or not 1 <= det_every <= 100:
            raise WebError(f"the detector interval must be a whole number of frames from 1 to 100, "
                           f"got {self.det_every}")
        object.__setattr__(self, "det_every", det_every)
        object.__setattr__(self, "flip_test", bool(self.flip_test))


@dataclass(frozen=True)
class ModelSpec:
    """The networks one job needs, resolved to what the server knows (never a visitor's text)."""

    pose_weights: str
    det_weights: str
    device: str
    det_conf: float
    flip_test: bool


def available_devices() -> list[str]:
    """Devices offered: the CUDA devices (when there are any), then the CPU."""
    import torch

    cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return cuda + ["cpu"]


def weight_choices(entries: Sequence[str | Path]) -> dict[str, str]:
    """Labels for a list of weights (official names or files), mapped to the entries; order kept.

    A file is labelled by its name, or by its folder and name when two files share a name.
    """
    entries = list(dict.fromkeys(str(e) for e in entries))
    names = [Path(e).name for e in entries]
    choices: dict[str, str] = {}
    for entry, name in zip(entries, names):
        label = name if names.count(name) == 1 else str(Path(Path(entry).parent.name) / name)
        choices.setdefault(label, entry)
    return choices


def pose_settings(spec: ModelSpec):
    """The ``pose.estimator.PoseSettings`` of ``spec``: those of ``animalpose track`` with the same choices."""
    from pose.estimator import Backend, PoseSettings

    return PoseSettings(flip_test=spec.flip_test, device=spec.device, backend=Backend.AUTO)


def detector_settings(spec: ModelSpec):
    """The ``tracking.detector.DetectorSettings`` of ``spec``: those of ``animalpose track`` with the same choices."""
    from tracking.detector import DetectorSettings, is_release_name

    return DetectorSettings(weights=spec.det_weights, confidence=spec.det_conf, device=spec.device,
                            allow_download=is_release_name(spec.det_weights))


def track_settings(options: RunOptions, smoothing: str):
    """The :class:`app.track.TrackSettings` of a visitor's options (``smoothing``: offline, causal or none)."""
    from app.sinks import DrawSettings
    from app.track import TrackSettings
    from tracking.smoothing import SmoothingMode

    return TrackSettings(det_every=options.det_every, smoothing=SmoothingMode(smoothing),
                         draw=DrawSettings(kpt_thr=options.kpt_thr), progress_bar=False)


# --------------------------------------------------------------------------------------------------
# Models shared by all visitors


class _Serialized:
    """Calls ``model`` under a lock, so that two jobs never run one network at once; other
    attributes (``num_keypoints``...) are the model's."""

    def __init__(self, model: Callable) -> None:
        self._model = model
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self._lock:
            return self._model(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._model, name)


ModelFactory = Callable[[ModelSpec], object]


def load_models(spec: ModelSpec):
    """The models of ``spec``, loaded by :func:`app.track.load_models` as ``animalpose track`` loads them."""
    from app.track import load_models as load

    return load(spec.pose_weights, pose_settings(spec), detector_settings(spec))


class ModelCache:
    """The most recently used ``size`` model pairs (:class:`app.track.Models`), loaded on demand.

    Args:
        factory: ``factory(spec) -> Models``; :func:`load_models` by default (tests pass fakes).
        size: model pairs kept in memory.
    """

    def __init__(self, factory: ModelFactory | None = None, size: int = 2) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.factory = factory or load_models
        self.size = size
        self._models: OrderedDict[ModelSpec, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, spec: ModelSpec):
        from app.track import Models

        with self._lock:  # one load at a time: a second visitor waits for the first load
            if spec in self._models:
                self._models.move_to_end(spec)
                return self._models[spec]
            logger.info("loading models: pose %s, detector %s on %s", spec.pose_weights, spec.det_weights, spec.device)
            loaded = self.factory(spec)
            models = Models(_Serialized(loaded.detector), _Serialized(loaded.estimator))
            self._models[spec] = models
            while len(self._models) > self.size:
                self._models.popitem(last=False)
            return models
