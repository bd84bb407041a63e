"""Pipeline: detect -> track -> pose -> smooth on a synthetic clip with known identities."""

from __future__ import annotations

import numpy as np
import pytest

from app.pipeline import (
    Pipeline,
    PipelineSettings,
    PoseOrder,
    detected_frames,
    run_frames,
    write_offline,
)
from app.sources import VideoFileSource
from pose.structures import Poses
from tracking.appearance import HistogramSettings
from tracking.smoothing import KeypointStatus, SmoothingMode, SmoothingSettings
from tracking.tracker import Tracker, TrackerSettings
from train.e2e import GroundTruthDetector


def _tracker(mode: SmoothingMode = SmoothingMode.CAUSAL) -> Tracker:
    return Tracker(TrackerSettings(min_hits=1, smoothing=SmoothingSettings(mode=mode)))


def _run(clip, estimator, settings=PipelineSettings(), mode=SmoothingMode.CAUSAL):
    path, gt = clip
    detector = GroundTruthDetector(gt)
    pipeline = Pipeline(detector, estimator, _tracker(mode), settings)
    results = []
    with VideoFileSource(path) as source:
        for frame in source:
            detector.frame = frame.index
            results.append(pipeline.process(frame.image, frame.index, frame.timestamp_s))
    return pipeline, detector, results


def _identity_pairs(results, gt):
    """(gt id, track id) pairs matched by box centre, over all frames."""
    pairs = set()
    for result, frame in zip(results, gt["frames"]):
        for animal in frame["animals"]:
            x, y, w, h = animal["bbox"]
            centre = np.array([x + w / 2, y + h / 2])
            if len(result) == 0:
                continue
            centres = (result.boxes[:, :2] + result.boxes[:, 2:]) / 2
            nearest = int(np.argmin(np.linalg.norm(centres - centre, axis=1)))
            if np.linalg.norm(centres[nearest] - centre) < 0.25 * max(w, h):
                pairs.add((animal["track_id"], int(result.track_ids[nearest])))
    return pairs


@pytest.mark.parametrize("order", [PoseOrder.AFTER_TRACKING, PoseOrder.BEFORE_TRACKING])
def test_every_animal_keeps_one_identity(synthetic_clip, small_estimator, order):
    _, gt = synthetic_clip
    pipeline, detector, results = _run(synthetic_clip, small_estimator, PipelineSettings(pose_order=order))
    assert len(results) == len(gt["frames"]) == detector.calls
    assert [r.frame_index for r in results] == list(range(len(results)))
    pairs = _identity_pairs(results, gt)
    gt_ids = {a["track_id"] for f in gt["frames"] for a in f["animals"]}
    assert {g for g, _ in pairs} == gt_ids
    assert len(pairs) == len(gt_ids), f"an animal changed identity: {sorted(pairs)}"
    with_animals = [r for r in results if len(r)]
    assert with_animals and all(r.keypoints.shape[1:] == (17, 3) for r in with_animals)
    assert pipeline.times.poses == sum(len(r) for r in results)


def test_detector_every_k_frames_predicts_in_between(synthetic_clip, small_estimator):
    _, gt = synthetic_clip
    _, detector, results = _run(synthetic_clip, small_estimator, PipelineSettings(det_every=3))
    assert detector.calls == -(-len(gt["frames"]) // 3)
    present = [len(r) > 0 for r in results]
    assert sum(present) >= 0.8 * sum(len(f["animals"]) > 0 for f in gt["frames"])




def test_detector_schedule_counts_processed_frames_not_source_indices(synthetic_clip, small_estimator):
    # A live source drops the frames the pipeline cannot take: the indices it gets skip irregularly. The
    # detector still runs on every 2nd frame processed, whatever the indices' parity.
    _, gt = synthetic_clip
    detector = GroundTruthDetector(gt)
    pipeline = Pipeline(detector, small_estimator, _tracker(), PipelineSettings(det_every=2))
    indices = [0, 2, 4, 6, 7, 9, 11, 13, 15, 16, 18, 20]  # mostly even: by parity the detector would run on 7 of 12
    image = np.zeros((gt["height"], gt["width"], 3), np.uint8)
    ran = []
    for index in indices:
        detector.frame = index
        calls = detector.calls
        pipeline.process(image, index, index / 30.0)
        ran.append(detector.calls > calls)
    assert ran == [True, False] * (len(indices) // 2)
    assert [pipeline.wants_detections(n) for n in range(5)] == [True, False, True, False, True]
def test_offline_smoothing_covers_every_frame(synthetic_clip, small_estimator):
    pipeline, _, results = _run(synthetic_clip, small_estimator, mode=SmoothingMode.OFFLINE)
    smoothed = pipeline.offline_results()
    assert [r.frame_index for r in smoothed] == [r.frame_index for r in results]
    statuses = np.concatenate([r.keypoint_status.ravel() for r in smoothed])
    assert (statuses == KeypointStatus.SMOOTHED).any()
    assert not (statuses == KeypointStatus.OBSERVED).any()


def test_offline_results_need_offline_mode(synthetic_clip, small_estimator):
    pipeline, _, _ = _run(synthetic_clip, small_estimator)
    with pytest.raises(RuntimeError):
        pipeline.offline_results()


class _ListSink:
    def __init__(self):
        self.items = []

    def write(self, result, image=None):
        self.items.append((result.frame_index, None if image is None else image.shape))


class _FailingSink:
    def write(self, result, image=None):
        raise OSError("disk full")


def test_run_frames_feeds_sinks_in_order(synthetic_clip, small_estimator):
    path, gt = synthetic_clip
    detector = GroundTruthDetector(gt)
    pipeline = Pipeline(detector, small_estimator, _tracker())
    sink = _ListSink()

    class Frames:
        def __iter__(self):
            with VideoFileSource(path) as source:
                for frame in source:
                    detector.frame = frame.index
                    yield frame

    stats = run_frames(Frames(), pipeline, [sink])
    assert stats.frames == len(gt["frames"]) and stats.fps > 0
    assert [i for i, _ in sink.items] == list(range(len(gt["frames"])))
    assert sink.items[0][1] == (192, 320, 3)
    again = _ListSink()
    with VideoFileSource(path) as source:
        assert write_offline(source, [FrameResultLike(i) for i in (0, 5)], [again]) == 2
    assert [i for i, _ in again.items] == [0, 5]


def FrameResultLike(index):  # noqa: N802 - a tiny factory used as a value
    from pose.structures import FrameResult

    return FrameResult.empty(index, index / 12)


def test_sink_error_reaches_the_caller(synthetic_clip, small_estimator):
    path, gt = synthetic_clip
    pipeline = Pipeline(GroundTruthDetector(gt), small_estimator, _tracker())
    with VideoFileSource(path) as source, pytest.raises(OSError, match="disk full"):
        run_frames(source, pipeline, [_FailingSink()])


def test_settings_are_validated():
    with pytest.raises(ValueError):
        PipelineSettings(det_every=0)
    with pytest.raises(ValueError):
        PipelineSettings(pose_min_score=2.0)


def test_run_frames_reports_each_result_and_stops_when_asked(synthetic_clip, small_estimator):
    path, gt = synthetic_clip
    pipeline = Pipeline(GroundTruthDetector(gt, auto_advance=True), small_estimator, _tracker())
    seen, sink = [], _ListSink()
    with VideoFileSource(path) as source:
        stats = run_frames(source, pipeline, [sink], on_result=lambda frame, result: seen.append(
            (frame.index, result.frame_index)), stop=lambda: len(seen) >= 5)
    assert seen == [(i, i) for i in range(5)]
    assert stats.frames == 5 and [i for i, _ in sink.items] == list(range(5))


def test_an_interrupted_run_still_writes_every_processed_frame(synthetic_clip, small_estimator):
    path, gt = synthetic_clip
    pipeline = Pipeline(GroundTruthDetector(gt, auto_advance=True), small_estimator, _tracker())
    sink = _ListSink()

    def interrupt_at_third(frame, result):
        if frame.index == 2:
            raise KeyboardInterrupt

    with VideoFileSource(path) as source, pytest.raises(KeyboardInterrupt):
        run_frames(source, pipeline, [sink], on_result=interrupt_at_third)
    assert [i for i, _ in sink.items] == [0, 1, 2]


def _no_pose(image_bgr, boxes):
    """A pose model stand-in: keypoints at the box centres with confidence 0."""
    centres = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    keypoints = np.zeros((len(boxes), 17, 3), np.float32)
    keypoints[:, :, :2] = centres[:, None]
    return Poses(keypoints, boxes)


@pytest.mark.parametrize("order", [PoseOrder.AFTER_TRACKING, PoseOrder.BEFORE_TRACKING])
def test_appearance_features_reach_the_tracker(synthetic_clip, order):
    path, gt = synthetic_clip
    detector = GroundTruthDetector(gt)
    tracker = Tracker(TrackerSettings(min_hits=1, appearance_weight=0.5))
    seen = []
    update = tracker.update

    sizes = []

    def spy(detections, poses=None, features=None, image_size=None):
        seen.append((len(detections), None if features is None else (features.whole.shape, features.own.shape)))
        sizes.append(image_size)
        return update(detections, poses, features, image_size)

    tracker.update = spy
    pipeline = Pipeline(detector, _no_pose, tracker, PipelineSettings(pose_order=order))
    results = []
    with VideoFileSource(path) as source:
        for frame in source:
            detector.frame = frame.index
            results.append(pipeline.process(frame.image, frame.index, frame.timestamp_s))
    assert len(seen) == len(gt["frames"])
    assert all(shapes == ((n, HistogramSettings().size),) * 2 for n, shapes in seen)
    assert set(sizes) == {(gt["width"], gt["height"])}  # the tracker clips the boxes it reports to the frame
    assert any(track.appearance is not None for track in tracker._tracks)
    gt_ids = {a["track_id"] for f in gt["frames"] for a in f["animals"]}
    assert len(_identity_pairs(results, gt)) == len(gt_ids)


def test_no_features_without_appearance(synthetic_clip):
    path, gt = synthetic_clip
    tracker = Tracker(TrackerSettings(min_hits=1, appearance_weight=0.0))
    calls = []
    update = tracker.update
    tracker.update = lambda d, p=None, f=None, size=None: calls.append(f) or update(d, p, f, size)
    pipeline = Pipeline(GroundTruthDetector(gt), _no_pose, tracker)
    with VideoFileSource(path) as source:
        frame = next(iter(source))
        pipeline.process(frame.image, frame.index, frame.timestamp_s)
    assert calls == [None]


def test_latency_histogram_percentiles_in_constant_memory():
    from app.pipeline import LatencyHistogram

    histogram = LatencyHistogram(max_ms=1000)
    assert np.isnan(histogram.percentile(50))
    samples = np.arange(1, 101) / 1000.0  # 1..100 ms
    for seconds in samples:
        histogram.add(seconds)
    histogram.add(5.0)  # longer than max_ms: counted in the last bin
    assert histogram.count == 101
    assert histogram.percentile(50) == pytest.approx(0.052, abs=0.0011)
    assert histogram.percentile(95) == pytest.approx(0.097, abs=0.0011)
    assert histogram.percentile(100) == pytest.approx(1.001)
    with pytest.raises(ValueError):
        histogram.percentile(101)


@pytest.mark.parametrize("mode, kept", [(SmoothingMode.OFFLINE, 5), (SmoothingMode.CAUSAL, 0), (SmoothingMode.NONE, 0)])
def test_only_offline_smoothing_keeps_per_frame_records(mode, kept):
    """A live stream must not grow a list per frame."""
    from pose.structures import Detections, Poses
    from tracking.smoothing import SmoothingSettings
    from tracking.tracker import Tracker, TrackerSettings

    def detector(image):
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    def pose_model(image, boxes):
        return Poses(np.zeros((len(boxes), 17, 3), np.float32), np.asarray(boxes, np.float32).reshape(-1, 4))

    tracker = Tracker(TrackerSettings(smoothing=SmoothingSettings(mode=mode)))
    pipeline = Pipeline(detector, pose_model, tracker)
    for n in range(5):
        pipeline.process(np.zeros((8, 8, 3), np.uint8), n, n / 10)
    assert pipeline._frames.size == kept


# --------------------------------------------------------------------------------------------------
# The detector running ahead in a thread of its own


class _Clock:
    """Records (event, frame) in the order they happen, from any thread."""

    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.events: list[tuple[str, int]] = []

    def log(self, event: str, frame: int) -> None:
        with self.lock:
            self.events.append((event, frame))


def _ahead_pipeline(gt, small_estimator, clock: _Clock | None = None, ahead: int = 2, det_every: int = 1,
                    fail_at: int | None = None):
    import time as _time

    detector = GroundTruthDetector(gt, auto_advance=False)

    def slow_detector(image):
        frame = frame_number_of(image)
        if clock is not None:
            clock.log("detect-start", frame)
        if fail_at is not None and frame == fail_at:
            raise RuntimeError(f"detector broke at frame {frame}")
        _time.sleep(0.01)
        detector.frame = frame
        return detector(image)

    def pose_model(image, boxes):
        poses = small_estimator(image, boxes)
        if clock is not None:
            clock.log("pose-end", frame_number_of(image))
        return poses

    tracker = Tracker(TrackerSettings(smoothing=SmoothingSettings(mode=SmoothingMode.CAUSAL)))
    return Pipeline(slow_detector, pose_model, tracker, PipelineSettings(det_every=det_every, detect_ahead=ahead))


def frame_number_of(image: np.ndarray) -> int:
    """The frame number the tests write into the first pixel row (see ``_numbered_frames``)."""
    return int(image[0, 0, 0]) + 256 * int(image[0, 0, 1])


def _numbered_frames(clip, count: int | None = None):
    from app.sources import VideoFileSource

    with VideoFileSource(clip) as source:
        frames = list(source)
    for frame in frames:
        frame.image[0, 0, :2] = (frame.index % 256, frame.index // 256)
    return frames[:count] if count else frames


@pytest.mark.parametrize("det_every", [1, 3])
def test_detecting_ahead_gives_the_results_of_detecting_in_line(synthetic_clip, small_estimator, det_every):
    clip, gt = synthetic_clip
    frames = _numbered_frames(clip)
    results = {}
    for ahead in (0, 2):
        pipeline = _ahead_pipeline(gt, small_estimator, ahead=ahead, det_every=det_every)
        results[ahead] = [pipeline.process(f.image, f.index, f.timestamp_s, d)
                          for f, d in detected_frames(frames, pipeline)]
        assert pipeline.times.detector_runs == len(range(0, len(frames), det_every))
    for a, b in zip(results[0], results[2], strict=True):
        assert a.frame_index == b.frame_index and np.array_equal(a.track_ids, b.track_ids)
        np.testing.assert_array_equal(a.keypoints, b.keypoints)


def test_the_detector_of_the_next_frame_runs_while_this_frame_is_posed(synthetic_clip, small_estimator):
    clip, gt = synthetic_clip
    clock = _Clock()
    pipeline = _ahead_pipeline(gt, small_estimator, clock)
    stats = run_frames(_numbered_frames(clip, 12), pipeline, [],
                       on_result=lambda frame, result: clock.log("result", frame.index))
    assert stats.frames == 12
    order = clock.events
    overlapped = [t for t in range(11) if order.index(("detect-start", t + 1)) < order.index(("result", t))]
    assert len(overlapped) >= 5, f"the detector ran ahead on frames {overlapped} only"


def test_a_detector_failure_ahead_is_raised_at_its_frame(synthetic_clip, small_estimator):
    clip, gt = synthetic_clip
    sink = _ResultSink()
    pipeline = _ahead_pipeline(gt, small_estimator, fail_at=5)
    with pytest.raises(RuntimeError, match="detector broke at frame 5"):
        run_frames(_numbered_frames(clip, 10), pipeline, [sink])
    assert [r.frame_index for r in sink.results] == [0, 1, 2, 3, 4]


def test_stopping_a_run_stops_the_detector_thread(synthetic_clip, small_estimator):
    import threading

    clip, gt = synthetic_clip
    sink = _ResultSink()
    pipeline = _ahead_pipeline(gt, small_estimator)

    def interrupt(frame, result):
        if frame.index == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_frames(_numbered_frames(clip, 20), pipeline, [sink], on_result=interrupt)
    assert [r.frame_index for r in sink.results] == [0, 1, 2, 3]
    assert not [t for t in threading.enumerate() if t.name == "animalpose-detect"]


class _ResultSink:
    def __init__(self) -> None:
        self.results = []

    def write(self, result, image=None) -> None:
        self.results.append(result)

    def close(self) -> None: ...

    def abort(self) -> None: ...


def test_detect_ahead_is_validated():
    with pytest.raises(ValueError, match="detect_ahead must be an integer >= 0"):
        PipelineSettings(detect_ahead=-1)
