"""Identity tracking of animals: ``Tracker.update(detections, poses) -> list[Track]``.

Each frame, every track's box (centre and size, Kalman filters whose process noise grows while the box
manoeuvres: a start, a stop, a turn) and keypoints (see :mod:`tracking.smoothing`) are predicted, then
detections are assigned in stages, after ByteTrack:

1. confirmed and lost tracks vs confident detections, by a cost mixing box IoU and keypoint
   similarity (OKS with the AP-10K sigmas) with the box's geometric fit (:func:`_geometry`: where the
   animal stands, across the image and in depth, and its height, against where the track's animal
   may be), gated by that fit (a track missed in two or more frames by the stricter re-link gate);
2. those still unmatched vs low-score detections, by IoU and fit alone;
3. those still unmatched, and unseen for at most ``relink_delay`` frames, vs the confident detections
   left, by the likelihood of the geometric fit: this re-links an animal missed for a while, or one
   that turned or stopped, even when its predicted box no longer overlaps; a track seen recently, with
   a tight prediction, wins over one that may be anywhere by now;
4. tentative tracks vs the confident detections left, by the cost of stage 1.

A track lost for longer is not re-linked in stage 3 to a detection at once (an animal back after a long
absence, away from where it was lost, competes with animals coming in and with false boxes; one back
where it stood, its box overlapping, is matched in stage 1): a detection where it may be starts a tentative
track that is held back, unreported, until it has ``relink_hits`` hits; then the lost tracks that fit
such tracks best take them over, keeping their identities, and one that no lost track takes becomes a
new animal after ``hold_hits`` hits. An animal back where no lost track's position reaches (out of the frame at one
edge and back at another, or hidden for long behind others) starts a new track; with colours, for ``claim_frames``
frames after its start, the lost track whose colours the new track's own colours (``claim_colours`` boxes or more)
match, clearly nearer than any other lost track's, takes it over: the animal has its identity back from then on.
An animal is left unlabelled a few frames rather than given a neighbour's identity; the offline output
(:func:`smooth_tracks_offline`) reports those frames under the identity that took it back, as it does the frames of
a young track taken over by colours (live, they were reported under the young track's identity). It also reports an
identity a few frames (``offline_extend_frames``) before each run of frames it is reported in, on the detections no
track took there that continue its first box backwards: the detector often finds an animal walking in or coming out
from behind another a few frames before its track is reported.
The offline output also joins the stretches of frames each identity is reported in (runs without a gap) again into
identities, over the whole video: by their own colours over each whole stretch (``offline_relink_colour``), and where
either of two stretches has none (or no colours were given), by how the boxes at the end of one fit those at the
start of the other (``offline_relink_fit``): an animal that the live tracker gave a neighbour's identity, or a new
one, from its first few boxes after a crossing or an absence, shows its own colours, size and place over the stretch
that follows, and takes its identity back there. Last, it drops each short identity (``offline_shadow_frames``) whose
box lies, in most of its frames, inside or around the box of an identity reported longer: a second box the detector
found on one animal; and each short identity (``offline_weak_frames``) kept alive on weak evidence: its detections
scored on average under ``new_track_score`` and found it in few of the frames it is reported in.

A link made after a few unseen frames may still be wrong: a track hidden for a moment takes a neighbour that
comes back first near where it was lost, and when its own animal shows again, the neighbour's lost track takes
it. For ``revise_frames`` frames after such a link (``revise_gap`` or more unseen frames), the track keeps a ghost
of itself, where its own animal would be had it not taken that one; when a held newcomer fits the ghost and the
links are cheaper revised (the track on the newcomer, the animal it took to the lost track that fitted it best, or
to a new identity) by ``revise_margin``, they are revised from this frame on (the frames already reported keep their
identities; offline output too). Each track's keypoints are forgotten then, so that its next pose sets them.

With the poses after tracking (``attach_poses``), the tracks past their tentative frames (confirmed, or lost until
this frame) matched in this frame to crowded detections (overlapping another matched detection, or the predicted box
of a track missed in this frame and still reported) are reviewed once their poses arrive, together with those missed
tracks: if the keypoints show that a track took another's animal (the cost of stage 1 with keypoint similarity, as
when the poses come first, is lower for another assignment by more than ``review_margin``), the detections and poses
change hands; a track left without a detection is lost for this frame, with no pose. A track unseen for longer than
its keypoints are predicted (``max_predicted_frames``) is compared by the keypoints its filter still carries with
its box. With colours, no detection goes to a track that the colours would have kept from matching it (a box of two
animals may show the nearer one's pose, whichever animal the box is).

Whichever the order, a confirmed track whose pose in this frame contradicts its own keypoints (their similarity,
OKS against the track's predicted keypoints, under ``min_pose_similarity``) gives its detection up: the track is
lost for this frame, with no pose, and the detection starts no track. Such a box is most often a neighbour's, the
track's own animal hidden behind it or missed: the animal is left unlabelled a frame or two rather than given the
neighbour's identity (or the neighbour's animal given its identity). The predicted keypoints drift while a track goes
unseen, so that OKS is taken with the box's scale times the frames since the track's last detection (1: it was
matched in the last frame).

With the poses after tracking, the pose model also runs on the predicted boxes of the tracks missed in this
frame; where such a box covers a neighbour (its own animal hidden behind it), the pose found there is the
neighbour's. A missed track's pose as similar as ``duplicate_pose_oks`` (OKS) to that of a track matched in this
frame is dropped: its keypoints are predicted, then reported missing, rather than given the neighbour's.
A lost track is reported on its predicted box for ``report_lost_frames`` frames after its last match, and for
longer (up to ``pose_keep_frames``) while the pose found in that box is its own: enough confident keypoints, as
similar as ``pose_keep_oks`` to the track's predicted keypoints (the detector missed an animal still in view).
Whatever the mode, a keypoint farther outside its track's box than ``keypoint_box_margin`` of the box's size is
reported MISSING: it is not that animal's. Told the image's size (``update(..., image_size=...)``), the tracker
reports every box clipped to the image, in every mode and offline: a track predicted partly out of the frame (an
animal walking out) is reported on its part in view. Association still uses the whole predicted box (measured on
the simulator's validation seeds, weighing only the part in view, or extending a detection cut by the frame's edge
to the predicted size, lost more identities than they kept; docs/tuning.md).

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
boxes that overlap no other are judged by their colours. In re-links and take-backs a track or box
without colours (never seen clear of others) counts as the farthest colours allowed, not as a match.
Given as :class:`~tracking.appearance.BoxColours` (:func:`~tracking.appearance.box_colours`, what the
pipeline gives), the colours that judge, update and are blended are each box's *own* colours, those of
the part that no other box covers, and "overlapping no other" reads "with own colours": at a crossing
the part of each box outside the other's is still one animal's (on the validation replays of three
detectors causal IDF1 +0.015); the box's whole colours serve the repeated-box rule below. Given as one
(N, D) array, those colours are the whole box's, and a box has own colours where it overlaps no other
detection by an IoU over 0.1.

Confident detections left over start tentative tracks, confirmed after ``min_hits`` matches (or
``hold_hits``, above); one matched once ends at its first miss, one matched twice or more may miss up to
``tentative_patience`` frames in a row. With appearance features, a box left over that repeats a matched one
(overlapping it by ``duplicate_iou``, its colours within ``duplicate_colour`` of that box's) starts no track: the
detector found that animal twice, where a second animal would show other colours (where an animal lost for long
may be back, such a box still starts a held track, above). Whichever the pose order, a young track (at most
``young_duplicate_hits`` matches) whose detection shows the pose of an older confirmed track's detection in the same
frame (OKS ``young_duplicate_oks`` over ``young_duplicate_keypoints`` keypoints) ends, unrecorded: the detector found
that animal twice, a box on part of it beside the other (with the poses after tracking, this shows once the track is
confirmed and its pose found; it is then left out of what ``attach_poses`` returns). A young confirmed track whose poses
show fewer than ``young_pose_keypoints`` confident keypoints in more than half of its first ``young_pose_checks`` checks
ends, unrecorded: the pose model finds no animal in its boxes (a false box on the background, which the detector may
find again and again at a middling score). A check counts only in a frame where another track's pose shows an animal
(``young_pose_reference`` confident keypoints), so a pose model whose confidences run low everywhere ends nothing.
Association ignores the detector's class (a dog called a cat for one frame keeps its track); a track keeps the class of
its first detection. Every tracker owns its ID counter; IDs start at 1.

Poses may come with the detections (``update(detections, poses)``) or after tracking, when the pose
model runs on the tracks' boxes: then call ``attach_poses(track_ids, poses)`` in the same frame.
For a detector run every k frames, call ``predict_only()`` on the frames in between: the tracks
move on their Kalman prediction and are reported without counting a miss.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import cached_property

import numpy as np

from pose.keypoints import NUM_KEYPOINTS, SIGMAS
from pose.structures import Detections, Poses
from tracking.appearance import BoxColours, appearance_distance
from tracking.matching import (
    box_area,
    box_intersection,
    box_iou,
    fuse_similarities,
    keypoint_similarity,
    linear_assignment,
    paired_keypoint_similarity,
)
from tracking.smoothing import (
    FilterHistory,
    KeypointHistory,
    KeypointSmoother,
    KeypointStatus,
    PointFilter,
    Rows,
    SmoothingMode,
    SmoothingSettings,
    Spill,
    kalman_update,
    predict_smoothers,
    predict_together,
    raw_output,
    rts_smooth,
    smooth_keypoints_offline,
    smoother_outputs,
    smoother_positions,
    update_smoothers,
)

logger = logging.getLogger(__name__)

#: 99th and 99.9th percentiles of a chi-square with 3 degrees of freedom: the gates on the geometric fit.
_CHI2_3DOF_99 = 11.34
_CHI2_3DOF_999 = 16.27
#: A cost limit no gated pair reaches (the gate decides).
_NO_LIMIT = 1e9


class TrackState(Enum):
    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    LOST = "lost"


_STATES = tuple(TrackState)
_STATE_CODES = {state: code for code, state in enumerate(_STATES)}


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
        min_hits: matches that confirm a tentative track.
        duplicate_pose_oks: with the poses after tracking, a pose found in the predicted box of a track missed in this
            frame is dropped (the track's keypoints are predicted, not updated) when its OKS with the pose of a track
            matched in this frame reaches this: the box covers that animal, not its own, which is hidden behind it or
            gone (0: never).
        tentative_patience: frames a tentative track with two or more matches may go unmatched before it ends (one
            with a single match ends at its first miss).
        max_lost_frames: frames a lost track waits to be re-linked before it is removed (150: 5 s at 30 fps, as
            ``animalpose track``'s default ``--max-lost 5``).
        report_lost_frames: a lost track is still reported, on its predicted box and with state LOST,
            for this many frames after its last match (a missed detection then costs no pose).
        pose_keep_oks: with the poses after tracking, a lost track whose pose, found in its predicted box, has at
            least ``pose_keep_keypoints`` keypoints above ``keypoint_threshold`` and this OKS with the track's
            predicted keypoints (and is no matched track's, ``duplicate_pose_oks``) is reported in the next frame
            too, beyond ``report_lost_frames``, while it is at most ``pose_keep_frames`` frames unmatched: the
            detector missed an animal that the pose model still finds where the track expects it (0: never).
        pose_keep_keypoints, pose_keep_frames: see ``pose_keep_oks``.
        young_duplicate_oks: a track with at most ``young_duplicate_hits`` matches whose detection's pose in this frame
            has this OKS or more, over at least ``young_duplicate_keypoints`` keypoints above ``keypoint_threshold``
            in both, with the pose of a confirmed track with more matches, matched in the same frame, ends (unrecorded):
            the detector found that animal twice (a box on a part of it beside the box on the whole, or on its
            other part, which non-maximum suppression keeps at an IoU under its threshold) and the pose model found
            the same animal in both; two animals hardly share that pose so closely (0: never).
        young_duplicate_hits, young_duplicate_keypoints: see ``young_duplicate_oks``.
        young_pose_keypoints: a young track (at most ``young_duplicate_hits`` matches) whose pose, in more than half of
            its first ``young_pose_checks`` checks once confirmed, has fewer than this many keypoints above
            ``keypoint_threshold`` ends, unrecorded (left out of what ``attach_poses`` returns, with the poses after
            tracking): the pose model finds no animal in its boxes, where it finds animals in others. A check counts
            only in a frame where another matched track's pose shows ``young_pose_reference`` confident keypoints or
            more, so a pose model whose confidences run low on every animal, or a pipeline without one, ends
            nothing (0: never).
        young_pose_checks, young_pose_reference: see ``young_pose_keypoints``.
        keypoint_box_margin: a reported keypoint farther outside the track's box than this fraction of the box's
            width (across) or height (up and down) is reported MISSING, in every smoothing mode and offline: it is not
            the animal's (a neighbour's pose found in a box the frame edge cut narrow, a keypoint predicted on after
            the animal turned or left). None: never.
        offline_fill_frames: :func:`smooth_tracks_offline` also reports a track, on its smoothed box, with state
            LOST and no keypoints, through a gap of at most this many frames between two of its matches (detections
            missed while the animal is still in view). 0: never.
        offline_extend_frames: :func:`smooth_tracks_offline` also reports an identity in up to this many frames
            before each run of frames it is reported in, on detections no track took that continue its first box
            backwards (each overlapping the box after it by an IoU of 0.5 or more, and no box reported in its frame
            by more than 0.3): state TENTATIVE, the detection's box, no keypoints. An animal is most often found
            by the detector a few frames before it is reported (a box under ``new_track_score``, a track started
            and ended, a newcomer held for a lost track). 0: never.
        offline_relink_colour: with appearance features, :func:`smooth_tracks_offline` joins the stretches of frames
            the identities are reported in (runs without a gap) again into identities by their own colours over each
            whole stretch (:func:`_relink_stretches`): one optimal assignment of each stretch to the one it follows,
            among those that end before it starts, whose colours (appearance distance) are at most this far apart.
            The live tracker links an animal back from its first few boxes after a crossing or an absence, and may
            give it a neighbour's identity; over the whole stretch its colours tell better (0: never).
        offline_relink_fit: in that assignment, two stretches of which either has no own colours (or all of them,
            without appearance features or with ``offline_relink_colour`` 0) are joined by how the boxes at the end
            of one fit those at the start of the other (:func:`_stretch_fit`: the height, the bottom centre in depth
            and across the image, in units of the earlier stretch's height) where that squared normalised distance is
            at most this (0: never; then a stretch without colours is judged with the one before it).
        offline_shadow_frames: :func:`smooth_tracks_offline` drops an identity reported in at most this many frames
            in all whose box lies, in most of them (``_SHADOW_SHARE``), largely inside or around the box of an
            identity reported longer (their overlap at least ``_SHADOW_COVER`` of the smaller box): a second box the
            detector found on one animal (a part of it, or two animals as one), whose short identity is noise beside
            the animal's own. 0: never.
        offline_weak_frames: :func:`smooth_tracks_offline` also drops an identity reported in at most this many
            frames in all whose detections scored under ``new_track_score`` on average (the score a box needs to
            start a track) and found it in under ``_WEAK_FOUND`` of the frames it is reported in (the rest predicted
            or filled): a short identity kept alive on weak boxes (a part of an animal, two animals as one, the
            background), most often on no animal at all. 0: never.
        duplicate_iou, duplicate_colour: with appearance features, a confident detection left unmatched that overlaps
            a detection matched in this frame by ``duplicate_iou`` (IoU) or more, with whole-box colours within
            ``duplicate_colour`` (appearance distance) of that detection's, starts no track: it is the matched animal
            found twice (the detector's non-maximum suppression left both boxes), not a second animal, whose colours
            would differ (``duplicate_colour`` 0: never). Where a track lost for more than ``relink_delay`` frames
            could be, such a box still starts a held track.
        relink_gate: squared normalised distance of the geometric fit (3 dof, :func:`_geometry`) within which a
            track missed in two or more frames in a row may take a detection (99% of a chi-square).
        relink_noise: std of the box's bottom centre added to the track's own uncertainty once it is unseen,
            fraction of its height (boxes cut by the frame edge or by an occluder move).
        box_measurement_noise: std of a detected box's centre and size, as a fraction of its scale.
        box_process_noise: std of the box centre's random acceleration per frame, fraction of scale.
        box_size_noise: std of the box size's random change rate per frame, fraction of scale.
        box_size_damping: per-frame decay of the box size's rate of change: a box that shrinks while
            the animal turns is not extrapolated to nothing.
        appearance_weight: weight of the appearance distance in the association costs (0: not used,
            and no features are needed).
        relink_max_appearance: highest appearance distance at which a lost track takes a detection.
        match_max_appearance: highest appearance distance at which any track takes a detection with own colours
            (one that overlaps no other detection, or with ``BoxColours`` the part outside the others) in stages 1
            and 4 (a box that holds two animals is not judged by its colours).
        appearance_momentum: weight of a new detection's features in a track's running average.
        appearance_margin: in stages 1 and 4 a track refuses a detection with own colours when some track's
            appearance distance to it is lower than this track's by more than this (1: never).
        appearance_update_max: a detection updates a track's running average only within this
            appearance distance of it (1: always).
        match_gate: the geometric fit's gate for a track seen in the last frame or the one before (99.9% of a
            chi-square, 3 dof).
        geometry_weight: weight of the geometric fit (over its gate, at most 1) in the costs of stages 1, 2 and 4.
        vertical_ratio: std of where a box stands in depth (its bottom row) against across the image, for the
            track's own motion uncertainty (animals walk across the view more than towards it).
        height_noise: std of the log ratio of a detection's height to its track's: the geometric mean of the track's
            predicted height and the median height of its last ``height_window`` detections (one box cut short by an
            occluder, or grown over a neighbour, moves the filter's height; the median hardly moves).
        height_window: matched detections in that median (0: the predicted height alone).
        height_drift: growth of that std per frame the track is unseen (the animal walks nearer or away).
        reach_speed: an unseen animal may have walked this fraction of its height per frame in any direction
            (or as fast as it was going, if faster).
        reach_limit: the spread of where an unseen animal may be (its filter's position uncertainty and how far it
            may have walked, above) grows to at most this many of its heights (std): an animal lost for long, one
            that stopped to graze out of sight or left the frame, is found about where it was lost, and its track
            does not come to fit every box of the frame (0: no limit).
        box_adaptation: weight of the newest frame in the running mean of the box's normalised innovation
            (0: off); above its expected value, the box's process variance grows by as much, up to
            ``box_max_boost`` (a start, a stop, a turn).
        box_max_boost: upper bound of that factor.
        review_iou: with the poses after tracking, confirmed or lost tracks matched to detections that overlap
            another matched detection, or a missed track's predicted box, by this IoU are reviewed with their poses
            (see the module docstring).
        review_margin: the reviewed assignment changes when another one costs less by more than this.
        min_pose_similarity: a confirmed track gives up the detection it was matched to when the detection's pose
            is less similar than this (OKS, its scale grown with the frames since the track's last detection) to the
            track's predicted keypoints, with at least 3 keypoints to compare (0, or ``oks_weight`` 0: never; module
            docstring).
        relink_delay: a track lost for more than this many frames takes an animal back only through a held
            tentative track (module docstring).
        relink_hits: hits of such a tentative track before a lost track may take it over.
        hold_hits: hits after which such a tentative track that no lost track took is confirmed.
        revise_frames: for this many frames after a track took an animal back (a re-link or a take-back) after
            ``revise_gap`` or more unseen frames, the link may be undone: when a held newcomer fits where the track's
            own animal would be had it not taken that one, and linking the track to the newcomer and the animal it
            took to another lost track (or a new identity) costs less by ``revise_margin`` than the links as they
            stand, the track goes back to its own animal (module docstring; 0: never).
        revise_gap, revise_margin: see ``revise_frames``; the margin is in the take-backs' costs (normalised distance
            of the geometric fit, 3 dof, plus the colours' penalty).
        claim_frames: with appearance features, up to this many frames after a track started as a new animal, a
            track lost for more than ``claim_delay`` frames takes it over, wherever it is, when the mean of its own
            colours (from ``claim_colours`` boxes or more) lies within ``claim_max_appearance`` of that lost track's
            colours and nearer to them than to any other lost track's by ``appearance_margin``: an animal back from
            out of the frame, or from behind others, where no lost track's position reached, gets its identity back
            from then on (not in a frame where its box is crowded and the poses may still review its match; module
            docstring; 0: never).
        claim_colours, claim_max_appearance: see ``claim_frames``.
        claim_delay: a lost track claims a young track (``claim_frames``) once unseen for more than this many frames;
            up to ``relink_delay`` frames only where another lost track's colours are there to compare (the claiming
            track's nearer by ``appearance_margin``): its animal may still come back where it was, and a track lost
            for a few frames beside a neighbour that starts a new track has that neighbour's colours near its own.
        record_history: keep every track's forward pass for :func:`smooth_tracks_offline`
            (always on when ``smoothing.mode`` is OFFLINE).
        spill_history: keep the recorded forward passes in an anonymous temporary file
            (:class:`~tracking.smoothing.Spill`, in ``TMPDIR``) rather than in memory, which then holds at
            most one block of 256 frames per log of each live track: memory stays flat however long the
            video (about 1 KiB per animal and frame go to the file instead, the detections and their colours
            included).
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
    max_lost_frames: int = 150
    report_lost_frames: int = 2
    offline_fill_frames: int = 10
    offline_extend_frames: int = 5
    offline_relink_colour: float = 0.6
    offline_relink_fit: float = 16.0
    offline_shadow_frames: int = 45
    offline_weak_frames: int = 45
    duplicate_iou: float = 0.45
    duplicate_colour: float = 0.1
    keypoint_box_margin: float | None = 0.5
    relink_gate: float = _CHI2_3DOF_99
    relink_noise: float = 0.15
    box_measurement_noise: float = 0.05
    box_process_noise: float = 0.01
    box_size_noise: float = 0.01
    box_size_damping: float = 0.6
    appearance_weight: float = 0.6
    relink_max_appearance: float = 0.5
    match_max_appearance: float = 0.4
    appearance_momentum: float = 0.1
    appearance_margin: float = 0.1
    appearance_update_max: float = 0.3
    match_gate: float = _CHI2_3DOF_999
    geometry_weight: float = 0.3
    vertical_ratio: float = 0.3
    height_noise: float = 0.07
    height_drift: float = 0.005
    height_window: int = 30
    reach_speed: float = 0.05
    reach_limit: float = 1.0
    box_adaptation: float = 0.3
    box_max_boost: float = 25.0
    review_iou: float = 0.3
    review_margin: float = 0.1
    min_pose_similarity: float = 0.2
    tentative_patience: int = 3
    duplicate_pose_oks: float = 0.5
    pose_keep_oks: float = 0.5
    pose_keep_keypoints: int = 6
    pose_keep_frames: int = 6
    young_duplicate_oks: float = 0.75
    young_duplicate_hits: int = 10
    young_duplicate_keypoints: int = 8
    young_pose_keypoints: int = 4
    young_pose_checks: int = 3
    young_pose_reference: int = 12
    relink_delay: int = 8
    relink_hits: int = 3
    hold_hits: int = 6
    revise_frames: int = 30
    revise_gap: int = 3
    revise_margin: float = 4.0
    claim_frames: int = 15
    claim_colours: int = 5
    claim_max_appearance: float = 0.2
    claim_delay: int = 3
    record_history: bool = False
    spill_history: bool = True
    smoothing: SmoothingSettings = field(default_factory=SmoothingSettings)

    def __post_init__(self) -> None:
        for name in ("high_score", "low_score", "new_track_score", "max_cost", "low_max_cost", "oks_weight",
                     "keypoint_threshold", "appearance_weight", "relink_max_appearance", "match_max_appearance",
                     "appearance_momentum", "appearance_margin", "appearance_update_max", "min_pose_similarity",
                     "box_size_damping", "duplicate_pose_oks", "pose_keep_oks", "duplicate_iou", "duplicate_colour",
                     "offline_relink_colour", "claim_max_appearance", "young_duplicate_oks"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.low_score > self.high_score:
            raise ValueError(f"low_score must be <= high_score, got {self.low_score} > {self.high_score}")
        if self.min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {self.min_hits}")
        if self.young_pose_checks < 1:
            raise ValueError(f"young_pose_checks must be >= 1, got {self.young_pose_checks}")
        if not 0 <= self.young_pose_keypoints <= NUM_KEYPOINTS:
            raise ValueError(f"young_pose_keypoints must be in [0, {NUM_KEYPOINTS}], got {self.young_pose_keypoints}")
        if not 1 <= self.young_pose_reference <= NUM_KEYPOINTS:
            raise ValueError(f"young_pose_reference must be in [1, {NUM_KEYPOINTS}], got {self.young_pose_reference}")
        for name in ("max_lost_frames", "report_lost_frames", "pose_keep_frames", "offline_fill_frames",
                     "offline_extend_frames", "offline_shadow_frames", "offline_weak_frames", "tentative_patience",
                     "relink_delay", "height_window", "revise_frames", "revise_gap", "claim_frames",
                     "claim_delay", "young_duplicate_hits"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        for name in ("pose_keep_keypoints", "young_duplicate_keypoints"):
            value = getattr(self, name)
            if not 1 <= value <= NUM_KEYPOINTS:
                raise ValueError(f"{name} must be in [1, {NUM_KEYPOINTS}], got {value}")
        if not (np.isfinite(self.offline_relink_fit) and self.offline_relink_fit >= 0):
            raise ValueError(f"offline_relink_fit must be a number >= 0, got {self.offline_relink_fit}")
        for name in ("relink_gate", "relink_noise", "box_measurement_noise", "box_process_noise", "box_size_noise",
                     "match_gate", "vertical_ratio", "height_noise", "reach_speed", "review_iou"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        for name in ("geometry_weight", "height_drift", "box_adaptation", "review_margin", "reach_limit",
                     "revise_margin"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value}")
        if self.keypoint_box_margin is not None and not (np.isfinite(self.keypoint_box_margin)
                                                         and self.keypoint_box_margin >= 0):
            raise ValueError(f"keypoint_box_margin must be a number >= 0 or None, got {self.keypoint_box_margin}")
        if not (np.isfinite(self.box_max_boost) and self.box_max_boost >= 1.0):
            raise ValueError(f"box_max_boost must be a number >= 1, got {self.box_max_boost}")
        if self.claim_colours < 1:
            raise ValueError(f"claim_colours must be >= 1, got {self.claim_colours}")
        if not 1 <= self.relink_hits <= self.hold_hits:
            raise ValueError(f"relink_hits must be >= 1 and <= hold_hits, got {self.relink_hits} and {self.hold_hits}")
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

    A held track that a lost track took back, or a young track that it took over by colours (``claim_frames``), is
    recorded too, under the ID of the track that took it, with its matched frames before that one reported (its last
    frame, the take-back, is also the track's own): one ID may have more than one record.
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
    """Everything a tracker recorded: ``num_frames`` frames and one record per track, live or ended, the image
    size (width, height) the tracker was last told (None: never), to which the reported boxes are clipped, the
    detections it was given (M, 7): frame, index into that frame's detections, ``xyxy`` box and score, those scored
    ``low_score`` or more, in frame order (None: not recorded), and their own colours (M, D) float16, the features
    that judge a match (:meth:`Tracker.update`; a row of NaN: none), or None where no colours were given."""

    num_frames: int
    records: tuple[TrackRecord, ...]
    settings: TrackerSettings
    image_size: tuple[float, float] | None = None
    detections: np.ndarray | None = None
    colours: np.ndarray | None = None


@dataclass(frozen=True)
class _Review:
    """Tracks past their tentative frames matched in this frame to crowded detections (boxes, scores, original
    indices: the first ``len(boxes)`` of ``tracks``, in the order of the detections), the tracks missed in this frame
    that overlap them (the rest of ``tracks``), and the box cost (colour-gated) and IoU of every track against every
    one of those detections, kept for :meth:`Tracker._settle`."""

    tracks: list
    boxes: np.ndarray
    scores: np.ndarray
    index: np.ndarray
    cost: np.ndarray
    iou: np.ndarray


def _xyxy_to_points(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) xyxy -> (..., 2, 2) rows of (centre, size)."""
    points = np.empty((*boxes.shape[:-1], 2, 2), boxes.dtype if boxes.dtype.kind == "f" else np.float64)
    points[..., 0, :] = 0.5 * (boxes[..., :2] + boxes[..., 2:])
    points[..., 1, :] = boxes[..., 2:] - boxes[..., :2]
    return points


def _points_to_xyxy(points: np.ndarray) -> np.ndarray:
    """(..., 2, 2) (centre, size) -> (..., 4) xyxy, with sizes floored at 1 pixel."""
    centre, half = points[..., 0, :], 0.5 * np.maximum(points[..., 1, :], 1.0)
    return np.concatenate([centre - half, centre + half], axis=-1)


def _scale(box: np.ndarray) -> float:
    # On Python floats (the same IEEE operations as numpy's scalars, at two thirds of their cost); math.sqrt as
    # np.sqrt (both correctly rounded).
    x0, y0, x1, y1 = box.tolist()
    return math.sqrt(max(x1 - x0, 1.0) * max(y1 - y0, 1.0))


def _predict_boxes(owners: list[_LiveTrack] | list[_Ghost]) -> np.ndarray:
    """Advance the box filters of tracks (or ghosts) of one tracker one frame, in one batch, each one's process noise
    raised while its box manoeuvres, and set their predicted boxes; returns the (n,) scales they were predicted at."""
    scales = np.array([_scale(owner.box) for owner in owners])
    boost = np.sqrt(np.minimum(np.maximum(np.array([owner.maneuver for owner in owners]), 1.0),
                               owners[0].settings.box_max_boost))
    filters = [owner.box_filter for owner in owners]
    predict_together(filters, owners[0]._box_noise * scales[:, None] * boost)
    for owner, box in zip(owners, _points_to_xyxy(np.array([f.mean[:, 0, :] for f in filters]))):
        owner.box = box
    return scales


def _update_tracks(tracks: list[_LiveTrack], boxes: np.ndarray, scores: list[float],
                   detection_indices: list[int]) -> None:
    """Update each of ``tracks`` (of one tracker) with its detection in this frame (``boxes`` (n, 4), aligned), the box
    filters in one batch; :meth:`_LiveTrack.unmatch` undoes it."""
    settings = tracks[0].settings
    filters = [t.box_filter for t in tracks]
    for track in tracks:
        track._undo = (track.box_filter.mean.copy(), track.box_filter.cov.copy(), track.maneuver.copy(), track.score,
                       track.last_box, track.frames_since_update)
    stds = [settings.box_measurement_noise * _scale(box) for box in boxes]
    measured = _xyxy_to_points(boxes)
    mean, cov = np.array([f.mean for f in filters]), np.array([f.cov for f in filters])
    if settings.box_adaptation > 0:
        # A start, a stop or a turn: the innovations outgrow what the filter expects; its process noise grows
        # by as much until they fall back (as the keypoints', tracking.smoothing).
        innovation = measured - mean[:, :, 0, :]
        variance = cov[:, :, 0, 0] + np.array([std**2 for std in stds])[:, None]
        nis = (innovation[..., 0] ** 2 + innovation[..., 1] ** 2) / variance / 2.0
        rate = settings.box_adaptation
        for track, row in zip(tracks, (1 - rate) * np.array([t.maneuver for t in tracks]) + rate * nis):
            track.maneuver = row
    # Both points (centre and size) measured, each under the detection's measurement noise (squared as numpy squares,
    # x * x: Python's x ** 2 differs in the last bit now and then).
    mean, cov = kalman_update(mean.reshape(-1, 2, 2), cov.reshape(-1, 2, 2), measured.reshape(-1, 2),
                              np.array([v for std in stds for v in (std * std,) * 2]), None)
    mean, cov = mean.reshape(-1, 2, 2, 2), cov.reshape(-1, 2, 2, 2)
    for track, f, m, c, box, new_box, score, index in zip(tracks, filters, mean, cov, boxes,
                                                          _points_to_xyxy(mean[:, :, 0, :]), scores,
                                                          detection_indices):
        f.mean, f.cov = m, c
        track.box = new_box
        track.score = score
        track.hits += 1
        track.frames_since_update = 0
        track.detection_index = index
        track.raw_box = box
        track.last_box = box
        track._heights.append(float(box[3] - box[1]))
        track._new_median()


def _attach_poses(tracks: list[_LiveTrack], poses: np.ndarray) -> None:
    """Give each of ``tracks`` (of one tracker) its pose of this frame (``poses`` (n, K, 3), aligned), the keypoint
    filters in one batch; ValueError for a track with a pose in this frame already (or given two)."""
    if not tracks:
        return
    for i, track in enumerate(tracks):
        if track.pose_attached or any(track is other for other in tracks[:i]):
            raise ValueError(f"track {track.track_id} already has a pose in this frame")
    # A pose found in a predicted box (no detection of the animal in this frame) is trusted less.
    update_smoothers([t.keypoints for t in tracks], poses, np.array([t.scale for t in tracks]),
                     np.array([t.frames_since_update == 0 for t in tracks]))
    for track in tracks:
        track.pose_attached = True


def _predict_tracks(tracks: list[_LiveTrack], ghosts: Sequence[_Ghost] = ()) -> None:
    """Advance the live ``tracks`` of one tracker one frame, and the ``ghosts`` of some of them, the box filters of
    both in one batch, as lost tracks' for the ghosts: box and keypoint filters predicted, this frame's match,
    detection and pose not yet known."""
    if not tracks:
        return
    if tracks[0].settings.records:
        for track in tracks:
            track._log(reported=track.reported_now)
    scales = _predict_boxes([*ghosts, *tracks])[len(ghosts):]
    for ghost in ghosts:
        ghost.frames_since_update += 1
    predict_smoothers([t.keypoints for t in tracks], scales, np.array([t.box_filter.mean[0, 1] for t in tracks]))
    for track in tracks:
        track.age += 1
        track.frames_since_update += 1
        track.detection_index = -1
        track.raw_box = None
        track.pose_attached = False
        track.reported_now = False
        track._undo = None


class _Ghost:
    """Where a track's own animal would be had the track not taken an animal back: its box state just before a
    re-link or take-back after ``revise_gap`` or more unseen frames, predicted on as a lost track's, and what that
    link cost (internal; :meth:`Tracker._revise`). It reads as a lost track to :func:`_geometry`."""

    def __init__(self, track: _LiveTrack, frame: int, costs: tuple[float, dict[int, float]]) -> None:
        f = track.box_filter
        self.box_filter = PointFilter(f.positions.copy(), 1.0, 1.0, damping=f.damping)
        self.box_filter.mean, self.box_filter.cov = f.mean.copy(), f.cov.copy()
        self.maneuver = track.maneuver.copy()
        self._box_noise = track._box_noise
        self.settings = track.settings
        self.box, self.last_box = track.box.copy(), track.last_box
        self.frames_since_update = track.frames_since_update
        self.heights = list(track._heights)
        self.hits = track.hits
        self.median_height = track.median_height
        self.appearance = None if track.appearance is None else track.appearance.copy()
        self.frame = frame
        self.cost, self.others = costs  # the link's cost, and that of each other lost track (by ID) for its box


class _LiveTrack:
    """Mutable state of one track (internal)."""

    def __init__(self, track_id: int, box: np.ndarray, score: float, class_id: int, frame: int,
                 settings: TrackerSettings, spill: Spill | None = None) -> None:
        self.track_id = track_id
        self.class_id = class_id
        self.settings = settings
        self.first_frame = frame
        scale = _scale(box)
        # Box filter points: centre (constant velocity) and size (damped rate of change).
        self.box_filter = PointFilter(_xyxy_to_points(box), settings.box_measurement_noise * scale,
                                      np.array([0.1, 0.05]) * scale, damping=np.array([1.0, settings.box_size_damping]),
                                      record=settings.records, spill=spill)
        self._box_noise = np.array([settings.box_process_noise, settings.box_size_noise])
        self.maneuver = np.ones(2)  # running mean of the normalised innovation of centre and size
        self.box = _points_to_xyxy(self.box_filter.positions)
        self.keypoints = KeypointSmoother(settings.smoothing, record=settings.records, spill=spill)
        self.state = TrackState.TENTATIVE
        self.score = score
        self.hits = 1
        self.age = 0
        self.frames_since_update = 0
        self.detection_index = -1
        self.raw_box: np.ndarray | None = box
        self.last_box = box
        self.pose_attached = False
        self.appearance: np.ndarray | None = None
        self.own_colours: np.ndarray | None = None  # sum of its matched boxes' own colours while young (claim_frames)
        self.own_count = 0
        self.reported_now = False
        self.pose_kept = -1
        self.ghost: _Ghost | None = None
        self._heights = [float(box[3] - box[1])]  # of the matched detections, newest last (settings.height_window)
        self.median_height = self._heights[0]
        self._undo: tuple | None = None
        self.pose_checks = 0  # pose checks made (Tracker._end_poseless), up to settings.young_pose_checks
        self.poses_missing = 0  # of those, the poses without an animal's keypoints
        # Per-frame logs for offline smoothing (settings.records), compact: see Rows.
        self.reported = Rows((), bool, spill=spill)
        self.detection_log = Rows((), np.int32, spill=spill)
        self.score_log = Rows((), np.float32, spill=spill)
        self.state_log = Rows((), np.int8, spill=spill)

    def flush(self) -> None:
        """Move what the track's record holds in memory to the spill (an ended track's last blocks), and drop the
        heights it kept for association."""
        for rows in (self.reported, self.detection_log, self.score_log, self.state_log):
            rows.flush()
        self.box_filter.flush()
        self.keypoints.flush()
        self._heights = []

    @property
    def scale(self) -> float:
        return _scale(self.box)

    def predict(self) -> None:
        _predict_tracks([self])

    def update(self, box: np.ndarray, score: float, detection_index: int) -> None:
        _update_tracks([self], box[None], [score], [detection_index])

    def _new_median(self) -> None:
        window = max(self.settings.height_window, 1)
        if len(self._heights) > 2 * window + 1:  # trimmed now and then, keeping one more for unmatch()
            del self._heights[:-(window + 1)]
        self.median_height = statistics.median(self._heights[-window:])  # a few floats: faster than numpy's

    def absorb(self, other: _LiveTrack) -> None:
        """Take over the box and the detection of ``other``, a tentative track of this track's animal come back (or a
        young one, :meth:`Tracker._claim_by_colour`). Matched in this frame, ``other``'s state before that match is
        what :meth:`unmatch` goes back to: a pose check or review that takes the detection away (after tracking)
        leaves this track as if it had been ``other`` missed in this frame."""
        self._undo = other._undo
        self.box_filter.mean, self.box_filter.cov = other.box_filter.mean.copy(), other.box_filter.cov.copy()
        self.maneuver = other.maneuver.copy()
        self.box, self.raw_box, self.last_box = other.box, other.raw_box, other.last_box
        self.score, self.detection_index = other.score, other.detection_index
        self.hits += other.hits
        self._heights.extend(other._heights)
        self._new_median()
        self.frames_since_update = 0
        self.state = TrackState.CONFIRMED
        if self.appearance is None:
            self.appearance = other.appearance

    def take_over(self, box: np.ndarray, score: float, detection_index: int) -> None:
        """Undo this frame's :meth:`update` and update with another detection instead."""
        self.unmatch()
        self.update(box, score, detection_index)

    @property
    def updated_now(self) -> bool:
        """Whether :meth:`update` ran in this frame (and :meth:`unmatch` can undo it)."""
        return self._undo is not None

    @property
    def unseen_before(self) -> int:
        """Frames since the track's previous detection, counting this one (1: it was matched in the last frame),
        whether or not it is matched in this frame yet."""
        return self._undo[5] if self._undo is not None else self.frames_since_update

    def unmatch(self) -> None:
        """Undo this frame's :meth:`update`: the track is predicted, as if it had been missed (its state is the
        caller's to set)."""
        mean, cov, maneuver, score_before, last_box, unseen = self._undo
        self.box_filter.mean, self.box_filter.cov, self.maneuver = mean, cov, maneuver
        self.box = _points_to_xyxy(self.box_filter.positions)
        self.score, self.last_box, self.frames_since_update = score_before, last_box, unseen
        self.hits -= 1
        self._heights.pop()
        self._new_median()
        self.detection_index = -1
        self.raw_box = None
        self._undo = None

    def update_appearance(self, feature: np.ndarray) -> None:
        """Blend a detection's appearance features (finite) into the running average."""
        if self.appearance is None:
            self.appearance = feature.astype(np.float64)
        else:
            momentum = self.settings.appearance_momentum
            self.appearance = (1.0 - momentum) * self.appearance + momentum * feature

    def attach_pose(self, keypoints: np.ndarray) -> None:
        _attach_poses([self], np.asarray(keypoints, np.float64)[None])

    def _log(self, reported: bool) -> None:
        self.reported.append(reported)
        self.detection_log.append(self.detection_index)
        self.score_log.append(self.score)
        self.state_log.append(_STATE_CODES[self.state])

    def record(self) -> TrackRecord:
        states = tuple(_STATES[int(code)] for code in self.state_log.array) + (self.state,)
        reported = np.append(self.reported.array, self.reported_now)
        detections = np.append(self.detection_log.array, self.detection_index).astype(np.int64)
        confirmed_at = next((i for i, s in enumerate(states) if s is not TrackState.TENTATIVE), None)
        if confirmed_at is not None:
            reported[:confirmed_at] |= detections[:confirmed_at] >= 0
        return TrackRecord(
            track_id=self.track_id, class_id=self.class_id, first_frame=self.first_frame,
            box=self.box_filter.history(), keypoints=self.keypoints.history(),
            detection_index=detections, scores=np.append(self.score_log.array, self.score).astype(np.float64),
            reported=reported, states=states,
        )


def _snapshots(tracks: list[_LiveTrack], frame: int, bounds: np.ndarray | None) -> list[Track]:
    """What ``tracks`` (of one tracker) report in this frame, keypoints in one batch: the box (the raw detection in
    the raw mode) clipped to the image ``bounds``, keypoints outside it by more than ``keypoint_box_margin``
    MISSING."""
    if not tracks:
        return []
    settings = tracks[0].settings
    raw = settings.smoothing.mode is SmoothingMode.NONE
    boxes = _in_image(np.array([t.raw_box if raw and t.raw_box is not None else t.box for t in tracks], np.float64),
                      bounds)
    margin = settings.keypoint_box_margin
    if raw or margin is None:
        rows = [_outside_box(*t.keypoints.output(), box, margin) for t, box in zip(tracks, boxes)]
        keypoints, status = np.array([k for k, _ in rows]), np.array([s for _, s in rows])
    else:  # _outside_box's test, with the smoothers' own masking
        keypoints, status = smoother_outputs([t.keypoints for t in tracks], _keypoint_limits(boxes, margin))
    boxes = boxes.astype(np.float32)
    for array in (boxes, keypoints, status):  # and so each track's rows of them (views)
        array.setflags(write=False)
    snapshots = []
    for t, box, k, s in zip(tracks, boxes, keypoints, status):
        # Track's fields set as its frozen __init__ sets them, at a third of its cost (12 object.__setattr__ calls per
        # track and frame); the tests hold this to Track(...).
        snapshot = object.__new__(Track)
        snapshot.__dict__.update(
            track_id=t.track_id, state=t.state, box=box, score=float(t.score), class_id=int(t.class_id),
            keypoints=k, keypoint_status=s, age=t.age, hits=t.hits, frames_since_update=t.frames_since_update,
            detection_index=int(t.detection_index), frame_index=frame)
        snapshots.append(snapshot)
    return snapshots


def _in_image(boxes: np.ndarray, bounds: np.ndarray | None) -> np.ndarray:
    """``boxes`` (..., 4) clipped to an image whose ``bounds`` are (width, height, width, height); unchanged when
    those are None."""
    if bounds is None:
        return boxes
    return np.minimum(np.maximum(boxes, 0.0), bounds)  # np.clip costs twice as much on one box


def _freeze(track: Track) -> Track:
    for array in (track.box, track.keypoints, track.keypoint_status):
        array.setflags(write=False)
    return track


def _image_bounds(image_size) -> np.ndarray:
    """(4,) float (width, height, width, height) of a valid ``image_size``; ValueError otherwise."""
    size = np.asarray(image_size, np.float64)
    values = size.tolist() if size.shape == (2,) else []
    if len(values) != 2 or not all(0.0 < value < math.inf for value in values):  # NaN fails too
        raise ValueError(f"image_size must be (width, height), two positive numbers, got {image_size!r}")
    return np.array(values * 2)


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
    usable = (boxes[:, 2:] > boxes[:, :2]).all(1) & np.isfinite(boxes).all(1) & np.isfinite(scores)
    if usable.all():  # most frames: nothing to drop
        return (np.arange(len(boxes)), boxes, scores,
                None if poses is None else poses.keypoints.astype(np.float64))
    logger.debug("dropping %d detections with non-finite or empty boxes", int((~usable).sum()))
    index = np.flatnonzero(usable)
    keypoints = None if poses is None else poses.keypoints[index].astype(np.float64)
    return index, boxes[index], scores[index], keypoints


def _box_costs(tracks: list[_LiveTrack], boxes: np.ndarray, settings: TrackerSettings
               ) -> tuple[np.ndarray, np.ndarray]:
    """(T, D) cost of matching ``tracks`` to ``boxes`` by their boxes alone (``1 - IoU`` with the predicted box,
    plus the geometric fit, :func:`_geometry`), and the IoU.

    A pair with no box overlap at all is never matched by it (re-linking handles lost tracks), nor one whose box
    is not where the track's animal can be (infinite cost); among the others, the nearer counts.
    """
    predicted = np.array([t.box for t in tracks], np.float64)
    iou = box_iou(predicted, boxes)
    geometry, _ = _geometry(tracks, boxes, settings, predicted=predicted)
    # A track missed in one frame is still held to the match gate: one box cut or grown by a neighbour, which
    # made it miss, must not hand its animal to a track lost for longer (whose wider spread fits it anyway).
    gate = np.array([settings.relink_gate if t.state is TrackState.LOST and t.frames_since_update > 2
                     else settings.match_gate for t in tracks])[:, None]
    cost = 1.0 - iou + settings.geometry_weight * np.minimum(geometry / gate, 1.0)
    return np.where((iou > 0) & (geometry <= gate), cost, np.inf), iou


class _FrameCosts:
    """:func:`_box_costs` of all the live tracks and all the detections of one frame, and the detections' overlaps,
    each computed at its first use and sliced for each association stage and the pose review after (numpy's cost
    per call, not per pair, is what a few pairs cost); the tracks' boxes and states must not change meanwhile
    (:meth:`Tracker.update` drops it before they do)."""

    def __init__(self, tracks: list[_LiveTrack], boxes: np.ndarray, settings: TrackerSettings) -> None:
        self._tracks, self._boxes, self._settings = list(tracks), boxes, settings
        self._rows = {id(t): i for i, t in enumerate(self._tracks)}

    @cached_property
    def _all_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        return _box_costs(self._tracks, self._boxes, self._settings)

    @cached_property
    def _all_overlaps(self) -> np.ndarray:
        return box_iou(self._boxes, self._boxes)

    def __call__(self, tracks: list[_LiveTrack], detections: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, D) :func:`_box_costs` and IoU of ``tracks`` (live in this frame) and ``detections`` (indices)."""
        rows = [self._rows[id(t)] for t in tracks]
        cost, iou = self._all_pairs
        return cost.take(rows, 0).take(detections, 1), iou.take(rows, 0).take(detections, 1)

    def overlaps(self, detections: np.ndarray) -> np.ndarray:
        """(D, D) IoU of ``detections`` (indices) with each other (a copy)."""
        return self._all_overlaps.take(detections, 0).take(detections, 1)


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
        self._ended: list[_LiveTrack] = []  # their compact logs; expanded into TrackRecords by history()
        self._spill = Spill() if self.settings.records and self.settings.spill_history else None
        self._frame = -1
        self._review: _Review | None = None
        self._bounds: np.ndarray | None = None  # (width, height, width, height), once update() is told the size
        self._held: list[TrackRecord] = []  # held tracks taken back, recorded under the identity that took them
        # Every usable detection (frame, index, box, score), for offline output (TrackHistory.detections), and its
        # own colours (TrackHistory.colours; created at the first colours given, NaN rows for the detections before).
        self._seen = Rows((7,), np.float64, spill=self._spill) if self.settings.records else None
        self._seen_colours: Rows | None = None
        self._own: dict[int, np.ndarray] = {}  # this frame's own colours by detection index (claim_frames)
        self._costs: _FrameCosts | None = None  # this frame's box costs, from matching to the review (update())

    @property
    def frame_index(self) -> int:
        """Index of the last frame seen (-1 before the first)."""
        return self._frame

    def update(self, detections: Detections, poses: Poses | None = None,
               features: np.ndarray | BoxColours | None = None, image_size: tuple[int, int] | None = None
               ) -> list[Track]:
        """Advance one frame with this frame's detections (possibly none) and, optionally, their poses.

        Args:
            detections: N detections of this frame.
            poses: N poses aligned with ``detections``, or None (see :meth:`attach_poses`).
            features: the detections' colours (:func:`tracking.appearance.box_colours`), or (N, D) appearance
                features aligned with ``detections`` (:func:`tracking.appearance.colour_histograms`; a NaN row:
                none for that detection; a box's own colours are then its whole colours where it overlaps no other
                box), or None. Used only when ``appearance_weight`` > 0.
            image_size: (width, height) of the frame, or None. Once given (kept for the frames after, and for
                :meth:`predict_only`), the boxes reported are clipped to the image.

        Returns:
            The confirmed tracks matched in this frame and the lost ones missed for at most
            ``report_lost_frames`` frames (on their predicted boxes), in ID order.
        """
        if not isinstance(detections, Detections):
            raise ValueError(f"detections must be a Detections, got {type(detections).__name__}")
        if poses is not None:
            _check_poses(poses, len(detections))
        colours, split = self._check_features(features, len(detections)), isinstance(features, BoxColours)
        if image_size is not None:
            self._bounds = _image_bounds(image_size)
        self._advance()
        index, boxes, scores, keypoints = _clean(detections, poses)
        # Colours of a box that overlaps another are not one animal's, beyond its own part: they update no average
        # and judge no match.
        features = whole = None
        own = np.zeros(len(boxes), bool)
        if colours is not None:
            whole, features = colours.whole[index], colours.own[index]
            own = np.isfinite(features).all(axis=1)
            if not split:  # one array: a box's colours are its own only where it overlaps no other box
                own &= _clear_of_others(boxes)
        if self._seen is not None:
            self._record_seen(index, boxes, scores, features, own)
        if self.settings.claim_frames > 0 and features is not None:
            self._own = {int(index[j]): features[j] for j in np.flatnonzero(own)}
        self._costs = _FrameCosts(self._tracks, boxes, self.settings)
        pairs, unmatched_tentative, unmatched_established, unmatched_detections = self._match(
            boxes, scores, keypoints, features, own)
        if keypoints is not None:
            pairs, refused = self._refuse_contradicting(pairs, boxes, keypoints)
            unmatched_established += refused
        self._review = (self._crowded(pairs, unmatched_established, boxes, scores, index, features, own)
                        if keypoints is None else None)
        self._costs = None  # the tracks change from here
        for track, j in pairs:
            if (self.settings.revise_frames > 0 and track.state is TrackState.LOST
                    and track.frames_since_update >= self.settings.revise_gap):
                feature = features[j] if own[j] else None
                track.ghost = _Ghost(track, self._frame, self._link_costs(track, boxes[j], feature,
                                                                          unmatched_established))
        if pairs:
            matched = [j for _, j in pairs]
            _update_tracks([t for t, _ in pairs], boxes.take(matched, 0), scores.take(matched).tolist(),
                           index.take(matched).tolist())
            if keypoints is not None:
                _attach_poses([t for t, _ in pairs], keypoints.take(matched, 0))
        for track, j in pairs:
            if own[j] and self._fits(track, features[j]):
                track.update_appearance(features[j])
            if track.state is not TrackState.TENTATIVE:
                track.state = TrackState.CONFIRMED
        for track in unmatched_established:
            track.state = TrackState.LOST
        detection_of = {t.track_id: j for t, j in pairs}
        self._settle_newcomers([t for t, _ in pairs if t.state is TrackState.TENTATIVE], unmatched_established,
                               keypoints, detection_of)
        # A tentative track seen twice or more survives a few missed frames (a held one would otherwise die of one
        # miss before its lost track could take it back); seen once, it ends at its first miss.
        unmatched_tentative = [t for t in unmatched_tentative
                               if t.hits < 2 or t.frames_since_update > self.settings.tentative_patience]
        if colours is not None and self.settings.claim_frames > 0:
            self._claim_by_colour(keypoints, detection_of)
        self._end(unmatched_tentative + [t for t in unmatched_established
                                         if t.frames_since_update > self.settings.max_lost_frames])
        awaited = self._awaited(boxes.take(unmatched_detections, 0))
        # A box that repeats a matched one starts no track, unless an animal lost for long may be back there: a
        # track started there is held, unreported, until a lost track takes it or it proves a new animal.
        keep = ~self._duplicates(boxes, whole, unmatched_detections, [j for _, j in pairs]) | awaited
        for j, back in zip(unmatched_detections[keep], awaited[keep]):
            # A detection where an animal lost for long may be back starts a (held) track at a lower score.
            if scores[j] >= (self.settings.high_score if back else self.settings.new_track_score):
                self._start(boxes[j], float(scores[j]), int(detections.class_ids[index[j]]), int(index[j]),
                            None if keypoints is None else keypoints[j])
                if own[j]:
                    self._tracks[-1].update_appearance(features[j])
        if keypoints is not None:
            row = {int(d): j for j, d in enumerate(index)}
            seen = [t for t in self._tracks if t.detection_index >= 0]
            seen_keypoints = keypoints[[row[t.detection_index] for t in seen]]
            self._end_poseless(seen, seen_keypoints, self._end_young_duplicates(seen, seen_keypoints))
        return self._report(self._reported_after_update)

    def _record_seen(self, index: np.ndarray, boxes: np.ndarray, scores: np.ndarray, features: np.ndarray | None,
                     own: np.ndarray) -> None:
        """Record this frame's detections scored ``low_score`` or more, and their own colours (NaN: none)."""
        usable = np.flatnonzero(scores >= self.settings.low_score)
        if features is not None and self._seen_colours is None:
            self._seen_colours = Rows((features.shape[1],), np.float16, spill=self._spill)
            for _ in range(self._seen.size):
                self._seen_colours.append(np.nan)
        for j in usable:
            self._seen.append((self._frame, index[j], *boxes[j], scores[j]))
            if self._seen_colours is not None:
                self._seen_colours.append(features[j] if features is not None and own[j] else np.nan)

    def _duplicates(self, boxes: np.ndarray, features: np.ndarray | None, unmatched: np.ndarray,
                    matched: list[int]) -> np.ndarray:
        """(len(unmatched),) bool, the unmatched detections that repeat a matched one: overlapping it by
        ``duplicate_iou`` or more, with whole-box colours (``features``) within ``duplicate_colour`` of its colours
        (none without features)."""
        s = self.settings
        duplicate = np.zeros(len(unmatched), bool)
        if features is None or s.duplicate_colour == 0 or not len(unmatched) or not matched:
            return duplicate
        overlap = box_iou(boxes[unmatched], boxes[matched]) >= s.duplicate_iou
        alike = appearance_distance(features[unmatched], features[matched]) <= s.duplicate_colour  # NaN: False
        return (overlap & alike).any(axis=1)

    def _awaited(self, boxes: np.ndarray) -> np.ndarray:
        """(D,) bool, the boxes that a track lost for more than ``relink_delay`` frames could be."""
        waiting = [t for t in self._tracks
                   if t.state is TrackState.LOST and t.frames_since_update > self.settings.relink_delay]
        if not waiting or len(boxes) == 0:
            return np.zeros(len(boxes), bool)
        d2, _ = _geometry(waiting, boxes, self.settings, relinking=True)
        return (d2 <= self.settings.relink_gate).any(axis=0)

    def _settle_newcomers(self, newcomers: list[_LiveTrack], lost: list[_LiveTrack], keypoints: np.ndarray | None,
                          detection_of: dict[int, int]) -> None:
        """Confirm the tentative tracks matched in this frame, or hand them to the tracks lost for long.

        A track lost for more than ``relink_delay`` frames is not re-linked to a detection at once: the animal
        it lost may come back, or another may come in or a false box appear where it could be. A tentative
        track that such a lost track could be (its box within the re-link gate) is held back, unreported, and
        once it has ``relink_hits`` hits (a false box rarely lasts) the lost tracks that fit it best (by position,
        the normalised distance alone, so that a larger animal or one lost longer is not held back by its wider
        spread; and, when used, colours) take their own back (:meth:`_LiveTrack.absorb`); one that none takes is
        confirmed after ``hold_hits`` hits. The others are confirmed after ``min_hits`` hits.
        """
        s = self.settings
        if s.revise_frames > 0 and newcomers:
            newcomers = self._revise(newcomers, lost, keypoints, detection_of)
        waiting = [t for t in lost if t.frames_since_update > s.relink_delay]
        claimable = np.zeros(len(newcomers), bool)
        if newcomers and waiting:
            d2, _ = _geometry(waiting, np.array([t.last_box for t in newcomers]), s, relinking=True)
            gated = d2 <= s.relink_gate
            claimable = gated.any(axis=0)
            ready = np.array([t.hits >= s.relink_hits for t in newcomers])
            cost = np.where(gated & ready[None, :], d2, np.inf)
            colours = [t.appearance for t in newcomers]
            if s.appearance_weight > 0 and any(c is not None for c in colours):
                width = next(len(c) for c in colours if c is not None)
                features = np.stack([c if c is not None else np.full(width, np.nan) for c in colours])
                cost = self._with_colours(cost, waiting, features)
            for i, j in linear_assignment(cost, _NO_LIMIT).matches:
                newcomer = newcomers[j]
                if s.revise_frames > 0:
                    waiting[i].ghost = _Ghost(waiting[i], self._frame, self._link_costs(
                        waiting[i], newcomer.last_box, newcomer.appearance, lost))
                self._keep_held_frames(waiting[i], newcomer)
                waiting[i].absorb(newcomer)
                if keypoints is not None:
                    waiting[i].attach_pose(keypoints[detection_of[newcomer.track_id]])
                self._tracks.remove(newcomer)
                claimable[j] = False
                newcomer.state = TrackState.LOST  # absorbed: neither confirmed nor recorded
        for newcomer, held in zip(newcomers, claimable):
            if newcomer.state is TrackState.TENTATIVE and newcomer.hits >= (max(s.hold_hits, s.min_hits) if held
                                                                             else s.min_hits):
                newcomer.state = TrackState.CONFIRMED

    def _claim_by_colour(self, keypoints: np.ndarray | None, detection_of: dict[int, int]) -> None:
        """Let the tracks lost for more than ``claim_delay`` frames take over the young tracks matched in this frame
        whose own colours are theirs (``claim_frames``); a young track taken over ends, the frames it was matched in
        recorded under the identity that took it over (:meth:`_keep_held_frames`)."""
        s = self.settings
        waiting = [t for t in self._tracks if t.state is TrackState.LOST and t.appearance is not None
                   and t.frames_since_update > s.claim_delay]
        # A track whose match the poses may still review (a crowded box) waits for a frame clear of that.
        reviewed = set() if self._review is None else {id(t) for t in self._review.tracks}
        young = [t for t in self._tracks if t.state is TrackState.CONFIRMED and t.frames_since_update == 0
                 and self._frame - t.first_frame <= s.claim_frames and t.own_count >= s.claim_colours
                 and id(t) not in reviewed]
        for track in young:
            if not waiting:
                return
            distance = appearance_distance(track.own_colours[None], np.stack([t.appearance for t in waiting]))[0]
            nearest = np.argsort(distance)
            if distance[nearest[0]] > s.claim_max_appearance:
                continue
            if len(nearest) > 1:  # the colours must single the claiming track out among the others
                if distance[nearest[1]] - distance[nearest[0]] < s.appearance_margin:
                    continue
            elif waiting[int(nearest[0])].frames_since_update <= s.relink_delay:
                continue  # alone and lost for a few frames: its animal may still come back where it was
            lost = waiting.pop(int(nearest[0]))
            lost.absorb(track)
            if keypoints is not None and track.track_id in detection_of:
                lost.attach_pose(keypoints[detection_of[track.track_id]])
            track.detection_index = -1  # its detection of this frame is the lost track's now
            # The tracker judged the young track to be the lost track's animal: its frames are recorded under that
            # identity (offline output), as a held track's are, not under an identity of a few frames.
            self._keep_held_frames(lost, track)
            self._tracks.remove(track)

    def _keep_held_frames(self, track: _LiveTrack, newcomer: _LiveTrack) -> None:
        """Record, for the offline output, the frames before this one in which ``newcomer`` (a held track that
        ``track`` takes back now, or a young one it takes over) was matched, under ``track``'s identity: the live
        tracker could not report them so."""
        if not self.settings.records:
            return
        record = newcomer.record()
        reported = record.detection_index >= 0
        reported[-1] = False  # this frame's match is the track's own from now on (and counts once, below)
        self._held.append(replace(record, track_id=track.track_id, class_id=track.class_id, reported=reported))

    def _link_costs(self, track: _LiveTrack, box: np.ndarray, feature: np.ndarray | None,
                    lost: list[_LiveTrack]) -> tuple[float, dict[int, float]]:
        """What ``track`` taking ``box`` back costs (:meth:`_claim_costs`), and what each other track lost before this
        frame would (by ID, those within the gates)."""
        others = [t for t in lost if t is not track and t.state is TrackState.LOST]
        cost = self._claim_costs([track, *others], box[None], None if feature is None else feature[None])[:, 0]
        return float(cost[0]), {t.track_id: float(c) for t, c in zip(others, cost[1:]) if np.isfinite(c)}

    def _claim_costs(self, tracks: list, boxes: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        """(T, D) costs of lost tracks (or ghosts) taking ``boxes`` back, as take-backs weigh them: the normalised
        distance of the geometric fit plus the colours' penalty, infinite outside the re-link gate or the colours'."""
        d2, _ = _geometry(tracks, boxes, self.settings, relinking=True)
        return self._with_colours(np.where(d2 <= self.settings.relink_gate, d2, np.inf), tracks, features)

    def _with_colours(self, cost: np.ndarray, tracks: list, features: np.ndarray | None) -> np.ndarray:
        """``cost`` (T, D) of re-links or take-backs with the colours': infinite over ``relink_max_appearance``, plus
        :meth:`_colour_penalty` elsewhere (unchanged without ``features``)."""
        appearance = self._appearance(tracks, features)
        if appearance is None:
            return cost
        return np.where(appearance > self.settings.relink_max_appearance, np.inf,
                        cost + self._colour_penalty(appearance))

    def _revise(self, newcomers: list[_LiveTrack], lost: list[_LiveTrack], keypoints: np.ndarray | None,
                detection_of: dict[int, int]) -> list[_LiveTrack]:
        """Undo a recent re-link when the animal its track had lost comes back; returns the newcomers left.

        A track that took an animal back after ``revise_gap`` or more unseen frames keeps, for ``revise_frames``
        frames, a ghost of itself (where its own animal would be). When a held newcomer is ready to be taken back
        (``relink_hits``) and fits that ghost, the two ways of linking are weighed at take-back costs
        (:meth:`_claim_costs`; no link at all costs the whole re-link gate, a new identity): as they stand (the
        track on the animal it took, the newcomer to the lost track that fits it best or to a new identity) or
        revised (the track back on its own animal, the newcomer; the animal it took to the lost track that fitted
        it best when it was taken, or to a new identity). Revised by more than ``revise_margin``, the track takes
        the newcomer over on its ghost's state, and the other side takes over the box and state it had.
        """
        s = self.settings
        provisional = [t for t in self._tracks if t.ghost is not None and t.state is TrackState.CONFIRMED
                       and t.frames_since_update == 0 and t.track_id in detection_of]
        if not provisional:
            return newcomers
        waiting = [t for t in lost if t.frames_since_update > s.relink_delay and t.state is TrackState.LOST]
        left = list(newcomers)
        for newcomer in newcomers:
            if newcomer.hits < s.relink_hits or newcomer.state is not TrackState.TENTATIVE or not provisional:
                continue
            box = newcomer.last_box[None]
            feature = None if newcomer.appearance is None else newcomer.appearance[None]
            unrevised = s.relink_gate  # the newcomer's cost as it stands: its best lost track, or a new identity
            if waiting:
                unrevised = min(unrevised, float(self._claim_costs(waiting, box, feature).min()))
            ghosts = self._claim_costs([t.ghost for t in provisional], box, feature)[:, 0]
            best, best_gain, best_heir = None, s.revise_margin, None
            for track, back in zip(provisional, ghosts):
                if not np.isfinite(back):
                    continue
                heir_cost, heir = s.relink_gate, None  # who takes the track's box: a lost track, or a new identity
                for other in waiting:
                    cost = track.ghost.others.get(other.track_id, np.inf)
                    if cost < heir_cost:
                        heir_cost, heir = cost, other
                gain = track.ghost.cost + unrevised - back - heir_cost
                if gain > best_gain:
                    best, best_gain, best_heir = track, gain, heir
            if best is None:
                continue
            self._undo_link(best, newcomer, best_heir, keypoints, detection_of)
            provisional.remove(best)
            left.remove(newcomer)
            if best_heir is not None:
                waiting.remove(best_heir)
        return left

    def _undo_link(self, track: _LiveTrack, newcomer: _LiveTrack, heir: _LiveTrack | None,
                   keypoints: np.ndarray | None, detection_of: dict[int, int]) -> None:
        """``track`` goes back to its ghost's state and takes ``newcomer`` over; ``heir`` (a lost track, or a new
        one when None) takes over the box and state ``track`` had, with the heights it matched since its ghost."""
        ghost, track.ghost = track.ghost, None
        taken = track.hits - ghost.hits  # matches since the link
        if heir is None:
            heir = _LiveTrack(next(self._ids), track.last_box, track.score, track.class_id, self._frame,
                              self.settings, self._spill)
            heir.hits, heir._heights = 0, []
            self._tracks.append(heir)
        logger.debug("frame %d: track %d gives the animal it took back to track %d, and takes its own", self._frame,
                     track.track_id, heir.track_id)
        if self._review is not None:  # the heir holds the track's detection now
            self._review.tracks[:] = [heir if t is track else t for t in self._review.tracks]
        hits, heights = heir.hits, heir._heights
        heir.absorb(track)
        heir.hits, heir._heights = hits + taken, heights + track._heights[-taken:]
        heir._new_median()
        # absorb() takes the newcomer's box state; the hits, heights and colours are the track's before the link.
        track.hits, track._heights, track.appearance = ghost.hits, list(ghost.heights), ghost.appearance
        self._keep_held_frames(track, newcomer)
        track.absorb(newcomer)
        # Each track's keypoints were the other animal's: forgotten, so that the next pose sets them.
        track.keypoints.forget(track.scale)
        heir.keypoints.forget(heir.scale)
        if keypoints is not None:
            heir.attach_pose(keypoints[detection_of[track.track_id]])
        self._tracks.remove(newcomer)
        newcomer.state = TrackState.LOST  # absorbed: neither confirmed nor recorded

    def _colour_penalty(self, appearance: np.ndarray) -> np.ndarray:
        """What colours add to a cost of the geometric fit (re-links and take-backs): up to as much as the whole gate.
        A pair without colours to compare (a track or a box never seen clear of others) counts as the farthest
        colours a lost track may take (``relink_max_appearance``), not as a perfect match: a track that never showed
        its colours does not win over one whose colours fit."""
        s = self.settings
        return s.appearance_weight * s.relink_gate * np.nan_to_num(appearance, nan=s.relink_max_appearance)

    def _fits(self, track: _LiveTrack, feature: np.ndarray) -> bool:
        """Whether ``feature`` may update ``track``'s colours: it has none yet, or they are within
        ``appearance_update_max`` of it."""
        if track.appearance is None or self.settings.appearance_update_max >= 1.0:
            return True
        distance = appearance_distance(track.appearance[None], feature[None])[0, 0]
        return float(distance) <= self.settings.appearance_update_max

    def _check_features(self, features: np.ndarray | BoxColours | None, count: int) -> BoxColours | None:
        """``features`` as float64 :class:`BoxColours` (an array as both its whole and own colours), or None when
        appearance is off or none were given."""
        if features is None or self.settings.appearance_weight == 0:
            return None
        if isinstance(features, BoxColours):
            whole, own = np.asarray(features.whole, np.float64), np.asarray(features.own, np.float64)
        else:
            whole = own = np.asarray(features, np.float64)
        if whole.ndim != 2 or len(whole) != count:
            raise ValueError(f"features must be an (N, D) array aligned with the {count} detections, "
                             f"got shape {whole.shape}")
        width = next((len(t.appearance) for t in self._tracks if t.appearance is not None), whole.shape[1])
        if whole.shape[1] != width:
            raise ValueError(f"features have {whole.shape[1]} values per detection, the tracks {width}")
        return BoxColours(whole, own)

    def _reported_after_update(self, track: _LiveTrack) -> bool:
        if track.state is TrackState.CONFIRMED:
            return track.frames_since_update == 0
        if track.state is not TrackState.LOST:
            return False
        if track.frames_since_update <= self.settings.report_lost_frames:
            return True
        # Its animal's pose was found in its predicted box in the last frame (:meth:`_keep_by_pose`).
        return track.pose_kept == self._frame - 1 and track.frames_since_update <= self.settings.pose_keep_frames

    def predict_only(self) -> list[Track]:
        """Advance one frame without running the detector: tracks move on their prediction, no miss is counted.

        Returns:
            The confirmed tracks with their predicted boxes (the boxes to run the pose model on), and
            the lost ones still within ``report_lost_frames``.
        """
        self._advance()
        for track in self._tracks:
            track.frames_since_update -= 1  # not a miss: the detector did not look
            if track.ghost is not None:
                track.ghost.frames_since_update -= 1
        return self._report(lambda t: t.state is TrackState.CONFIRMED or self._reported_after_update(t))

    def attach_poses(self, track_ids: Sequence[int], poses: Poses) -> list[Track]:
        """Give this frame's poses, estimated on the boxes of ``track_ids``, to those tracks.

        Args:
            track_ids: IDs of live tracks, aligned with ``poses``.
            poses: one pose per ID.

        Returns:
            Fresh snapshots of those tracks, in the order of ``track_ids``, less the young ones ended as another's
            duplicate (``TrackerSettings.young_duplicate_oks``) and those ended for showing no animal's pose
            (``TrackerSettings.young_pose_keypoints``).
        """
        track_ids = [int(i) for i in track_ids]
        _check_poses(poses, len(track_ids))
        by_id = {t.track_id: t for t in self._tracks}
        missing = [i for i in track_ids if i not in by_id]
        if missing:
            raise ValueError(f"track_ids {missing} are not live tracks of this tracker")
        keypoints = poses.keypoints.astype(np.float64)
        # The tracks' predicted keypoints, which the checks below compare the poses with, taken once: the keypoint
        # filters change only when the poses are attached, last.
        predicted = (smoother_positions([by_id[i].keypoints for i in track_ids]) if track_ids
                     else np.zeros((0, NUM_KEYPOINTS, 2)))
        if self._review is not None:
            keypoints = self._settle(track_ids, keypoints, by_id, predicted)
        keypoints = self._give_up_contradicting(track_ids, keypoints, by_id, predicted)
        keypoints = self._drop_duplicates(track_ids, keypoints, by_id)
        rows = [i for i, track_id in enumerate(track_ids) if by_id[track_id].updated_now]
        matched, matched_keypoints = [by_id[track_ids[i]] for i in rows], keypoints.take(rows, 0)
        duplicates = self._end_young_duplicates(matched, matched_keypoints)
        ended = {t.track_id for t in duplicates + self._end_poseless(matched, matched_keypoints, duplicates)}
        self._keep_by_pose(track_ids, keypoints, by_id, predicted)
        kept = [i for i, track_id in enumerate(track_ids) if track_id not in ended]
        _attach_poses([by_id[track_ids[i]] for i in kept], keypoints.take(kept, 0))
        return _snapshots([by_id[i] for i in track_ids if i not in ended], self._frame, self._bounds)

    def _end_young_duplicates(self, tracks: list[_LiveTrack], keypoints: np.ndarray) -> list[_LiveTrack]:
        """End (unrecorded) the young ``tracks`` whose pose is that of an older one (``young_duplicate_oks``); all of
        ``tracks`` matched in this frame, to detections whose poses are ``keypoints`` (n, K, 3). Returns the ended."""
        s = self.settings
        if s.young_duplicate_oks == 0 or len(tracks) < 2:
            return []
        young = np.array([t.hits <= s.young_duplicate_hits for t in tracks])
        older = ~young & np.array([t.state is TrackState.CONFIRMED for t in tracks])
        if not (young.any() and older.any()):
            return []
        valid = _confident(keypoints[..., 2], s.keypoint_threshold)
        area = box_area(np.array([t.raw_box for t, o in zip(tracks, older) if o], np.float64))
        oks = keypoint_similarity(keypoints.compress(young, 0), keypoints.compress(older, 0), area,
                                  valid_a=valid.compress(young, 0), valid_b=valid.compress(older, 0),
                                  sigmas=SIGMAS, min_keypoints=s.young_duplicate_keypoints)
        ended = [tracks[i] for i in young.nonzero()[0][(oks >= s.young_duplicate_oks).any(axis=1)]]  # NaN: no
        for track in ended:
            logger.debug("frame %d: track %d ends, a duplicate of an older track's animal", self._frame, track.track_id)
            self._tracks.remove(track)
        return ended

    def _end_poseless(self, tracks: list[_LiveTrack], keypoints: np.ndarray,
                      ended: list[_LiveTrack]) -> list[_LiveTrack]:
        """End (unrecorded) the young ``tracks`` whose poses showed no animal (``young_pose_keypoints``) in more than
        half of their first ``young_pose_checks`` checks once confirmed, each made in a frame where another track's
        pose shows an animal (``young_pose_reference``); all of ``tracks`` matched in this frame, to detections whose
        poses are ``keypoints`` (n, K, 3), less those ``ended`` already (as young duplicates). Returns the ended."""
        s = self.settings
        if s.young_pose_keypoints == 0 or len(tracks) < 2:
            return []
        live = np.array([t.state is not TrackState.TENTATIVE and t not in ended for t in tracks])
        checked = live & np.array([t.pose_checks < s.young_pose_checks and t.hits <= s.young_duplicate_hits
                                   for t in tracks])
        if not checked.any():
            return []
        shown = np.where(live, _confident(keypoints[..., 2], s.keypoint_threshold).sum(axis=1), -1)
        # What the other live tracks show at best: the most confident keypoints of any, or the second most for it.
        best = int(shown.argmax())
        others = np.full(len(tracks), shown.max())
        others[best] = np.delete(shown, best).max()
        poseless = []
        for i in np.flatnonzero(checked & (others >= s.young_pose_reference)).tolist():
            track = tracks[i]
            track.pose_checks += 1
            track.poses_missing += int(shown[i] < s.young_pose_keypoints)
            if 2 * track.poses_missing > s.young_pose_checks:
                logger.debug("frame %d: track %d ends, no animal's pose in its box", self._frame, track.track_id)
                self._tracks.remove(track)
                poseless.append(track)
        return poseless

    def _crowded(self, pairs: list[tuple[_LiveTrack, int]], missed: list[_LiveTrack], boxes: np.ndarray,
                 scores: np.ndarray, index: np.ndarray, features: np.ndarray | None, own: np.ndarray
                 ) -> _Review | None:
        """The tracks past their tentative frames (confirmed, or lost until this match) matched in this frame to
        crowded detections, and the tracks missed in this frame that could have taken one of them, for
        :meth:`_settle`: with the poses after tracking, their keypoints may show that a track took another's animal
        (a track lost a frame or two among its neighbours takes one of their boxes back as easily as its own).

        A detection is crowded when it overlaps another matched detection, or the predicted box of a track missed
        in this frame (still reported: ``report_lost_frames``), by ``review_iou``.
        """
        pairs = [(t, j) for t, j in pairs if t.state is not TrackState.TENTATIVE]
        missed = [t for t in missed if t.state is not TrackState.TENTATIVE
                  and t.frames_since_update <= self.settings.report_lost_frames]
        if not pairs or len(pairs) + len(missed) < 2 or self.settings.oks_weight == 0:  # nothing to review
            return None
        detections = np.array([j for _, j in pairs])
        overlap = self._costs.overlaps(detections)
        np.fill_diagonal(overlap, 0.0)
        crowded = overlap.max(axis=1) >= self.settings.review_iou
        near = np.zeros(len(missed), bool)
        if missed:
            reach = self._costs(missed, detections)[1] >= self.settings.review_iou  # IoU with their predicted boxes
            near = reach.any(axis=1)
            crowded |= reach.any(axis=0)
        if crowded.sum() + near.sum() < 2:
            return None
        tracks = [t for (t, _), c in zip(pairs, crowded) if c] + [t for t, n in zip(missed, near) if n]
        detections = detections[crowded]
        cost, iou = self._costs(tracks, detections)
        appearance = self._appearance(tracks, None if features is None else features[detections])
        if appearance is not None:
            # The poses re-assign no detection to a track its colours refuse (as stage 1 would): a box holding two
            # animals may show one pose, the nearer one's, whichever animal the box is.
            refused = self._refused_by_colour(tracks, appearance, features[detections], own[detections])
            refused[np.arange(len(detections)), np.arange(len(detections))] = False  # the matches as they stand
            cost = np.where(refused, np.inf, cost)
        return _Review(tracks, boxes.take(detections, 0), scores[detections], index[detections], cost, iou)

    def _settle(self, track_ids: list[int], keypoints: np.ndarray, by_id: dict[int, _LiveTrack],
                predicted: np.ndarray) -> np.ndarray:
        """Re-assign the reviewed detections among their tracks with the poses found in them (the stage-1 cost
        with keypoint similarity, as when the poses come first); returns ``keypoints`` re-ordered to follow the
        detections to their new tracks (a track left without one gets no pose: NaN). ``predicted``: the predicted
        keypoints of ``track_ids``' tracks (:func:`tracking.smoothing.smoother_positions`)."""
        review, self._review = self._review, None
        position = {track_id: i for i, track_id in enumerate(track_ids)}
        if any(t.track_id not in position for t in review.tracks):
            return keypoints
        m = len(review.boxes)  # the matched tracks: track i holds detection i
        rows = [position[t.track_id] for t in review.tracks]
        det_kpts = keypoints.take(rows[:m], 0)
        track_kpts = predicted.take(rows, 0)
        valid = det_kpts[:, :, 2] >= self.settings.keypoint_threshold
        area = box_area(review.boxes)
        oks = keypoint_similarity(track_kpts, det_kpts, area, valid_b=valid, sigmas=SIGMAS)
        # A track unseen for more than max_predicted_frames has no predicted keypoints left: with nothing to compare,
        # its match kept its boxes-only cost and won over a neighbour whose pose fitted (an animal hidden behind
        # another took the box of the one in front). Where a pair shares too few predicted keypoints, the keypoints
        # the track's filter still carries with its box are compared instead.
        blind = np.isnan(oks).any(axis=1)
        if blind.any():
            carried = np.array([review.tracks[i].keypoints.carried() for i in np.flatnonzero(blind)])
            by_carried = keypoint_similarity(carried, det_kpts, area, valid_b=valid, sigmas=SIGMAS)
            oks[blind] = np.where(np.isnan(oks[blind]), by_carried, oks[blind])
        # Stage 1's cost with the poses first (_associate): the boxes-only cost with its IoU part fused with OKS
        # (a pair sharing too few keypoints to compare even so, OKS NaN, keeps its boxes-only cost).
        cost = review.cost - (1.0 - review.iou) + fuse_similarities(review.iou, oks, self.settings.oks_weight)
        assignment = linear_assignment(np.where(np.isfinite(cost), cost, _NO_LIMIT), _NO_LIMIT)
        if len(assignment.matches) < m:
            return keypoints
        owner = np.empty(m, np.int64)
        owner[assignment.matches[:, 1]] = assignment.matches[:, 0]
        now = cost[np.arange(m), np.arange(m)].sum()
        better = cost[owner, np.arange(m)].sum()
        if (owner == np.arange(m)).all() or not better < now - self.settings.review_margin:
            return keypoints
        keypoints = keypoints.copy()
        for i in set(range(m)) - set(owner.tolist()):  # matched tracks left without a detection
            review.tracks[i].unmatch()
            review.tracks[i].state = TrackState.LOST
            keypoints[rows[i]] = np.nan
        for j, i in enumerate(owner):
            if i == j:
                continue
            track = review.tracks[i]
            if i < m:
                track.take_over(review.boxes[j], float(review.scores[j]), int(review.index[j]))
            else:
                track.update(review.boxes[j], float(review.scores[j]), int(review.index[j]))
                track.state = TrackState.CONFIRMED
            keypoints[rows[i]] = det_kpts[j]
        return keypoints

    def _contradicting(self, tracks: list[_LiveTrack], boxes: np.ndarray, keypoints: np.ndarray,
                       predicted: np.ndarray) -> np.ndarray:
        """(n,) bool, the confirmed ``tracks`` whose detection's pose (``keypoints`` (n, K, 3) in ``boxes`` (n, 4),
        aligned with them) is less similar than ``min_pose_similarity`` to their ``predicted`` keypoints (n, K, 2,
        :func:`tracking.smoothing.smoother_positions`) (module docstring); False where fewer than 3 keypoints
        compare."""
        s = self.settings
        confirmed = np.array([t.state is TrackState.CONFIRMED for t in tracks], bool)
        if s.min_pose_similarity == 0 or s.oks_weight == 0 or not confirmed.any():
            return np.zeros(len(tracks), bool)
        valid = keypoints[:, :, 2] >= s.keypoint_threshold
        # Predicted keypoints drift the longer a track goes unseen: their tolerance grows with the frames since its
        # last detection (the keypoints carried through a missed frame, predicted or found by the pose model in the
        # track's drifting predicted box, lie farther from its animal's next pose: end to end, a track back from a
        # missed frame or two gave its own animal up in one check in five, a track seen in the last frame in under 1%).
        # Poses first, a confirmed track is always one seen in the last frame.
        unseen = np.array([max(t.unseen_before, 1) for t in tracks], np.float64)
        oks = _paired_similarity(predicted, keypoints, boxes, valid, tolerance=unseen)
        return confirmed & (oks < s.min_pose_similarity)  # NaN (fewer than 3 keypoints compare) contradicts nothing

    def _refuse_contradicting(self, pairs: list[tuple[_LiveTrack, int]], boxes: np.ndarray, keypoints: np.ndarray
                              ) -> tuple[list[tuple[_LiveTrack, int]], list[_LiveTrack]]:
        """With the poses first: the pairs whose track keeps its detection, and the tracks that refuse theirs
        (:meth:`_contradicting`; their detections start no track)."""
        if not pairs:
            return pairs, []
        detections = np.array([j for _, j in pairs])
        tracks = [t for t, _ in pairs]
        refuse = self._contradicting(tracks, boxes[detections], keypoints[detections],
                                     smoother_positions([t.keypoints for t in tracks]))
        return [p for p, r in zip(pairs, refuse) if not r], [t for t, r in zip(tracks, refuse) if r]

    def _give_up_contradicting(self, track_ids: list[int], keypoints: np.ndarray,
                               by_id: dict[int, _LiveTrack], predicted: np.ndarray) -> np.ndarray:
        """With the poses after tracking: the tracks matched in this frame whose pose contradicts them
        (:meth:`_contradicting`) are lost for this frame; returns ``keypoints`` with their rows NaN (no pose)."""
        rows = [i for i, track_id in enumerate(track_ids) if by_id[track_id].updated_now]
        if not rows:
            return keypoints
        tracks = [by_id[track_ids[i]] for i in rows]
        give_up = self._contradicting(tracks, np.array([t.raw_box for t in tracks]), keypoints.take(rows, 0),
                                      predicted.take(rows, 0))
        if not give_up.any():
            return keypoints
        keypoints = keypoints.copy()
        for i, track, refused in zip(rows, tracks, give_up):
            if refused:
                track.unmatch()
                track.state = TrackState.LOST
                keypoints[i] = np.nan
        return keypoints

    def _keep_by_pose(self, track_ids: list[int], keypoints: np.ndarray, by_id: dict[int, _LiveTrack],
                      predicted: np.ndarray) -> None:
        """Mark the lost tracks whose pose, found in their predicted box in this frame, is their animal's: at least
        ``pose_keep_keypoints`` confident keypoints, as similar as ``pose_keep_oks`` to the track's predicted
        keypoints (``keypoints`` after :meth:`_drop_duplicates`: a matched neighbour's pose is gone). Such a track
        is reported in the next frame too (:meth:`_reported_after_update`)."""
        s = self.settings
        if s.pose_keep_oks <= 0:
            return
        for track_id, pose, positions in zip(track_ids, keypoints, predicted):
            track = by_id[track_id]
            if track.state is not TrackState.LOST or track.frames_since_update == 0:
                continue
            valid = _confident(pose[:, 2], s.keypoint_threshold)
            if valid.sum() < s.pose_keep_keypoints:
                continue
            oks = _paired_similarity(positions[None], pose[None], track.box[None], valid[None])[0]
            if not oks >= s.pose_keep_oks:  # NaN (nothing to compare) keeps nothing
                continue
            track.pose_kept = self._frame

    def _drop_duplicates(self, track_ids: list[int], keypoints: np.ndarray,
                         by_id: dict[int, _LiveTrack]) -> np.ndarray:
        """``keypoints`` with the rows NaN (no pose) of the tracks missed in this frame whose pose is that of a track
        matched in it (``TrackerSettings.duplicate_pose_oks``)."""
        threshold = self.settings.duplicate_pose_oks
        if threshold <= 0:
            return keypoints
        # Matched to a detection in this frame (a frame without the detector matches none), or missed in it.
        seen = np.array([by_id[i].updated_now for i in track_ids])
        missed = np.array([by_id[i].frames_since_update > 0 for i in track_ids])
        if not (seen.any() and missed.any()):
            return keypoints
        valid = keypoints[..., 2] >= self.settings.keypoint_threshold
        unseen = np.flatnonzero(missed)
        boxes = np.array([by_id[track_ids[i]].raw_box for i in np.flatnonzero(seen)])
        oks = keypoint_similarity(keypoints[unseen], keypoints[seen], box_area(boxes), valid_a=valid[unseen],
                                  valid_b=valid[seen], sigmas=SIGMAS)
        duplicate = (oks >= threshold).any(axis=1)  # NaN (too few keypoints shared): no duplicate
        if not duplicate.any():
            return keypoints
        keypoints = keypoints.copy()
        keypoints[unseen[duplicate]] = np.nan
        return keypoints

    def tracks(self) -> list[Track]:
        """Snapshots of every live track (tentative, confirmed and lost), in ID order."""
        return self._report(lambda t: True, mark=False)

    def history(self) -> TrackHistory:
        """The recorded forward pass of every track so far (needs ``record_history`` or OFFLINE mode)."""
        if not self.settings.records:
            raise RuntimeError("history needs TrackerSettings(record_history=True) or SmoothingMode.OFFLINE")
        records = [t.record() for t in (*self._ended, *self._tracks)] + self._held
        size = None if self._bounds is None else (float(self._bounds[0]), float(self._bounds[1]))
        colours = None if self._seen_colours is None else self._seen_colours.array
        return TrackHistory(self._frame + 1, tuple(sorted(records, key=lambda r: r.track_id)), self.settings, size,
                            self._seen.array, colours)

    # -- internals ---------------------------------------------------------------------------------

    def _match(self, boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray | None,
               features: np.ndarray | None, own: np.ndarray):
        """The four association stages (module docstring); ``own``: (N,) bool, the detections whose
        features are one animal's (its own colours, :meth:`update`).

        Returns:
            (track, detection) pairs, tentative tracks left unmatched, confirmed or lost tracks left
            unmatched, and indices of confident detections left unmatched.
        """
        s = self.settings
        high = (scores >= s.high_score).nonzero()[0]
        low = ((scores >= s.low_score) & (scores < s.high_score)).nonzero()[0]
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
        self._review = None
        if self._own:  # a young track's own colours of the frame before, once its match there is final
            for track in self._tracks:
                if track.detection_index in self._own and self._frame - track.first_frame <= self.settings.claim_frames:
                    own = self._own[track.detection_index]
                    track.own_colours = own.copy() if track.own_colours is None else track.own_colours + own
                    track.own_count += 1
            self._own = {}
        ghosts = []
        for track in self._tracks:
            if track.ghost is not None:
                if (track.frames_since_update >= self.settings.relink_delay
                        or self._frame - track.ghost.frame > self.settings.revise_frames):
                    track.ghost = None
                else:
                    ghosts.append(track.ghost)
        _predict_tracks(self._tracks, ghosts)

    def _start(self, box: np.ndarray, score: float, class_id: int, detection_index: int,
               keypoints: np.ndarray | None) -> None:
        track = _LiveTrack(next(self._ids), box, score, class_id, self._frame, self.settings, self._spill)
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
                track.flush()
                self._ended.append(track)

    def _report(self, keep, mark: bool = True) -> list[Track]:
        reported = [track for track in sorted(self._tracks, key=lambda t: t.track_id) if keep(track)]
        if mark:
            for track in reported:
                track.reported_now = True
        return _snapshots(reported, self._frame, self._bounds)

    def _appearance(self, tracks: list[_LiveTrack], features: np.ndarray | None) -> np.ndarray | None:
        """(T, D) appearance distances of ``tracks`` to the rows of ``features``, NaN where either has none;
        None when appearance is not used."""
        if features is None:
            return None
        out = np.full((len(tracks), len(features)), np.nan)
        rows = [i for i, t in enumerate(tracks) if t.appearance is not None]
        if rows:
            out[rows] = appearance_distance(np.array([tracks[i].appearance for i in rows]), features)
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
        box_cost, iou = self._costs(tracks, candidates)
        cost = 1.0 - iou
        if keypoints is not None and self.settings.oks_weight > 0:
            track_kpts = smoother_positions([t.keypoints for t in tracks])
            det_kpts = keypoints[candidates]
            det_valid = det_kpts[:, :, 2] >= self.settings.keypoint_threshold
            oks = keypoint_similarity(track_kpts, det_kpts, box_area(boxes[candidates]), valid_b=det_valid,
                                      sigmas=SIGMAS)
            cost = fuse_similarities(iou, oks, self.settings.oks_weight)
        appearance = self._appearance(tracks, None if features is None else features[candidates])
        cost = self._blend(cost, appearance)
        if appearance is not None:
            cost = np.where(self._refused_by_colour(tracks, appearance, features[candidates], own[candidates]),
                            np.inf, cost)
        cost = cost + (box_cost - (1.0 - iou))  # the geometry term and the gates
        assignment = linear_assignment(cost, max_cost)
        pairs = [(tracks[i], int(candidates[j])) for i, j in assignment.matches]
        return pairs, [tracks[i] for i in assignment.unmatched_rows], candidates[assignment.unmatched_cols]

    def _refused_by_colour(self, tracks: list[_LiveTrack], appearance: np.ndarray, features: np.ndarray,
                           own: np.ndarray) -> np.ndarray:
        """(T, D) bool, the pairs of ``tracks`` and detections (``features``, their colours; ``own``, whether those
        are one animal's) that the colours forbid; ``appearance`` (T, D): their distances (:meth:`_appearance`).

        A lost track is held to the re-link's appearance gate; any track refuses a detection of other colours than
        its own, unless that box overlaps another (two animals), nor takes one whose colours are clearly another
        track's (hidden, lost or matched elsewhere: ``appearance_margin``).
        """
        s = self.settings
        lost = np.array([t.state is TrackState.LOST for t in tracks])[:, None]
        refused = lost & (appearance > s.relink_max_appearance)
        refused |= own[None, :] & (appearance > s.match_max_appearance)
        if s.appearance_margin < 1.0:
            everyone = self._appearance(self._tracks, features)
            closest = np.min(np.where(np.isnan(everyone), np.inf, everyone), axis=0, initial=np.inf)
            refused |= own[None, :] & (appearance > closest[None, :] + s.appearance_margin)
        return refused

    def _relink(self, tracks: list[_LiveTrack], candidates: np.ndarray, boxes: np.ndarray,
                features: np.ndarray | None):
        """Match unmatched tracks to detections by a Mahalanobis distance of box centres, gated (and by
        appearance, gated too).

        A hidden animal may have walked on as predicted, or slowed down, or stopped: the distance is
        taken to the nearest point of the segment from where the track was last seen to where it is
        predicted, under the track's position uncertainty plus ``relink_noise``.
        """
        waiting = [t for t in tracks if t.frames_since_update > self.settings.relink_delay]
        tracks = [t for t in tracks if t.frames_since_update <= self.settings.relink_delay]
        if not tracks or len(candidates) == 0:
            return [], tracks + waiting, candidates
        d2, log_det = _geometry(tracks, boxes.take(candidates, 0), self.settings, relinking=True)
        # Negative log-likelihood (up to a constant): a track seen recently, with a tight prediction, wins over one
        # that may be anywhere by now.
        nll = d2 + log_det[:, None]
        cost = np.where(d2 <= self.settings.relink_gate, nll - nll[np.isfinite(nll)].min(initial=0.0), np.inf)
        cost = self._with_colours(cost, tracks, None if features is None else features[candidates])
        assignment = linear_assignment(cost, _NO_LIMIT)
        pairs = [(tracks[i], int(candidates[j])) for i, j in assignment.matches]
        return pairs, [tracks[i] for i in assignment.unmatched_rows] + waiting, candidates[assignment.unmatched_cols]


def _geometry(tracks: list[_LiveTrack], boxes: np.ndarray, settings: TrackerSettings,
              relinking: bool = False, predicted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """How well ``boxes`` (D, 4) fit where each track's animal may be now.

    The fit is taken at the bottom centre of the box (where the animal stands: across the image and in depth)
    and on the logarithm of its height (its size and depth), in units of the track's height (an animal's box
    narrows while it turns, its height hardly changes): the bottom centre's offset from the path between where
    the track was last seen and where it is predicted, across (x) under the track's position uncertainty and in
    depth (y) under ``vertical_ratio`` of it (animals walk across the view more than towards it), each plus the
    measurement noise and, once unseen, ``relink_noise`` and as far as the animal may have walked since
    (``reach_speed`` of its height per frame, or its own speed if faster, in any direction: it may have turned),
    that spread at most ``reach_limit`` of its height; the height ratio (to the track's reference height,
    ``height_window``) under ``height_noise``, growing by ``height_drift`` per frame unseen. ``predicted``: the
    tracks' (T, 4) predicted boxes, when the caller has them as an array already.

    Returns:
        (T, D) squared normalised distances (3 dof) and (T,) log-determinants of the three variances (a track
        that may be anywhere fits every box a little).
    """
    # Each track's terms on Python floats (a few tracks: numpy's cost per call was the cost), computed as numpy did:
    # squares as x * x (numpy's square; Python's x ** 2 may differ in the last bit), square roots correctly rounded by
    # both. The pairs' terms in flat (T * D,) arrays, pair (i, j) at i * D + j, each track's terms repeated D times
    # and each box's T times (numpy 2.4 takes two to three times as long to broadcast a few rows as to add them).
    count = len(boxes)
    per_track = [(*_segment(last, box), *_spread(t, box[1], box[3], settings, relinking))
                 for t, last, box in zip(tracks, np.array([t.last_box for t in tracks], np.float64).tolist(),
                                         (np.array([t.box for t in tracks], np.float64) if predicted is None
                                          else predicted).tolist())]
    terms = np.array(per_track).T
    *_, across, depth, _, height_var = terms  # (T,) each
    log_det = np.log(across * depth * height_var)
    sx, sy, dx, dy, length2, across, depth, reference, height_var = terms.repeat(count, 1)
    b = boxes.T
    px, py, height = np.array([0.5 * (b[0] + b[2]), b[3], np.maximum(b[3] - b[1], 1.0)])[:, None, :].repeat(
        len(tracks), 1).reshape(3, -1)
    # The offset of each box's bottom centre from its nearest point on the segment from where the track was last
    # seen to where it is predicted.
    ox, oy = px - sx, py - sy
    along = (ox * dx + oy * dy) / length2
    along = np.minimum(np.maximum(along, 0.0), 1.0)
    ox = px - (sx + along * dx)
    oy = py - (sy + along * dy)
    log_ratio = np.log(height / reference)
    d2 = ox * ox / across + oy * oy / depth + log_ratio * log_ratio / height_var
    return d2.reshape(len(tracks), count), log_det


def _segment(last: list[float], predicted: list[float]) -> tuple[float, float, float, float, float]:
    """Of one track for :func:`_geometry`, from its last and predicted ``xyxy`` boxes: the start of the segment
    between their bottom centres, its direction (x, y) and its squared length (at least 1e-12)."""
    sx = 0.5 * (last[0] + last[2])
    dx, dy = 0.5 * (predicted[0] + predicted[2]) - sx, predicted[3] - last[3]
    return sx, last[3], dx, dy, max(dx * dx + dy * dy, 1e-12)


def _spread(track: _LiveTrack, top: float, bottom: float, settings: TrackerSettings, relinking: bool
            ) -> tuple[float, float, float, float]:
    """Of one track (or ghost) for :func:`_geometry`, whose predicted box spans ``top`` to ``bottom``: the variances
    across and in depth, the reference height and the variance of the log height ratio."""
    height = max(bottom - top, 1.0)
    unseen = float(track.frames_since_update)
    variance = float(track.box_filter.cov[0, 0, 0])
    vx, vy = track.box_filter.mean[0, 1].tolist()
    speed = math.sqrt(vx * vx + vy * vy)
    walked = max(settings.reach_speed * height, speed) * max(unseen - 1, 0.0)
    measured = settings.box_measurement_noise * height
    noise = measured * measured
    if unseen > 1 or relinking:
        relink = settings.relink_noise * height
        noise = noise + relink * relink
    spread = variance + walked * walked
    if settings.reach_limit > 0:
        limit = settings.reach_limit * height
        spread = min(spread, limit * limit)
    reference = math.sqrt(height * track.median_height) if settings.height_window > 0 else height
    drift = settings.height_drift * unseen
    return (spread + noise, settings.vertical_ratio**2 * spread + noise, reference,
            settings.height_noise**2 + drift * drift)


def _paired_similarity(keypoints_a: np.ndarray, keypoints_b: np.ndarray, boxes_b: np.ndarray,
                       valid_b: np.ndarray, tolerance: np.ndarray | None = None) -> np.ndarray:
    """(n,) OKS of each pose of ``keypoints_a`` (n, K, 2+) with its partner in ``keypoints_b`` (n, K, 2+), scaled by
    the area of ``boxes_b`` (n, 4) (:func:`tracking.matching.keypoint_similarity` pair by pair), the scale of pair i
    times ``tolerance[i]`` when given."""
    area = box_area(boxes_b) if tolerance is None else box_area(boxes_b) * np.asarray(tolerance, np.float64) ** 2
    return paired_keypoint_similarity(keypoints_a, keypoints_b, area, valid_b=valid_b, sigmas=SIGMAS)


def _clear_of_others(boxes: np.ndarray, max_iou: float = 0.1) -> np.ndarray:
    """(N,) bool, boxes that overlap no other box by more than ``max_iou`` (their pixels are one animal's)."""
    if len(boxes) < 2:
        return np.ones(len(boxes), bool)
    iou = box_iou(boxes, boxes)
    np.fill_diagonal(iou, 0.0)
    return iou.max(axis=1) <= max_iou


def smooth_tracks_offline(history: TrackHistory, fill_gaps: int | None = None) -> list[list[Track]]:
    """RTS-smooth every recorded track over its whole life (for files, after the last frame).

    Args:
        history: what :meth:`Tracker.history` returned after the last frame.
        fill_gaps: also report a track in the frames of a gap of at most this many frames between
            two matched frames (state LOST, smoothed box, keypoints MISSING where the live tracker did
            not report it). None: the tracker's ``offline_fill_frames``.

    Returns:
        One list of tracks per frame (``history.num_frames`` lists): each track in the frames it was reported live, plus
        the matched frames before its confirmation, the matched frames of the held tracks it took back and of the young
        tracks it took over by colours (module docstring; one track per ID and frame), and up to
        ``offline_extend_frames`` frames before each run of frames it is reported in, on detections no track took
        (:func:`_extend_back`: state TENTATIVE, the detection's box, no keypoints), in ID order; each run of frames
        under the identity its colours, or where it or that identity's run before has none, its boxes join it to
        (:func:`_relink_stretches`, ``offline_relink_colour``, ``offline_relink_fit``; a new ID above the tracker's
        where a run starts an identity whose ID an earlier run kept); without the short identities in the shadow of a
        longer one's box (:func:`_drop_shadowed`, ``offline_shadow_frames``) and those kept alive on weak boxes
        (:func:`_drop_weak`, ``offline_weak_frames``). Other boxes are smoothed (and clipped to the image,
        ``history.image_size``); keypoints are SMOOTHED where observed, PREDICTED in short gaps, MISSING elsewhere and
        where they lie outside the smoothed box by more than ``keypoint_box_margin``. ``state`` is the live state of
        that frame.
    """
    if fill_gaps is None:
        fill_gaps = history.settings.offline_fill_frames
    if fill_gaps < 0:
        raise ValueError(f"fill_gaps must be >= 0, got {fill_gaps}")
    frames: list[list[Track]] = [[] for _ in range(history.num_frames)]
    smoothing = history.settings.smoothing
    bounds = None if history.image_size is None else _image_bounds(history.image_size)
    # An identity's age and hits count over all its records (a held track taken back has one of its own).
    started: dict[int, int] = {}
    matches: dict[int, np.ndarray] = {}
    for record in history.records:
        started[record.track_id] = min(started.get(record.track_id, record.first_frame), record.first_frame)
        frames_matched = record.first_frame + np.flatnonzero(record.detection_index >= 0)
        matches[record.track_id] = np.union1d(matches.get(record.track_id, []), frames_matched)
    for record in history.records:
        box_means, _ = rts_smooth(record.box)
        boxes = _in_image(_points_to_xyxy(box_means[:, :, 0, :]), bounds).astype(np.float32)
        if record.keypoints is not None:
            keypoints, status = smooth_keypoints_offline(record.keypoints, smoothing)
        else:
            empty = raw_output(None)
            keypoints = np.repeat(empty[0][None], len(boxes), 0)
            status = np.repeat(empty[1][None], len(boxes), 0)
        matched = record.detection_index >= 0
        # Frames reported only to fill a gap get the box alone: with the keypoints interpolated there, the offline
        # RMSE of the simulator's held-out crossings rose from 3.39 to 3.62 % of the box (docs/tuning.md).
        filled = _short_gaps(matched, fill_gaps) & ~record.reported
        reported = record.reported | filled
        keypoints[filled, :, :2], keypoints[filled, :, 2], status[filled] = np.nan, 0.0, KeypointStatus.MISSING
        keypoints, status = _outside_box(keypoints, status, boxes, history.settings.keypoint_box_margin)
        hits = np.searchsorted(matches[record.track_id], record.first_frame + np.arange(len(boxes)), side="right")
        last_hit = -1
        for t in range(len(boxes)):
            if matched[t]:
                last_hit = t
            if not reported[t]:
                continue
            frames[record.first_frame + t].append(_freeze(Track(
                track_id=record.track_id, state=record.states[t], box=boxes[t].copy(), score=float(record.scores[t]),
                class_id=record.class_id, keypoints=keypoints[t].copy(), keypoint_status=status[t].copy(),
                age=record.first_frame + t - started[record.track_id], hits=int(hits[t]),
                frames_since_update=t - last_hit, detection_index=int(record.detection_index[t]),
                frame_index=record.first_frame + t,
            )))
    frames = [_one_per_identity(tracks) for tracks in frames]
    extensions = _extend_back(frames, history.detections, history.settings.offline_extend_frames, bounds)
    for track_id, added in extensions.items():
        found = np.array([t for t, _ in added])
        started[track_id] = min(started[track_id], int(found.min()))
        matches[track_id] = np.union1d(matches[track_id], found)
        for t, track in added:
            frames[t].append(track)
    recount = set(extensions)
    pieces = _relink_stretches(frames, history.detections, history.colours, history.settings)
    if pieces:
        started, matches = _relinked_counts(pieces, started, matches)
        frames = [[_relabelled(track, pieces) for track in tracks] for tracks in frames]
        recount |= {track_id for stretches in pieces.values() for _, track_id in stretches}
    if recount:
        # The identities extended or joined again start elsewhere and have other hits: their age and hits, in every
        # frame, count from there.
        for tracks in frames:
            for i, track in enumerate(tracks):
                if track.track_id in recount:
                    tracks[i] = _freeze(replace(
                        track, age=track.frame_index - started[track.track_id],
                        hits=int(np.searchsorted(matches[track.track_id], track.frame_index, side="right"))))
        frames = [sorted(tracks, key=lambda t: t.track_id) for tracks in frames]
    frames = _drop_shadowed(frames, history.settings.offline_shadow_frames)
    return _drop_weak(frames, history.settings.offline_weak_frames, history.settings.new_track_score)


def _relabelled(track: Track, pieces: dict[int, list[tuple[int, int]]]) -> Track:
    """``track`` under the identity :func:`_relink_stretches` gave its stretch (itself where its identity kept all)."""
    if track.track_id not in pieces:
        return track
    stretches = pieces[track.track_id]
    k = bisect.bisect_right([first for first, _ in stretches], track.frame_index) - 1
    return track if stretches[k][1] == track.track_id else _freeze(replace(track, track_id=stretches[k][1]))


def _relinked_counts(pieces: dict[int, list[tuple[int, int]]], started: dict[int, int],
                     matches: dict[int, np.ndarray]) -> tuple[dict[int, int], dict[int, np.ndarray]]:
    """Each identity's first frame and matched frames (``started``, ``matches``) once its stretches changed hands
    (:func:`_relink_stretches`): a stretch brings the matched frames of its identity from its first frame to the next
    stretch's (the first one, from the identity's start)."""
    started, matches = dict(started), dict(matches)
    gained: dict[int, list[tuple[int, np.ndarray]]] = {}
    for track_id, stretches in pieces.items():
        bounds = [first for first, _ in stretches[1:]] + [np.iinfo(np.int64).max]
        begin = started[track_id]
        for (first, label), end in zip(stretches, bounds):
            frames = matches[track_id]
            gained.setdefault(label, []).append((begin, frames[(frames >= begin) & (frames < end)]))
            begin = end
    for label, parts in gained.items():
        started[label] = min(begin for begin, _ in parts)
        matches[label] = np.unique(np.concatenate([frames for _, frames in parts]))
    return started, matches


#: :func:`_drop_shadowed`: a box is in another's shadow where their overlap covers this much of the smaller one ...
_SHADOW_COVER = 0.5
#: ... and a short identity is a duplicate where this share of its boxes is.
_SHADOW_SHARE = 0.7


def _drop_shadowed(frames: list[list[Track]], limit: int) -> list[list[Track]]:
    """``frames`` (the offline output) without the identities reported in at most ``limit`` frames in all whose box
    lies, in more than ``_SHADOW_SHARE`` of them, in the shadow of a box of an identity reported longer
    (:func:`_in_shadow`; ``TrackerSettings.offline_shadow_frames``; 0: ``frames`` as they are)."""
    if limit <= 0:
        return frames
    length = _frames_reported(frames)
    shaded: dict[int, int] = {}
    for tracks in frames:
        if len(tracks) < 2:
            continue
        # Longer identities first; of two as long, the lower ID casts the shadow.
        order = sorted(range(len(tracks)), key=lambda k: (-length[tracks[k].track_id], tracks[k].track_id))
        rank = np.empty(len(tracks), np.int64)
        rank[order] = np.arange(len(tracks))
        in_shadow = _in_shadow(np.array([track.box for track in tracks], np.float64), rank)
        for track, shadowed in zip(tracks, in_shadow):
            if shadowed:
                shaded[track.track_id] = shaded.get(track.track_id, 0) + 1
    dropped = {track_id for track_id, count in shaded.items()
               if length[track_id] <= limit and count > _SHADOW_SHARE * length[track_id]}
    return _without(frames, dropped, "in the shadow of others")


#: :func:`_drop_weak`: a short identity is weak where the detector found it in under this share of the frames it is
#: reported in (and its detections' mean score is under ``new_track_score``).
_WEAK_FOUND = 0.8


def _drop_weak(frames: list[list[Track]], limit: int, min_score: float) -> list[list[Track]]:
    """``frames`` (the offline output) without the identities reported in at most ``limit`` frames in all that the
    detector found in under ``_WEAK_FOUND`` of them (``detection_index`` >= 0; the rest predicted, filled or held) with
    a mean score under ``min_score`` (0 where it found them in none; ``TrackerSettings.offline_weak_frames``; 0:
    ``frames`` as they are)."""
    if limit <= 0:
        return frames
    found: Counter[int] = Counter()
    score: dict[int, float] = {}
    for tracks in frames:
        for track in tracks:
            if track.detection_index >= 0:
                found[track.track_id] += 1
                score[track.track_id] = score.get(track.track_id, 0.0) + track.score
    dropped = {track_id for track_id, count in _frames_reported(frames).items()
               if count <= limit and found[track_id] < _WEAK_FOUND * count
               and score.get(track_id, 0.0) < min_score * max(found[track_id], 1)}
    return _without(frames, dropped, "on weak boxes")


def _frames_reported(frames: list[list[Track]]) -> Counter[int]:
    """How many frames of ``frames`` each identity is reported in."""
    return Counter(track.track_id for tracks in frames for track in tracks)


def _without(frames: list[list[Track]], dropped: set[int], why: str) -> list[list[Track]]:
    """``frames`` without the identities ``dropped`` (``frames`` itself where there are none); ``why`` for the log."""
    if not dropped:
        return frames
    logger.debug("offline: dropped %d short identities %s: %s", len(dropped), why, sorted(dropped))
    return [[track for track in tracks if track.track_id not in dropped] for tracks in frames]


def _in_shadow(boxes: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """(N,) bool, the ``boxes`` (N, 4) ``xyxy`` whose overlap with a box ranked before them (``rank`` (N,), lower
    first) covers ``_SHADOW_COVER`` or more of the smaller of the two."""
    area = box_area(boxes)
    cover = box_intersection(boxes, boxes) / np.maximum(np.minimum(area[:, None], area[None, :]), 1e-9)
    return ((cover >= _SHADOW_COVER) & (rank[None, :] < rank[:, None])).any(axis=1)


#: :func:`_extend_back`: a detection continues an identity's first box backwards where it overlaps the box after it
#: by this IoU or more ...
_EXTEND_IOU = 0.5
#: ... and no box reported in its frame by more than this (that box is another animal's, or the same one's).
_EXTEND_FREE_IOU = 0.3


def _extend_back(frames: list[list[Track]], detections: np.ndarray | None, limit: int,
                 bounds: np.ndarray | None) -> dict[int, list[tuple[int, Track]]]:
    """Where each run of frames an identity is reported in (``frames``, the offline output) may start earlier: the
    detections (``TrackHistory.detections``) that continue its first box backwards, frame by frame, for at most
    ``limit`` frames (``offline_extend_frames``), each overlapping the box after it by ``_EXTEND_IOU`` and no box
    reported in its frame (or found here before it) by more than ``_EXTEND_FREE_IOU``; a chain stops at the first
    frame with no such detection (a frame the detector skipped, :meth:`Tracker.predict_only`, among them), or where the
    identity is reported. Returns, per identity, its frames found and their tracks (state TENTATIVE, the detection's
    box clipped to the image, no keypoints; ``age`` and ``hits`` the caller's to set)."""
    if detections is None or limit == 0 or not len(detections):
        return {}
    rows = np.searchsorted(detections[:, 0], np.arange(len(frames) + 1))  # frame t's rows: rows[t]:rows[t + 1]
    ids = [{track.track_id for track in tracks} for tracks in frames]
    taken = [[track.box.astype(np.float64) for track in tracks] for tracks in frames]
    found: dict[int, list[tuple[int, Track]]] = {}
    for t in range(1, len(frames)):
        for track in frames[t]:
            if track.track_id in ids[t - 1]:
                continue
            box = track.box.astype(np.float64)
            for u in range(t - 1, max(t - 1 - limit, -1), -1):
                candidates = detections[rows[u]:rows[u + 1]]
                if track.track_id in ids[u] or not len(candidates):
                    break
                fit = box_iou(box[None], candidates[:, 2:6])[0]
                if taken[u]:
                    fit[box_iou(candidates[:, 2:6], np.stack(taken[u])).max(axis=1) > _EXTEND_FREE_IOU] = 0.0
                j = int(np.argmax(fit))
                if fit[j] < _EXTEND_IOU:
                    break
                box = candidates[j, 2:6]
                reported = _in_image(box, bounds)
                keypoints, status = raw_output(None, len(track.keypoints))
                found.setdefault(track.track_id, []).append((u, Track(
                    track_id=track.track_id, state=TrackState.TENTATIVE, box=reported.astype(np.float32),
                    score=float(candidates[j, 6]), class_id=track.class_id, keypoints=keypoints,
                    keypoint_status=status, age=0, hits=0, frames_since_update=0,
                    detection_index=int(candidates[j, 1]), frame_index=u)))
                ids[u].add(track.track_id)
                taken[u].append(reported)
    return found


#: :func:`_relink_stretches`: a link the tracker made (two stretches of one identity) costs this much less than a link
#: between two identities with the same colour distance: the colours must clearly tell the tracker wrong ...
_RELINK_KEEP_BONUS = 0.05
#: ... and this much less (squared normalised distance) with the same fit of their boxes (:func:`_stretch_fit`).
_FIT_KEEP_BONUS = 4.0
#: :func:`_stretch_fit`: a stretch's height at its start and end is the median over this many of its first and last
#: frames ...
_FIT_FRAMES = 10
#: ... and two stretches' log height ratio has this std (an animal's box height changes little while it turns) ...
_FIT_HEIGHT_NOISE = 0.08
#: ... their bottom rows' offset (where the animals stand in depth) this std, plus this much per frame between them,
#: in units of the earlier stretch's height ...
_FIT_DEPTH_NOISE, _FIT_DEPTH_GROWTH = 0.08, 0.005
#: ... and their bottom centres' offset across the image, from where the earlier one ended or from where it would be
#: had it walked on at its last speed (the nearer), this std plus this much per frame between them.
_FIT_ACROSS_NOISE, _FIT_ACROSS_GROWTH = 0.5, 0.02


def _relink_stretches(frames: list[list[Track]], detections: np.ndarray | None, colours: np.ndarray | None,
                      settings: TrackerSettings) -> dict[int, list[tuple[int, int]]]:
    """Which identity each stretch of the offline output (``frames``) belongs to, judged over the whole video by its
    colours (``offline_relink_colour``) or, where colours cannot judge, by its boxes (``offline_relink_fit``).

    A stretch is a run of consecutive frames an identity is reported in; its colours are the mean of the own colours
    (``colours``, aligned with ``detections``: :class:`TrackHistory`) of the detections its tracks hold. The stretches
    are joined again into identities by one optimal assignment (:func:`_link_stretches`) of each stretch to the one
    that follows it, among the stretches that start after it ends. Where both have colours, a link costs the
    appearance distance of their mean colours, plus ``_RELINK_KEEP_BONUS`` where the tracker did not make it, at most
    ``offline_relink_colour`` plus that; elsewhere it costs the fit of their boxes (:func:`_stretch_fit`), plus
    ``_FIT_KEEP_BONUS`` where the tracker did not make it, at most ``offline_relink_fit`` plus that; each cost as a
    fraction of its limit. A stretch with no link costs half a limit. With ``offline_relink_fit`` 0, a stretch with
    no colours is judged with the stretch of its identity before it (the first one, with the one after it), and an
    identity with none at all is left as it is. Each chain keeps the identity of its first stretch, unless an
    earlier chain has it (then a new one, above every identity of ``frames``).

    Returns:
        Per identity whose stretches change hands, and per identity that gains or loses one, ``(first frame,
        identity)`` of each of its stretches in frame order: its frames from that one on (to the next one's first
        frame) now belong to that identity. Empty when nothing changes, or neither colours nor the fit may judge.
    """
    by_colour = (detections is not None and colours is not None and settings.offline_relink_colour > 0
                 and len(detections) > 0)
    by_fit = settings.offline_relink_fit > 0
    if not (by_colour or by_fit):
        return {}
    held: dict[int, list[tuple[int, int, np.ndarray]]] = {}
    for t, tracks in enumerate(frames):
        for track in tracks:
            held.setdefault(track.track_id, []).append((t, track.detection_index, track.box))
    if not held:
        return {}
    size = colours.shape[1] if by_colour else 1
    if by_colour:
        most = max((d for pairs in held.values() for _, d, _ in pairs), default=0)
        width = max(int(detections[:, 1].max()), most) + 1
        keys = detections[:, 0].astype(np.int64) * width + detections[:, 1].astype(np.int64)  # frame and index: a row
        order = np.argsort(keys, kind="stable")
    stretches: list[list] = []  # [identity, first frame, last frame, sum of own colours, how many, boxes]
    for track_id, pairs in held.items():
        times, index, boxes = zip(*pairs)
        times, index, boxes = np.array(times, np.int64), np.array(index, np.int64), np.stack(boxes).astype(np.float64)
        feature = np.full((len(pairs), size), np.nan)
        if by_colour:
            wanted = np.flatnonzero(index >= 0)
            rows = order[np.minimum(np.searchsorted(keys, times[wanted] * width + index[wanted], sorter=order),
                                    len(keys) - 1)]
            found = keys[rows] == times[wanted] * width + index[wanted]
            feature[wanted[found]] = colours[rows[found]]
        has = np.isfinite(feature).all(axis=1)
        own: list[list] = []
        for run in np.split(np.arange(len(pairs)), np.flatnonzero(np.diff(times) > 1) + 1):
            stretch = [track_id, int(times[run[0]]), int(times[run[-1]]), feature[run[has[run]]].sum(axis=0),
                       int(has[run].sum()), boxes[run]]
            if not by_fit and own and (stretch[4] == 0 or own[-1][4] == 0):  # no colours: judged with the one before
                own[-1][2:] = stretch[2], own[-1][3] + stretch[3], own[-1][4] + stretch[4], None
            else:
                own.append(stretch)
        stretches += own if by_fit else [stretch for stretch in own if stretch[4] > 0]
    if len(stretches) < 2:
        return {}
    owner = np.array([stretch[0] for stretch in stretches])
    first, last = np.array([stretch[1] for stretch in stretches]), np.array([stretch[2] for stretch in stretches])
    # The tracker's links: the stretches are listed identity by identity, in frame order.
    kept = {k: k + 1 for k in range(len(stretches) - 1) if owner[k + 1] == owner[k]}
    # The sums of own colours (appearance_distance normalises them); NaN: none.
    sums = np.stack([stretch[3] if stretch[4] else np.full(size, np.nan) for stretch in stretches])
    ends = np.stack([_stretch_ends(stretch[5]) for stretch in stretches]) if by_fit else None
    after = _link_stretches(sums, ends, owner, first, last, kept, settings.offline_relink_colour if by_colour else 0.0,
                            settings.offline_relink_fit)
    if after == kept:
        return {}
    identity = owner.copy()
    taken: set[int] = set()
    fresh = max(held) + 1
    for head in sorted(set(range(len(stretches))) - set(after.values()), key=lambda k: first[k]):
        label = int(owner[head])
        if label in taken:
            label, fresh = fresh, fresh + 1
        taken.add(label)
        k: int | None = head
        while k is not None:
            identity[k] = label
            k = after.get(k)
    moved = identity != owner
    changed = set(owner[moved].tolist()) | set(identity[moved].tolist())
    out: dict[int, list[tuple[int, int]]] = {}
    for k in np.flatnonzero(np.isin(owner, list(changed))):
        out.setdefault(int(owner[k]), []).append((int(first[k]), int(identity[k])))
    return out


def _stretch_ends(boxes: np.ndarray) -> np.ndarray:
    """(7,) what :func:`_stretch_fit` compares of a stretch's ``boxes`` (T, 4) ``xyxy``: at its start the median height
    of its first ``_FIT_FRAMES`` boxes and its first box's bottom centre (x, y); at its end the median height of its
    last ``_FIT_FRAMES`` boxes, its last box's bottom centre and the bottom centre's speed across the image (pixels
    per frame) over those boxes."""
    head, tail = boxes[:_FIT_FRAMES], boxes[-_FIT_FRAMES:]
    centre = 0.5 * (boxes[:, 0] + boxes[:, 2])
    speed = (centre[-1] - centre[-len(tail)]) / max(len(tail) - 1, 1)
    return np.array([np.median(head[:, 3] - head[:, 1]), centre[0], boxes[0, 3],
                     np.median(tail[:, 3] - tail[:, 1]), centre[-1], boxes[-1, 3], speed])


def _stretch_fit(ends: np.ndarray, rows: np.ndarray, columns: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """(R, C) squared normalised distances (3 dof) between the end of each stretch of ``rows`` and the start of each of
    ``columns`` (:func:`_stretch_ends`), ``gap`` (R, C) frames later: the log ratio of their heights under
    ``_FIT_HEIGHT_NOISE``; their bottom centres' offsets in depth (rows) and across the image (from where the earlier
    stretch ended or from where it would be at its last speed, the nearer), in its height, under ``_FIT_DEPTH_*``
    and ``_FIT_ACROSS_*`` (growing with the gap: the animal may have walked)."""
    height, x, y, speed = (ends[rows, i, None] for i in (3, 4, 5, 6))
    height = np.maximum(height, 1.0)
    start_height, start_x, start_y = (ends[None, columns, i] for i in (0, 1, 2))
    log_ratio = np.log(np.maximum(start_height, 1.0) / height)
    depth = (start_y - y) / height / (_FIT_DEPTH_NOISE + _FIT_DEPTH_GROWTH * gap)
    across = (np.minimum(np.abs(start_x - x), np.abs(start_x - x - speed * gap)) / height
              / (_FIT_ACROSS_NOISE + _FIT_ACROSS_GROWTH * gap))
    return (log_ratio / _FIT_HEIGHT_NOISE) ** 2 + depth**2 + across**2


#: :func:`_link_stretches`: each stretch may follow the stretches cheapest to follow among those that end before it
#: starts (this many, and the one the tracker linked it to), which keeps the assignment sparse over a long video.
_RELINK_CANDIDATES = 10


def _link_stretches(colours: np.ndarray, ends: np.ndarray | None, owner: np.ndarray, first: np.ndarray,
                    last: np.ndarray, kept: dict[int, int], max_distance: float, max_fit: float) -> dict[int, int]:
    """The stretch that follows each stretch (:func:`_relink_stretches`): the optimal assignment of stretches (rows)
    to the stretches that follow them (columns). Where both have ``colours`` (sums of features; NaN: none) and
    ``max_distance`` > 0, a link costs the appearance distance of their colours plus ``_RELINK_KEEP_BONUS`` where it
    is not one of the tracker's (``kept``), over ``max_distance`` plus that bonus; elsewhere, with ``ends``
    (:func:`_stretch_ends`) and ``max_fit`` > 0, the fit of their boxes (:func:`_stretch_fit`) plus ``_FIT_KEEP_BONUS``
    where it is not the tracker's, over ``max_fit`` plus that bonus; at most 1. A stretch left without a follower, or
    without one to follow, costs 0.5 (as :func:`~tracking.matching.linear_assignment` leaves a row or a column
    unmatched). Solved on a sparse graph (``scipy.sparse.csgraph.min_weight_full_bipartite_matching``): the pairs
    within the limit, for each column its ``_RELINK_CANDIDATES`` cheapest rows and the tracker's link, each row or
    column also paired with a stand-in of its own (the unmatched cost), and the stand-ins with each other where their
    stretches may be linked, so that a full matching always exists."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    n = len(colours)
    before = {b: a for a, b in kept.items()}
    rows, cols, costs = [], [], []
    for start in range(0, n, 1024):  # columns in blocks: memory n x 1024 at most
        block = np.arange(start, min(start + 1024, n))
        other = owner[:, None] != owner[None, block]
        cost = np.full((n, len(block)), np.nan)
        if max_distance > 0:
            cost = ((appearance_distance(colours, colours[block]) + np.where(other, _RELINK_KEEP_BONUS, 0.0))
                    / (max_distance + _RELINK_KEEP_BONUS))  # NaN where either has no colours
        if ends is not None and max_fit > 0:
            gap = np.maximum(first[None, block] - last[:, None], 1).astype(np.float64)
            fit = ((_stretch_fit(ends, np.arange(n), block, gap) + np.where(other, _FIT_KEEP_BONUS, 0.0))
                   / (max_fit + _FIT_KEEP_BONUS))
            cost = np.where(np.isnan(cost), fit, cost)
        cost[(last[:, None] >= first[None, block]) | ~(cost <= 1.0)] = np.inf  # NaN: no colours, no fit
        keep = np.zeros(cost.shape, bool)
        count = min(_RELINK_CANDIDATES, n)
        keep[np.argpartition(cost, count - 1, axis=0)[:count], np.arange(len(block))] = True
        linked = [(before[j], i) for i, j in enumerate(block) if j in before]
        if linked:
            keep[tuple(np.array(linked).T)] = True
        r, c = np.nonzero(keep & np.isfinite(cost))
        rows.append(r)
        cols.append(block[c])
        costs.append(cost[r, c])
    r, c, w = np.concatenate(rows), np.concatenate(cols), np.concatenate(costs)
    own = np.arange(n)
    # Rows: stretches, then a stand-in per column; columns: stretches, then a stand-in per row. Every weight is
    # shifted by 1 (a full matching has 2n pairs whatever it is): the solver needs them nonzero.
    graph = csr_matrix((np.concatenate([w, np.full(2 * n, 0.5), np.zeros(len(r))]) + 1.0,
                        (np.concatenate([r, own, n + own, n + c]), np.concatenate([c, n + own, own, n + r]))),
                       shape=(2 * n, 2 * n))
    matched_rows, matched_cols = min_weight_full_bipartite_matching(graph)
    links = (matched_rows < n) & (matched_cols < n)
    return dict(zip(matched_rows[links].tolist(), matched_cols[links].tolist()))


def _one_per_identity(tracks: list[Track]) -> list[Track]:
    """``tracks`` of one frame with one track per ID, in ID order: where a held track's frames (recorded under the
    identity that took it back) meet that track's own (a gap it fills), the one matched more recently; on a tie the
    one listed first, the track's own (:meth:`Tracker.history` lists held records after it: where a revised link
    handed the track an animal it had held apart, the frames it already reported keep their animal)."""
    best: dict[int, Track] = {}
    for track in tracks:
        if track.track_id not in best or track.frames_since_update < best[track.track_id].frames_since_update:
            best[track.track_id] = track
    return tracks if len(best) == len(tracks) else sorted(best.values(), key=lambda t: t.track_id)


def _outside_box(keypoints: np.ndarray, status: np.ndarray, boxes: np.ndarray, margin: float | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``keypoints`` (T, K, 3) and ``status`` (T, K) with the keypoints farther outside their frame's box (``boxes``
    (T, 4) ``xyxy``) than ``margin`` of its width (x) or height (y) made MISSING (``keypoint_box_margin``); the inputs
    themselves when none is. One frame's (K, 3), (K,) and (4,) work as well."""
    if margin is None:
        return keypoints, status
    limits = _keypoint_limits(boxes, margin)[..., None, :]
    position = keypoints[..., :2]
    outside = ((position < limits[..., :2]) | (position > limits[..., 2:])).any(-1)
    if not outside.any():
        return keypoints, status
    keypoints, status = keypoints.copy(), status.copy()
    keypoints[outside, :2], keypoints[outside, 2], status[outside] = np.nan, 0.0, KeypointStatus.MISSING
    return keypoints, status


def _keypoint_limits(boxes: np.ndarray, margin: float) -> np.ndarray:
    """(..., 4) x min, y min, x max, y max of the keypoints kept in ``boxes`` (..., 4) ``xyxy``: each box grown by
    ``margin`` of its width (x) and height (y) on every side (``keypoint_box_margin``)."""
    grown = margin * (boxes[..., 2:] - boxes[..., :2])
    return np.concatenate([boxes[..., :2] - grown, boxes[..., 2:] + grown], axis=-1)


def _confident(confidence: np.ndarray, threshold: float) -> np.ndarray:
    """``confidence >= threshold`` with NaN read as 0, as ``np.nan_to_num(confidence) >= threshold`` (without its
    cost, per track and frame)."""
    valid = confidence >= threshold
    if threshold <= 0.0:
        valid |= np.isnan(confidence)
    return valid


def _short_gaps(matched: np.ndarray, longest: int) -> np.ndarray:
    """(T,) bool, frames inside runs of at most ``longest`` unmatched frames between two matched frames."""
    inside = np.zeros(len(matched), bool)
    hits = np.flatnonzero(matched)
    for start, end in zip(hits[:-1], hits[1:]):
        if 1 < end - start <= longest + 1:
            inside[start + 1:end] = True
    return inside
