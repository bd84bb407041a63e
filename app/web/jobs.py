"""The jobs of the web app's tabs, without gradio: one image, one video file.

The page (:mod:`app.web.ui`) is a thin layer over these functions, and they are a thin layer over
the command line's own code: an image goes through the detector and the pose model as in
``animalpose pose``; a video goes through :func:`app.runs.process_source` exactly as in
``animalpose track``. The webcam is in :mod:`app.web.live`.

Everything that remembers frames (the tracker and its Kalman filters) belongs to one job, so track
IDs never leak from one visitor to another.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from app.profiles import REALTIME_CHOICES, Profile, as_profile
from app.web.models import (
    DETECTOR_FLOOR,
    Availability,
    DownloadCheck,
    ModelCache,
    ModelFactory,
    ModelSpec,
    RunOptions,
    WebError,
    WebSettings,
    WeightsStatus,
    as_web_error,
    available_devices,
    can_reach,
    detector_weights_status,
    memoized_by_host,
    pose_weights_status,
    spec_precision,
    track_settings,
    visitor_errors,
    weight_choices,
)

logger = logging.getLogger(__name__)

IMAGE_UPLOAD_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_UPLOAD_EXTENSIONS: tuple[str, ...] = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v", ".mpg", ".mpeg")
#: The sample images shipped in the repository (tests/ is not installed with the package).
SAMPLES_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "samples"
SAMPLE_FOLDERS: tuple[str, ...] = ("ap10k", "animalpose", "atrw", "zebra", "horse10", "macaque")


@dataclass(frozen=True)
class ImageResult:
    """One analysed image.

    Attributes:
        image_rgb: (H, W, 3) uint8 RGB image with boxes and skeletons drawn.
        rows: one row per animal and keypoint: animal, keypoint, x, y (pixels), confidence.
        json_path: the result as JSON (the same layout as a video's JSON, with one frame).
        animals: number of animals found.
        det_conf: the detector confidence they were found at.
    """

    image_rgb: np.ndarray = field(repr=False)
    rows: list[list]
    json_path: Path
    animals: int
    det_conf: float

    def describe(self) -> str:
        if self.animals:
            return f"{self.animals} animal{'s' if self.animals != 1 else ''} found"
        return f"No animals found{_lower_confidence_hint(self.det_conf)}"


def _lower_confidence_hint(det_conf: float) -> str:
    """What to try when no animal was found at detector confidence ``det_conf``."""
    if det_conf <= DETECTOR_FLOOR:
        return f", even at the lowest detector confidence ({det_conf:.2f})"
    return f" — try a lower detector confidence (now {det_conf:.2f}, under Settings)"


@dataclass(frozen=True)
class VideoProgress:
    """How far a video job is: frames analysed out of ``total`` (None: unknown), and the rate."""

    frames: int
    total: int | None
    elapsed_s: float
    writing: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        if self.total is None or self.fps <= 0:
            return None
        return max(0.0, (self.total - self.frames) / self.fps)

    def describe(self) -> str:
        if self.writing:
            return "smoothing the tracks and writing the labeled video"
        left = self.seconds_left
        text = f"{self.fps:.1f} frames/s"
        return text if left is None else f"{text}, {_duration(left)} left"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


@dataclass(frozen=True)
class VideoResult:
    """One tracked video.

    Attributes:
        video: the labeled video (H.264 MP4, as ``animalpose track`` writes it: plays in every browser).
        json, csv: the results (``animalpose track --json/--csv`` layouts).
        frames: frames analysed; fps: analysis speed in frames per second.
        duration_s: length of the video in seconds.
        tracks: track IDs seen.
        confidence: (time in seconds, "#track id", mean keypoint confidence) per frame and animal,
            for a plot; at most about 2000 frames, evenly spread.
        det_conf: the detector confidence the animals were found at.
    """

    video: Path
    json: Path
    csv: Path
    frames: int
    fps: float
    duration_s: float
    tracks: list[int]
    confidence: list[tuple[float, str, float]]
    det_conf: float

    def describe(self) -> str:
        video = f"{self.frames} frames ({self.duration_s:.1f} s of video)"
        speed = f"analysed at {self.fps:.1f} frames/s"
        if not self.tracks:
            return f"{video}, {speed}: no animals found{_lower_confidence_hint(self.det_conf)}"
        animals = f"{len(self.tracks)} animal{'s' if len(self.tracks) != 1 else ''}"
        return f"{video}, {animals} tracked, {speed}"


def sample_images(settings: WebSettings) -> list[Path]:
    """The example images of the Image tab: ``settings.examples``, else the repository's samples."""
    if settings.examples is not None:
        return [p for p in settings.examples if p.is_file()]
    found: list[Path] = []
    for folder in SAMPLE_FOLDERS:
        found.extend(sorted(p for p in (SAMPLES_DIR / folder).glob("*") if p.suffix.lower() in IMAGE_UPLOAD_EXTENSIONS))
    return found


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem).strip("._")
    return stem[:60] or "upload"


def _check_extension(path: Path, allowed: Sequence[str], kind: str) -> None:
    if path.suffix.lower() not in allowed:
        raise WebError(f"{path.name} is not {kind} this app accepts: upload one of {', '.join(allowed)}")


def confidence_series(document: dict, max_frames: int = 2000) -> list[tuple[float, str, float]]:
    """(time in seconds, "#track id", mean keypoint confidence) for each animal of each frame of a
    results document (``frames`` of :func:`app.sinks.frame_to_json`); frames evenly thinned to ``max_frames``."""
    frames = document.get("frames", [])
    step = max(1, math.ceil(len(frames) / max_frames))
    series = []
    for frame in frames[::step]:
        for animal in frame["animals"]:
            scores = [k[2] for k in animal["keypoints"] if k[2] is not None]
            if scores:
                series.append((float(frame["time"] or 0.0), f"#{animal['track_id']}", round(float(np.mean(scores)), 4)))
    return series


class WebJobs:
    """The jobs of the three tabs, over models shared by every visitor.

    The weights of ``settings`` are checked when the jobs are set up (files exist, official names
    are cached or downloadable; nothing is loaded): those that cannot be used are not offered, the
    visitor is told why in plain words (:meth:`weights_status`) and the operator what to do, in the log.

    Args:
        settings: the server's :class:`WebSettings`.
        model_factory: ``factory(spec) -> Models`` (:func:`load_models` by default; tests pass fakes).
        can_download: ``can_download(url) -> bool``, asked once per download site for weights that
            are not here yet (:func:`can_reach` by default).
    """

    def __init__(self, settings: WebSettings = WebSettings(), model_factory: ModelFactory | None = None,
                 can_download: DownloadCheck | None = None) -> None:
        from pose.weights import cached_weights

        self.settings = settings
        self.models = ModelCache(model_factory)
        check = memoized_by_host(can_download or can_reach)
        cached = [str(p) for p in cached_weights()] if settings.offer_cached else []
        self._pose = {label: pose_weights_status(entry, check)
                      for label, entry in weight_choices([*settings.pose_weights, *cached]).items()}
        self._detectors = {label: detector_weights_status(entry, check)
                           for label, entry in weight_choices(settings.det_weights).items()}
        for kind, statuses in (("pose", self._pose), ("detector", self._detectors)):
            for label, status in statuses.items():
                if status.fix is not None:
                    logger.warning("%s %s is not offered to visitors: %s", kind, label, status.fix)
        if not self.ready:
            logger.error("no %s can be used: the page says so and analyses nothing", self.missing_kinds())
        self.work_dir = Path(settings.work_dir or Path(tempfile.gettempdir()) / "animalpose-web")

    def pose_choices(self) -> list[str]:
        """Labels of the pose weights offered (those that can be used)."""
        return [label for label, status in self._pose.items() if status.usable]

    def detector_choices(self) -> list[str]:
        """Labels of the detector weights offered (those that can be used)."""
        return [label for label, status in self._detectors.items() if status.usable]

    def missing_kinds(self) -> str:
        """What the server lacks to analyse anything, in words ("pose model", "detector", both); "" when ready."""
        offered = (("pose model", self.pose_choices()), ("detector", self.detector_choices()))
        return " and no ".join(kind for kind, labels in offered if not labels)

    @property
    def ready(self) -> bool:
        """Whether at least one pose model and one detector can be used."""
        return bool(self.pose_choices() and self.detector_choices())

    def weights_status(self) -> dict[str, dict[str, WeightsStatus]]:
        """Every weights entry of the settings by kind ("pose", "detector") and label."""
        return {"pose": dict(self._pose), "detector": dict(self._detectors)}

    def spec(self, options: RunOptions, live: bool = False) -> ModelSpec:
        """The models ``options`` name (``live``: for the webcam, in :func:`spec_precision`'s live precision);
        raises :class:`WebError` for a label the server did not offer."""
        for kind, label, statuses in (("pose model", options.pose, self._pose),
                                      ("detector", options.detector, self._detectors)):
            status = statuses.get(label)
            if status is None:
                offered = [name for name, s in statuses.items() if s.usable]
                choose = ", ".join(offered) or "none (none is ready)"
                raise WebError(f"unknown {kind} {label!r}: choose one of {choose}")
            if not status.usable:
                raise WebError(f"the {kind} {label} is not available on this server: {status.note}")
        if options.device not in available_devices():
            raise WebError(f"device {options.device!r} is not available here: choose {', '.join(available_devices())}")
        return ModelSpec(self._pose[options.pose].entry, self._detectors[options.detector].entry, options.device,
                         spec_precision(options.device, live), options.det_image_size)

    def realtime_pose_label(self) -> str | None:
        """The label of the real-time profile's pose model among those offered (None: not offered here)."""
        wanted = REALTIME_CHOICES.pose_weights
        for label, status in self._pose.items():
            if status.usable and Path(status.entry).name == wanted:
                return label
        return None

    def with_profile(self, options: RunOptions, profile: Profile | str) -> RunOptions:
        """``options`` as ``profile`` runs them (:mod:`app.profiles`): the full profile keeps the visitor's
        settings; the real-time one takes its pose model (when this server offers it; else the visitor's),
        no flip test, its detector input size and interval. Thresholds, device and smoothing stay the visitor's."""
        try:
            profile = as_profile(profile)
        except ValueError as exc:
            raise WebError(str(exc)) from None
        if profile is Profile.FULL:
            return options
        choices = REALTIME_CHOICES
        return replace(options, pose=self.realtime_pose_label() or options.pose, flip_test=choices.flip_test,
                       det_every=choices.det_every, det_image_size=choices.det_image_size)

    def load(self, options: RunOptions, live: bool = False):
        """The models for ``options`` (loaded on first use) with its detector confidence and flip test;
        :class:`WebError` when they cannot be loaded, saying which one and why in a visitor's words
        (the details, with paths, go to the log)."""
        spec = self.spec(options, live)
        try:
            shared = self.models.get(spec)
        except Exception as exc:
            if as_web_error(exc) is None:
                raise
            logger.error("could not load the models for a visitor (pose %s, detector %s): %s",
                         spec.pose_weights, spec.det_weights, exc)
            raise self._load_error(exc, options) from None
        return shared.for_call(options.det_conf, options.flip_test)

    def _load_error(self, exc: Exception, options: RunOptions) -> WebError:
        from tracking.detector import DetectorError

        if isinstance(exc, DetectorError):
            kind, status = "detector", self._detectors[options.detector]
            label = options.detector
        else:
            kind, status = "pose model", self._pose[options.pose]
            label = options.pose
        reason = ("it could not be downloaded" if status.availability is Availability.DOWNLOAD
                  else "its file could not be read")
        return WebError(f"the {kind} {label} could not be loaded on this server ({reason}); "
                        "choose another one under Settings or try again later")

    def new_job_dir(self) -> Path:
        """A fresh folder for one job's results; folders older than ``keep_results_s`` are removed."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - self.settings.keep_results_s
        for old in self.work_dir.glob("job-*"):
            try:
                if old.stat().st_mtime < cutoff:
                    shutil.rmtree(old, ignore_errors=True)
            except FileNotFoundError:
                pass
        return Path(tempfile.mkdtemp(prefix="job-", dir=self.work_dir))

    def image(self, path: str | Path, options: RunOptions) -> ImageResult:
        """Detect the animals of one image and estimate their poses, as ``animalpose pose`` does."""
        import cv2

        from animalpose import Model
        from app.drawing import DrawSettings, draw_frame
        from app.results_json import image_document, image_result
        from app.sinks import atomic_write_json
        from app.sources import read_image_file
        from pose.keypoints import KEYPOINT_NAMES

        path = Path(path)
        self.check_image(path)
        model = Model(self.load(options))
        with visitor_errors(upload=path):
            image = read_image_file(path)
            detections = model.detect(image)
            poses = model.pose(image, detections.xyxy)
        n = len(poses)
        result = image_result(poses, detections.scores)
        canvas = draw_frame(image, result, DrawSettings(kpt_thr=options.kpt_thr))
        height, width = image.shape[:2]
        json_path = self.new_job_dir() / f"{_safe_stem(path.name)}.json"
        atomic_write_json(json_path, image_document(path.name, width, height, result))
        rows = [
            [f"#{i + 1}", KEYPOINT_NAMES[k], round(float(x), 1), round(float(y), 1), round(float(c), 3)]
            for i in range(n) for k, (x, y, c) in enumerate(poses.keypoints[i])
        ]
        return ImageResult(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB), rows, json_path, n, options.det_conf)

    def check_image(self, path: str | Path, name: str | None = None) -> None:
        """Raise :class:`WebError` when the upload ``path`` (shown as ``name``, by default its file name)
        is not an image this app reads; cheap enough to run as soon as it is uploaded."""
        import cv2

        path = Path(path)
        name = name or path.name
        _check_extension(Path(name), IMAGE_UPLOAD_EXTENSIONS, "an image")
        if not path.is_file() or path.stat().st_size == 0 or not cv2.haveImageReader(str(path)):
            raise WebError(f"{name} is not an image this app can read: upload one of "
                           f"{', '.join(IMAGE_UPLOAD_EXTENSIONS)}")

    def check_video(self, path: Path):
        """The :class:`~app.sources.VideoInfo` of an uploaded video; :class:`WebError` when it is not one
        this server accepts (type, readability, length)."""
        from app.sources import VideoFileSource

        _check_extension(path, VIDEO_UPLOAD_EXTENSIONS, "a video")
        with visitor_errors(upload=path), VideoFileSource(path) as source:
            info = source.info
        if info.total_frames and info.total_frames / info.fps > self.settings.max_video_s:
            raise WebError(f"{path.name} lasts {info.total_frames / info.fps:.0f} s; this server takes videos of "
                           f"at most {self.settings.max_video_s:.0f} s: cut it shorter")
        return info

    def video(self, path: str | Path, options: RunOptions,
              progress: Callable[[VideoProgress], None] | None = None, poll_s: float = 0.25) -> VideoResult:
        """Track the animals of a video file with :meth:`animalpose.Model.track` (the code of
        ``animalpose track``) in a worker thread, calling ``progress`` from this thread every ``poll_s`` seconds."""
        from animalpose import Model
        from app.results_json import read_results
        from app.runs import OutputPaths, TrackProgress

        path = Path(path)
        info = self.check_video(path)
        models = self.load(options)
        stem = _safe_stem(path.name)
        folder = self.new_job_dir()
        # H.264 MP4, the file `animalpose track --out x.mp4` writes: every browser plays it
        outputs = OutputPaths(video=folder / f"{stem}_labeled.mp4", json=folder / f"{stem}.json",
                              jsonl=folder / f"{stem}.jsonl", csv=folder / f"{stem}.csv")
        settings = track_settings(options, options.smoothing)
        outcome: dict[str, object] = {}
        latest = [TrackProgress(0, info.total_frames)]  # the worker replaces the one item

        def report(where: TrackProgress) -> None:
            latest[0] = where

        def run() -> None:
            try:
                outcome["summary"] = Model(models).track(str(path), outputs=outputs, settings=settings, progress=report)
            except BaseException as exc:  # handed to the waiting thread below
                outcome["error"] = exc

        worker = threading.Thread(target=run, name="animalpose-web-video", daemon=True)
        start = time.monotonic()
        worker.start()
        while worker.is_alive():
            worker.join(poll_s)
            if progress is not None:
                now = latest[0]  # frames analysed: all of them once the offline pass writes the files
                done = now.total if (now.writing and now.total is not None) else now.done
                progress(VideoProgress(done, now.total, time.monotonic() - start, now.writing))
        if "error" in outcome:
            with visitor_errors(upload=path):
                raise outcome["error"]  # type: ignore[misc]
        summary = outcome["summary"]
        document = read_results(outputs.json)
        tracks = sorted({a["track_id"] for f in document["frames"] for a in f["animals"]})
        return VideoResult(
            video=outputs.video, json=outputs.json, csv=outputs.csv, frames=summary.frames,
            fps=summary.fps, duration_s=len(document["frames"]) / info.fps, tracks=tracks,
            confidence=confidence_series(document), det_conf=options.det_conf,
        )
