"""The web app's settings and the models it shares between visitors (no gradio here).

:class:`WebSettings` is fixed when the server starts; :class:`RunOptions` is what one visitor chose
in the page, naming weights only by the labels the server offered (never a path a visitor typed),
resolved by :meth:`app.web.jobs.WebJobs.spec` into a :class:`ModelSpec`.

Which weights can be offered is checked once at start-up without loading anything
(:func:`pose_weights_status`, :func:`detector_weights_status`): what a visitor may be told goes to
the page, what the operator can do about it (paths, options) goes to the server's log only.

Models are loaded with the command line's own :func:`app.runs.load_models`, once per
:class:`ModelSpec` (weights and device), and shared by every visitor, each network behind a lock so
that two jobs never run it from two threads at once. The thresholds and the flip test are settings
of one call, not of the model (:meth:`SharedModels.for_call`), so changing them loads nothing.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import logging
import math
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from app.profiles import REALTIME_CHOICES
from pose.precision import DEFAULT_PRECISION, LIVE_PRECISION, Precision
from pose.weights import DEFAULT_POSE_WEIGHTS
from tracking.detector import DEFAULT_DETECTOR_WEIGHTS, DetectorSettings

logger = logging.getLogger(__name__)

SMOOTHING_CHOICES: tuple[str, ...] = ("offline", "causal", "none")
#: The detector runs at this confidence; a visitor's higher threshold filters its boxes afterwards
#: (see :class:`DetectorAtConfidence`), so it is also the lowest threshold a visitor may choose.
DETECTOR_FLOOR = 0.05


class WebError(RuntimeError):
    """A problem the visitor can act on (bad upload, missing weights); shown in the page as is."""


def _user_error_types() -> tuple[type[BaseException], ...]:
    from app.sinks import SinkError
    from app.sources import SourceError
    from pose.checkpoint import CheckpointError
    from pose.weights import WeightsError
    from tracking.detector import DetectorError

    return SinkError, SourceError, CheckpointError, WeightsError, DetectorError


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
            names (downloaded into the cache on first use); the default offers the full profile's model and
            the real-time profile's (:mod:`app.profiles`), which the webcam uses by default without a GPU.
            Checkpoints already in the cache are offered too when ``offer_cached`` is set. A visitor never types a path.
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

    pose_weights: tuple[str, ...] = (DEFAULT_POSE_WEIGHTS, REALTIME_CHOICES.pose_weights)
    det_weights: tuple[str, ...] = (DEFAULT_DETECTOR_WEIGHTS,)
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
        det_conf: boxes must score above this, in [:data:`DETECTOR_FLOOR`, 1].
        kpt_thr: keypoints below this confidence are not drawn, in [0, 1].
        smoothing: "offline" (videos only; the webcam then uses "causal"), "causal" or "none".
        det_every: run the detector every this many frames (videos and webcam).
        flip_test: average the pose network over the image and its mirror (slower, more accurate).
        det_image_size: the detector's input size in pixels (a multiple of 32; set by a profile:
            :meth:`app.web.jobs.WebJobs.with_profile`).
    """

    pose: str
    detector: str
    device: str = "cpu"
    det_conf: float = 0.25
    kpt_thr: float = 0.3
    smoothing: str = "offline"
    det_every: int = 1
    flip_test: bool = True
    det_image_size: int = DetectorSettings.image_size

    def __post_init__(self) -> None:
        for name, lowest in (("det_conf", DETECTOR_FLOOR), ("kpt_thr", 0.0)):
            value = float(getattr(self, name))
            if not lowest <= value <= 1.0:
                raise WebError(f"{name} must be between {lowest:g} and 1, got {value}")
            object.__setattr__(self, name, value)
        if self.smoothing not in SMOOTHING_CHOICES:
            raise WebError(f"smoothing must be one of {', '.join(SMOOTHING_CHOICES)}, got {self.smoothing!r}")
        det_every = int(self.det_every)
        if det_every != self.det_every or not 1 <= det_every <= 100:
            raise WebError(f"the detector interval must be a whole number of frames from 1 to 100, "
                           f"got {self.det_every}")
        object.__setattr__(self, "det_every", det_every)
        object.__setattr__(self, "flip_test", bool(self.flip_test))
        try:  # checked as the detector's settings check it
            DetectorSettings(weights=DEFAULT_DETECTOR_WEIGHTS, image_size=self.det_image_size)
        except ValueError as exc:
            raise WebError(f"the detector's input size: {exc}") from None


@dataclass(frozen=True)
class ModelSpec:
    """What defines one loaded model pair, and the key of :class:`ModelCache`: the weights (resolved
    to what the server knows, never a visitor's text), the device, the precision (EXACT for images
    and videos, FAST for the webcam on a GPU: see :func:`spec_precision`) and the detector's input size.
    The backend is that of :func:`pose_settings` for every spec; the thresholds and the flip test are per call."""

    pose_weights: str
    det_weights: str
    device: str
    precision: Precision = DEFAULT_PRECISION
    det_image_size: int = DetectorSettings.image_size


def spec_precision(device: str, live: bool) -> Precision:
    """The precision of a spec: :data:`pose.precision.LIVE_PRECISION` for the webcam on a GPU, else
    :data:`pose.precision.DEFAULT_PRECISION` (on the CPU both run float32, so they share one model)."""
    return LIVE_PRECISION if live and device.startswith("cuda") else DEFAULT_PRECISION


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
    """The ``pose.estimator.PoseSettings`` the pose model of ``spec`` is loaded with: those of
    ``animalpose track`` with the same weights, device and precision (the flip test on; see
    :func:`with_flip_test`)."""
    from pose.estimator import Backend, PoseSettings

    return PoseSettings(flip_test=True, device=spec.device, backend=Backend.AUTO, precision=spec.precision)


def detector_settings(spec: ModelSpec):
    """The ``tracking.detector.DetectorSettings`` the detector of ``spec`` is loaded with: those of
    ``animalpose track`` with the same weights, device and input size (in the pose model's precision), at the
    confidence :data:`DETECTOR_FLOOR`."""
    from tracking.detector import DetectorSettings, is_release_name

    pose = pose_settings(spec)
    return DetectorSettings(weights=spec.det_weights, confidence=DETECTOR_FLOOR, image_size=spec.det_image_size,
                            device=pose.device,
                            precision=pose.precision, half=pose.half, cuda_graphs=pose.cuda_graphs,
                            allow_download=is_release_name(spec.det_weights))


def track_settings(options: RunOptions, smoothing: str):
    """The :class:`app.runs.TrackSettings` of a visitor's options (``smoothing``: offline, causal or none)."""
    from app.drawing import DrawSettings
    from app.runs import TrackSettings
    from tracking.smoothing import SmoothingMode

    return TrackSettings(det_every=options.det_every, smoothing=SmoothingMode(smoothing),
                         draw=DrawSettings(kpt_thr=options.kpt_thr), progress_bar=False)


# --------------------------------------------------------------------------------------------------
# Which weights can be offered, checked at start-up without loading them


class Availability(enum.Enum):
    """What the server can do with one weights entry."""

    READY = "ready"  # the file is here
    DOWNLOAD = "download"  # fetched on first use (the download site answers)
    MISSING = "missing"  # neither here nor downloadable: not offered


@dataclass(frozen=True)
class WeightsStatus:
    """One weights entry as checked at start-up.

    Attributes:
        entry: the weights as the operator named them (a path or a name); never shown to visitors.
        availability: see :class:`Availability`.
        note: why, in words for a visitor: no server paths, no command-line options.
        fix: what the operator can do about it (paths, options), for the server's log; None when ready.
    """

    entry: str
    availability: Availability
    note: str = ""
    fix: str | None = None

    @property
    def usable(self) -> bool:
        return self.availability is not Availability.MISSING


DownloadCheck = Callable[[str], bool]


def can_reach(url: str, timeout_s: float = 3.0) -> bool:
    """Whether the host of ``url`` accepts a connection within ``timeout_s`` seconds (name lookup
    included); a cheap test of whether a download could start, made once at start-up."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    answer: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((parsed.hostname, port), timeout=timeout_s):
                answer.append(True)
        except OSError:
            answer.append(False)

    worker = threading.Thread(target=connect, name="animalpose-web-probe", daemon=True)
    worker.start()
    worker.join(timeout_s)  # a name lookup can hang longer than the socket's own timeout
    return bool(answer and answer[0])


def memoized_by_host(check: DownloadCheck) -> DownloadCheck:
    """``check`` asked once per host (several weights come from the same download site)."""
    answers: dict[str | None, bool] = {}

    def cached(url: str) -> bool:
        host = urlparse(url).hostname
        if host not in answers:
            answers[host] = check(url)
        return answers[host]

    return cached


def pose_weights_status(entry: str, can_download: DownloadCheck = can_reach) -> WeightsStatus:
    """Whether the pose weights ``entry`` (a checkpoint file or an official name) can be offered:
    the file exists, the official checkpoint is in the cache, or its download site answers."""
    from pose.weights import OFFICIAL_WEIGHTS, cache_dir

    if entry in OFFICIAL_WEIGHTS:
        url = OFFICIAL_WEIGHTS[entry]
        cached = cache_dir() / url.rsplit("/", 1)[-1]
        if cached.is_file():
            return WeightsStatus(entry, Availability.READY)
        if can_download(url):
            return WeightsStatus(entry, Availability.DOWNLOAD, "downloaded when first used, so the first run "
                                 "takes longer")
        return WeightsStatus(
            entry, Availability.MISSING, "not downloaded yet, and this server cannot download it now",
            f"pose weights {entry} are not in the cache ({cache_dir()}) and {urlparse(url).hostname} cannot "
            f"be reached: download {url} elsewhere and copy it into {cache_dir()}, or serve a local "
            "checkpoint with --pose-weights PATH")
    path = Path(entry).expanduser()
    if path.is_file():
        return WeightsStatus(entry, Availability.READY)
    return WeightsStatus(entry, Availability.MISSING, "its file is missing on this server",
                         f"pose weights file {path} does not exist: fix the path given to --pose-weights")


def ultralytics_weights_dir() -> Path:
    """The folder where ultralytics looks for (and keeps) the weights it downloads by name."""
    from ultralytics.utils import SETTINGS

    return Path(SETTINGS["weights_dir"])


def detector_weights_status(entry: str, can_download: DownloadCheck = can_reach) -> WeightsStatus:
    """Whether the YOLO weights ``entry`` can be offered: the file exists, or it is a released
    model name that ultralytics has already downloaded or can download now."""
    from tracking.detector import is_release_name

    path = Path(entry).expanduser()
    if path.is_file():
        return WeightsStatus(entry, Availability.READY)
    if not is_release_name(entry):
        return WeightsStatus(entry, Availability.MISSING, "its file is missing on this server",
                             f"detector weights file {path} does not exist: fix the path given to --det-weights")
    if (ultralytics_weights_dir() / entry).is_file():
        return WeightsStatus(entry, Availability.READY)
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    if entry not in GITHUB_ASSETS_NAMES:
        return WeightsStatus(entry, Availability.MISSING, "its file is missing on this server",
                             f"detector weights {entry} are neither a file here nor a model ultralytics can "
                             "download: give the path of a YOLO weights file with --det-weights")
    url = "https://github.com/ultralytics/assets/releases"
    if can_download(url):
        return WeightsStatus(entry, Availability.DOWNLOAD, "downloaded when first used, so the first run "
                             "takes longer")
    return WeightsStatus(
        entry, Availability.MISSING, "not downloaded yet, and this server cannot download it now",
        f"detector weights {entry} are not here (nor in {ultralytics_weights_dir()}) and github.com cannot be "
        f"reached: download {entry} from {url} elsewhere and start the server with --det-weights PATH")


# --------------------------------------------------------------------------------------------------
# Models shared by all visitors


class _Serialized:
    """Calls ``model`` under ``lock`` (its own by default), so that two jobs never run one network at
    once; other attributes (``num_keypoints``...) are the model's."""

    def __init__(self, model: Callable, lock: threading.Lock | None = None) -> None:
        self._model = model
        self._lock = lock or threading.Lock()

    def __call__(self, *args, **kwargs):
        with self._lock:
            return self._model(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._model, name)


class DetectorAtConfidence:
    """The boxes of ``detector`` (which runs at confidence ``floor``) that score above ``confidence``.

    These are exactly the boxes the same detector would return if it ran at ``confidence``.
    Every step after the network only keeps a prefix of the boxes sorted by score: the confidence
    test, the cap on the boxes sent to non-maximum suppression, NMS itself (a box is suppressed only
    by a kept box of higher score, so whether a box above ``confidence`` is kept depends only on
    boxes above ``confidence``) and the cap on the detections kept. Removing the boxes at or below
    ``confidence`` is one more such prefix, and prefixes commute, so filtering after the floor run
    equals filtering first. (Two boxes of exactly equal score may be ordered differently.)
    ``confidence`` is compared in float32 with a strict ``>``, as ultralytics compares it in float32
    precision (in float16 a score equal to the threshold's float16 rounding may differ).

    Args:
        detector: ``detector(frame_bgr) -> Detections``, run at ``floor``.
        floor: the confidence ``detector`` runs at.
        confidence: the visitor's threshold, at least ``floor``.
    """

    def __init__(self, detector: Callable, floor: float, confidence: float) -> None:
        if not floor <= confidence <= 1.0:
            raise ValueError(f"confidence must be in [{floor}, 1] (the detector runs at {floor}), got {confidence}")
        self.detector = detector
        self.floor = floor
        self.confidence = confidence

    def __call__(self, frame_bgr: np.ndarray):
        detections = self.detector(frame_bgr)
        if self.confidence <= self.floor:
            return detections
        return detections[detections.scores > np.float32(self.confidence)]

    def __getattr__(self, name: str):
        return getattr(self.detector, name)


def with_flip_test(estimator, flip_test: bool):
    """``estimator`` with the flip test on or off, sharing its network (and ONNX session).

    The flip test is read from ``estimator.settings`` on every call and is no part of what is loaded
    or exported, so a shallow copy with other settings is the same model run another way. An
    estimator without :class:`pose.estimator.PoseSettings` (a test double) is returned as is.
    """
    from pose.estimator import PoseSettings

    settings = getattr(estimator, "settings", None)
    if not isinstance(settings, PoseSettings) or settings.flip_test == flip_test:
        return estimator
    view = copy.copy(estimator)
    view.settings = replace(settings, flip_test=flip_test)
    return view


class SharedModels:
    """One loaded detector and pose model, shared by every visitor; :meth:`for_call` gives the
    models of one job, with its detector confidence and flip test.

    Args:
        models: :class:`app.runs.Models` loaded for one :class:`ModelSpec`, the detector at ``floor``.
        floor: the confidence the detector runs at.
    """

    def __init__(self, models, floor: float = DETECTOR_FLOOR) -> None:
        self.floor = floor
        self.detector = _Serialized(models.detector)
        lock = threading.Lock()  # one network behind both views
        self.estimators = {flip: _Serialized(with_flip_test(models.estimator, flip), lock) for flip in (False, True)}

    def for_call(self, det_conf: float, flip_test: bool):
        """The :class:`app.runs.Models` of one job: boxes above ``det_conf``, the flip test on or off."""
        from app.runs import Models

        return Models(DetectorAtConfidence(self.detector, self.floor, det_conf), self.estimators[bool(flip_test)])


ModelFactory = Callable[[ModelSpec], object]


def load_models(spec: ModelSpec):
    """The models of ``spec``, loaded through :func:`animalpose.load` as ``animalpose track`` loads them."""
    import animalpose

    return animalpose.load(spec.pose_weights, detector_settings(spec), device=spec.device, precision=spec.precision,
                           pose_settings=pose_settings(spec)).models


class ModelCache:
    """The most recently used ``size`` model pairs (:class:`SharedModels`), loaded on demand.

    Args:
        factory: ``factory(spec) -> app.runs.Models``, the detector at :data:`DETECTOR_FLOOR`;
            :func:`load_models` by default (tests pass fakes).
        size: model pairs kept in memory.
    """

    def __init__(self, factory: ModelFactory | None = None, size: int = 2) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.factory = factory or load_models
        self.size = size
        self._models: OrderedDict[ModelSpec, SharedModels] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, spec: ModelSpec) -> SharedModels:
        with self._lock:  # one load at a time: a second visitor waits for the first load
            if spec in self._models:
                self._models.move_to_end(spec)
                return self._models[spec]
            logger.info("loading models: pose %s, detector %s on %s", spec.pose_weights, spec.det_weights, spec.device)
            models = SharedModels(self.factory(spec), DETECTOR_FLOOR)
            self._models[spec] = models
            while len(self._models) > self.size:
                self._models.popitem(last=False)
            return models
