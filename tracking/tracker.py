"""Identity tracking of animals: ``Tracker.update(detections, poses) -> list[Track]``.

Each frame, every track's box (centre and size, Kalman filters) and keypoints
(see :mod:`tracking.smoothing`) are predicted, then detections are assigned in stages, after
ByteTrack:

1. confirmed and lost tracks vs confident detections, by a cost mixing box IoU and keypoint
   similarity (OKS with the AP-10K sigmas);
2. those still unmatched vs low-score detections, by IoU alone;
3. those still unmatched vs the confident detections left, by a Mahalanobis distance of the box
   centre (to the path from where the track was last seen to where it is predicted) under the
   track's own growing uncertainty: this re-links an animal hidden for up to ``max_lost_frames``
   frames, or one that turned or stopped, even when its predicted box no longer overlaps;
4. tentative tracks vs the confident detections left, by the cost of stage 1.

With ``appearance_weight`` > 0 and appearance features given with the detections (colour
histograms, :mod:`tracking.appearance`), stages 1, 3 and 4 blend into their cost the distance between
a detection's features and the track's running average of them, and a lost track (stages 1 and 3)
refuses a detection whose appearance distance is over ``relink_max_appearance``: an animal that comes
back after it was hidden or out of the frame gets its own identity back rather than the nearest lost
one. Any track also refuses, in stages 1 and 4, a detection over ``match_max_appearance`` that
overlaps no other detection: after a crossing, the animal that was hidden does not take over the
track of the one in front. In stages 1 and 4 a track also refuses such a box when another track's
colours are nearer to it by more than ``appearance_margin`` (the box is clearly that animal's: a
hidden or lost track may then take it, or it waits for the re-link stage, where every track left
competes by position and colours). A track's average is updated only from detections that overlap
no other detection (at a crossing a box holds both animals) and lie within ``appearance_update_max``
of it (a track that took another animal's box for a while does not take its colours), and only
boxes that overlap no other are judged by their colours.

Confident detections left over start tentative tracks, confirmed after ``min_hits`` consecutive
matches. Association ignores the detector's class (a dog called a cat for one frame keeps its
track); a track keeps the class of its first detection. Every tracker owns its ID counter; IDs
start at 1.

Poses may come with the detections (``update(detections, poses)``) or after tracking, when the pose
model runs on the tracks' boxes: then call ``attach_poses(track_ids, poses)`` in the same frame.
For a detector run every k frames, call ``predict_only()`` on the frames in between: the tracks
move on their Kalman prediction and are reported without counting a miss.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from pose.keypoints import NUM_KEYPOINTS, SIGMAS
from pose.structures import Detections, Poses
from tracking.appearance import appearance_distance
from tracking.matching import (
    box_iou,
    fuse_similarities,
    keypoint_similarity,
    linear_assignment,
)
from tracking.smoothing import (
    FilterHistory,
    KeypointHistory,
    KeypointSmoother,
    PointFilter,
    SmoothingMode,
    SmoothingSettings,
    raw_output,
    rts_smooth,
    smooth_keypoints_offline,
)

logger = logging.getLogger(__name__)

#: 99th percentile of a chi-square with 2 degrees of freedom: the re-link gate on the centre.
_CHI2_2DOF_99 = 9.21


class TrackState(Enum):
    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    LOST = "lost"


@dataclass(frozen=True)
class TrackerSettings:
    """Association and life-cycle settings. Scores are detector confidences; costs are ``1 - similarity``.

    Attributes:
        high_score: detections at or above it take part in every stage.
        low_score: detections below it are dropped; those in between only extend existing tracks.
        new_track_score: the lowest score that starts a track.
        max_cost: highest IoU/OKS cost of a match in stages 1 and 4.
        low_max_cost: highest IoU cost of a match with a low-score detection (stage 2).
        oks_weight: weight of keypoint similarity against box IoU (0: boxes only).
        keypoint_threshold: keypoints at or above it count in the OKS.
        min_hits: consecutive matches that confirm a tentative track.
        max_lost_frames: frames a lost track waits to be re-linked before it is removed.
        report_lost_frames: a lost track is still reported, on its predicted box and with state LOST,
            for this many frames after its last match (a missed detection then costs no pose).
        relink_gate: squared Mahalanobis distance (2 dof) within which a lost track may be re-linked.
        relink_noise: std of the box centre added to the track's own uncertainty when re-linking,
            fraction of the box scale (boxes cut by the frame edge or by an occluder move their centre).
        box_measurement_noise: std of a detected box's centre and size, as a fraction of its scale.
        box_process_noise: std of the box centre's random acceleration per frame, fraction of scale.
        box_size_noise: std of the box size's random change rate per frame, fraction of scale.
        box_size_damping: per-frame decay of the box size's rate of change: a box that shrinks while
            the animal turns is not extrapolated to nothing.
        appearance_weight: weight of the appearance distance in the association costs (0: not used,
            and no features are needed).
        relink_max_appearance: highest appearance distance at which a lost track takes a detection.
        match_max_appearance: highest appearance distance at which any track takes a detection that
            overlaps no other detection in stages 1 and 4 (a box that holds two animals is not judged by
            its colours).
        appearance_momentum: weight of a new detection's features in a track's running average.
        appearance_margin: in stages 1 and 4 a track refuses a detection that overlaps no other detection
            when some track's appearance distance to it is lower than this track's by more than this
            (1: never).
        appearance_update_max: a detection updates a track's running average only within this
            appearance distance of it (1: always).
        record_history: keep every track's forward pass for :func:`smooth_tracks_offline`
            (always on when ``smoothing.mode`` is OFFLINE).
        smoothing: keypoint smoothing settings.
    """

    high_score: float = 0.5
    low_score: float = 0.1
    new_track_score: float = 0.6
    max_cost: float = 0.8
    low_max_cost: float = 0.5
    oks_weight: float = 0.5
    keypoint_threshold: float = 0.3
    min_hits: int = 2
    max_lost_frames: int = 30
    report_lost_frames: int = 2
    relink_gate: float = _CHI2_2DOF_99
    relink_noise: float = 0.15
    box_measurement_noise: float = 0.05
    box_process_noise: float = 0.01
    box_size_noise: float = 0.01
    box_size_damping: float = 0.6
    appearance_weight: float = 0.0
    relink_max_appearance: float = 0.5
    match_max_appearance: float = 0.4
    appearance_momentum: float = 0.1
    appearance_margin: float = 0.1
    appearance_update_max: float = 0.3
    record_history: bool = False
    smoothing: SmoothingSettings = field(default_factory=SmoothingSettings)

    def __post_init__(self) -> None:
        for name in ("high_score", "low_score", "new_track_score", "max_cost", "low_max_cost", "oks_weight",
                     "keypoint_threshold", "appearance_weight", "relink_max_appearance", "match_max_appearance",
                     "appearance_momentum", "appearance_margin", "appearance_update_max"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.low_score > self.high_score:
            raise ValueError(f"low_score must be <= high_score, got {self.low_score} > {self.high_score}")
        if self.min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {self.min_hits}")
        if self.max_lost_frames < 0:
            raise ValueError(f"max_lost_frames must be >= 0, got {self.max_lost_frames}")
        if self.report_lost_frames < 0:
            raise ValueError(f"report_lost_frames must be >= 0, got {self.report_lost_frames}")
        for name in ("relink_gate", "relink_noise", "box_measurement_noise", "box_process_noise", "box_size_noise"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if not 0.0 <= self.box_size_damping <= 1.0:
            raise ValueError(f"box_size_damping must be in [0, 1], got {self.box_size_damping}")
        if not isinstance(self.smoothing, SmoothingSettings):
            raise ValueError(f"smoothing must be a SmoothingSettings, got {self.smoothing!r}")

    @property
    def records(self) -> bool:
        return self.record_history or self.smoothing.mode is SmoothingMode.OFFLINE


@dataclass(frozen=True)
class Track:
    """One track in one frame.

    Attributes:
        track_id: identity, >= 1, unique within its tracker.
        state: TENTATIVE, CONFIRMED or LOST.
        box: (4,) float32 ``xyxy`` box in pixels (filtered, or predicted when not matched).
        score: detector confidence of the last matched detection.
        class_id: detector class of the first detection.
        keypoints: (K, 3) float32 x, y, confidence; NaN coordinates and confidence 0 where MISSING.
        keypoint_status: (K,) int8 :class:`~tracking.smoothing.KeypointStatus` codes.
        age: frames since the track started (0 in its first frame).
        hits: frames in which the track was matched to a detection.
        frames_since_update: detector frames since the last match (0 when matched in this frame;
            frames of :meth:`Tracker.predict_only` do not count).
        detection_index: index into this frame's detections, -1 when not matched.
        frame_index: the tracker's frame counter (0 for the first frame it saw).
    """

    track_id: int
    state: TrackState
    box: np.ndarray
    score: float
    class_id: int
    keypoints: np.ndarray
    keypoint_status: np.ndarray
    age: int
    hits: int
    frames_since_update: int
    detection_index: int
    frame_index: int


@dataclass(frozen=True)
class TrackRecord:
    """The recorded life of one track, for offline smoothing.

    Attributes:
        track_id, class_id: as in :class:`Track`.
        first_frame: frame index of the track's first frame; arrays below run over its frames.
        box: forward pass of the box filter (points: centre and size).
        keypoints: forward pass of the keypoint filter, None if the track never had a pose.
        detection_index: (T,) matched detection per frame, -1 if none.
        scores: (T,) score of the last matched detection.
        reported: (T,) bool, frames in which the live tracker reported the track, plus the matched
            frames before its confirmation when it was confirmed later.
        states: (T,) state per frame.
    """

    track_id: int
    class_id: int
    first_frame: int
    box: FilterHistory
    keypoints: KeypointHistory | None
    detection_index: np.ndarray
    scores: np.ndarray
    reported: np.ndarray
    states: tuple[TrackState, ...]


@dataclass(frozen=True)
class TrackHistory:
    """Everything a tracker recorded: ``num_frames`` frames and one record per track, live or ended."""

    num_frames: int
    records: tuple[TrackRecord, ...]
    settings: TrackerSettings


def _xyxy_to_points(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N, 2, 2) rows of (centre, size)."""
    centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    size = boxes[:, 2:] - boxes[:, :2]
    return np.stack([centre, size], axis=1)


def _points_to_xyxy(points: np.ndarray) -> np.ndarray:
    """(..., 2, 2) (centre, size) -> (..., 4) xyxy, with sizes floored at 1 pixel."""
    centre, size = points[..., 0, :], np.maximum(points[..., 1, :], 1.0)
    return np.concatenate([centre - 0.5 * size, centre + 0.5 * size], axis=-1)


def _scale(box: np.ndarray) -> float:
    w, h = box[2] - box[0], box[3] - box[1]
    return float(np.sqrt(max(w, 1.0) * max(h, 1.0)))


class _LiveTrack:
    """Mutable state of one track (internal)."""

    def __init__(self, track_id: int, box: np.ndarray, score: float, class_id: int, frame: int,
                 settings: TrackerSettings) -> None:
        self.track_id = track_id
        self.class_id = class_id
        self.settings = settings
        self.first_frame = frame
        scale = _scale(box)
        # Box filter points: centre (constant velocity) and size (damped rate of change).
        self.box_filter = PointFilter(_xyxy_to_points(box[None])[0], settings.box_measurement_noise * scale,
                                      np.array([0.1, 0.05]) * scale, damping=np.array([1.0, settings.box_size_damping]),
                                      record=settings.records)
        self._box_noise = np.array([settings.box_process_noise, settings.box_size_noise])
        self.box = _points_to_xyxy(self.box_filter.positions)
        self.keypoints = KeypointSmoother(settings.smoothing, record=settings.records)
        self.state = TrackState.TENTATIVE
        self.score = score
        self.hits = 1
        self.age = 0
        self.frames_since_update = 0
        self.detection_index = -1
        self.raw_box: np.ndarray | None = box
        self.last_centre = _xyxy_to_points(box[None])[0, 0]
        self.pose_attached = False
        self.appearance: np.ndarray | None = None
        self.reported_now = False
        self.reported: list[bool] = []
        self.detection_log: list[int] = []
        self.score_log: list[float] = []
        self.state_log: list[TrackState] = []

    @property
    def scale(self) -> float:
        return _scale(self.box)

    def predict(self) -> None:
        if self.settings.records:
            self._log(reported=self.reported_now)
        scale = self.scale
        self.box_filter.predict(self._box_noise * scale)
        self.box = _points_to_xyxy(self.box_filter.positions)
        self.keypoints.predict(scale, self.box_filter.velocities[0])
        self.age += 1
        self.frames_since_update += 1
        self.detection_index = -1
        self.raw_box = None
        self.pose_attached = False
        self.reported_now = False

    def update(self, box: np.ndarray, score: float, detection_index: int) -> None:
        scale = _scale(box)
        std = self.settings.box_measurement_noise * scale
        self.box_filter.update(_xyxy_to_points(box[None])[0], std, np.ones(2, bool))
        self.box = _points_to_xyxy(self.box_filter.positions)
        self.score = score
        self.hits += 1
        self.frames_since_update = 0
        self.detection_index = detection_index
        self.raw_box = box
        self.last_centre = _xyxy_to_points(box[None])[0, 0]

    def update_appearance(self, feature: np.ndarray) -> None:
        """Blend a detection's appearance features (finite) into the running average."""
        if self.appearance is None:
            self.appearance = feature.astype(np.float64)
        else:
            momentum = self.settings.appearance_momentum
            self.appearance = (1.0 - momentum) * self.appearance + momentum * feature

    def attach_pose(self, keypoints: np.ndarray) -> None:
        if self.pose_attached:
            raise ValueError(f"track {self.track_id} already has a pose in this frame")
        self.keypoints.update(keypoints, self.scale)
        self.pose_attached = True

    def _log(self, reported: bool) -> None:
        self.reported.append(reported)
        self.detection_log.append(self.detection_index)
        self.score_log.append(self.score)
        self.state_log.append(self.state)

    def snapshot(self, frame: int) -> Track:
        if self.settings.smoothing.mode is SmoothingMode.NONE and self.raw_box is not None:
            box = self.raw_box
        else:
            box = self.box
        keypoints, status = self.keypoints.output()
        return _freeze(Track(
            track_id=self.track_id, state=self.state, box=np.asarray(box, np.float32), score=float(self.score),
            class_id=int(self.class_id), keypoints=keypoints, keypoint_status=status, age=self.age,
            hits=self.hits, frames_since_update=self.frames_since_update,
            detection_index=int(self.detection_index), frame_index=frame,
        ))

    def record(self) -> TrackRecord:
        reported = [*self.reported, self.reported_now]
        confirmed_at = next((i for i, s in enumerate([*self.state_log, self.state]) if s is not TrackState.TENTATIVE),
                            None)
        detections = np.array([*self.detection_log, self.detection_index], np.int64)
        reported_arr = np.array(reported, bool)
        if confirmed_at is not None:
            reported_arr[:confirmed_at] |= detections[:confirmed_at] >= 0
        return TrackRecord(
            track_id=self.track_id, class_id=self.class_id, first_frame=self.first_frame,
            box=self.box_filter.history(), keypoints=self.keypoints.history(),
            detection_index=detections, scores=np.array([*self.score_log, self.score]), reported=reported_arr,
            states=(*self.state_log, self.state),
        )


def _freeze(track: Track) -> Track:
    for array in (track.box, track.keypoints, track.keypoint_status):
        array.setflags(write=False)
    return track


def _check_poses(poses: Poses, count: int) -> None:
    if not isinstance(poses, Poses):
        raise ValueError(f"poses must be a Poses or None, got {type(poses).__name__}")
    if len(poses) != count:
        raise ValueError(f"poses must be aligned with detections, got {len(poses)} poses for {count} detections")
    if poses.keypoints.shape[1] != NUM_KEYPOINTS:
        raise ValueError(f"poses must have {NUM_KEYPOINTS} keypoints, got {poses.keypoints.shape[1]}")


def _clean(detections: Detections, poses: Poses | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Indices, boxes, scores and keypoints of the usable detections (finite, positive size)."""
    boxes = detections.xyxy.astype(np.float64)
    scores = detections.scores.astype(np.float64)
    positive = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    usable = np.isfinite(boxes).all(1) & np.isfinite(scores) & positive
    if not usable.all():
        logger.debug("dropping %d detections with non-finite or empty boxes", int((~usable).sum()))
    index = np.flatnonzero(usable)
    keypoints = None if poses is None else poses.keypoints[index].astype(np.float64)
    return index, boxes[index], scores[index], keypoints


class Tracker:
    """Multi-animal tracker; each instance owns its tracks and its ID counter.

    Args:
        settings: association, life-cycle and smoothing settings.
    """

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings if settings is not None else TrackerSettings()
        if not isinstance(self.settings, TrackerSettings):
            raise ValueError(f"settings must be a TrackerSettings, got {settings!r}")
        self._ids = itertools.count(1)
        self._tracks: list[_LiveTrack] = []
        self._ended: list[TrackRecord] = []
        self._frame = -1

    @property
    def frame_index(self) -> int:
        """Index of the last frame seen (-1 before the first)."""
        return self._frame

    def update(self, detections: Detections, poses: Poses | None = None,
               features: np.ndarray | None = None) -> list[Track]:
        """Advance one frame with this frame's detections (possibly none) and, optionally, their poses.

        Args:
            detections: N detections of this frame.
            poses: N poses aligned with ``detections``, or None (see :meth:`attach_poses`).
            features: (N, D) appearance features aligned with ``detections``
                (:func:`tracking.appearance.colour_histograms`; a NaN row: none for that detection), or
                None. Used only when ``appearance_weight`` > 0.

        Returns:
            The confirmed tracks matched in this frame and the lost ones missed for at most
            ``report_lost_frames`` frames (on their predicted boxes), in ID order.
        """
        if not isinstance(detections, Detections):
            raise ValueError(f"detections must be a Detections, got {type(detections).__name__}")
        if poses is not None:
            _check_poses(poses, len(detections))
        features = self._check_features(features, len(detections))
        self._advance()
        index, boxes, scores, keypoints = _clean(detections, poses)
        features = None if features is None else features[index]
        # Features of a box that overlaps another are not one animal's: they update no average and
        # judge no match.
        own = np.zeros(len(boxes), bool) if features is None else (
            _clear_of_others(boxes) & np.isfinite(features).all(axis=1))
        pairs, unmatched_tentative, unmatched_established, unmatched_detections = self._match(
            boxes, scores, keypoints, features, own)
        for track, j in pairs:
            track.update(boxes[j], float(scores[j]), int(index[j]))
            if keypoints is not None:
                track.attach_pose(keypoints[j])
            if own[j] and self._fits(track, features[j]):
                track.update_appearance(features[j])
            if track.state is not TrackState.TENTATIVE or track.hits >= self.settings.min_hits:
                track.state = TrackState.CONFIRMED
        for track in unmatched_established:
            track.state = TrackState.LOST
        self._end(unmatched_tentative + [t for t in unmatched_established
                                         if t.frames_since_update > self.settings.max_lost_frames])
        for j in unmatched_detections:
            if scores[j] >= self.settings.new_track_score:
                self._start(boxes[j], float(scores[j]), int(detections.class_ids[index[j]]), int(index[j]),
                            None if keypoints is None else keypoints[j])
                if own[j]:
                    self._tracks[-1].update_appearance(features[j])
        return self._report(self._reported_after_update)

    def _fits(self, track: _LiveTrack, feature: np.ndarray) -> bool:
        """Whether ``feature`` may update ``track``'s colours: it has none yet, or they are within
        ``appearance_update_max`` of it."""
        if track.appearance is None or self.settings.appearance_update_max >= 1.0:
            return True
        distance = appearance_distance(track.appearance[None], feature[None])[0, 0]
        return float(distance) <= self.settings.appearance_update_max

    def _check_features(self, features: np.ndarray | None, count: int) -> np.ndarray | None:
        """``features`` as float64 (N, D), or None when appearance is off or none were given."""
        if features is None or self.settings.appearance_weight == 0:
            return None
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or len(features) != count:
            raise ValueError(f"features must be an (N, D) array aligned with the {count} detections, "
                             f"got shape {features.shape}")
        width = next((len(t.appearance) for t in self._tracks if t.appearance is not None), features.shape[1])
        if features.shape[1] != width:
            raise ValueError(f"features have {features.shape[1]} values per detection, the tracks {width}")
        return features

    def _reported_after_update(self, track: _LiveTrack) -> bool:
        if track.state is TrackState.CONFIRMED:
            return track.frames_since_update == 0
        return track.state is TrackState.LOST and track.frames_since_update <= self.settings.report_lost_frames

    def predict_only(self) -> list[Track]:
        """Advance one frame without running the detector: tracks move on their prediction, no miss is counted.

        Returns:
            The confirmed tracks with their predicted boxes (the boxes to run the pose model on), and
            the lost ones still within ``report_lost_frames``.
        """
        self._advance()
        for track in self._tracks:
            track.frames_since_update -= 1  # not a miss: the detector did not look
        return self._report(lambda t: t.state is TrackState.CONFIRMED or self._reported_after_update(t))

    def attach_poses(self, track_ids: Sequence[int], poses: Poses) -> list[Track]:
        """Give this frame's poses, estimated on the boxes of ``track_ids``, to those tracks.

        Args:
            track_ids: IDs of live tracks, aligned with ``poses``.
            poses: one pose per ID.

        Returns:
            Fresh snapshots of those tracks, in the order of ``track_ids``.
        """
        track_ids = [int(i) for i in track_ids]
        _check_poses(poses, len(track_ids))
        by_id = {t.track_id: t for t in self._tracks}
        missing = [i for i in track_ids if i not in by_id]
        if missing:
            raise ValueError(f"track_ids {missing} are not live tracks of this tracker")
        for track_id, keypoints in zip(track_ids, poses.keypoints.astype(np.float64)):
            by_id[track_id].attach_pose(keypoints)
        return [by_id[i].snapshot(self._frame) for i in track_ids]

    def tracks(self) -> list[Track]:
        """Snapshots of every live track (tentative, confirmed and lost), in ID order."""
        return self._report(lambda t: True, mark=False)

    def history(self) -> TrackHistory:
        """The recorded forward pass of every track so far (needs ``record_history`` or OFFLINE mode)."""
        if not self.settings.records:
            raise RuntimeError("history needs TrackerSettings(record_history=True) or SmoothingMode.OFFLINE")
        records = [*self._ended, *(t.record() for t in self._tracks)]
        return TrackHistory(self._frame + 1, tuple(sorted(records, key=lambda r: r.track_id)), self.settings)

    # -- internals ---------------------------------------------------------------------------------

    def _match(self, boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray | None,
               features: np.ndarray | None, own: np.ndarray):
        """The four association stages (module docstring); ``own``: (N,) bool, the detections whose
        features are one animal's (finite, the box overlapping no other).

        Returns:
            (track, detection) pairs, tentative tracks left unmatched, confirmed or lost tracks left
            unmatched, and indices of confident detections left unmatched.
        """
        s = self.settings
        high = np.flatnonzero(scores >= s.high_score)
        low = np.flatnonzero((scores >= s.low_score) & (scores < s.high_score))
        established = [t for t in self._tracks if t.state is not TrackState.TENTATIVE]
        tentative = [t for t in self._tracks if t.state is TrackState.TENTATIVE]
        pairs, waiting, high = self._associate(established, high, boxes, keypoints, features, own, s.max_cost)
        matched, waiting, _ = self._associate(waiting, low, boxes, None, None, own, s.low_max_cost)
        pairs += matched
        matched, waiting, high = self._relink(waiting, high, boxes, features)
        pairs += matched
        matched, unmatched_tentative, high = self._associate(tentative, high, boxes, keypoints, features, own,
                                                             s.max_cost)
        return pairs + matched, unmatched_tentative, waiting, high

    def _advance(self) -> None:
        self._frame += 1
        for track in self._tracks:
            track.predict()

    def _start(self, box: np.ndarray, score: float, class_id: int, detection_index: int,
               keypoints: np.ndarray | None) -> None:
        track = _LiveTrack(next(self._ids), box, score, class_id, self._frame, self.settings)
        track.detection_index = detection_index
        if keypoints is not None:
            track.attach_pose(keypoints)
        if self.settings.min_hits <= 1:
            track.state = TrackState.CONFIRMED
        self._tracks.append(track)

    def _end(self, tracks: list[_LiveTrack]) -> None:
        for track in tracks:
            self._tracks.remove(track)
            if self.settings.records and track.hits >= self.settings.min_hits:
                self._ended.append(track.record())

    def _report(self, keep, mark: bool = True) -> list[Track]:
        out = []
        for track in sorted(self._tracks, key=lambda t: t.track_id):
            if keep(track):
                if mark:
                    track.reported_now = True
                out.append(track.snapshot(self._frame))
        return out

    def _appearance(self, tracks: list[_LiveTrack], features: np.ndarray | None) -> np.ndarray | None:
        """(T, D) appearance distances of ``tracks`` to the rows of ``features``, NaN where either has none;
        None when appearance is not used."""
        if features is None:
            return None
        out = np.full((len(tracks), len(features)), np.nan)
        rows = [i for i, t in enumerate(tracks) if t.appearance is not None]
        if rows:
            out[rows] = appearance_distance(np.stack([tracks[i].appearance for i in rows]), features)
        return out

    def _blend(self, cost: np.ndarray, appearance: np.ndarray | None) -> np.ndarray:
        """``cost`` with the appearance distance mixed in where both sides have one."""
        if appearance is None:
            return cost
        w = self.settings.appearance_weight
        blended = (1.0 - w) * np.where(np.isinf(cost), 0.0, cost) + w * np.nan_to_num(appearance)
        return np.where(np.isnan(appearance) | np.isinf(cost), cost, blended)

    def _associate(self, tracks: list[_LiveTrack], candidates: np.ndarray, boxes: np.ndarray,
                   keypoints: np.ndarray | None, features: np.ndarray | None, own: np.ndarray,
                   max_cost: float):
        """Match ``tracks`` to detections ``candidates`` (indices into ``boxes``) by the IoU (and OKS, and
        appearance) cost."""
        if not tracks or len(candidates) == 0:
            return [], list(tracks), candidates
        predicted = np.stack([t.box for t in tracks])
        iou = box_iou(predicted, boxes[candidates])
        cost = 1.0 - iou
        if keypoints is not None and self.settings.oks_weight > 0:
            track_kpts = np.stack([t.keypoints.positions() for t in tracks])
            det_kpts = keypoints[candidates]
            det_valid = det_kpts[:, :, 2] >= self.settings.keypoint_threshold
            areas = (boxes[candidates, 2] - boxes[candidates, 0]) * (boxes[candidates, 3] - boxes[candidates, 1])
            oks = keypoint_similarity(track_kpts, det_kpts, areas, valid_b=det_valid, sigmas=SIGMAS)
            cost = fuse_similarities(iou, oks, self.settings.oks_weight)
        appearance = self._appearance(tracks, None if features is None else features[candidates])
        cost = self._blend(cost, appearance)
        if appearance is not None:
            # A lost track is held to the re-link's appearance gate here too; any track refuses a
            # detection of other colours than its own, unless that box overlaps another (two animals).
            lost = np.array([t.state is TrackState.LOST for t in tracks])[:, None]
            cost = np.where(lost & (appearance > self.settings.relink_max_appearance), np.inf, cost)
            cost = np.where(own[candidates][None, :] & (appearance > self.settings.match_max_appearance), np.inf,
                            cost)
            if self.settings.appearance_margin < 1.0:
                # ... nor one whose colours are clearly another track's (hidden, lost or matched elsewhere).
                everyone = self._appearance(self._tracks, features[candidates])
                closest = np.min(np.where(np.isnan(everyone), np.inf, everyone), axis=0, initial=np.inf)
                other = appearance > closest[None, :] + self.settings.appearance_margin
                cost = np.where(own[candidates][None, :] & other, np.inf, cost)
        # A pair with no box overlap at all is never matched here (re-linking handles lost tracks).
        cost = np.where(iou > 0, cost, np.inf)
        assignment = linear_assignment(cost, max_cost)
        pairs = [(tracks[i], int(candidates[j])) for i, j in assignment.matches]
        return pairs, [tracks[i] for i in assignment.unmatched_rows], candidates[assignment.unmatched_cols]

    def _relink(self, tracks: list[_LiveTrack], candidates: np.ndarray, boxes: np.ndarray,
                features: np.ndarray | None):
        """Match unmatched tracks to detections by a Mahalanobis distance of box centres, gated (and by
        appearance, gated too).

        A hidden animal may have walked on as predicted, or slowed down, or stopped: the distance is
        taken to the nearest point of the segment from where the track was last seen to where it is
        predicted, under the track's position uncertainty plus ``relink_noise``.
        """
        if not tracks or len(candidates) == 0:
            return [], list(tracks), candidates
        det_points = _xyxy_to_points(boxes[candidates])
        offsets = _distance_to_segments(det_points[:, 0], np.stack([t.last_centre for t in tracks]),
                                        np.stack([t.box_filter.positions[0] for t in tracks]))
        sizes = np.stack([np.maximum(t.box_filter.positions[1], 1.0) for t in tracks])
        det_scale = np.sqrt(np.prod(np.maximum(det_points[:, 1], 1.0), axis=1))
        track_scale = np.array([t.scale for t in tracks])
        variance = (np.array([t.box_filter.position_variance[0] for t in tracks])[:, None]
                    + (self.settings.relink_noise * np.maximum(track_scale[:, None], det_scale[None, :])) ** 2)
        d2 = offsets**2 / variance
        # Widths change a lot when an animal turns; heights hardly.
        height_ratio = np.abs(np.log(det_points[None, :, 1, 1] / sizes[:, None, 1]))
        gated = (height_ratio < np.log(2.0)) & (d2 <= self.settings.relink_gate)
        cost = np.where(gated, d2 / self.settings.relink_gate, np.inf)
        appearance = self._appearance(tracks, None if features is None else features[candidates])
        if appearance is not None:
            cost = np.where(appearance > self.settings.relink_max_appearance, np.inf, self._blend(cost, appearance))
        assignment = linear_assignment(cost, 1.0)
        pairs = [(tracks[i], int(candidates[j])) for i, j in assignment.matches]
        return pairs, [tracks[i] for i in assignment.unmatched_rows], candidates[assignment.unmatched_cols]


def _clear_of_others(boxes: np.ndarray, max_iou: float = 0.1) -> np.ndarray:
    """(N,) bool, boxes that overlap no other box by more than ``max_iou`` (their pixels are one animal's)."""
    if len(boxes) < 2:
        return np.ones(len(boxes), bool)
    iou = box_iou(boxes, boxes)
    np.fill_diagonal(iou, 0.0)
    return iou.max(axis=1) <= max_iou


def _distance_to_segments(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(T, D) distances from D points (D, 2) to T segments from ``starts`` (T, 2) to ``ends`` (T, 2)."""
    direction = ends - starts
    length2 = np.maximum(np.sum(direction**2, axis=-1), 1e-12)
    along = np.sum((points[None] - starts[:, None]) * direction[:, None], axis=-1) / length2[:, None]
    nearest = starts[:, None] + np.clip(along, 0.0, 1.0)[..., None] * direction[:, None]
    return np.linalg.norm(points[None] - nearest, axis=-1)


def smooth_tracks_offline(history: TrackHistory, fill_gaps: int = 0) -> list[list[Track]]:
    """RTS-smooth every recorded track over its whole life (for files, after the last frame).

    Args:
        history: what :meth:`Tracker.history` returned after the last frame.
        fill_gaps: also report a track in the frames of a gap of at most this many frames between
            two matched frames (state LOST, smoothed box; keypoints as below, so none invented).

    Returns:
        One list of tracks per frame (``history.num_frames`` lists): each track in the frames it was
        reported live, plus the matched frames before its confirmation. Boxes are smoothed; keypoints
        are SMOOTHED where observed, PREDICTED in short gaps, MISSING elsewhere. ``state`` is the
        live state of that frame.
    """
    if fill_gaps < 0:
        raise ValueError(f"fill_gaps must be >= 0, got {fill_gaps}")
    frames: list[list[Track]] = [[] for _ in range(history.num_frames)]
    smoothing = history.settings.smoothing
    for record in history.records:
        box_means, _ = rts_smooth(record.box)
        boxes = _points_to_xyxy(box_means[:, :, 0, :]).astype(np.float32)
        if record.keypoints is not None:
            keypoints, status = smooth_keypoints_offline(record.keypoints, smoothing)
        else:
            empty = raw_output(None)
            keypoints = np.repeat(empty[0][None], len(boxes), 0)
            status = np.repeat(empty[1][None], len(boxes), 0)
        matched = record.detection_index >= 0
        reported = record.reported | _short_gaps(matched, fill_gaps)
        hits = np.cumsum(matched)
        last_hit = -1
        for t in range(len(boxes)):
            if matched[t]:
                last_hit = t
            if not reported[t]:
                continue
            frames[record.first_frame + t].append(_freeze(Track(
                track_id=record.track_id, state=record.states[t], box=boxes[t].copy(), score=float(record.scores[t]),
                class_id=record.class_id, keypoints=keypoints[t].copy(), keypoint_status=status[t].copy(), age=t,
                hits=int(hits[t]), frames_since_update=t - last_hit, detection_index=int(record.detection_index[t]),
                frame_index=record.first_frame + t,
            )))
    return frames


def _short_gaps(matched: np.ndarray, longest: int) -> np.ndarray:
    """(T,) bool, frames inside runs of at most ``longest`` unmatched frames between two matched frames."""
    inside = np.zeros(len(matched), bool)
    hits = np.flatnonzero(matched)
    for start, end in zip(hits[:-1], hits[1:]):
        if 1 < end - start <= longest + 1:
            inside[start + 1:end] = True
    return inside
