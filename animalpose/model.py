"""The Python API: load the models once, then estimate poses in images and track animals in videos,
folders, image sequences, cameras, streams and frames in memory.

Everything here goes through the same code as the command line (:mod:`app.runs`): the same settings,
defaults, checks, outputs and partial files.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, overload

import numpy as np

from app.pipeline import Pipeline
from app.profiles import Profile, as_profile, profile_choices
from app.runs import (
    SAVE_CHOICES,
    FolderSummary,
    Models,
    OutputPaths,
    TrackProgress,
    TrackSettings,
    TrackSummary,
    folder_plan,
    iter_results,
    load_estimator,
    load_models,
    make_pipeline,
    outputs_in_folder,
    process_source,
    process_videos,
)
from app.sources import SourceKind, expand_video_inputs, read_image_file, source_kind
from app.sources.arrays import ArraySource, as_bgr
from pose.devices import AUTO
from pose.estimator import PoseEstimator, PoseSettings
from pose.precision import DEFAULT_PRECISION, Precision, as_precision
from pose.structures import Detections, FrameResult, Poses
from tracking.detector import DEFAULT_DETECTOR_WEIGHTS, DetectorSettings, is_release_name

__all__ = ["Model", "load", "track_settings"]

logger = logging.getLogger("animalpose")

Image = str | Path | np.ndarray
Source = str | Path | int | Iterable[np.ndarray]


def load(
    pose: str | Path | None = None,
    detector: str | Path | DetectorSettings | None = DEFAULT_DETECTOR_WEIGHTS,
    *,
    profile: Profile | str = Profile.FULL,
    device: str = AUTO,
    precision: Precision | str = DEFAULT_PRECISION,
    pose_settings: PoseSettings | None = None,
) -> Model:
    """Load a pose model and a detector, once, for every image and video that follows.

    Args:
        pose: a pose checkpoint file, or an official AP-10K model name (downloaded once into the cache):
            ``hrnet_w32``, ``hrnet_w48``, ``res50``, ``res101`` (mmpose 0.x) or ``rtmpose_m`` (mmpose 1.x);
            None: the profile's (``hrnet_w32``; ``rtmpose_m`` for ``realtime``).
        detector: ultralytics YOLO weights (a file, or a released name such as ``yolo11n.pt``, the default,
            which ultralytics downloads once), or :class:`~tracking.detector.DetectorSettings` for every
            detector option (confidence, NMS IoU, input size, classes); None: no detector (poses of
            given boxes only).
        profile: ``"full"`` (the default: the most accurate keypoints) or ``"realtime"`` (real time on a
            CPU: RTMPose-m without the flip test, the detector on every 2nd frame when
            tracking); see :mod:`app.profiles`. What is given explicitly (``pose``, ``detector`` as
            :class:`~tracking.detector.DetectorSettings`, ``pose_settings``) wins over it.
        device: ``"auto"`` (CUDA when torch sees a GPU, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``,
            for both networks.
        precision: ``"exact"`` (float32, mmpose's keypoints) or ``"fast"`` (float16 on a GPU), for both
            networks; the CPU always computes in float32.
        pose_settings: every other option of the pose model (flip test, decoding, backend...); its
            device and precision are replaced by ``device`` and ``precision``. Its backend is also the
            detector's when ``detector`` is a path or name (ONNX Runtime on the CPU by default).

    Raises:
        ValueError: a bad device, precision, profile or setting.
        pose.weights.WeightsError, pose.checkpoint.CheckpointError: the pose weights cannot be had or read.
        tracking.detector.DetectorError: the detector weights cannot be had or read.
    """
    profile = as_profile(profile)
    choices = profile_choices(profile)
    precision = as_precision(precision)
    pose = choices.pose_weights if pose is None else pose
    pose_settings = replace(pose_settings or PoseSettings(flip_test=choices.flip_test), device=device,
                            precision=precision)
    if detector is None:
        return Model(Models(None, load_estimator(pose, pose_settings)), profile)
    if isinstance(detector, DetectorSettings):
        detector_settings = replace(detector, device=device, precision=precision)
    elif isinstance(detector, (str, Path)):
        detector_settings = DetectorSettings(weights=str(detector), image_size=choices.det_image_size, device=device,
                                             precision=precision, backend=pose_settings.backend,
                                             allow_download=is_release_name(detector))
    else:
        raise ValueError(f"detector must be a weights path, a released name or DetectorSettings, got {detector!r}")
    return Model(load_models(pose, pose_settings, detector_settings), profile)


def track_settings(settings: TrackSettings | None = None, **options: Any) -> TrackSettings:
    """:class:`~app.runs.TrackSettings` with ``options`` replacing fields of ``settings`` (or of the
    defaults); enum fields also take their values as text (``smoothing="causal"``, ``pose_order="before"``).

    Raises:
        ValueError: an unknown option, or a value the settings refuse.
    """
    settings = settings or TrackSettings()
    known = {f.name: f for f in fields(TrackSettings)}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown tracking options {unknown}; known: {sorted(known)}")
    converted = {}
    for name, value in options.items():
        current = getattr(settings, name)
        kind = type(current) if isinstance(current, enum.Enum) else _enum_of(name)
        if kind is not None and isinstance(value, str):
            try:
                value = kind(value)
            except ValueError:
                raise ValueError(f"{name} must be one of {[m.value for m in kind]}, got {value!r}") from None
        converted[name] = value
    return replace(settings, **converted)


def _enum_of(name: str) -> type[enum.Enum] | None:
    from tracking.smoothing import SmoothingMode

    return {"smoothing": SmoothingMode}.get(name)


class Model:
    """A loaded pose model and detector. Build it with :func:`load`.

    Example::

        import animalpose
        model = animalpose.load()                                # hrnet_w32 + yolo11n.pt, GPU if any
        fast = animalpose.load(profile="realtime")               # rtmpose_m, real time on a CPU
        poses = model.pose("cat.jpg")                            # Poses: keypoints (N, 17, 3)
        for frame in model.track("safari.mp4"):                  # FrameResult per frame
            print(frame.frame_index, frame.track_ids)
        model.track("safari.mp4", save=["video", "json"], out_dir="results")
    """

    def __init__(self, models: Models, profile: Profile | str = Profile.FULL) -> None:
        self.models = models
        self.profile = as_profile(profile)
        #: The tracking settings :meth:`track` and :meth:`pipeline` start from: the defaults, with the
        #: profile's detector interval.
        self.track_defaults = TrackSettings(det_every=profile_choices(self.profile).det_every)

    @property
    def estimator(self) -> PoseEstimator:
        """The pose model (:class:`~pose.estimator.PoseEstimator`)."""
        return self.models.estimator

    @property
    def detector(self) -> Callable[[np.ndarray], Detections]:
        """The detector: ``detector(image_bgr) -> Detections``.

        Raises:
            ValueError: the model was loaded without one (``load(detector=None)``).
        """
        if self.models.detector is None:
            raise ValueError("this model was loaded without a detector (load(detector=None)): give boxes")
        return self.models.detector

    # ------------------------------------------------------------------------------------------
    # Images

    def detect(self, image: Image) -> Detections:
        """The animals the detector finds in ``image`` (a file, or a BGR/grey uint8 array)."""
        return self.detector(_image(image))

    def pose(self, image: Image, boxes: np.ndarray | Sequence[Sequence[float]] | None = None,
             box_format: str = "xyxy") -> Poses:
        """The keypoints of the animals of one image.

        Args:
            image: an image file, or a uint8 array (BGR as OpenCV reads it, grey or BGRA).
            boxes: (N, 4) boxes in pixels, one per animal; None: the detector's.
            box_format: ``"xyxy"`` (x1, y1, x2, y2: detector boxes, mmpose's inference convention) or
                ``"xywh"`` (COCO x, y, width, height: ground-truth boxes, cleaned as mmpose's AP-10K
                evaluation does, as ``animalpose pose --box``).

        Returns:
            :class:`~pose.structures.Poses`: ``keypoints`` (N, 17, 3) = x, y, score, in the order of the boxes.
        """
        if box_format not in ("xyxy", "xywh"):
            raise ValueError(f"box_format must be 'xyxy' or 'xywh', got {box_format!r}")
        image = _image(image)
        if boxes is None:
            return self.estimator(image, self.detector(image).xyxy)
        boxes = np.asarray(boxes, np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
            raise ValueError(f"boxes must be (N, 4) finite numbers, got shape {boxes.shape}")
        if box_format == "xywh":
            return self.estimator.estimate_xywh(image, boxes)
        return self.estimator(image, boxes)

    # ------------------------------------------------------------------------------------------
    # Videos, streams, frames

    @overload
    def track(self, source: Source, *, fps: float | None = ..., settings: TrackSettings | None = ...,
              **options: Any) -> Iterator[FrameResult]: ...

    @overload
    def track(self, source: Source, *, save: Sequence[str], out_dir: str | Path = ...,
              settings: TrackSettings | None = ..., **options: Any) -> TrackSummary | FolderSummary: ...

    def track(self, source: Source, *, save: Sequence[str] | None = None, out_dir: str | Path | None = None,
              outputs: OutputPaths | None = None, fps: float | None = None, settings: TrackSettings | None = None,
              overwrite: bool = False, video_suffix: str = ".mp4",
              progress: Callable[[TrackProgress], None] | None = None, **options: Any):
        """Track the animals of ``source`` and estimate their poses.

        Args:
            source: a video file, a folder or glob of videos, a folder of images, a camera index, a
                stream URL (rtsp://, http://...), or an iterable of frames (uint8 arrays, BGR).
            save: write results instead of returning them: any of ``"video"``, ``"json"``, ``"jsonl"``,
                ``"csv"``, ``"coco"``, and the pose files of the field (``pip install 'animalpose[formats]'``):
                ``"dlc"`` (DeepLabCut ``.dlc.h5``), ``"dlc-csv"`` (``.dlc.csv``), ``"sleap"`` (SLEAP analysis
                ``.sleap.h5``), ``"slp"`` (SLEAP labels), ``"nwb"`` (NWB with ndx-pose); as
                ``out_dir/<name>.<ext>`` (a folder of videos: one set per video, resumable). ``outputs``
                names the files one by one instead.
            out_dir: the folder for ``save`` (default ``animalpose_out``).
            fps: frame rate of an image sequence or of frames in memory (default 1 and 30).
            settings: tracking settings (:class:`~app.runs.TrackSettings`; None: :attr:`track_defaults`, the
                defaults with the profile's detector interval); ``options`` replace its fields: ``smoothing``
                ("offline", "causal", "none"), ``det_every``, ``max_lost_s``,
                ``min_hits``, ``appearance``, ``pose_order``, ``draw``, ``csv_layout``.
            overwrite: with ``save`` on a folder of videos, redo videos whose outputs exist.
            video_suffix: the labeled video's container with ``save``: ".mp4" (H.264, plays everywhere), ".webm"
                (VP9), ".mkv", ".mov" or ".avi".
            progress: called with :class:`~app.runs.TrackProgress` after every frame of each pass.

        Returns:
            Without ``save``/``outputs``: an iterator of :class:`~pose.structures.FrameResult`, one per
            frame as it is processed (with offline smoothing, the default for files, after the whole
            source). With them: the :class:`~app.runs.TrackSummary` of the source (a folder of videos:
            a :class:`~app.runs.FolderSummary`).

        Raises:
            ValueError: bad options; app.sources.SourceError, app.sinks.SinkError as the CLI reports them.
        """
        settings = track_settings(settings or self.track_defaults, **options)
        if fps is not None:
            settings = replace(settings, fps=fps)
        if save is None and outputs is None:
            if out_dir is not None:
                raise ValueError("out_dir needs save=[...] (what to write there)")
            return self._stream(source, settings)
        if save is not None and outputs is not None:
            raise ValueError("give save (with out_dir) or outputs, not both")
        if not isinstance(source, (str, Path)):
            raise ValueError("saving results needs a file source (a video, a folder or an image sequence); "
                             "iterate over track(frames) and write the results yourself")
        kind = source_kind(source)
        if kind is SourceKind.LIVE:
            raise ValueError(f"{source} is a camera or stream: iterate over track({source!r}) instead")
        out_dir = Path(out_dir if out_dir is not None else "animalpose_out")
        if save is not None:
            unknown = sorted(set(save) - set(SAVE_CHOICES))
            if unknown or not save:
                raise ValueError(f"save must name some of {list(SAVE_CHOICES)}, got {list(save)}")
        if kind is SourceKind.VIDEOS:
            if outputs is not None:
                raise ValueError("a folder of videos is saved with save=[...] and out_dir, one set of files per video")
            plan = folder_plan(expand_video_inputs(source), out_dir, save, video_suffix)
            return process_videos(plan, self.models, settings, overwrite=overwrite, progress=progress)
        if outputs is None:
            outputs = outputs_in_folder(Path(str(source).rstrip("/")).stem or "frames", out_dir, save, video_suffix)
        return process_source(str(source), outputs, self.models, settings, progress)

    def pipeline(self, live: bool = False, fps: float | None = None, settings: TrackSettings | None = None,
                 **options: Any) -> Pipeline:
        """A :class:`~app.pipeline.Pipeline` for frames that arrive one at a time (a callback, a queue):
        ``pipeline.process(image_bgr, frame_index, timestamp_s) -> FrameResult``, with its own tracker.

        Args:
            live: causal smoothing by default (offline smoothing, the default for files, is refused).
            fps: the frames' rate (default 30), for ``max_lost_s``.
            settings, options: as :meth:`track`.
        """
        return make_pipeline(self.models, track_settings(settings or self.track_defaults, **options), live=live,
                             fps=fps)

    def _stream(self, source: Source, settings: TrackSettings) -> Iterator[FrameResult]:
        if isinstance(source, (str, Path, int)):
            if not isinstance(source, int) and source_kind(source) is SourceKind.VIDEOS \
                    and len(expand_video_inputs(source)) > 1:
                raise ValueError(f"{source} holds several videos: track each, or save=[...] with out_dir")
            return iter_results(source, self.models, settings)
        return iter_results(ArraySource(source, fps=settings.fps or 30.0), self.models, settings)


def _image(image: Image) -> np.ndarray:
    if isinstance(image, (str, Path)):
        return read_image_file(image)
    if isinstance(image, np.ndarray):
        return as_bgr(image)
    raise ValueError(f"image must be a file path or a uint8 numpy array, got {type(image).__name__}")

