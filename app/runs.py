"""Track one source into result files: the code that ``animalpose track``, ``animalpose live`` and
the web app share (no argparse here).

- :func:`load_models` loads the detector and the pose model once per run (or per web-app spec);
- :func:`make_pipeline` builds a fresh :class:`~app.pipeline.Pipeline` (its own tracker) per source;
- :func:`process_source` runs a video file or an image sequence through it into the files of an
  :class:`OutputPaths`, reporting :class:`TrackProgress` as it goes, and returns a :class:`TrackSummary`.

With offline smoothing the first pass tracks (and streams the raw JSON Lines); the smoothed results
then go to the JSON, CSV and COCO files at once, and a second reading of the frames draws them into
the labeled video (when one is asked for).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, fields
from pathlib import Path

from tqdm import tqdm

from app.drawing import DrawSettings
from app.outputs import OutputBusyError, OutputLock, check_outputs, check_writable
from app.pipeline import (
    Pipeline,
    PipelineSettings,
    PoseOrder,
    detected_frames,
    run_frames,
    write_offline,
)
from app.sinks import (
    CODECS_BY_EXTENSION,
    CocoResultsSink,
    CsvLayout,
    CsvSink,
    DeepLabCutSink,
    JsonLinesSink,
    NwbSink,
    PoseFileSink,
    Sink,
    SinkError,
    SleapSink,
    VideoSink,
    partial_path,
)
from app.sources import (
    SourceError,
    SourceKind,
    SourceStats,
    VideoInfo,
    expand_video_inputs,
    list_images,
    open_source,
    source_kind,
)
from app.sources.base import FrameSource
from pose.structures import FrameResult
from tracking.smoothing import SmoothingMode, SmoothingSettings
from tracking.tracker import Tracker, TrackerSettings

__all__ = [
    "FolderSummary",
    "Models",
    "OutputPaths",
    "POSE_FILE_SINKS",
    "SAVE_CHOICES",
    "SAVE_SUFFIXES",
    "check_folder_outputs",
    "check_output_formats",
    "folder_plan",
    "iter_results",
    "process_videos",
    "check_track_outputs",
    "input_files",
    "output_stems",
    "TrackProgress",
    "TrackSettings",
    "TrackSummary",
    "DEFAULT_FPS",
    "final_sinks",
    "load_models",
    "lost_frames",
    "make_pipeline",
    "outputs_in_folder",
    "process_source",
    "tracker_settings",
    "write_results",
]

logger = logging.getLogger("animalpose")

#: Frame rate assumed for a source that announces none (some webcams and streams), in frames/s.
DEFAULT_FPS = 30.0


#: What ``animalpose track --save`` and ``Model.track(save=...)`` can name, and the end of each file's name
#: after the source's stem (the video's: the chosen container); ``json`` also streams a ``.jsonl``.
SAVE_SUFFIXES: dict[str, str] = {
    "video": "", "json": ".json", "jsonl": ".jsonl", "csv": ".csv", "coco": ".coco.json",
    "dlc": ".dlc.h5", "dlc-csv": ".dlc.csv", "sleap": ".sleap.h5", "slp": ".slp", "nwb": ".nwb",
}
SAVE_CHOICES: tuple[str, ...] = tuple(SAVE_SUFFIXES)


@dataclass(frozen=True)
class OutputPaths:
    """Where one source's results go; None: not written.

    Attributes:
        video: the labeled video; json, jsonl, csv, coco: our results (``docs/formats.md``);
        dlc, dlc_csv: DeepLabCut's ``.h5`` and ``.csv``; sleap, slp: SLEAP's analysis ``.h5`` and labels
            ``.slp``; nwb: NWB with ndx-pose (the pose files: :data:`POSE_FILE_SINKS`).
    """

    video: Path | None = None
    json: Path | None = None
    jsonl: Path | None = None
    csv: Path | None = None
    coco: Path | None = None
    dlc: Path | None = None
    dlc_csv: Path | None = None
    sleap: Path | None = None
    slp: Path | None = None
    nwb: Path | None = None

    def requested(self) -> list[Path]:
        return [p for p in (getattr(self, f.name) for f in fields(self)) if p is not None]

    def done(self) -> bool:
        """True when every final output already exists (a finished earlier run: resume skips it)."""
        paths = self.requested()
        return bool(paths) and all(p.is_file() for p in paths)

    def pose_files(self) -> list[tuple[type[PoseFileSink], Path]]:
        """The pose files asked for, with the sink that writes each."""
        return [(sink, getattr(self, name)) for name, sink in POSE_FILE_SINKS.items()
                if getattr(self, name) is not None]


#: The pose file fields of :class:`OutputPaths` and their sinks.
POSE_FILE_SINKS: dict[str, type[PoseFileSink]] = {
    "dlc": DeepLabCutSink, "dlc_csv": DeepLabCutSink, "sleap": SleapSink, "slp": SleapSink, "nwb": NwbSink,
}


def outputs_in_folder(stem: str, out_dir: Path, save: Iterable[str], video_suffix: str) -> OutputPaths:
    """Output paths ``out_dir/stem.*`` for the formats in ``save`` (names of :data:`SAVE_CHOICES`; the
    video's extension is ``video_suffix``); json also streams a ``.jsonl``.

    Raises:
        ValueError: a name not in :data:`SAVE_CHOICES`.
    """
    save = set(save)
    unknown = sorted(save - set(SAVE_CHOICES))
    if unknown:
        raise ValueError(f"unknown outputs {unknown}; choose from {list(SAVE_CHOICES)}")
    if "json" in save:
        save.add("jsonl")
    suffixes = {**SAVE_SUFFIXES, "video": video_suffix}
    return OutputPaths(**{name.replace("-", "_"): out_dir / f"{stem}{suffixes[name]}" for name in save})


@dataclass(frozen=True)
class TrackSettings:
    """How a source is tracked and drawn, besides the models.

    Attributes:
        det_every: run the detector every this many frames; tracks are predicted in between.
        smoothing: keypoint smoothing; None: OFFLINE for files, CAUSAL for live sources.
        pose_order: pose after tracking (on tracked animals) or before (keypoints help association).
        max_lost_s: seconds an animal may be unseen (hidden, or out of the frame) and keep its identity
            when it is seen again; counted in frames at the source's frame rate (a live source's
            announced rate; :data:`DEFAULT_FPS` when a source announces none).
        min_hits: detections an animal needs (the first two in a row) before it gets an identity and is reported.
        appearance: weight of the colour-histogram appearance cue in the tracker's association
            (``TrackerSettings.appearance_weight``; 0: boxes and motion only).
        draw: how the labeled video is drawn.
        csv_layout: long or wide CSV.
        fps: frame rate given to an image-folder source (None: its default).
        progress_bar: show tqdm progress bars.
    """

    det_every: int = PipelineSettings.det_every
    smoothing: SmoothingMode | None = None
    pose_order: PoseOrder = PipelineSettings.pose_order
    max_lost_s: float = 10.0
    min_hits: int = TrackerSettings.min_hits
    appearance: float = TrackerSettings.appearance_weight
    draw: DrawSettings = field(default_factory=DrawSettings)
    csv_layout: CsvLayout = CsvLayout.LONG
    fps: float | None = None
    progress_bar: bool = True

    def __post_init__(self) -> None:
        # The fields the pipeline and the tracker take as they are are checked where they are defined.
        PipelineSettings(det_every=self.det_every, pose_order=self.pose_order)
        if not self.max_lost_s >= 0:
            raise ValueError(f"max_lost_s must be >= 0 seconds, got {self.max_lost_s!r}")
        if not isinstance(self.min_hits, int) or self.min_hits < 1:
            raise ValueError(f"min_hits must be an integer >= 1, got {self.min_hits!r}")
        if not 0.0 <= self.appearance <= 1.0:
            raise ValueError(f"appearance must be in [0, 1], got {self.appearance!r}")
        if self.smoothing is not None and not isinstance(self.smoothing, SmoothingMode):
            raise ValueError(f"smoothing must be a SmoothingMode or None, got {self.smoothing!r}")
        if not isinstance(self.csv_layout, CsvLayout):
            raise ValueError(f"csv_layout must be a CsvLayout, got {self.csv_layout!r}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")

    def smoothing_for(self, live: bool) -> SmoothingMode:
        """The smoothing used for a file (``live=False``) or a live source; OFFLINE is refused live."""
        mode = self.smoothing or (SmoothingMode.CAUSAL if live else SmoothingMode.OFFLINE)
        if live and mode is SmoothingMode.OFFLINE:
            raise ValueError("offline smoothing needs the whole file; live sources use causal or none")
        return mode


@dataclass(frozen=True)
class TrackProgress:
    """Where :func:`process_source` is: ``done`` of ``total`` frames (None: not known) of the tracking
    pass, or, with offline smoothing, of the second pass that writes the files (``writing``)."""

    done: int
    total: int | None
    writing: bool = False


@dataclass(frozen=True)
class TrackSummary:
    """One processed source: its name, frames tracked, tracking frames/s, whether it was read to the end,
    and how many of its frames could not be read (unreadable images of a sequence)."""

    source: str
    frames: int
    fps: float
    complete: bool
    frames_skipped: int = 0


@dataclass(frozen=True)
class Models:
    """The networks, loaded once and shared by every source of a run (``detector`` None: poses of given
    boxes only)."""

    detector: Callable | None
    estimator: Callable


def load_models(pose_weights: str | Path, pose_settings, detector_settings) -> Models:
    """Load the detector (``tracking.detector.DetectorSettings``) and the pose model (a checkpoint path or
    official name, with ``pose.estimator.PoseSettings``).

    Raises:
        tracking.detector.DetectorError, pose.weights.WeightsError, pose.checkpoint.CheckpointError (also
        for a model whose keypoints are not AP-10K's 17).
    """
    from tracking.detector import Detector

    detector = Detector(detector_settings)
    return Models(detector, load_estimator(pose_weights, pose_settings))


def load_estimator(pose_weights: str | Path, pose_settings):
    """The pose model alone (``pose.estimator.PoseEstimator``) of a checkpoint path or official name.

    Raises:
        pose.weights.WeightsError, pose.checkpoint.CheckpointError (also for a model whose keypoints are
        not AP-10K's 17).
    """
    from pose.checkpoint import require_ap10k_keypoints
    from pose.estimator import PoseEstimator

    estimator = PoseEstimator.from_weights(pose_weights, pose_settings)
    require_ap10k_keypoints(estimator.num_keypoints, pose_weights)
    return estimator


def lost_frames(max_lost_s: float, fps: float | None, det_every: int = 1) -> int:
    """``max_lost_s`` seconds in the frames the tracker counts a track unseen in: the frames the detector runs on,
    every ``det_every``-th of a source of ``fps`` frames/s (:data:`DEFAULT_FPS` when None or not positive)."""
    rate = fps if fps is not None and fps > 0 else DEFAULT_FPS
    return round(max_lost_s * rate / det_every)


def tracker_settings(settings: TrackSettings, mode: SmoothingMode, max_lost_frames: int) -> TrackerSettings:
    """The tracker's settings for ``settings`` with smoothing ``mode`` and ``max_lost_s`` already in frames."""
    return TrackerSettings(max_lost_frames=max_lost_frames, min_hits=settings.min_hits,
                           appearance_weight=settings.appearance, smoothing=SmoothingSettings(mode=mode))


#: Frames the detector runs ahead of tracking and pose estimation when it runs on a GPU
#: (:class:`app.pipeline.DetectAhead`); on the CPU it runs in line (two networks would share its cores).
DETECT_AHEAD_ON_GPU = 2


def _detect_ahead(detector: Callable | None, live: bool) -> int:
    """How far the detector runs ahead: :data:`DETECT_AHEAD_ON_GPU` frames on a GPU, one for a live
    source (newest frame first: a deeper queue would only hold older frames), none on the CPU."""
    settings = getattr(detector, "settings", None)
    device = getattr(settings, "resolved_device", "cpu") if settings is not None else "cpu"
    if not str(device).startswith("cuda"):
        return 0
    return 1 if live else DETECT_AHEAD_ON_GPU


def make_pipeline(models: Models, settings: TrackSettings, live: bool, fps: float | None = None) -> Pipeline:
    """A new pipeline (fresh tracker) for one source of ``fps`` frames/s; ``live`` picks the default smoothing."""
    mode = settings.smoothing_for(live)
    tracker = Tracker(tracker_settings(settings, mode, lost_frames(settings.max_lost_s, fps, settings.det_every)))
    pipeline_settings = PipelineSettings(det_every=settings.det_every, pose_order=settings.pose_order,
                                         detect_ahead=_detect_ahead(models.detector, live))
    return Pipeline(models.detector, models.estimator, tracker, pipeline_settings,
                    num_keypoints=models.estimator.num_keypoints)


def final_sinks(stack: ExitStack, outputs: OutputPaths, info: VideoInfo, settings: TrackSettings, tmp: Path,
                stream_jsonl: bool, video: bool = True, data: bool = True) -> list[Sink]:
    """Open the sinks of ``outputs`` in ``stack``: the labeled video (when ``video``) and the result files
    (JSON, JSON Lines, CSV, COCO and the pose files; when ``data``). The JSON Lines go to ``outputs.jsonl``
    when ``stream_jsonl`` (else to ``tmp``, needed only to build the final JSON)."""
    sinks: list[Sink] = []
    if video and outputs.video is not None:
        sinks.append(stack.enter_context(VideoSink(outputs.video, info, settings.draw)))
    if not data:
        return sinks
    lines = outputs.jsonl if (stream_jsonl and outputs.jsonl is not None) else tmp / "frames.jsonl"
    if outputs.json is not None or (stream_jsonl and outputs.jsonl is not None):
        sinks.append(stack.enter_context(JsonLinesSink(lines, outputs.json, info)))
    if outputs.csv is not None:
        sinks.append(stack.enter_context(CsvSink(outputs.csv, settings.csv_layout)))
    if outputs.coco is not None:
        sinks.append(stack.enter_context(CocoResultsSink(outputs.coco)))
    for sink, path in outputs.pose_files():
        sinks.append(stack.enter_context(sink(path, info)))
    return sinks


def _data_outputs(outputs: OutputPaths, partial: bool) -> OutputPaths:
    """The result files of ``outputs`` written after the tracking pass (no video, no streamed JSON Lines),
    under their partial names when ``partial``."""
    name = partial_path if partial else (lambda p: p)
    data = {f.name: name(getattr(outputs, f.name)) for f in fields(outputs)
            if f.name not in ("video", "jsonl") and getattr(outputs, f.name) is not None}
    return OutputPaths(**data)


def write_results(outputs: OutputPaths, results: Sequence[FrameResult], info: VideoInfo, settings: TrackSettings,
                  partial: bool = False, metadata: dict | None = None) -> list[Path]:
    """Write ``results`` into the JSON, CSV, COCO and pose files of ``outputs`` (no images needed); with
    ``partial`` under :func:`app.sinks.partial_path` names and ``"complete": false`` in the JSON.
    Returns the files written."""
    outputs = _data_outputs(outputs, partial)
    with tempfile.TemporaryDirectory(prefix="animalpose-") as tmp, ExitStack() as stack:
        sinks = final_sinks(stack, outputs, info, settings, Path(tmp), stream_jsonl=False, video=False)
        for sink in sinks:
            if isinstance(sink, JsonLinesSink):
                sink.set_metadata(complete=not partial, **(metadata or {}))
        for result in results:
            for sink in sinks:
                sink.write(result)
    return outputs.requested()


def input_files(spec: str | Path) -> list[Path]:
    """The files a file source reads: the video, or the images of a sequence (for output checks)."""
    if source_kind(spec) is SourceKind.IMAGES:
        return list_images(spec)
    return expand_video_inputs(spec)


def check_track_outputs(spec: str | Path, outputs: OutputPaths) -> None:
    """Everything about ``outputs`` that can be checked before the first frame: none is an input of
    ``spec`` or another output, every folder takes new files, the video's container is known.

    Raises:
        app.sinks.SinkError: naming the output and the problem.
        app.sources.SourceError: ``spec`` does not exist.
    """
    check_outputs(input_files(spec), outputs.requested())
    check_output_formats(outputs)
    check_writable(outputs.requested())


def check_output_formats(outputs: OutputPaths) -> None:
    """The video's container is known, and each pose file's extension and packages (the ``formats``
    extra) are there.

    Raises:
        app.sinks.SinkError: naming the output and the problem (the extra to install).
    """
    if outputs.video is not None and outputs.video.suffix.lower() not in CODECS_BY_EXTENSION:
        raise SinkError(f"cannot write {outputs.video}: unknown video extension {outputs.video.suffix!r}; use one "
                        f"of {', '.join(CODECS_BY_EXTENSION)}")
    for sink, path in outputs.pose_files():
        sink.check(path)


def output_stems(videos: Sequence[Path]) -> list[str]:
    """A distinct output name stem per video of a folder run: the file's stem, or, where two videos
    share it (``a.mp4`` and ``a.avi``, or ``day1/IMG_1.MP4`` and ``day2/IMG_1.MP4``), its path below
    their common folder with ``__`` for the separators and the extension added."""
    stems = [v.stem for v in videos]
    clashing = {stem for stem in stems if stems.count(stem) > 1}
    if not clashing:
        return stems
    common = Path(os.path.commonpath([str(v.resolve().parent) for v in videos]))
    out = []
    for video, stem in zip(videos, stems):
        if stem not in clashing:
            out.append(stem)
            continue
        relative = video.resolve().relative_to(common)
        out.append("__".join([*relative.parent.parts, f"{relative.stem}_{relative.suffix.lstrip('.')}"]))
    return out


def process_source(spec: str, outputs: OutputPaths, models: Models, settings: TrackSettings = TrackSettings(),
                   progress: Callable[[TrackProgress], None] | None = None, lock_outputs: bool = True) -> TrackSummary:
    """Track one video file or image sequence into ``outputs``.

    ``progress`` is called after every frame of each pass (from this thread). With offline smoothing
    the result files are written once the tracking pass is done and the labeled video in a second
    reading of the source (the only output that needs the images again).

    Every processed frame reaches every output. When the run is interrupted (Ctrl-C, SIGTERM) or
    fails, what was processed is left in partial files (:func:`app.sinks.partial_path`): with offline
    smoothing, the result files of the frames tracked so far (smoothed), and the part of the labeled
    video already written; then the exception propagates.

    Before the first frame the outputs are checked (:func:`check_track_outputs`) and, with
    ``lock_outputs``, locked against other runs for the time they are written (a caller that holds
    the :class:`app.outputs.OutputLock` itself passes False). Partial files of an earlier run
    are removed once the outputs are complete.

    Raises:
        app.sources.SourceError: the source cannot be opened or read.
        app.sinks.SinkError: an output cannot be written (e.g. a full disk, or it is an input); nothing
            half-written is left under a final name.
        app.outputs.OutputBusyError: another run is writing one of ``outputs``.
    """
    check_track_outputs(spec, outputs)
    with OutputLock(outputs.requested() if lock_outputs else ()):
        summary = _process_source(spec, outputs, models, settings, progress)
        for path in outputs.requested():
            partial_path(path).unlink(missing_ok=True)
    return summary


def _process_source(spec: str, outputs: OutputPaths, models: Models, settings: TrackSettings,
                    progress: Callable[[TrackProgress], None] | None) -> TrackSummary:
    with tempfile.TemporaryDirectory(prefix="animalpose-") as tmp, open_source(spec, fps=settings.fps) as source:
        info = source.info
        pipeline = make_pipeline(models, settings, live=False, fps=info.fps)
        offline = pipeline.smoothing_mode is SmoothingMode.OFFLINE
        total = info.total_frames or None
        bar = tqdm(total=total, unit="frame", desc=Path(info.name).name, disable=not settings.progress_bar,
                   dynamic_ncols=True)

        def on_result(_frame, _result) -> None:
            _tick(bar, pipeline)
            if progress is not None:
                progress(TrackProgress(pipeline.times.frames, total))

        with bar, ExitStack() as stack:
            if offline:
                first = [stack.enter_context(JsonLinesSink(outputs.jsonl, None, info))] if outputs.jsonl else []
            else:
                first = final_sinks(stack, outputs, info, settings, Path(tmp), stream_jsonl=True)
            try:
                stats = run_frames(source, pipeline, first, on_result=on_result)
            except BaseException:
                if offline and pipeline.times.frames:
                    _write_partial_results(outputs, pipeline, info, settings, source.stats)
                raise
            for sink in first:
                if isinstance(sink, JsonLinesSink):
                    sink.set_metadata(**_stats_metadata(source.stats))
        source_stats = source.stats
    if source_stats.frames_skipped:
        logger.warning("%s: %d unreadable frames skipped (%s)", info.name, source_stats.frames_skipped,
                       source_stats.describe())
    if offline:
        results = pipeline.offline_results()
        write_results(outputs, results, info, settings, metadata=_stats_metadata(source_stats))
        if outputs.video is not None:
            _write_video(spec, outputs.video, results, settings, progress)
    if not source_stats.complete:
        logger.warning("%s ended early: %s", info.name, source_stats.describe())
    logger.info("%s: %.2f frames/s; %s", info.name, stats.fps, stats.times.summary())
    return TrackSummary(info.name, stats.frames, stats.fps, source_stats.complete, source_stats.frames_skipped)


def _stats_metadata(stats: SourceStats) -> dict:
    return {"frames_skipped": stats.frames_skipped}


def _write_partial_results(outputs: OutputPaths, pipeline: Pipeline, info: VideoInfo, settings: TrackSettings,
                           stats: SourceStats) -> None:
    """After an interrupted or failed tracking pass: the smoothed results of the frames tracked so far."""
    if not _data_outputs(outputs, partial=True).requested():
        return
    try:
        written = write_results(outputs, pipeline.offline_results(), info, settings, partial=True,
                                metadata=_stats_metadata(stats))
    except Exception as exc:  # the original error is what gets reported
        logger.error("could not write the partial results: %s", exc)
        return
    logger.warning("stopped after %d frames: partial results in %s", pipeline.times.frames,
                   ", ".join(map(str, written)))


def _write_video(spec: str, path: Path, results: Sequence[FrameResult], settings: TrackSettings,
                 progress: Callable[[TrackProgress], None] | None) -> None:
    """The second pass of OFFLINE mode: re-read the source and draw ``results`` into the labeled video."""
    with open_source(spec, fps=settings.fps) as again, ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=len(results), unit="frame", desc="writing video",
                                       disable=not settings.progress_bar, dynamic_ncols=True))
        sinks = final_sinks(stack, OutputPaths(video=path), again.info, settings, Path(), stream_jsonl=False,
                            data=False)
        written = write_offline(_counting(again, bar, len(results), progress), results, sinks)
    if written < len(results):
        logger.warning("%s: %d of the %d processed frames could not be read again and are not in the video",
                       path, len(results) - written, len(results))


@dataclass(frozen=True)
class FolderSummary:
    """A run over the videos of a folder or glob: each video's :class:`TrackSummary` (done), and the
    videos skipped as already done, skipped because another run is writing their outputs (busy), and
    failed (with the reason, one line each)."""

    done: tuple[TrackSummary, ...] = ()
    skipped: tuple[Path, ...] = ()
    busy: tuple[Path, ...] = ()
    failed: tuple[tuple[Path, str], ...] = ()


def folder_plan(videos: Sequence[Path], out_dir: Path, save: Iterable[str],
                video_suffix: str = ".mp4") -> list[tuple[Path, OutputPaths]]:
    """Each video of a folder run with its outputs in ``out_dir`` (distinct names: :func:`output_stems`)."""
    save = list(save)
    return [(video, outputs_in_folder(stem, Path(out_dir), save, video_suffix))
            for video, stem in zip(videos, output_stems(videos), strict=True)]


def check_folder_outputs(plan: Sequence[tuple[Path, OutputPaths]]) -> None:
    """Every output of a folder run against every video and every other output, and the folder's
    writability, before any work (see :func:`check_track_outputs`)."""
    check_outputs([video for video, _ in plan], [path for _, outputs in plan for path in outputs.requested()])
    if plan:
        check_track_outputs(plan[0][0], plan[0][1])


def process_videos(plan: Sequence[tuple[Path, OutputPaths]], models: Models, settings: TrackSettings = TrackSettings(),
                   overwrite: bool = False, progress: Callable[[TrackProgress], None] | None = None) -> FolderSummary:
    """Track every video of ``plan`` (:func:`folder_plan`) into its outputs. A video whose outputs all
    exist is skipped unless ``overwrite`` (an interrupted run resumes); one whose outputs another run is
    writing is skipped; a bad video is reported and the others go on.

    Raises:
        app.sinks.SinkError: the outputs clash with the videos or each other, or cannot be written.
    """
    check_folder_outputs(plan)
    done, skipped, busy, failed = [], [], [], []
    for n, (video, outputs) in enumerate(plan, 1):
        if outputs.done() and not overwrite:
            logger.info("[%d/%d] %s: already done, skipped (overwrite to redo)", n, len(plan), video)
            skipped.append(video)
            continue
        try:
            with OutputLock(outputs.requested()):
                if outputs.done() and not overwrite:  # finished by another run meanwhile
                    logger.info("[%d/%d] %s: done by another run, skipped", n, len(plan), video)
                    skipped.append(video)
                    continue
                logger.info("[%d/%d] %s", n, len(plan), video)
                done.append(process_source(str(video), outputs, models, settings, progress, lock_outputs=False))
        except OutputBusyError as exc:
            logger.warning("[%d/%d] %s: skipped, %s", n, len(plan), video, exc)
            busy.append(video)
        except (SourceError, SinkError) as exc:
            logger.error("[%d/%d] %s", n, len(plan), exc)
            failed.append((video, str(exc)))
    logger.info("%d videos: %d done, %d skipped as already done, %d being processed by another run, %d failed",
                len(plan), len(done), len(skipped), len(busy), len(failed))
    return FolderSummary(tuple(done), tuple(skipped), tuple(busy), tuple(failed))


def iter_results(source: str | Path | int | FrameSource, models: Models,
                 settings: TrackSettings = TrackSettings()) -> Iterator[FrameResult]:
    """The :class:`~pose.structures.FrameResult` of every frame of ``source`` (a spec as
    :func:`app.sources.open_source` takes, or an opened source such as an
    :class:`~app.sources.arrays.ArraySource`), as it is processed; with offline smoothing (the default
    for files) after the last frame. Stopping the iteration early closes the source."""
    if isinstance(source, (str, Path, int)):
        source = open_source(source, fps=settings.fps)
    with source:
        pipeline = make_pipeline(models, settings, live=source.info.is_live, fps=source.info.fps)
        offline = pipeline.smoothing_mode is SmoothingMode.OFFLINE
        for frame, detections in detected_frames(source, pipeline):
            result = pipeline.process(frame.image, frame.index, frame.timestamp_s, detections)
            if not offline:
                yield result
    if offline:
        yield from pipeline.offline_results()


def _counting(frames: Iterable, bar: tqdm, total: int, progress: Callable[[TrackProgress], None] | None) -> Iterator:
    for done, frame in enumerate(frames, 1):
        yield frame
        bar.update(1)
        if progress is not None:
            progress(TrackProgress(min(done, total), total, writing=True))


def _tick(bar: tqdm, pipeline: Pipeline) -> None:
    bar.update(1)
    times = pipeline.times
    if times.frames % 10 == 0:
        bar.set_postfix_str(f"{times.poses / max(times.frames, 1):.1f} animals/frame", refresh=False)
