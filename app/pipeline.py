"""Wiring of the stages: source -> detect -> track -> pose -> smooth -> sinks.

:class:`Pipeline` turns one frame into a :class:`~pose.structures.FrameResult`. :func:`run_frames`
drives a whole source (file, image sequence or live stream) through it with decoding (the source's
reader thread), inference (the calling thread) and drawing/encoding/writing (a writer thread)
overlapping, and, where the networks run on a GPU, detection of the next frames in a thread of its own
(:class:`DetectAhead`); in OFFLINE smoothing mode :func:`write_offline` writes the RTS-smoothed results of a
second reading of the source.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.sinks import Sink
from pose.structures import Detections, FrameResult, Poses
from tracking.appearance import BoxColours, box_colours
from tracking.smoothing import Rows, SmoothingMode
from tracking.tracker import Track, Tracker, smooth_tracks_offline

logger = logging.getLogger(__name__)


def _image_size(image_bgr: np.ndarray) -> tuple[int, int]:
    """(width, height) of a frame."""
    return int(image_bgr.shape[1]), int(image_bgr.shape[0])


class PoseOrder(enum.Enum):
    """When the pose model runs relative to the tracker.

    AFTER_TRACKING: only the animals the tracker reports get a pose (cheapest; the issue's order).
    BEFORE_TRACKING: every confident detection gets a pose first, so that association can use
    keypoint similarity (OKS) besides box overlap (more robust when animals cross; costs a pose
    per false or tentative detection).
    """

    AFTER_TRACKING = "after"
    BEFORE_TRACKING = "before"


@dataclass(frozen=True)
class PipelineSettings:
    """How frames flow through the stages.

    Attributes:
        det_every: run the detector on every k-th frame the pipeline processes (of a live source: of the
            frames it takes, not of those the camera sent); in between, tracks move on their Kalman prediction
            and the pose model runs on the predicted boxes.
        pose_order: see :class:`PoseOrder`.
        pose_min_score: with BEFORE_TRACKING, detections below this score get no pose.
        detect_ahead: frames the detector may run ahead of the rest, in a thread of its own
            (:class:`DetectAhead`), so that detecting frame t+1 overlaps tracking and estimating the
            poses of frame t; 0: the detector runs in line. Worth it where the networks run on a GPU;
            on a CPU the two networks would share its cores (:func:`app.runs.make_pipeline` decides).
    """

    det_every: int = 1
    pose_order: PoseOrder = PoseOrder.AFTER_TRACKING
    pose_min_score: float = 0.1
    detect_ahead: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.det_every, int) or self.det_every < 1:
            raise ValueError(f"det_every must be an integer >= 1, got {self.det_every!r}")
        if not isinstance(self.detect_ahead, int) or self.detect_ahead < 0:
            raise ValueError(f"detect_ahead must be an integer >= 0, got {self.detect_ahead!r}")
        if not isinstance(self.pose_order, PoseOrder):
            raise ValueError(f"pose_order must be a PoseOrder, got {self.pose_order!r}")
        if not 0.0 <= self.pose_min_score <= 1.0:
            raise ValueError(f"pose_min_score must be in [0, 1], got {self.pose_min_score}")


Detector = Callable[[np.ndarray], Detections]
PoseModel = Callable[[np.ndarray, np.ndarray], Poses]


def tracks_to_result(frame_index: int, timestamp_s: float, tracks: Sequence[Track], num_keypoints: int) -> FrameResult:
    """Pack track snapshots into a :class:`FrameResult` (tracks in ID order)."""
    tracks = sorted(tracks, key=lambda t: t.track_id)
    if not tracks:
        return FrameResult.empty(frame_index, timestamp_s, num_keypoints)
    return FrameResult(
        frame_index=frame_index,
        timestamp_s=timestamp_s,
        track_ids=np.array([t.track_id for t in tracks], np.int64),
        boxes=np.stack([t.box for t in tracks]),
        box_scores=np.array([t.score for t in tracks], np.float32),
        keypoints=np.stack([t.keypoints for t in tracks]),
        keypoint_status=np.stack([t.keypoint_status for t in tracks]).astype(np.uint8),
    )


@dataclass
class StageTimes:
    """Seconds spent in each stage, summed over frames (for progress reports and benchmarks)."""

    detect: float = 0.0
    pose: float = 0.0
    track: float = 0.0
    frames: int = 0
    detector_runs: int = 0
    poses: int = 0

    def summary(self) -> str:
        n = max(self.frames, 1)
        return (
            f"{self.frames} frames: detect {1e3 * self.detect / max(self.detector_runs, 1):.1f} ms/run, "
            f"pose {1e3 * self.pose / n:.1f} ms/frame ({self.poses} poses), track {1e3 * self.track / n:.2f} ms/frame"
        )


class Pipeline:
    """One frame in, one :class:`FrameResult` out. Holds the tracker state of one video or stream.

    Args:
        detector: ``detector(image_bgr) -> Detections``.
        pose_model: ``pose_model(image_bgr, boxes_xyxy) -> Poses`` (a :class:`~pose.estimator.PoseEstimator`).
        tracker: a fresh :class:`~tracking.tracker.Tracker` (its smoothing settings decide the mode).
        settings: :class:`PipelineSettings`.
        num_keypoints: keypoints per animal.
    """

    def __init__(
        self,
        detector: Detector,
        pose_model: PoseModel,
        tracker: Tracker,
        settings: PipelineSettings = PipelineSettings(),
        num_keypoints: int = 17,
    ) -> None:
        self.detector = detector
        self.pose_model = pose_model
        self.tracker = tracker
        self.settings = settings
        self.num_keypoints = num_keypoints
        self.times = StageTimes()
        # (frame index, timestamp) of each frame, OFFLINE mode only: 16 bytes a frame
        self._frames = Rows((2,), np.float64)

    @property
    def smoothing_mode(self) -> SmoothingMode:
        return self.tracker.settings.smoothing.mode

    def wants_detections(self, position: int) -> bool:
        """Whether the detector runs on the frame processed after ``position`` others (0: the first, which it
        always runs on): every ``det_every``-th processed frame. Counting processed frames, not the source's
        frame indices, keeps the schedule where a live source drops frames (the indices the pipeline gets
        then skip by one, two or three, and their parity says nothing)."""
        return position % self.settings.det_every == 0

    def detect(self, image_bgr: np.ndarray) -> Detections:
        """The detector on one frame, timed."""
        t0 = time.perf_counter()
        detections = self.detector(image_bgr)
        self.times.detect += time.perf_counter() - t0
        self.times.detector_runs += 1
        return detections

    def process(self, image_bgr: np.ndarray, frame_index: int, timestamp_s: float,
                detections: Detections | None = None) -> FrameResult:
        """Detect (or predict), track and estimate poses for one BGR frame; ``detections``: the detector's
        output on this frame when it was run already (:class:`DetectAhead`)."""
        run_detector = self.wants_detections(self.tracker.frame_index + 1)  # the tracker advances once a frame
        if run_detector:
            if detections is None:
                detections = self.detect(image_bgr)
            if self.settings.pose_order is PoseOrder.BEFORE_TRACKING:
                tracks = self._pose_then_track(image_bgr, detections)
            else:
                tracks = self._track_then_pose(image_bgr, detections)
        else:
            t1 = time.perf_counter()
            tracks = self.tracker.predict_only()
            self.times.track += time.perf_counter() - t1
            tracks = self._pose_on_tracks(image_bgr, tracks, [t.box for t in tracks])
        self.times.frames += 1
        if self.smoothing_mode is SmoothingMode.OFFLINE:  # only the smoother needs them (a stream would grow)
            self._frames.append((frame_index, timestamp_s))  # float64 holds every frame index exactly
        return tracks_to_result(frame_index, timestamp_s, tracks, self.num_keypoints)

    def _estimate(self, image_bgr: np.ndarray, boxes: np.ndarray) -> Poses:
        t = time.perf_counter()
        poses = self.pose_model(image_bgr, boxes)
        self.times.pose += time.perf_counter() - t
        self.times.poses += len(poses)
        return poses

    def _pose_then_track(self, image_bgr: np.ndarray, detections: Detections) -> list[Track]:
        keep = np.flatnonzero(detections.scores >= self.settings.pose_min_score)
        detections = detections[keep]
        poses = self._estimate(image_bgr, detections.xyxy)
        t = time.perf_counter()
        tracks = self.tracker.update(detections, poses, self._features(image_bgr, detections),
                                     _image_size(image_bgr))
        self.times.track += time.perf_counter() - t
        return tracks

    def _track_then_pose(self, image_bgr: np.ndarray, detections: Detections) -> list[Track]:
        t = time.perf_counter()
        tracks = self.tracker.update(detections, None, self._features(image_bgr, detections),
                                     _image_size(image_bgr))
        self.times.track += time.perf_counter() - t
        # The detector's own box frames the animal better than the filtered box.
        boxes = [detections.xyxy[tr.detection_index] if tr.detection_index >= 0 else tr.box for tr in tracks]
        return self._pose_on_tracks(image_bgr, tracks, boxes)

    def _features(self, image_bgr: np.ndarray, detections: Detections) -> BoxColours | None:
        """Colour histograms of the detections (whole and own), when the tracker uses appearance (timed as
        tracking)."""
        if self.tracker.settings.appearance_weight == 0:
            return None
        return box_colours(image_bgr, detections.xyxy)

    def _pose_on_tracks(self, image_bgr: np.ndarray, tracks: list[Track], boxes: Sequence[np.ndarray]) -> list[Track]:
        if not tracks:
            return tracks
        poses = self._estimate(image_bgr, np.stack(boxes).astype(np.float32))
        t = time.perf_counter()
        tracks = self.tracker.attach_poses([tr.track_id for tr in tracks], poses)
        self.times.track += time.perf_counter() - t
        return tracks

    def offline_results(self) -> list[FrameResult]:
        """RTS-smoothed results of every frame processed so far, with the frame indices and times they
        were processed with (a source may skip indices, e.g. an unreadable image), OFFLINE mode only."""
        if self.smoothing_mode is not SmoothingMode.OFFLINE:
            raise RuntimeError("offline results need SmoothingMode.OFFLINE")
        per_frame = smooth_tracks_offline(self.tracker.history())
        # A frame interrupted after the tracker's update (Ctrl-C) is recorded there but was never returned.
        processed = self._frames.array
        if not len(processed) <= len(per_frame) <= len(processed) + 1:
            raise RuntimeError(f"the tracker recorded {len(per_frame)} frames but {len(processed)} were processed")
        return [
            tracks_to_result(int(index), float(timestamp), tracks, self.num_keypoints)
            for (index, timestamp), tracks in zip(processed, per_frame)
        ]


class LatencyHistogram:
    """Latencies of a stream of any length in constant memory: counts in 1 ms bins up to ``max_ms``
    (longer ones in the last bin), so the percentiles are exact to the millisecond."""

    def __init__(self, max_ms: int = 60_000) -> None:
        if max_ms < 1:
            raise ValueError(f"max_ms must be at least 1, got {max_ms}")
        self._counts = np.zeros(max_ms + 1, np.int64)
        self.count = 0

    def add(self, seconds: float) -> None:
        """Count one latency of ``seconds``."""
        self._counts[min(max(int(seconds * 1000.0), 0), len(self._counts) - 1)] += 1
        self.count += 1

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) in seconds: the upper edge of the bin that holds it; NaN when empty."""
        if not 0 <= q <= 100:
            raise ValueError(f"q must be in [0, 100], got {q}")
        if self.count == 0:
            return float("nan")
        rank = max(1, int(np.ceil(q / 100.0 * self.count)))
        return (int(np.searchsorted(np.cumsum(self._counts), rank)) + 1) / 1000.0


@dataclass
class RunStats:
    """What happened in one run: frames processed and time spent."""

    frames: int = 0
    wall_s: float = 0.0
    times: StageTimes = field(default_factory=StageTimes)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


class _Writer:
    """A thread that hands (result, image) pairs to the sinks, so drawing and encoding overlap inference."""

    _STOP = object()

    def __init__(self, sinks: Sequence[Sink], max_queue: int = 8) -> None:
        self.sinks = list(sinks)
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="animalpose-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is self._STOP:
                return
            if self.error is not None:
                continue  # drain so the producer never blocks
            result, image = item
            try:
                for sink in self.sinks:
                    sink.write(result, image)
            except BaseException as exc:  # reported to the producer on its next put
                self.error = exc

    def put(self, result: FrameResult, image: np.ndarray | None) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((result, image))

    def finish(self) -> None:
        self.queue.put(self._STOP)
        self.thread.join()
        if self.error is not None:
            raise self.error


_DONE = object()


class DetectAhead:
    """The frames of ``frames`` with the detector's output on those it runs on, computed in a thread of
    its own up to ``depth`` frames ahead of the consumer: an iterator of ``(frame, detections or None)``
    in the order of ``frames``, nothing skipped or repeated.

    An exception of the detector or of ``frames`` is raised by the iteration at the frame where it
    happened (the earlier frames were all given out). Closing the iterator (or leaving a ``for``
    loop early, or an exception in the consumer) stops the thread, which closes ``frames``.
    """

    def __init__(self, frames: Iterable, pipeline: Pipeline, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._frames = frames
        self._pipeline = pipeline
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="animalpose-detect", daemon=True)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        iterator = iter(self._frames)
        try:
            for n, frame in enumerate(iterator):
                wanted = self._pipeline.wants_detections(n)  # the pipeline processes every frame given out
                detections = self._pipeline.detect(frame.image) if wanted else None
                if not self._put((frame, detections)):
                    return
            self._put(_DONE)
        except BaseException as exc:  # raised in the consumer, at this frame
            self._put(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[tuple[Any, Detections | None]]:
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (it finishes the frame it is detecting) and wait for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)


def detected_frames(frames: Iterable, pipeline: Pipeline) -> Iterator[tuple[Any, Detections | None]]:
    """``(frame, detections)`` pairs for :meth:`Pipeline.process`: from a :class:`DetectAhead` thread when
    the pipeline's settings ask for one, else ``(frame, None)`` (the pipeline detects in line)."""
    if pipeline.settings.detect_ahead > 0:
        return iter(DetectAhead(frames, pipeline, pipeline.settings.detect_ahead))
    return ((frame, None) for frame in frames)


def run_frames(
    frames: Iterable,
    pipeline: Pipeline,
    sinks: Sequence[Sink],
    on_result: Callable[[Any, FrameResult], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> RunStats:
    """Process the frames of ``frames`` (objects with ``index``, ``timestamp_s`` and ``image``: a file,
    an image sequence or a live source) and write the results to ``sinks`` from a writer thread.

    ``on_result(frame, result)`` is called in this thread once each result is queued for the sinks
    (progress bars, latency, a preview window); the run ends after the frame for which ``stop()``
    returns True, or when ``frames`` ends. The sinks have every queued result when this returns or
    raises (KeyboardInterrupt included). Returns the run's statistics.
    """
    stats = RunStats()
    writer = _Writer(sinks)
    start = time.perf_counter()
    pairs = detected_frames(frames, pipeline)
    try:
        for frame, detections in pairs:
            result = pipeline.process(frame.image, frame.index, frame.timestamp_s, detections)
            writer.put(result, frame.image)
            stats.frames += 1
            if on_result is not None:
                on_result(frame, result)
            if stop is not None and stop():
                break
    finally:
        close = getattr(pairs, "close", None)
        if close is not None:
            close()  # stops a detector thread that is ahead
        writer.finish()
        stats.wall_s = time.perf_counter() - start
        stats.times = pipeline.times
    return stats


def write_offline(
    frames: Iterable, results: Sequence[FrameResult], sinks: Sequence[Sink]
) -> int:
    """Second pass of OFFLINE mode: pair the re-read frames with the smoothed results and write them."""
    by_index = {result.frame_index: result for result in results}
    writer = _Writer(sinks)
    count = 0
    try:
        for frame in frames:
            result = by_index.get(frame.index)
            if result is None:
                continue
            writer.put(result, frame.image)
            count += 1
    finally:
        writer.finish()
    return count
