import dataclasses

import numpy as np
import pytest

from pose.keypoints import NUM_KEYPOINTS
from pose.structures import Detections, Poses
from tracking.appearance import BoxColours
from tracking.smoothing import KeypointStatus, SmoothingMode, SmoothingSettings
from tracking.tracker import Track, Tracker, TrackerSettings, TrackState, smooth_tracks_offline

K = NUM_KEYPOINTS


def box_at(x: float, y: float = 100.0, w: float = 120.0, h: float = 80.0) -> list[float]:
    return [x, y, x + w, y + h]


def dets(*boxes, scores=None) -> Detections:
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    scores = np.full(len(boxes), 0.9, np.float32) if scores is None else np.array(scores, np.float32)
    return Detections(boxes, scores)


def pose_in(box, facing: float = 1.0, conf: float = 0.9) -> np.ndarray:
    """A fixed pattern of 17 keypoints inside ``box``, mirrored when ``facing`` is -1."""
    x1, y1, x2, y2 = box
    u = np.linspace(0.05, 0.95, K)
    u = u if facing > 0 else u[::-1]
    v = 0.5 + 0.4 * np.sin(np.arange(K))
    return np.stack([x1 + u * (x2 - x1), y1 + v * (y2 - y1), np.full(K, conf)], 1)


def poses_for(detections: Detections, facings=None) -> Poses:
    facings = facings or [1.0] * len(detections)
    if not len(detections):
        return Poses.empty()
    kpts = np.stack([pose_in(b, f) for b, f in zip(detections.xyxy, facings)])
    return Poses(kpts, detections.xyxy)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("high_score", 1.5, "high_score"),
        ("low_score", -0.1, "low_score"),
        ("max_cost", 2.0, "max_cost"),
        ("oks_weight", -1.0, "oks_weight"),
        ("min_hits", 0, "min_hits"),
        ("max_lost_frames", -1, "max_lost_frames"),
        ("report_lost_frames", -1, "report_lost_frames"),
        ("tentative_patience", -1, "tentative_patience"),
        ("duplicate_pose_oks", 1.5, "duplicate_pose_oks"),
        ("pose_keep_oks", -0.1, "pose_keep_oks"),
        ("pose_keep_keypoints", 0, "pose_keep_keypoints"),
        ("pose_keep_keypoints", K + 1, "pose_keep_keypoints"),
        ("pose_keep_frames", -1, "pose_keep_frames"),
        ("young_duplicate_oks", 1.5, "young_duplicate_oks"),
        ("young_duplicate_hits", -1, "young_duplicate_hits"),
        ("young_duplicate_keypoints", 0, "young_duplicate_keypoints"),
        ("young_pose_keypoints", -1, "young_pose_keypoints"),
        ("young_pose_keypoints", K + 1, "young_pose_keypoints"),
        ("young_pose_checks", 0, "young_pose_checks"),
        ("young_pose_reference", 0, "young_pose_reference"),
        ("young_pose_reference", K + 1, "young_pose_reference"),
        ("young_duplicate_keypoints", K + 1, "young_duplicate_keypoints"),
        ("relink_gate", 0.0, "relink_gate"),
        ("box_process_noise", float("inf"), "box_process_noise"),
        ("box_size_damping", 1.5, "box_size_damping"),
        ("appearance_margin", -0.1, "appearance_margin"),
        ("appearance_update_max", 1.5, "appearance_update_max"),
        ("smoothing", "causal", "smoothing"),
        ("match_gate", 0.0, "match_gate"),
        ("vertical_ratio", float("nan"), "vertical_ratio"),
        ("height_noise", -0.1, "height_noise"),
        ("reach_speed", 0.0, "reach_speed"),
        ("review_iou", 0.0, "review_iou"),
        ("geometry_weight", -1.0, "geometry_weight"),
        ("height_drift", float("inf"), "height_drift"),
        ("box_adaptation", -0.1, "box_adaptation"),
        ("review_margin", -0.1, "review_margin"),
        ("min_pose_similarity", 1.5, "min_pose_similarity"),
        ("box_max_boost", 0.5, "box_max_boost"),
        ("relink_delay", -1, "relink_delay"),
        ("relink_hits", 0, "relink_hits"),
        ("hold_hits", 1, "relink_hits"),
        ("duplicate_iou", 1.5, "duplicate_iou"),
        ("duplicate_colour", -0.1, "duplicate_colour"),
        ("revise_frames", -1, "revise_frames"),
        ("revise_gap", -1, "revise_gap"),
        ("revise_margin", -1.0, "revise_margin"),
        ("revise_margin", float("nan"), "revise_margin"),
    ],
)
def test_settings_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrackerSettings(**{field: value})


def test_settings_reject_low_above_high():
    with pytest.raises(ValueError, match="low_score"):
        TrackerSettings(high_score=0.3, low_score=0.4)


def test_tracker_rejects_bad_settings():
    with pytest.raises(ValueError, match="settings"):
        Tracker({"min_hits": 2})


def test_each_tracker_owns_its_ids():
    a, b = Tracker(TrackerSettings(min_hits=1)), Tracker(TrackerSettings(min_hits=1))
    assert [t.track_id for t in a.update(dets(box_at(0), box_at(300)))] == [1, 2]
    assert [t.track_id for t in b.update(dets(box_at(0)))] == [1]
    assert [t.track_id for t in a.update(dets(box_at(2), box_at(302), box_at(600)))] == [1, 2, 3]


def test_life_cycle():
    tracker = Tracker(TrackerSettings(min_hits=2, max_lost_frames=3, report_lost_frames=0))
    assert tracker.update(dets(box_at(0))) == []  # tentative: not reported
    assert [t.state for t in tracker.tracks()] == [TrackState.TENTATIVE]
    (track,) = tracker.update(dets(box_at(5)))
    assert (track.track_id, track.state, track.hits, track.age) == (1, TrackState.CONFIRMED, 2, 1)
    assert tracker.update(Detections.empty()) == []
    (lost,) = tracker.tracks()
    assert lost.state is TrackState.LOST and lost.frames_since_update == 1
    (back,) = tracker.update(dets(box_at(15)))
    assert (back.track_id, back.state, back.frames_since_update) == (1, TrackState.CONFIRMED, 0)
    for _ in range(4):
        tracker.update(Detections.empty())
    assert tracker.tracks() == []  # lost longer than max_lost_frames
    tracker.update(dets(box_at(35)))
    assert [t.track_id for t in tracker.tracks()] == [2]


def test_tentative_track_seen_once_dies_on_first_miss():
    tracker = Tracker(TrackerSettings(min_hits=3))
    tracker.update(dets(box_at(0)))
    tracker.update(Detections.empty())
    assert tracker.tracks() == []


@pytest.mark.parametrize("patience", [0, 1, 3])
def test_tentative_track_seen_twice_waits_patience_frames(patience):
    tracker = Tracker(TrackerSettings(min_hits=3, tentative_patience=patience))
    tracker.update(dets(box_at(0)))
    tracker.update(dets(box_at(5)))
    for missed in range(1, patience + 2):
        tracker.update(Detections.empty())
        kept = [(t.track_id, t.state, t.frames_since_update) for t in tracker.tracks()]
        assert kept == ([(1, TrackState.TENTATIVE, missed)] if missed <= patience else [])
    if patience:
        # Back within its patience, it is the same track and the third match confirms it.
        tracker = Tracker(TrackerSettings(min_hits=3, tentative_patience=patience))
        tracker.update(dets(box_at(0)))
        tracker.update(dets(box_at(5)))
        for _ in range(patience):
            tracker.update(Detections.empty())
        (track,) = tracker.update(dets(box_at(5 + 5 * (patience + 1))))
        assert (track.track_id, track.state, track.hits) == (1, TrackState.CONFIRMED, 3)


def test_min_hits_one_reports_at_once():
    (track,) = Tracker(TrackerSettings(min_hits=1)).update(dets(box_at(0)))
    assert track.state is TrackState.CONFIRMED and track.detection_index == 0


@pytest.mark.parametrize("gap", [1, 5, 20])
def test_relinks_an_animal_hidden_while_walking(gap):
    tracker = Tracker()
    x = 0.0
    for _ in range(10):
        x += 8.0
        tracker.update(dets(box_at(x)))
    for _ in range(gap):
        x += 8.0
        tracker.update(Detections.empty())
    x += 8.0
    (track,) = tracker.update(dets(box_at(x)))
    assert track.track_id == 1


@pytest.mark.parametrize("hidden", [5, 10])
def test_relinks_an_animal_that_stopped_while_hidden(hidden):
    """Its prediction walks on and no longer overlaps: the re-link stage still finds it, at once after a short
    absence, after ``relink_hits`` frames unlabelled after a long one (longer than ``relink_delay``)."""
    settings = TrackerSettings()
    tracker = Tracker(settings)
    x = 0.0
    for _ in range(10):
        x += 15.0
        tracker.update(dets(box_at(x)))
    for _ in range(hidden):
        tracker.update(Detections.empty())  # hidden, and standing still at x
    predicted = tracker.tracks()[0].box
    assert predicted[0] > x + 60  # no overlap with where it stands
    long = hidden > settings.relink_delay
    for _ in range(settings.relink_hits - 1 if long else 0):
        assert tracker.update(dets(box_at(x))) == []  # held back, unlabelled
    (track,) = tracker.update(dets(box_at(x)))
    assert track.track_id == 1


def _back_after_long_absence(fill_gaps: int) -> tuple[list[list[Track]], list[list[Track]], list[int]]:
    """An animal hidden 10 frames (longer than ``relink_delay``) and back where it stood: live and offline output,
    and the frames in which it was held back, unlabelled."""
    settings = TrackerSettings(record_history=True)
    tracker = Tracker(settings)
    x, live = 0.0, []
    for _ in range(10):
        x += 15.0
        live.append(tracker.update(dets(box_at(x))))
    for _ in range(10):
        live.append(tracker.update(Detections.empty()))
    held = []
    for _ in range(settings.relink_hits + 3):
        held.append(len(live))
        live.append(tracker.update(dets(box_at(x))))
    held = held[:settings.relink_hits - 1]
    return live, smooth_tracks_offline(tracker.history(), fill_gaps=fill_gaps), held


@pytest.mark.parametrize("fill_gaps", [0, 30])
def test_offline_output_reports_the_held_frames_under_the_identity_that_took_them_back(fill_gaps):
    """Live, the animal back is unlabelled until its lost track takes it back; offline, those frames are reported
    under that track's identity, on the detected box, once per frame (also where a long gap fill covers them)."""
    live, offline, held = _back_after_long_absence(fill_gaps)
    assert held and all(live[t] == [] for t in held)
    assert [t.track_id for t in live[held[-1] + 1]] == [1]
    for t in held:
        (track,) = offline[t]
        assert track.track_id == 1 and track.frames_since_update == 0 and track.detection_index == 0
        assert track.age == t  # the identity's age and hits, not the held track's
        assert track.hits == 10 + t - held[0] + 1
        np.testing.assert_allclose(track.box, box_at(150.0), atol=3.0)
    after = offline[held[-1] + 1][0]
    assert after.age == held[-1] + 1 and after.hits == 10 + len(held) + 1
    for tracks in offline:
        ids = [t.track_id for t in tracks]
        assert ids == sorted(set(ids))
    assert all(len(offline[t]) == 1 for t in range(held[-1] + 1, len(offline)))


# Two animals side by side (1280x720 pixels): P stands at x 300-500; Q, a little smaller, at x 560-730. Q is hidden
# from frame 5 (its track waits, lost for longer than relink_delay); P is hidden in frames 20-29. In frame 26 Q comes
# back at x 420-590, near where P was lost, and P's track, unseen for 6 frames, re-links to it at once; from frame 30
# P shows again where it stood, a box that Q's lost track could be (held, then taken back).
_P = (300.0, 300.0, 500.0, 500.0)
_Q = (560.0, 330.0, 730.0, 500.0)
_Q_BACK = (420.0, 330.0, 590.0, 500.0)


def _p_and_q(tracker: Tracker, poses: str = "none", q: tuple = _Q, q_back: tuple = _Q_BACK,
             frames: int = 45) -> list[dict]:
    """Runs the scene; per frame, the track ID on each animal's box ({"P": id, "Q": id})."""
    seen = []
    for f in range(frames):
        boxes = ([] if 20 <= f < 30 else [_P]) + ([q] if f < 5 else [q_back] if f >= 26 else [])
        detections = dets(*boxes) if boxes else Detections.empty()
        if poses == "first":
            tracks = tracker.update(detections, poses_for(detections))
        else:
            tracks = tracker.update(detections)
            if poses == "after" and tracks:
                boxes_of = np.stack([t.box for t in tracks])
                tracks = tracker.attach_poses([t.track_id for t in tracks],
                                              poses_for(Detections(boxes_of, np.full(len(tracks), 0.9))))
        names = {_P: "P", q: "Q", q_back: "Q"}
        seen.append({names[tuple(boxes[t.detection_index])]: t.track_id for t in tracks if t.detection_index >= 0})
    return seen


@pytest.mark.parametrize("poses", ["none", "first"])
def test_a_link_is_undone_when_the_tracks_own_animal_comes_back(poses):
    """P's track took Q back after 6 unseen frames (reported so: live output cannot be taken back); when P shows
    again where its track's ghost stands, P's track goes back to P and Q gets its own identity from its lost track,
    instead of Q's lost track taking P."""
    seen = _p_and_q(Tracker(), poses)
    assert seen[19] == {"P": 1} and seen[4] == {"P": 1, "Q": 2}
    assert seen[27] == {"Q": 1}  # the wrong link, as it was made
    assert all(frame == {"P": 1, "Q": 2} for frame in seen[33:])


def test_with_the_poses_after_tracking_the_wrong_link_is_undone_too():
    """With the poses after tracking, Q's pose lies far from P's track's predicted keypoints, but the track has gone
    unseen 7 frames and judges it with 7 times the tolerance (``min_pose_similarity``): the link is made as without
    poses, and undone when P shows again. Refused with the tolerance of a track seen in the last frame."""
    from tracking.tracker import _paired_similarity

    p_pose, q_pose = pose_in(_P)[None], pose_in(_Q_BACK)[None]
    valid, q_box = np.ones((1, K), bool), np.array(_Q_BACK, float)[None]
    assert _paired_similarity(p_pose, q_pose, q_box, valid)[0] < 0.2
    seen = _p_and_q(Tracker(), "after")
    assert seen[27] == {"Q": 1}
    assert all(frame == {"P": 1, "Q": 2} for frame in seen[33:])


def test_without_revision_the_lost_track_takes_the_wrong_animal():
    """The same scene with ``revise_frames`` 0: the identities stay exchanged (what the revision repairs)."""
    seen = _p_and_q(Tracker(TrackerSettings(revise_frames=0)))
    assert seen[27] == {"Q": 1}
    assert all(frame == {"P": 2, "Q": 1} for frame in seen[33:])


@pytest.mark.parametrize(("margin", "revised"), [(4.0, False), (3.0, True)])
def test_a_link_is_revised_only_when_that_gains_the_margin(margin, revised):
    """Q as tall as P, back at x 420-620: P's track fits it better than before, so undoing the link gains less (about
    3.6 in the take-backs' costs): kept under the shipped margin, revised under a smaller one."""
    q, q_back = (560.0, 300.0, 760.0, 500.0), (420.0, 300.0, 620.0, 500.0)
    seen = _p_and_q(Tracker(TrackerSettings(revise_margin=margin)), q=q, q_back=q_back)
    assert seen[27] == {"Q": 1}
    expected = {"P": 1, "Q": 2} if revised else {"P": 2, "Q": 1}
    assert all(frame == expected for frame in seen[33:])


def test_a_link_stands_when_the_animals_own_box_is_not_held_back():
    """Q never seen before frame 26, so no lost track waits where P shows again: P's box starts a track that nothing
    holds back, confirmed after ``min_hits``, and the revision (which weighs held newcomers) leaves the link."""
    tracker = Tracker()
    ids = []
    for f in range(45):
        boxes = ([] if 20 <= f < 30 else [_P]) + ([_Q_BACK] if f >= 26 else [])
        tracks = tracker.update(dets(*boxes) if boxes else Detections.empty())
        ids.append({("P" if tuple(boxes[t.detection_index]) == _P else "Q"): t.track_id for t in tracks
                    if t.detection_index >= 0})
    assert ids[27] == {"Q": 1} and ids[-1] == {"Q": 1, "P": 2}


def test_a_revised_link_gives_the_animal_taken_a_new_identity_when_no_lost_track_may_have_it():
    """With colours: L, a look-alike of P (colours 0.29 apart), seen in frames 0-4 at x 60-230 and lost since; Q, a
    new animal whose colours L's track refuses (distance 1; P's are 0.29 from them), shows at x 440-600 in frame 26,
    and P's track, unseen for 6 frames, takes it. When P shows again where it stood, the box is held (L's lost track
    may have it) and the link is undone: P's track goes back to P, and Q, which no lost track may have, gets a new
    identity, instead of L's track taking P."""
    fp, fl, fq = np.array([1.0, 1.0, 0.0]) / np.sqrt(2), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    look_alike, q_back = (60.0, 330.0, 230.0, 500.0), (440.0, 340.0, 600.0, 500.0)

    def run(settings: TrackerSettings) -> list[dict]:
        tracker, seen = Tracker(settings), []
        for f in range(45):
            items = (([] if 20 <= f < 30 else [(_P, fp, "P")]) + ([(look_alike, fl, "L")] if f < 5 else [])
                     + ([(q_back, fq, "Q")] if f >= 26 else []))
            if items:
                tracks = tracker.update(dets(*[b for b, _, _ in items]), None, np.stack([c for _, c, _ in items]))
            else:
                tracks = tracker.update(Detections.empty())
            seen.append({items[t.detection_index][2]: t.track_id for t in tracks if t.detection_index >= 0})
        return seen

    seen = run(TrackerSettings())
    assert seen[4] == {"P": 1, "L": 2} and seen[27] == {"Q": 1}
    new = seen[-1]["Q"]
    assert new not in (1, 2)
    assert all(frame == {"P": 1, "Q": new} for frame in seen[33:])
    assert run(TrackerSettings(revise_frames=0))[-1] == {"P": 2, "Q": 1}


def test_a_track_that_takes_a_box_over_can_give_it_up_in_the_same_frame():
    """A take-back (a held newcomer absorbed by its lost track) and a revised link (the heir taking over the box the
    track held) leave the track that holds the box now as matched in this frame: a pose check or the pose review
    after tracking may take the box away again (``unmatch``), which leaves the track as if missed in this frame."""
    tracker = Tracker()
    undone = {"take-back": False, "heir": False}
    for f in range(45):
        boxes = ([] if 20 <= f < 30 else [_P]) + ([_Q] if f < 5 else [_Q_BACK] if f >= 26 else [])
        tracks = tracker.update(dets(*boxes) if boxes else Detections.empty())
        by_id = {t.track_id: t for t in tracker._tracks}
        if f >= 26 and 2 in by_id and by_id[2].frames_since_update == 0 and not undone["heir"]:
            # Q's lost track, the heir of P's track's wrong link, holds Q's box from the revision on.
            held = by_id[2]
            assert held.updated_now and [t.track_id for t in tracks if t.detection_index >= 0] == [1, 2]
            hits, box = held.hits, held.box.copy()
            held.unmatch()
            assert held.frames_since_update > 0 and held.hits == hits - 1 and held.detection_index == -1
            assert not np.allclose(held.box, box)  # predicted again, off this frame's box
            undone["heir"] = True
            break
    assert undone["heir"]
    # A plain take-back: one animal hidden for 20 frames comes back where it stood (held, then taken back).
    tracker = Tracker()
    for f in range(40):
        tracks = tracker.update(Detections.empty() if 5 <= f < 25 else dets(_P))
        (track,) = [t for t in tracker._tracks if t.track_id == 1]
        if f >= 25 and track.frames_since_update == 0:
            assert track.updated_now and [t.track_id for t in tracks] == [1]
            before = track.hits
            track.unmatch()
            assert track.frames_since_update > 0 and track.hits == before - 1
            undone["take-back"] = True
            break
    assert undone["take-back"]


def test_offline_output_follows_the_revised_links():
    tracker = Tracker(TrackerSettings(record_history=True))
    _p_and_q(tracker)
    frames = smooth_tracks_offline(tracker.history())
    last = {t.track_id: t.box for t in frames[-1]}
    assert set(last) == {1, 2}
    np.testing.assert_allclose(last[1], _P, atol=8.0)
    np.testing.assert_allclose(last[2], _Q_BACK, atol=8.0)


def test_does_not_relink_far_away():
    tracker = Tracker()
    for i in range(10):
        tracker.update(dets(box_at(10.0 * i)))
    for _ in range(3):
        tracker.update(Detections.empty())
    tracker.update(dets(box_at(1000.0, 500.0)))
    (track,) = tracker.update(dets(box_at(1002.0, 500.0)))
    assert track.track_id == 2


def test_update_without_detections_still_predicts():
    tracker = Tracker()
    for i in range(10):
        tracker.update(dets(box_at(10.0 * i)))
    before = tracker.tracks()[0].box
    tracker.update(Detections.empty())
    after = tracker.tracks()[0].box
    assert after[0] - before[0] == pytest.approx(10.0, abs=1.5)


def _walk_out(mode: SmoothingMode, image_size) -> tuple[Tracker, list[list[Track]]]:
    """An animal walking right at 10 px/frame out of a 400 x 300 frame: its box cut by the edge, then gone."""
    settings = TrackerSettings(report_lost_frames=2, smoothing=SmoothingSettings(mode=mode))
    tracker = Tracker(settings)
    frames = []
    for i in range(45):
        box = np.minimum(box_at(10.0 * i), [400, 300, 400, 300])
        detections = dets(box) if box[2] - box[0] > 15 else Detections.empty()
        frames.append(tracker.update(detections, poses_for(detections), image_size=image_size))
    return tracker, frames


@pytest.mark.parametrize("mode", [SmoothingMode.NONE, SmoothingMode.CAUSAL])
def test_reported_boxes_are_clipped_to_the_image(mode):
    _, frames = _walk_out(mode, (400, 300))
    boxes = np.array([t.box for tracks in frames for t in tracks])
    assert (boxes[:, [0, 2]] <= 400).all() and (boxes[:, [0, 2]] >= 0).all() and (boxes[:, 3] <= 300).all()
    lost = [t for tracks in frames for t in tracks if t.state is TrackState.LOST]
    assert lost and all(t.box[2] == 400 and t.box[0] < 400 for t in lost)  # the part still in view
    # keypoints farther outside the reported box (the part in view) than keypoint_box_margin are not reported
    margin = TrackerSettings().keypoint_box_margin
    assert all((t.keypoints[t.keypoint_status != KeypointStatus.MISSING, 0] <= 400 + margin * (t.box[2] - t.box[0]))
               .all() for tracks in frames for t in tracks)
    # without the image size, the box predicted out of the frame is reported whole
    _, unclipped = _walk_out(mode, None)
    assert max(t.box[2] for tracks in unclipped for t in tracks) > 400


def test_offline_boxes_are_clipped_to_the_image():
    tracker, _ = _walk_out(SmoothingMode.OFFLINE, (400, 300))
    history = tracker.history()
    assert history.image_size == (400, 300)
    boxes = np.array([t.box for tracks in smooth_tracks_offline(history) for t in tracks])
    assert len(boxes) and (boxes[:, [0, 2]] <= 400).all() and (boxes >= 0).all()
    tracker, _ = _walk_out(SmoothingMode.OFFLINE, None)
    assert tracker.history().image_size is None
    assert max(t.box[2] for tracks in smooth_tracks_offline(tracker.history()) for t in tracks) > 400


def test_predict_only_reports_boxes_in_the_image_it_was_told():
    tracker = Tracker()
    for i in range(10):
        tracker.update(dets(box_at(10.0 * i + 250.0)), image_size=(400, 300))
    for _ in range(5):
        (track,) = tracker.predict_only()
        assert track.box[2] == 400 and track.box[0] > 300


@pytest.mark.parametrize("size", [(0, 300), (400,), (400, float("nan")), (-1, 2), (float("inf"), 300), ((4, 3),)])
def test_update_rejects_a_bad_image_size(size):
    with pytest.raises(ValueError, match="image_size"):
        Tracker().update(dets(box_at(0.0)), image_size=size)


def test_predict_only_moves_tracks_without_counting_a_miss():
    tracker = Tracker(TrackerSettings(max_lost_frames=2))
    for i in range(10):
        tracker.update(dets(box_at(10.0 * i)))
    for step in range(1, 6):
        (track,) = tracker.predict_only()
        assert track.state is TrackState.CONFIRMED and track.frames_since_update == 0
        assert track.box[0] == pytest.approx(90.0 + 10.0 * step, abs=2.0)
        assert track.detection_index == -1
    (track,) = tracker.update(dets(box_at(150.0)))
    assert track.track_id == 1


def test_predict_only_keeps_reporting_a_recently_lost_track():
    tracker = Tracker(TrackerSettings(report_lost_frames=1))
    for i in range(5):
        tracker.update(dets(box_at(10.0 * i)))
    (lost,) = tracker.update(Detections.empty())
    assert lost.state is TrackState.LOST
    for _ in range(2):
        (track,) = tracker.predict_only()
        assert track.state is TrackState.LOST and track.frames_since_update == 1
    assert tracker.update(Detections.empty()) == []


def test_poses_after_tracking():
    """Detector every k frames: poses are estimated on the tracks' boxes and attached afterwards."""
    tracker = Tracker()
    for i in range(6):
        detections = dets(box_at(10.0 * i))
        tracks = tracker.update(detections) if i % 2 == 0 else tracker.predict_only()
        if not tracks:
            continue
        (snapshot,) = tracker.attach_poses([t.track_id for t in tracks], Poses(pose_in(box_at(10.0 * i))[None],
                                                                            detections.xyxy))
        assert (snapshot.keypoint_status == KeypointStatus.SMOOTHED).all()
        np.testing.assert_allclose(snapshot.keypoints[:, :2], pose_in(box_at(10.0 * i))[:, :2], atol=6.0)
    with pytest.raises(ValueError, match="already has a pose"):
        tracker.attach_poses([1], Poses(pose_in(box_at(50.0))[None], np.array([box_at(50.0)])))


def _reported_while_missed(pose_found: str, pose_keep_oks: float = 0.5, misses: int = 8) -> list[int]:
    """How many tracks are reported in each of ``misses`` frames in which the detector misses an animal walking 10 px
    a frame, the pose model run on the track's predicted box finding ``pose_found``: "own" (its pose where the
    track expects it), "elsewhere" (its pose 60 px off), "faint" (its pose with confidences 0.1) or "none"."""
    tracker = Tracker(TrackerSettings(report_lost_frames=2, pose_keep_oks=pose_keep_oks, pose_keep_frames=6))
    for i in range(5):
        tracks = tracker.update(dets(box_at(10.0 * i)))
        if tracks:
            tracker.attach_poses([t.track_id for t in tracks], Poses(pose_in(box_at(10.0 * i))[None],
                                                                     np.array([box_at(10.0 * i)], np.float32)))
    reported = []
    for i in range(5, 5 + misses):
        tracks = tracker.update(Detections.empty())
        reported.append(len(tracks))
        if not tracks:
            continue
        found = {"own": pose_in(box_at(10.0 * i)), "elsewhere": pose_in(box_at(10.0 * i + 60.0)),
                 "faint": pose_in(box_at(10.0 * i), conf=0.1), "none": np.full((K, 3), np.nan)}[pose_found]
        tracker.attach_poses([tracks[0].track_id], Poses(found[None], tracks[0].box[None]))
    return reported


def test_a_lost_track_whose_pose_is_found_where_expected_stays_reported():
    # report_lost_frames 2, then kept by its pose up to 6 frames unmatched, then no longer reported
    assert _reported_while_missed("own") == [1, 1, 1, 1, 1, 1, 0, 0]
    for other in ("elsewhere", "faint", "none"):
        assert _reported_while_missed(other) == [1, 1, 0, 0, 0, 0, 0, 0], other
    assert _reported_while_missed("own", pose_keep_oks=0.0) == [1, 1, 0, 0, 0, 0, 0, 0]


def _missed_track_given(pose_of_missed: str, duplicate_pose_oks: float) -> np.ndarray:
    """Keypoints of track 2 after a frame where its animal (10 px right of animal 1, almost under it) was missed and
    the pose model, run on its predicted box, found ``pose_of_missed``: "neighbour" (animal 1's pose), "own"
    (animal 2's, facing the other way, 4 px on), or "none"."""
    smoothing = SmoothingSettings(pose_surprise=0.0)
    tracker = Tracker(TrackerSettings(min_hits=1, duplicate_pose_oks=duplicate_pose_oks, smoothing=smoothing))
    a, b = box_at(0.0), box_at(10.0, y=104.0)
    for _ in range(4):
        tracks = tracker.update(dets(a, b))
        tracker.attach_poses([t.track_id for t in tracks], Poses(np.stack([pose_in(a), pose_in(b, -1.0)]),
                                                                 np.array([a, b], np.float32)))
    tracks = tracker.update(dets(a))
    assert [(t.track_id, t.frames_since_update) for t in tracks] == [(1, 0), (2, 1)]
    own = pose_in(box_at(14.0, y=104.0), -1.0)  # it walked on a little
    missed = {"neighbour": pose_in(a), "own": own, "none": np.full((K, 3), np.nan)}[pose_of_missed]
    _, second = tracker.attach_poses([1, 2], Poses(np.stack([pose_in(a), missed]), np.array([a, b], np.float32)))
    return second.keypoints


def test_a_missed_track_drops_a_pose_that_is_a_matched_neighbours():
    alone = _missed_track_given("none", 0.5)
    np.testing.assert_array_equal(_missed_track_given("neighbour", 0.5), alone)
    # Its own pose (unlike the neighbour's) is taken; with the check off, so is the neighbour's.
    assert np.abs(_missed_track_given("own", 0.5)[:, :2] - alone[:, :2]).max() > 1.0
    assert np.abs(_missed_track_given("neighbour", 0.0)[:, :2] - alone[:, :2]).max() > 1.0


def test_poses_on_a_frame_without_the_detector_are_not_judged_duplicates():
    """With the detector skipped (``predict_only``) no track is matched, so no pose is dropped as another's."""
    tracker = Tracker(TrackerSettings(min_hits=1))
    a, b, c = box_at(0.0), box_at(10.0, y=104.0), box_at(400.0)
    for boxes in ([a, b, c], [a, b, c], [a, b, c], [a, b]):  # c is missed in the last frame: lost, still reported
        tracks = tracker.update(dets(*boxes))
        facings = [1.0, -1.0, 1.0][:len(tracks)]
        poses = np.stack([pose_in(t.box, f) for t, f in zip(tracks, facings)])
        tracker.attach_poses([t.track_id for t in tracks], Poses(poses, np.stack([t.box for t in tracks])))
    tracks = tracker.predict_only()
    assert [t.track_id for t in tracks] == [1, 2, 3]
    snapshots = tracker.attach_poses([1, 2, 3], Poses(np.stack([pose_in(a), pose_in(a), pose_in(a)]),
                                                      np.array([a, b, c], np.float32)))
    assert [s.track_id for s in snapshots] == [1, 2, 3]


def _second_box_on_one_animal(young_duplicate_oks: float, pose_in_part: str, order: str = "after"
                              ) -> tuple[list[list[int]], dict[int, TrackState], list[int]]:
    """An animal tracked alone for 12 frames, then found twice for 3 frames: its whole box and a second box on its
    rear part (IoU 0.58 with the whole), in which the pose model finds "same" (the animal's pose, as in the whole box)
    or "other" (another pose, facing the other way). Returns the IDs reported in those 3 frames, the IDs still live
    after them with their states, and the IDs recorded for offline output."""
    tracker = Tracker(TrackerSettings(young_duplicate_oks=young_duplicate_oks, record_history=True))
    whole, part = box_at(0.0), [50.0, 110.0, 120.0, 180.0]
    found = {"same": pose_in(whole), "other": pose_in(part, -1.0)}[pose_in_part]
    reported = []
    for i in range(15):
        boxes = [whole] if i < 12 else [whole, part]
        keypoints = np.stack([pose_in(whole), found][:len(boxes)])
        if order == "before":
            tracks = tracker.update(dets(*boxes), Poses(keypoints, np.array(boxes, np.float32)))
        else:
            tracks = tracker.update(dets(*boxes))
            rows = [t.detection_index for t in tracks]
            tracks = tracker.attach_poses([t.track_id for t in tracks], Poses(keypoints[rows],
                                                                              np.array(boxes, np.float32)[rows]))
        if i >= 12:
            reported.append([t.track_id for t in tracks])
    live = {t.track_id: t.state for t in tracker.tracks()}
    return reported, live, [r.track_id for r in tracker.history().records]


@pytest.mark.parametrize("order", ["after", "before"])
def test_a_young_track_on_a_second_box_of_an_older_tracks_animal_ends(order):
    reported, live, recorded = _second_box_on_one_animal(0.75, "same", order)
    assert reported == [[1], [1], [1]]
    assert 2 not in recorded  # ended unrecorded: offline output does not bring it back
    if order == "before":  # the pose is known at once: the second box's track ends in its first frame
        assert live == {1: TrackState.CONFIRMED}
    else:  # ... and once confirmed, with the poses after tracking; the box starts another, ended in turn
        assert live == {1: TrackState.CONFIRMED, 3: TrackState.TENTATIVE}
    # Another animal's pose in the second box (or the rule off) keeps its track, reported once confirmed.
    for oks, pose in ((0.75, "other"), (0.0, "same")):
        reported, live, recorded = _second_box_on_one_animal(oks, pose, order)
        assert reported == [[1], [1, 2], [1, 2]], (oks, pose)
        assert live == {1: TrackState.CONFIRMED, 2: TrackState.CONFIRMED} and recorded == [1, 2]


def _box_with_poses(confidences: list[float], order: str, young_pose_keypoints: int | None = 6,
                    beside: list[float] | float | None = 0.9) -> tuple[list[list[int]], list[int], list[int]]:
    """One box, found in every frame, in which the pose model finds 17 keypoints of confidence ``confidences[i]`` in
    frame i (0.1: no animal there), beside an animal found first in every frame (track 1) whose keypoints have
    confidence ``beside`` (one per frame, or the same in all; None: no animal beside), tracked with
    ``young_pose_keypoints`` (None: the default). Returns the IDs reported in each frame, those live at the end and
    those recorded for offline output, less the animal beside's."""
    settings = TrackerSettings(record_history=True)
    if young_pose_keypoints is not None:
        settings = dataclasses.replace(settings, young_pose_keypoints=young_pose_keypoints)
    tracker = Tracker(settings)
    box, other = box_at(0.0), box_at(400.0)
    beside = [beside] * len(confidences) if beside is None or np.isscalar(beside) else beside
    reported = []
    for conf, other_conf in zip(confidences, beside):
        boxes = [box] if other_conf is None else [other, box]
        keypoints = np.stack([pose_in(b, conf=c) for b, c in zip(boxes, [other_conf, conf][-len(boxes):])])
        poses = Poses(keypoints, np.array(boxes, np.float32))
        if order == "before":
            tracks = tracker.update(dets(*boxes), poses)
        else:
            tracks = tracker.update(dets(*boxes))
            if tracks:
                # The animal beside (track 1, when there is one) has the first pose, every other track the box's.
                rows = [0 if t.track_id == 1 else len(boxes) - 1 for t in tracks]
                tracks = tracker.attach_poses([t.track_id for t in tracks], poses[np.array(rows)])
        reported.append([t.track_id for t in tracks if t.track_id != 1 or other_conf is None])

    def others(ids: list[int]) -> list[int]:
        return [i for i in ids if i != 1 or beside[0] is None]

    return reported, others([t.track_id for t in tracker.tracks()]), others(
        [r.track_id for r in tracker.history().records])


@pytest.mark.parametrize("order", ["after", "before"])
def test_a_track_whose_poses_show_no_animal_in_its_first_matches_ends_unrecorded(order):
    # The pose model finds no animal in the box, and an animal beside it: confirmed in its second frame (min_hits 2),
    # the track ends in its third, at its second pose check of three (more than half without six confident
    # keypoints), unrecorded; the box starts another track, which ends in turn.
    for keypoints in (6, None):  # None: the shipped default (4) does the same
        reported, live, recorded = _box_with_poses([0.1] * 7, order, keypoints)
        assert reported == [[], [2], [], [], [3], [], []]
        assert live == [4]  # the third, tentative
        assert not {2, 3} & set(recorded)  # ended unrecorded: offline output does not bring them back
    # An animal's pose, or the rule off (0), keeps the track.
    for confidences, keypoints in (([0.9] * 7, 6), ([0.1] * 7, 0)):
        reported, live, recorded = _box_with_poses(confidences, order, keypoints)
        assert reported == [[]] + [[2]] * 6 and live == recorded == [2]


@pytest.mark.parametrize("order", ["after", "before"])
def test_the_pose_check_counts_only_where_another_track_shows_an_animal(order):
    # Alone, or beside an animal whose pose is as faint (a pose model whose confidences run low everywhere, or none
    # at all), a box without an animal's pose keeps its track: nothing shows that the pose model would find one.
    for beside, track_id in ((None, 1), (0.1, 2), (0.5, 2)):  # 0.5: every keypoint confident, 17 >= 12
        reported, live, recorded = _box_with_poses([0.1] * 7, order, beside=beside)
        if beside == 0.5:
            assert reported[2] == [] and track_id not in live + recorded, beside
        else:
            assert reported == [[]] + [[track_id]] * 6 and live == recorded == [track_id], beside
    # The checks wait for a frame where the animal beside shows its pose: from frame 4 on, the track ends at frame 5.
    reported, live, recorded = _box_with_poses([0.1] * 7, order, beside=[0.1] * 4 + [0.9] * 3)
    assert reported == [[]] + [[2]] * 4 + [[], []] and 2 not in live + recorded
    # ... while the track is young (young_duplicate_hits, 10 matches): later, it is an animal the detector follows.
    reported, live, recorded = _box_with_poses([0.1] * 14, order, beside=[0.1] * 11 + [0.9] * 3)
    assert reported == [[]] + [[2]] * 13 and live == recorded == [2]


@pytest.mark.parametrize("order", ["after", "before"])
def test_the_pose_check_needs_most_of_the_first_matches_without_an_animal(order):
    # One pose without an animal among the first three checks (frames 1-3) is not most of them; after those three,
    # poses without an animal no longer end the track (an animal hidden behind another, or leaving the frame).
    for confidences in ([0.9, 0.1, 0.9, 0.9, 0.1, 0.1], [0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1]):
        reported, live, recorded = _box_with_poses(confidences, order)
        assert reported == [[]] + [[2]] * (len(confidences) - 1) and live == recorded == [2], confidences
    # Two of the first three: it ends at the second.
    reported, live, recorded = _box_with_poses([0.9, 0.1, 0.9, 0.1, 0.9], order)
    assert reported[:3] == [[], [2], [2]] and reported[3] == [] and 2 not in live + recorded


@pytest.mark.parametrize(
    ("ids", "n_poses", "message"),
    [([7], 1, "not live"), ([1], 2, "aligned"), ([1, 1], 1, "aligned")],
)
def test_attach_poses_rejects_bad_arguments(ids, n_poses, message):
    tracker = Tracker(TrackerSettings(min_hits=1))
    tracker.update(dets(box_at(0)))
    poses = Poses(np.stack([pose_in(box_at(0))] * n_poses), np.array([box_at(0)] * n_poses))
    with pytest.raises(ValueError, match=message):
        tracker.attach_poses(ids, poses)


def test_low_score_detections_extend_but_do_not_start_tracks():
    tracker = Tracker(TrackerSettings(high_score=0.5, low_score=0.1, new_track_score=0.6, report_lost_frames=0))
    assert tracker.update(dets(box_at(0), scores=[0.3])) == []
    assert tracker.tracks() == []
    for i in range(3):
        tracker.update(dets(box_at(5.0 * i)))
    (track,) = tracker.update(dets(box_at(15.0), scores=[0.3]))  # occluded: low score
    assert track.track_id == 1 and track.score == pytest.approx(0.3)
    assert tracker.update(dets(box_at(20.0), scores=[0.05])) == []  # below low_score: dropped


@pytest.mark.parametrize(("oks_weight", "expected"), [(0.6, [1, 2]), (0.0, [2, 1])])
def test_keypoints_disambiguate_overlapping_animals(oks_weight, expected):
    """Two animals facing opposite ways stand almost on top of each other; in the last frame the
    boxes favour swapped identities, the keypoints do not."""
    tracker = Tracker(TrackerSettings(min_hits=1, oks_weight=oks_weight))
    a, b = box_at(100.0), box_at(130.0)
    for _ in range(5):
        detections = dets(a, b)
        tracker.update(detections, poses_for(detections, [1.0, -1.0]))
    # Animal 1 (facing right) is now where b was and animal 2 where a was, by the boxes...
    detections = dets(box_at(125.0), box_at(105.0))
    # ...but the keypoints show animal 1 (facing right) near a and animal 2 near b.
    poses = Poses(np.stack([pose_in(a, 1.0), pose_in(b, -1.0)]), detections.xyxy)
    tracks = tracker.update(detections, poses)
    by_detection = {t.detection_index: t.track_id for t in tracks}
    assert [by_detection[0], by_detection[1]] == expected


@pytest.mark.parametrize(
    "boxes",
    [
        [[np.nan, 0, 10, 10]],
        [[0, 0, np.inf, 10]],
        [[50, 50, 10, 10]],  # inverted
        [[5, 5, 5, 30]],  # zero width
        [[-300, -200, -100, -50]],  # outside the frame
        [[1e6, 1e6, 1e6 + 100, 1e6 + 80]],
    ],
)
def test_bad_boxes_do_not_crash(boxes):
    tracker = Tracker(TrackerSettings(min_hits=1))
    for i in range(3):
        detections = Detections(np.array(boxes + [box_at(10.0 * i)], np.float32), np.full(len(boxes) + 1, 0.9))
        tracks = tracker.update(detections, poses_for(detections))
    assert 1 <= len(tracks) <= 2
    for track in tracks:
        assert np.isfinite(track.box).all()


def test_nan_scores_and_keypoints_do_not_crash():
    tracker = Tracker(TrackerSettings(min_hits=1))
    for i in range(3):
        detections = Detections(np.array([box_at(10.0 * i), box_at(500.0)], np.float32), np.array([0.9, np.nan]))
        kpts = np.stack([pose_in(box_at(10.0 * i)), pose_in(box_at(500.0))])
        kpts[0, :4] = np.nan
        (track,) = tracker.update(detections, Poses(kpts, detections.xyxy))
    assert (track.keypoint_status[:4] == KeypointStatus.MISSING).all()
    assert (track.keypoint_status[4:] == KeypointStatus.SMOOTHED).all()


def test_empty_detections_from_the_start():
    tracker = Tracker()
    for _ in range(3):
        assert tracker.update(Detections.empty(), Poses.empty()) == []
    assert tracker.predict_only() == []
    assert tracker.frame_index == 3


@pytest.mark.parametrize(
    ("poses", "message"),
    [
        (Poses(np.zeros((2, K, 3)), np.zeros((2, 4))), "aligned"),
        (Poses(np.zeros((1, 5, 3)), np.zeros((1, 4))), "17 keypoints"),
        (np.zeros((1, K, 3)), "Poses"),
    ],
)
def test_update_rejects_bad_poses(poses, message):
    with pytest.raises(ValueError, match=message):
        Tracker().update(dets(box_at(0)), poses)


def test_update_rejects_non_detections():
    with pytest.raises(ValueError, match="Detections"):
        Tracker().update(np.zeros((1, 4)))


def test_track_snapshots_are_immutable():
    (track,) = Tracker(TrackerSettings(min_hits=1)).update(dets(box_at(0)), poses_for(dets(box_at(0))))
    assert isinstance(track, Track)
    with pytest.raises(dataclasses.FrozenInstanceError):
        track.track_id = 5
    with pytest.raises(ValueError):
        track.box[0] = 1.0
    assert track.box.dtype == np.float32 and track.keypoints.shape == (K, 3) and track.keypoint_status.shape == (K,)
    # Made without Track's __init__ (a third of its cost): exactly its fields, and equal to what __init__ makes.
    assert set(vars(track)) == {field.name for field in dataclasses.fields(Track)}
    fields = {field.name: getattr(track, field.name) for field in dataclasses.fields(Track)}
    assert Track(**fields) == track and repr(Track(**fields)) == repr(track)
    assert isinstance(track.score, float) and isinstance(track.class_id, int) and isinstance(track.detection_index, int)


def test_mode_none_reports_raw_boxes_and_keypoints():
    settings = TrackerSettings(min_hits=1, smoothing=SmoothingSettings(mode=SmoothingMode.NONE))
    tracker = Tracker(settings)
    for i in range(4):
        detections = dets(box_at(10.0 * i + (3.0 if i % 2 else 0.0)))
        (track,) = tracker.update(detections, poses_for(detections))
    np.testing.assert_allclose(track.box, detections.xyxy[0])
    np.testing.assert_allclose(track.keypoints, poses_for(detections).keypoints[0], rtol=1e-6)
    assert (track.keypoint_status == KeypointStatus.OBSERVED).all()


def test_offline_smoothing_of_a_whole_sequence():
    rng = np.random.default_rng(0)
    settings = TrackerSettings(smoothing=SmoothingSettings(mode=SmoothingMode.OFFLINE))
    tracker = Tracker(settings)
    live, truth = [], []
    for i in range(40):
        true_box = np.array(box_at(6.0 * i))
        truth.append(pose_in(true_box)[:, :2])
        detections = dets(true_box + rng.normal(0, 2.0, 4))
        poses = Poses((pose_in(true_box) + np.r_[rng.normal(0, 3.0, (K, 2)).T, np.zeros((1, K))].T)[None],
                      detections.xyxy)
        live.append(tracker.update(detections, poses))
    frames = smooth_tracks_offline(tracker.history())
    assert len(frames) == 40
    assert live[0] == [] and [t.track_id for t in frames[0]] == [1]  # the tentative frame, known offline
    assert all([t.track_id for t in f] == [1] for f in frames)
    assert all((f[0].keypoint_status == KeypointStatus.SMOOTHED).all() for f in frames)
    truth = np.array(truth)
    offline = np.array([f[0].keypoints[:, :2] for f in frames])
    causal = np.array([f[0].keypoints[:, :2] for f in live[1:]])
    offline_rmse = np.sqrt(np.mean(np.sum((offline[10:] - truth[10:]) ** 2, -1)))
    causal_rmse = np.sqrt(np.mean(np.sum((causal[9:] - truth[10:]) ** 2, -1)))
    assert offline_rmse < causal_rmse < 3.0 * np.sqrt(2)


def test_history_needs_recording():
    with pytest.raises(RuntimeError, match="record_history"):
        Tracker().history()


def test_history_records_the_detections_scored_low_score_or_more():
    tracker = Tracker(TrackerSettings(record_history=True, low_score=0.1))
    tracker.update(dets(box_at(0), box_at(300), scores=[0.05, 0.9]))
    tracker.update(Detections.empty())
    tracker.update(dets(box_at(8), scores=[0.1]))
    np.testing.assert_allclose(tracker.history().detections, [[0, 1, *box_at(300), 0.9], [2, 0, *box_at(8), 0.1]],
                               rtol=1e-6)


def test_history_keeps_ended_tracks():
    tracker = Tracker(TrackerSettings(record_history=True, max_lost_frames=1, report_lost_frames=1))
    for i in range(4):
        tracker.update(dets(box_at(10.0 * i)))
    for _ in range(3):
        tracker.update(Detections.empty())
    history = tracker.history()
    assert history.num_frames == 7 and [r.track_id for r in history.records] == [1]
    frames = smooth_tracks_offline(history)
    assert [len(f) for f in frames] == [1, 1, 1, 1, 1, 0, 0]  # reported live once more while lost
    assert frames[4][0].state is TrackState.LOST


def test_a_spilled_history_is_the_history_kept_in_memory():
    """Offline smoothing is the same whether the records wait in memory or in the spill file, and the spill
    leaves an ended track nothing in memory and a live one at most a block per log."""
    from train.synthetic.tracks import SCENE_NOISE, SCENES, simulate_sequence

    sequence = simulate_sequence(SCENES["depths"], SCENE_NOISE, seed=4)  # two tracks end, others start
    offline = SmoothingSettings(mode=SmoothingMode.OFFLINE)
    trackers = [Tracker(TrackerSettings(smoothing=offline, spill_history=spill)) for spill in (False, True)]
    for frame in sequence.frames:
        for tracker in trackers:
            tracker.update(frame.detections, frame.poses)
    kept, spilled = (tracker.history() for tracker in trackers)
    assert [r.track_id for r in spilled.records] == [r.track_id for r in kept.records]
    for a, b in zip(kept.records, spilled.records):
        np.testing.assert_array_equal(a.box.means, b.box.means)
        np.testing.assert_array_equal(a.keypoints.observed, b.keypoints.observed)
        np.testing.assert_array_equal(a.scores, b.scores)
        assert a.states == b.states
    assert len(kept.detections) >= len(sequence.frames)
    np.testing.assert_array_equal(kept.detections, spilled.detections)
    for a, b in zip(smooth_tracks_offline(kept), smooth_tracks_offline(spilled), strict=True):
        assert [t.track_id for t in a] == [t.track_id for t in b]
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x.keypoints, y.keypoints)
            np.testing.assert_array_equal(x.box, y.box)
    memory = {t.track_id: t.box_filter.recorded_bytes + t.keypoints.filter.recorded_bytes
              for t in (*trackers[1]._ended, *trackers[1]._tracks) if t.keypoints.filter is not None}
    ended = {t.track_id for t in trackers[1]._ended}
    assert ended and all(memory[i] == 0 for i in ended)
    assert all(not t._heights for t in trackers[1]._ended)  # the association's heights go with the track

    def block(n: int, d: int) -> int:  # bytes of 256 float32 frames of a filter of n points, d states each
        return 256 * 4 * (n * d * 2 + n * d * (d + 1) // 2 + n + 2)

    one_block = block(K, offline.motion.value) + block(2, 2) + 2048  # + the rare whole-pose kicks (68 bytes each)
    assert all(bytes_ <= one_block for bytes_ in memory.values()), (memory, one_block)
    assert trackers[1]._spill.nbytes > 0 and trackers[0]._spill is None


@pytest.mark.parametrize("report_lost_frames", [0, 1, 3])
def test_lost_tracks_are_reported_for_a_while(report_lost_frames):
    tracker = Tracker(TrackerSettings(report_lost_frames=report_lost_frames))
    for i in range(5):
        tracker.update(dets(box_at(10.0 * i)))
    reported = []
    for step in range(1, 6):
        tracks = tracker.update(Detections.empty())
        reported.append(len(tracks))
        for track in tracks:
            assert track.state is TrackState.LOST and track.frames_since_update == step
            assert track.box[0] == pytest.approx(40.0 + 10.0 * step, abs=2.0)
    assert reported == [1] * report_lost_frames + [0] * (5 - report_lost_frames)


@pytest.mark.parametrize(("fill_gaps", "expected"), [(0, [1, 1, 0, 0, 0, 1, 1]), (3, [1, 1, 1, 1, 1, 1, 1]),
                                                     (2, [1, 1, 0, 0, 0, 1, 1])])
def test_offline_fills_short_gaps(fill_gaps, expected):
    tracker = Tracker(TrackerSettings(record_history=True, min_hits=1, report_lost_frames=0))
    for i in range(7):
        tracker.update(dets(box_at(10.0 * i)) if i in (0, 1, 5, 6) else Detections.empty())
    frames = smooth_tracks_offline(tracker.history(), fill_gaps=fill_gaps)
    assert [len(f) for f in frames] == expected
    for f in frames[2:5]:
        for track in f:
            assert track.state is TrackState.LOST and track.detection_index == -1
    with pytest.raises(ValueError, match="fill_gaps"):
        smooth_tracks_offline(tracker.history(), fill_gaps=-1)


@pytest.mark.parametrize(("offline_fill_frames", "expected"), [(0, [1, 1, 0, 0, 0, 1, 1]), (3, [1] * 7)])
def test_offline_fill_default_is_the_trackers_setting(offline_fill_frames, expected):
    settings = TrackerSettings(record_history=True, min_hits=1, report_lost_frames=0,
                               offline_fill_frames=offline_fill_frames)
    tracker = Tracker(settings)
    for i in range(7):
        found = dets(box_at(10.0 * i)) if i in (0, 1, 5, 6) else Detections.empty()
        tracker.update(found, poses_for(found))
    frames = smooth_tracks_offline(tracker.history())
    assert [len(f) for f in frames] == expected
    for f in (*frames[:2], *frames[5:]):
        assert (f[0].keypoint_status == KeypointStatus.SMOOTHED).all()
    for f in frames[2:5]:
        for track in f:  # a filled frame has the box between the matches and no keypoints
            assert track.state is TrackState.LOST
            assert track.box[0] == pytest.approx(10.0 * track.frame_index, abs=2.0)
            assert np.isnan(track.keypoints[:, :2]).all() and (track.keypoints[:, 2] == 0).all()
            assert (track.keypoint_status == KeypointStatus.MISSING).all()


def _walks_in_unsure(extend: int, other_x: float | None = None, gap_at: int | None = None) -> list[list[Track]]:
    """An animal found with a low score (under ``new_track_score``) in frames 0-3, as it walks in, and confidently
    from frame 4 on; another animal matched in every frame at ``other_x`` (None: none); no detection of the first
    one in frame ``gap_at``."""
    settings = TrackerSettings(smoothing=SmoothingSettings(mode=SmoothingMode.OFFLINE), offline_extend_frames=extend)
    tracker = Tracker(settings)
    for i in range(10):
        boxes, scores = [], []
        if i != gap_at:
            boxes.append(box_at(100.0 + 4.0 * i))
            scores.append(0.3 if i < 4 else 0.9)
        if other_x is not None:
            boxes.append(box_at(other_x + 4.0 * i))
            scores.append(0.9)
        found = dets(*boxes, scores=scores)
        tracker.update(found, poses_for(found), image_size=(1280, 720))
    return smooth_tracks_offline(tracker.history())


def _frames_of(frames: list[list[Track]], track_id: int) -> list[int]:
    return [t for t, tracks in enumerate(frames) if any(track.track_id == track_id for track in tracks)]


@pytest.mark.parametrize(("extend", "first"), [(0, 4), (2, 2), (5, 0)])
def test_offline_output_reports_an_animal_from_its_first_boxes(extend, first):
    frames = _walks_in_unsure(extend)
    (track_id,) = {track.track_id for tracks in frames for track in tracks}
    assert _frames_of(frames, track_id) == list(range(first, 10))
    for t in range(first, 10):
        (track,) = frames[t]
        assert track.age == t - first and track.hits == t - first + 1 and track.frames_since_update == 0
        assert track.detection_index == 0
        if t < 4:  # found here: the detection's box and score, no keypoints
            assert track.state is TrackState.TENTATIVE and track.score == pytest.approx(0.3)
            np.testing.assert_allclose(track.box, box_at(100.0 + 4.0 * t))
            assert np.isnan(track.keypoints[:, :2]).all() and (track.keypoint_status == KeypointStatus.MISSING).all()
        else:
            assert (track.keypoint_status == KeypointStatus.SMOOTHED).all()


def test_offline_output_extends_no_run_onto_a_box_another_track_covers():
    near = _walks_in_unsure(5, other_x=160.0)  # the other animal's box overlaps the unsure ones by an IoU of 1/3
    far = _walks_in_unsure(5, other_x=600.0)
    for frames in (near, far):
        assert _frames_of(frames, 1) == list(range(10))  # the other animal, confident from the first frame
    assert _frames_of(near, 2) == list(range(4, 10))
    assert _frames_of(far, 2) == list(range(10))


def test_offline_extension_stops_at_a_frame_without_the_animal():
    frames = _walks_in_unsure(5, gap_at=1)
    assert _frames_of(frames, 1) == list(range(2, 10))


def test_offline_extend_frames_must_not_be_negative():
    assert TrackerSettings().offline_extend_frames == 5
    with pytest.raises(ValueError, match="offline_extend_frames"):
        TrackerSettings(offline_extend_frames=-1)


def test_offline_fill_frames_must_not_be_negative():
    assert TrackerSettings().offline_fill_frames == 10
    with pytest.raises(ValueError, match="offline_fill_frames"):
        TrackerSettings(offline_fill_frames=-1)


def _pose_reaching_out(box) -> np.ndarray:
    """``pose_in(box)`` with keypoint 0 one box width right of the box, 1 a box height above it and 2 a third of the
    width right of it (within the default margin)."""
    pose = pose_in(box)
    x1, y1, x2, y2 = box
    pose[0, :2] = x2 + 1.0 * (x2 - x1), (y1 + y2) / 2
    pose[1, :2] = (x1 + x2) / 2, y1 - 1.0 * (y2 - y1)
    pose[2, :2] = x2 + (x2 - x1) / 3, (y1 + y2) / 2
    return pose


@pytest.mark.parametrize("mode", [SmoothingMode.NONE, SmoothingMode.CAUSAL, SmoothingMode.OFFLINE])
@pytest.mark.parametrize("margin", [0.5, None])
def test_keypoints_far_outside_the_box_are_missing(mode, margin):
    settings = TrackerSettings(min_hits=1, keypoint_box_margin=margin,
                               smoothing=SmoothingSettings(mode=mode))
    tracker = Tracker(settings)
    live = []
    for i in range(4):
        found = dets(box_at(10.0 * i))
        live.append(tracker.update(found, Poses(_pose_reaching_out(found.xyxy[0])[None], found.xyxy)))
    frames = smooth_tracks_offline(tracker.history()) if mode is SmoothingMode.OFFLINE else live
    for tracks in frames:
        (track,) = tracks
        far = (track.keypoint_status[:2] == KeypointStatus.MISSING) & np.isnan(track.keypoints[:2, :2]).all(-1)
        assert far.all() == (margin is not None) and far.any() == (margin is not None)
        assert (track.keypoints[:2, 2] == 0).all() == (margin is not None)
        assert track.keypoint_status[2] != KeypointStatus.MISSING  # a third of the box out: within the margin
        assert (track.keypoint_status[3:] != KeypointStatus.MISSING).all()


@pytest.mark.parametrize("margin", [-0.1, float("inf"), float("nan")])
def test_keypoint_box_margin_is_checked(margin):
    assert TrackerSettings().keypoint_box_margin == 0.5
    assert TrackerSettings(keypoint_box_margin=None).keypoint_box_margin is None
    with pytest.raises(ValueError, match="keypoint_box_margin"):
        TrackerSettings(keypoint_box_margin=margin)


def _track_with_one_short_box(window: int):
    """A tracker whose one track saw 20 boxes 100 px high, then one cut to 85 (an occluder in front), then none."""
    settings = TrackerSettings(height_window=window)
    tracker = Tracker(settings)
    for i in range(20):
        tracker.update(dets(box_at(10.0 * i, h=100.0)))
    tracker.update(dets([200.0, 115.0, 320.0, 200.0]))
    assert tracker._tracks[0].frames_since_update == 0  # the cut box was taken
    tracker.update(Detections.empty())
    (track,) = tracker._tracks
    return settings, track


def test_height_reference_keeps_the_median_of_recent_boxes():
    from tracking.tracker import _geometry

    fits = {}
    for window in (30, 0):
        settings, track = _track_with_one_short_box(window)
        if window:
            assert track.median_height == pytest.approx(100.0)
        # The animal seen whole again where it is expected: its height fits the track better with the median.
        fits[window] = _geometry([track], np.array([[220.0, 100.0, 340.0, 200.0]]), settings)[0][0, 0]
    assert fits[30] < 0.8 * fits[0]


def test_height_median_follows_unmatch_and_stays_bounded():
    settings, track = _track_with_one_short_box(4)
    assert track.median_height == pytest.approx(100.0)  # 100, 100, 100, 85
    track.predict()
    track.update(np.array([230.0, 150.0, 350.0, 200.0]), 0.9, 0)  # 50 high
    assert track.median_height == pytest.approx(92.5)  # 100, 100, 85, 50
    track.unmatch()
    assert track.median_height == pytest.approx(100.0)
    assert len(track._heights) <= 2 * 4 + 1
    with pytest.raises(ValueError, match="height_window"):
        TrackerSettings(height_window=-1)
    assert TrackerSettings().height_window == 30


def _lost_runner(settings: TrackerSettings, unseen: int):
    """A tracker whose one track walked right 12 px a frame, then went unseen for ``unseen`` frames."""
    tracker = Tracker(settings)
    for i in range(15):
        tracker.update(dets(box_at(100.0 + 12.0 * i, h=100.0)))
    for _ in range(unseen):
        tracker.update(Detections.empty())
    (track,) = tracker._tracks
    return track


def test_reach_limit_keeps_a_long_lost_animal_near_where_it_was_lost():
    from tracking.tracker import _geometry

    where_lost = np.array([[270.0, 100.0, 390.0, 200.0]])
    far = np.array([[270.0, 600.0, 390.0, 700.0]])  # five heights lower in the image: nearer the camera
    fits = {}
    for limit in (0.0, 1.0):
        settings = TrackerSettings(reach_limit=limit)
        track = _lost_runner(settings, unseen=60)
        d2, _ = _geometry([track], np.concatenate([where_lost, far]), settings, relinking=True)
        fits[limit] = d2[0]
    assert fits[0.0][1] <= TrackerSettings().relink_gate  # unlimited, it may be anywhere by now
    assert fits[1.0][1] > TrackerSettings().relink_gate  # limited, not five of its heights away
    assert fits[1.0][0] <= TrackerSettings().relink_gate  # still found where it was lost
    # A track seen in the last frame is far inside the limit: the cap changes nothing for it.
    recent = {limit: _geometry([_lost_runner(TrackerSettings(reach_limit=limit), 1)], where_lost,
                               TrackerSettings(reach_limit=limit))[0] for limit in (0.0, 1.0)}
    assert recent[0.0] == pytest.approx(recent[1.0])
    with pytest.raises(ValueError, match="reach_limit"):
        TrackerSettings(reach_limit=-1.0)
    assert TrackerSettings().reach_limit == 1.0


def test_an_animal_back_takes_its_own_lost_track_though_the_other_is_tighter():
    """Two animals leave the frame together, a smaller slow one and a larger fast one; the large one comes back. Its
    track fits the box better, but has the wider spread (larger, faster, and with no ``reach_limit`` here): the lost
    tracks compete by how well the box fits each (the normalised distance), not by a likelihood that favours the
    tighter one."""
    from tracking.tracker import _geometry

    settings = TrackerSettings(reach_limit=0.0)
    tracker = Tracker(settings)
    for i in range(20):
        small = [40.0 - 2.0 * i, 110.0, 100.0 - 2.0 * i, 210.0]  # 100 high, walking left 2 px a frame
        large = [60.0 - 9.0 * i, 120.0, 200.0 - 9.0 * i, 240.0]  # 120 high, 9 px a frame
        tracker.update(dets(small, large))
    lost = {t.track_id: t for t in tracker._tracks}
    assert sorted(lost) == [1, 2]
    for _ in range(settings.relink_delay + 20):
        tracker.update(Detections.empty())  # both out of the frame
    back = np.array([[0.0, 118.0, 110.0, 240.0]])  # the large one, back
    d2, log_det = _geometry([lost[1], lost[2]], back, settings, relinking=True)
    assert d2[1, 0] + 1.0 < d2[0, 0] <= settings.relink_gate  # it fits the large one's track better ...
    assert d2[1, 0] + log_det[1] > d2[0, 0] + log_det[0] + 0.2  # ... which the likelihood would not have chosen
    for _ in range(settings.relink_hits - 1):
        assert tracker.update(dets(back[0])) == []  # held, unlabelled, until it has relink_hits hits
    (track,) = tracker.update(dets(back[0]))
    assert track.track_id == 2


def test_a_track_missed_in_one_frame_keeps_the_match_gate():
    """A box taller than its animal's (grown over a neighbour) fits the track beyond the re-link gate but within the
    match gate: a track missed in one frame only still takes it (one odd box must not hand the animal on)."""
    import copy

    from tracking.tracker import _geometry

    settings = TrackerSettings()
    tracker = Tracker(settings)
    for i in range(12):
        tracker.update(dets([10.0 * i, 100.0, 10.0 * i + 120.0, 200.0]))
    tracker.update(Detections.empty())  # missed once
    grown = np.array([[130.0, 70.0, 250.0, 200.0]])  # where it is expected, 130 high against 100
    probe = copy.deepcopy(tracker)
    probe._advance()  # the fit as stage 1 sees it, after this frame's prediction
    d2 = _geometry(probe._tracks, grown, settings)[0][0, 0]
    assert settings.relink_gate < d2 <= settings.match_gate
    (track,) = tracker.update(dets(grown[0]))
    assert track.track_id == 1 and track.frames_since_update == 0


def test_short_simulated_crossing_is_tracked():
    from train.synthetic.tracks import SCENARIOS, simulate_sequence
    from train.tracking_metrics import FrameOutput, identity_metrics

    sequence = simulate_sequence(dataclasses.replace(SCENARIOS["crossing"], num_frames=150), seed=28)
    assert sequence.visibility.min() < 0.3  # an animal disappears behind another
    tracker = Tracker()
    outputs = []
    for frame in sequence.frames:
        tracks = tracker.update(frame.detections, frame.poses)
        outputs.append(FrameOutput(np.array([t.track_id for t in tracks], np.int64),
                                   np.array([t.box for t in tracks]).reshape(-1, 4),
                                   np.array([t.keypoints for t in tracks]).reshape(-1, K, 3)))
    metrics = identity_metrics(sequence, outputs)
    assert metrics["idf1"] > 0.85
    assert metrics["num_switches"] <= 2


# -- appearance --------------------------------------------------------------------------------------

FA, FB = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])


def _swap_while_hidden(appearance_weight: float) -> dict[int, int]:
    """Two animals, ``FA`` standing at x=0 and ``FB`` at x=150, hidden for 25 frames; they come back
    at each other's places. Returns {track id: index of the feature it follows} after their return."""
    tracker = Tracker(TrackerSettings(appearance_weight=appearance_weight))
    features = np.stack([FA, FB])
    for _ in range(10):
        tracker.update(dets(box_at(0.0), box_at(150.0)), features=features)
    for _ in range(25):
        tracker.update(Detections.empty(), features=np.zeros((0, 3)))
    for _ in range(tracker.settings.relink_hits):  # back after a long absence: unlabelled a few frames, maybe
        back = tracker.update(dets(box_at(150.0), box_at(0.0)), features=features)  # FA now at 150
    assert len(back) == 2
    return {t.track_id: t.detection_index for t in back}


def test_appearance_gives_animals_back_their_identity():
    # Motion alone keeps the places: track 1 (FA's) takes whoever stands at x=0, now FB (detection 1).
    assert _swap_while_hidden(0.0) == {1: 1, 2: 0}
    # With appearance each track takes its own colours back.
    assert _swap_while_hidden(0.8) == {1: 0, 2: 1}


def test_lost_track_refuses_a_detection_that_looks_different():
    tracker = Tracker(TrackerSettings(appearance_weight=0.5, relink_max_appearance=0.5))
    for i in range(10):
        tracker.update(dets(box_at(5.0 * i)), features=FA[None])
    tracker.update(Detections.empty(), features=np.zeros((0, 3)))
    tracker.update(dets(box_at(55.0)), features=FB[None])  # overlaps the lost track, other colours
    assert [t.track_id for t in tracker.tracks()] == [1, 2]
    tracker.update(dets(box_at(60.0)), features=FB[None])
    assert [t.track_id for t in tracker.update(dets(box_at(65.0)), features=FB[None])] == [2]


def test_appearance_average_skips_overlapping_detections():
    tracker = Tracker(TrackerSettings(min_hits=1, appearance_weight=0.5, appearance_momentum=0.5,
                                      appearance_update_max=1.0))
    tracker.update(dets(box_at(0.0)), features=FA[None])
    # A second box overlaps the first: neither detection's colours are one animal's.
    (track, _) = tracker.update(dets(box_at(0.0), box_at(60.0)), features=np.stack([FB, FB]))
    assert (track.track_id, track.detection_index) == (1, 0)
    np.testing.assert_array_equal(tracker._tracks[0].appearance, FA)
    assert tracker._tracks[1].appearance is None
    near = np.array([0.8, 0.6, 0.0])  # distance 0.2 to FA: the same animal in other light
    tracker.update(dets(box_at(0.0)), features=near[None])
    np.testing.assert_allclose(tracker._tracks[0].appearance, 0.5 * (FA + near))


def test_track_refuses_a_clear_detection_of_other_colours():
    settings = TrackerSettings(min_hits=1, appearance_weight=0.5, match_max_appearance=0.4)
    tracker = Tracker(settings)
    for i in range(5):
        tracker.update(dets(box_at(5.0 * i)), features=FA[None])
    # Another animal stands where track 1 is predicted, alone: its colours keep it off track 1.
    tracks = {t.track_id: t for t in tracker.update(dets(box_at(25.0)), features=FB[None])}
    assert tracks[2].detection_index == 0
    assert (tracks[1].detection_index, tracks[1].state) == (-1, TrackState.LOST)
    # The same box beside another one (two animals in one place) is not judged by its colours.
    tracker = Tracker(settings)
    for i in range(5):
        tracker.update(dets(box_at(5.0 * i)), features=FA[None])
    tracks = tracker.update(dets(box_at(25.0), box_at(60.0)), features=np.stack([FB, FB]))
    assert {t.track_id: t.detection_index for t in tracks}[1] == 0
    # Without the gate (distance never over 1) the clear box goes to track 1 as before.
    tracker = Tracker(TrackerSettings(min_hits=1, appearance_weight=0.5, match_max_appearance=1.0))
    for i in range(5):
        tracker.update(dets(box_at(5.0 * i)), features=FA[None])
    assert tracker.update(dets(box_at(25.0)), features=FB[None])[0].track_id == 1


@pytest.mark.parametrize(("update_max", "moves"), [(0.3, False), (0.6, True), (1.0, True)])
def test_appearance_average_keeps_its_colours_from_another_animal(update_max, moves):
    tracker = Tracker(TrackerSettings(min_hits=1, appearance_weight=0.5, appearance_momentum=0.5,
                                      match_max_appearance=1.0, appearance_update_max=update_max))
    tracker.update(dets(box_at(0.0)), features=FA[None])
    other = np.array([0.5, np.sqrt(0.75), 0.0])  # distance 0.5 to FA: another animal's colours
    (track,) = tracker.update(dets(box_at(5.0)), features=other[None])
    assert (track.track_id, track.detection_index) == (1, 0)  # matched all the same (no gate here)
    expected = 0.5 * (FA + other) if moves else FA
    np.testing.assert_allclose(tracker._tracks[0].appearance, expected)


def _box_with_anothers_colours(margin: float) -> dict[int, int]:
    """Track 1 (``FA``) stands at x=0; track 2 (``FB``) walks towards it from the right, 20 px a frame, and
    is hidden from x=220 on. Twelve frames later a lone box stands at x=0, its colours nearer ``FB``
    (distance 0.2) than ``FA`` (0.4); track 2 is predicted at x=-40. Returns {track id: detection index}
    of that frame (-1: not matched)."""
    tracker = Tracker(TrackerSettings(min_hits=1, appearance_weight=0.5, match_max_appearance=1.0,
                                      appearance_margin=margin))
    for i in range(10):
        tracker.update(dets(box_at(0.0), box_at(400.0 - 20.0 * i)), features=np.stack([FA, FB]))
    for _ in range(10, 22):
        tracker.update(dets(box_at(0.0)), features=FA[None])
    mixed = np.array([0.6, 0.8, 0.0])
    tracker.update(dets(box_at(0.0)), features=mixed[None])
    return {t.track_id: t.detection_index for t in tracker.tracks()}


def test_track_refuses_a_box_whose_colours_are_clearly_another_tracks():
    # 0.4 > 0.2 + 0.1: the box goes to the hidden animal's track, although track 1 overlaps it more.
    assert _box_with_anothers_colours(0.1) == {1: -1, 2: 0}
    # 0.4 <= 0.2 + 0.3: not clearly another's; track 1 takes it by its overlap.
    assert _box_with_anothers_colours(0.3) == {1: 0, 2: -1}
    assert _box_with_anothers_colours(1.0) == {1: 0, 2: -1}


def _second_box(colours: np.ndarray, x: float = 35.0, **settings) -> list[int]:
    """Track 1 (``FA``) walks right 5 px a frame; then a second box beside its own (x=35 against 25: IoU 0.85)
    has ``colours``. Returns the IDs of the tracks the tracker holds after that frame."""
    tracker = Tracker(TrackerSettings(min_hits=1, appearance_weight=0.5, **settings))
    for i in range(5):
        tracker.update(dets(box_at(5.0 * i)), features=FA[None])
    tracker.update(dets(box_at(25.0), box_at(x), scores=[0.9, 0.8]), features=np.stack([FA, colours]))
    return [t.track_id for t in tracker.tracks()]


def test_a_second_box_of_the_same_animal_starts_no_track():
    # The same colours over the matched box: the animal found twice.
    assert _second_box(FA) == [1]
    near = np.array([0.99, np.sqrt(1 - 0.99**2), 0.0])  # distance 0.01: the same animal
    assert _second_box(near) == [1]
    # Other colours: a second animal beside the first starts its own track.
    assert _second_box(FB) == [1, 2]
    # Less overlap than duplicate_iou (x=90: IoU 0.30), or the rule off: a track starts.
    assert _second_box(FA, x=90.0) == [1, 2]
    assert _second_box(FA, duplicate_colour=0.0) == [1, 2]
    assert _second_box(FA, duplicate_iou=0.9) == [1, 2]
    # Without colours (no appearance, or none given) every such box starts a track, as before.
    assert _second_box(np.full(3, np.nan)) == [1, 2]
    tracker = Tracker(TrackerSettings(min_hits=1, appearance_weight=0.0))
    tracker.update(dets(box_at(0.0)))
    tracker.update(dets(box_at(5.0), box_at(15.0)))
    assert [t.track_id for t in tracker.tracks()] == [1, 2]


def _duplicate_where_an_animal_was_lost(lost_first: bool) -> list[TrackState]:
    """Track 1 (``FA``) stands at x=300; with ``lost_first`` track 2 (``FB``) stood at x=160 and is unseen from frame
    5 on. In frame 15 a box of track 1's colours overlaps its box (x=285, IoU 0.78), 125 px from where track 2 was
    lost. Returns the states of the tracks the tracker holds after that frame."""
    tracker = Tracker(TrackerSettings(min_hits=2, appearance_weight=0.5))
    for _ in range(5):
        if lost_first:
            tracker.update(dets(box_at(300.0), box_at(160.0)), features=np.stack([FA, FB]))
        else:
            tracker.update(dets(box_at(300.0)), features=FA[None])
    for _ in range(tracker.settings.relink_delay + 2):
        tracker.update(dets(box_at(300.0)), features=FA[None])
    tracker.update(dets(box_at(300.0), box_at(285.0), scores=[0.9, 0.8]), features=np.stack([FA, FA]))
    return [t.state for t in tracker._tracks]


def test_a_duplicate_box_where_an_animal_may_be_back_starts_a_held_track():
    # No lost animal near: the box is track 1's animal found twice.
    assert _duplicate_where_an_animal_was_lost(False) == [TrackState.CONFIRMED]
    # Where track 2's animal may be back, the box starts a tentative track, held unreported until a lost track takes
    # it or it proves a new animal (the colours alone could be a look-alike's).
    assert _duplicate_where_an_animal_was_lost(True) == [TrackState.CONFIRMED, TrackState.LOST, TrackState.TENTATIVE]


def _back_between_two_lost_tracks(near_colours: np.ndarray) -> list[int]:
    """Track 1 stood at x=0 with ``near_colours``, track 2 at x=300 with ``FA``; both are unseen for longer than
    ``relink_delay``, then a box of ``FA``'s colours comes back at x=140, a little nearer where track 1 was lost.
    Returns the IDs reported once the held box is taken back."""
    tracker = Tracker(TrackerSettings(appearance_weight=0.5))
    for _ in range(5):
        tracker.update(dets(box_at(0.0), box_at(300.0)), features=np.stack([near_colours, FA]))
    for _ in range(tracker.settings.relink_delay + 2):
        tracker.update(Detections.empty(), features=np.zeros((0, 3)))
    for _ in range(tracker.settings.relink_hits):
        back = tracker.update(dets(box_at(140.0)), features=FA[None])
    return [t.track_id for t in back]


def test_a_track_without_colours_does_not_outbid_one_whose_colours_fit():
    # Both tracks' colours known: the one whose colours fit takes the animal back (track 1's, FB, are refused).
    assert _back_between_two_lost_tracks(FB) == [2]
    # Track 1 never showed its colours: it may be any animal, but its nearness alone does not beat track 2's colours.
    assert _back_between_two_lost_tracks(np.full(3, np.nan)) == [2]


def _colours(whole: list[np.ndarray], own: list[np.ndarray]) -> BoxColours:
    return BoxColours(np.stack(whole), np.stack(own))


NO_COLOURS = np.full(3, np.nan)


def test_own_colours_of_an_overlapping_box_update_and_judge_its_track():
    settings = TrackerSettings(min_hits=1, appearance_weight=0.5, appearance_momentum=0.5, appearance_update_max=1.0)
    near = np.array([0.8, 0.6, 0.0])  # distance 0.2 to FA
    tracker = Tracker(settings)
    tracker.update(dets(box_at(0.0)), features=_colours([FA], [FA]))
    # Track 1's box overlaps another (their whole colours mixed); the part outside the other is its animal's.
    tracker.update(dets(box_at(0.0), box_at(60.0)), features=_colours([FB, FB], [near, NO_COLOURS]))
    np.testing.assert_allclose(tracker._tracks[0].appearance, 0.5 * (FA + near))
    assert tracker._tracks[1].appearance is None  # mostly inside another box: no own colours
    # Given as one array, the overlapping box's colours update nothing.
    tracker = Tracker(settings)
    tracker.update(dets(box_at(0.0)), features=FA[None])
    tracker.update(dets(box_at(0.0), box_at(60.0)), features=np.stack([near, FB]))
    np.testing.assert_array_equal(tracker._tracks[0].appearance, FA)
    # An overlapping box whose own colours are another animal's is judged by them: track 1 refuses it.
    tracker = Tracker(TrackerSettings(min_hits=1, appearance_weight=0.5, match_max_appearance=0.4))
    for i in range(5):
        tracker.update(dets(box_at(5.0 * i)), features=_colours([FA], [FA]))
    tracks = tracker.update(dets(box_at(25.0), box_at(60.0)), features=_colours([FB, FB], [FB, NO_COLOURS]))
    assert {t.track_id: t.detection_index for t in tracks}.get(1, -1) != 0


def test_a_repeated_box_is_judged_by_its_whole_colours():
    # Two boxes of one animal (IoU 0.85): neither has own colours, their whole colours are alike.
    def held(repeat: np.ndarray) -> list[int]:
        tracker = Tracker(TrackerSettings(min_hits=1, appearance_weight=0.5))
        for i in range(5):
            tracker.update(dets(box_at(5.0 * i)), features=_colours([FA], [FA]))
        tracker.update(dets(box_at(25.0), box_at(35.0), scores=[0.9, 0.8]),
                       features=_colours([FA, repeat], [NO_COLOURS, NO_COLOURS]))
        return [t.track_id for t in tracker.tracks()]

    assert held(FA) == [1]
    assert held(FB) == [1, 2]  # a second animal's colours: its own track


def test_update_rejects_box_colours_of_another_length():
    tracker = Tracker(TrackerSettings(min_hits=1, appearance_weight=0.5))
    with pytest.raises(ValueError, match="aligned"):
        tracker.update(dets(box_at(0.0)), features=_colours([FA, FB], [FA, FB]))


def test_features_are_ignored_without_appearance_weight():
    tracker = Tracker(TrackerSettings(min_hits=1, appearance_weight=0.0))
    (track,) = tracker.update(dets(box_at(0.0)), features=np.ones((5, 2)))  # not even checked
    assert track.track_id == 1


@pytest.mark.parametrize(
    ("features", "message"), [(np.ones((2, 3)), "aligned"), (np.ones(3), "aligned"), (np.ones((1, 4)), "values")]
)
def test_update_rejects_bad_features(features, message):
    tracker = Tracker(TrackerSettings(min_hits=1, appearance_weight=0.5))
    tracker.update(dets(box_at(0.0)), features=FA[None])
    with pytest.raises(ValueError, match=message):
        tracker.update(dets(box_at(5.0)), features=features)


def test_detections_without_features_still_match():
    tracker = Tracker(TrackerSettings(appearance_weight=0.9))
    for i in range(5):
        tracker.update(dets(box_at(5.0 * i)), features=FA[None])
    (track,) = tracker.update(dets(box_at(25.0)), features=np.full((1, 3), np.nan))
    assert track.track_id == 1


# -- offline identities by colour ---------------------------------------------------------------------

@pytest.mark.parametrize("spill", [True, False])
def test_history_records_the_own_colours_of_the_detections(spill):
    tracker = Tracker(TrackerSettings(record_history=True, appearance_weight=0.5, spill_history=spill))
    tracker.update(dets(box_at(0.0)))  # no colours given yet
    tracker.update(dets(box_at(5.0), box_at(300.0), scores=[0.9, 0.05]), features=_colours([FA, FB], [FA, FB]))
    tracker.update(dets(box_at(10.0), box_at(60.0)), features=_colours([FA, FB], [NO_COLOURS, FB]))
    tracker.update(dets(box_at(15.0), box_at(60.0)), features=np.stack([FA, FB]))  # one array, overlapping boxes
    tracker.update(dets(box_at(20.0), box_at(600.0)), features=np.stack([FA, FB]))
    history = tracker.history()
    assert history.colours.dtype == np.float16 and len(history.colours) == len(history.detections) == 8
    expected = [NO_COLOURS, FA, NO_COLOURS, FB, NO_COLOURS, NO_COLOURS, FA, FB]  # the one scored under low_score: none
    np.testing.assert_array_equal(history.colours, np.stack(expected).astype(np.float16))
    tracker = Tracker(TrackerSettings(record_history=True, appearance_weight=0.0))  # colours not used
    tracker.update(dets(box_at(0.0)), features=FA[None])
    assert tracker.history().colours is None


def _back_far_away(back: np.ndarray, other: np.ndarray = FB, **settings) -> list[list[Track]]:
    """Two animals, ``FA`` at x=0 and ``other`` at x=300, for 10 frames; none for 25; then one with colours ``back``
    at x=900, beyond where either lost track may be, for 15 frames. The tracks reported from frame 35 on."""
    return _back_far_away_tracker(back, other, **settings)[1]


def _back_far_away_tracker(back: np.ndarray, other: np.ndarray | None = FB, gap: int = 25, **settings
                           ) -> tuple[Tracker, list[list[Track]]]:
    """:func:`_back_far_away`, and the tracker that ran it; ``gap`` frames without animals (25), no second animal
    where ``other`` is None."""
    tracker = Tracker(TrackerSettings(**settings))
    for _ in range(10):
        if other is None:
            tracker.update(dets(box_at(0.0)), features=FA[None], image_size=(1280, 720))
        else:
            tracker.update(dets(box_at(0.0), box_at(300.0)), features=np.stack([FA, other]), image_size=(1280, 720))
    for _ in range(gap):
        tracker.update(Detections.empty(), features=np.zeros((0, 3)))
    return tracker, [tracker.update(dets(box_at(900.0)), features=back[None]) for _ in range(15)]


def test_a_lost_track_claims_a_new_track_with_its_colours():
    # A new track (3) from the animal's second frame back; once 5 of its boxes showed their own colours (frames
    # 35-39), FA's lost track takes it over, wherever it is.
    claimed = _back_far_away(FA)
    assert [[t.track_id for t in tracks] for tracks in claimed] == [[]] + [[3]] * 4 + [[1]] * 10
    (track,) = claimed[-1]
    assert track.state is TrackState.CONFIRMED and track.hits == 10 + 15 and track.frames_since_update == 0
    assert [[t.track_id for t in tracks] for tracks in _back_far_away(FA, claim_colours=8)][7:9] == [[3], [1]]
    # Not without the setting, not for other colours, not where two lost tracks' colours are alike (within
    # appearance_margin of each other's distance).
    look_alike = np.array([0.99, 0.14, 0.0]) / np.linalg.norm([0.99, 0.14, 0.0])  # 0.005 from FA
    for frames in (_back_far_away(FA, claim_frames=0), _back_far_away(np.array([0.0, 0.0, 1.0])),
                   _back_far_away(FA, other=look_alike)):
        assert {t.track_id for tracks in frames for t in tracks} == {3}


def test_a_track_lost_a_few_frames_claims_only_where_the_colours_single_it_out():
    # Back at once (no frames without animals): at the young track's 5th box the lost tracks are unseen for 5 frames,
    # more than claim_delay (3) and not more than relink_delay (8). With FB's lost track beside it to compare, FA's
    # claims the young track then, as after a long absence; alone, it waits until it is lost for more than
    # relink_delay frames (its animal may still come back where it was).
    def ids(frames):  # the animal back at x=900 (the lost tracks are reported at their old places a frame or two)
        return [[t.track_id for t in tracks if t.box[0] > 600] for tracks in frames]

    settings = TrackerSettings()
    assert settings.claim_delay == 3 < 5 <= settings.relink_delay
    assert ids(_back_far_away(FA, gap=0)) == ids(_back_far_away(FA)) == [[]] + [[3]] * 4 + [[1]] * 10
    assert ids(_back_far_away(FA, other=None, gap=0)) == [[]] + [[2]] * 7 + [[1]] * 7
    # claim_delay at relink_delay: no claim before, two lost tracks or not.
    assert ids(_back_far_away(FA, gap=0, claim_delay=8)) == [[]] + [[3]] * 7 + [[1]] * 7
    # claim_delay past the frames a young track may be claimed in: no claim at all.
    assert {i for frame in ids(_back_far_away(FA, gap=0, claim_delay=20)) for i in frame} == {3}


def test_the_frames_of_a_claimed_track_are_the_claiming_identitys_offline():
    # Live, the young track 3 was reported in frames 36-39 before FA's lost track 1 took it over; offline those frames
    # are track 1's (the animal's identity), and identity 3 is gone: by the claim itself, not by the offline step that
    # joins stretches again (off here).
    unjoined = {"offline_relink_colour": 0.0, "offline_relink_fit": 0.0}
    tracker, live = _back_far_away_tracker(FA, record_history=True, **unjoined)
    assert [[t.track_id for t in tracks] for tracks in live][1:6] == [[3]] * 4 + [[1]]
    offline = smooth_tracks_offline(tracker.history())
    assert {t.track_id for tracks in offline for t in tracks} == {1, 2}
    assert [[t.track_id for t in tracks if t.box[0] > 600] for tracks in offline[35:]] == [[1]] * 15
    # Without the claim (claim_frames 0), identity 3 keeps its frames.
    tracker, _ = _back_far_away_tracker(FA, record_history=True, claim_frames=0, **unjoined)
    assert {t.track_id for tracks in smooth_tracks_offline(tracker.history()) for t in tracks} == {1, 2, 3}


def test_a_crowded_young_track_is_not_claimed():
    # Back beside another animal, their boxes overlapping (IoU 0.6): the poses may still review who holds which box,
    # so the lost track does not take the young one over, though its own colours are FA's.
    tracker = Tracker(TrackerSettings())
    for _ in range(10):
        tracker.update(dets(box_at(0.0), box_at(300.0)), features=np.stack([FA, FB]), image_size=(1280, 720))
    for _ in range(25):
        tracker.update(Detections.empty(), features=np.zeros((0, 3)))
    fc = np.array([0.0, 0.0, 1.0])
    crowded = [tracker.update(dets(box_at(900.0), box_at(930.0)), features=_colours([FA, fc], [FA, fc]))
               for _ in range(15)]
    assert {t.track_id for tracks in crowded for t in tracks} == {3, 4}


def test_only_a_young_track_is_claimed():
    # Claimed only within claim_frames of its start: with 4 frames it has not shown 5 boxes' colours by then.
    assert {t.track_id for tracks in _back_far_away(FA, claim_frames=4) for t in tracks} == {3}


@pytest.mark.parametrize(("name", "value"), [("claim_frames", -1), ("claim_colours", 0),
                                             ("claim_max_appearance", 1.5), ("claim_delay", -1)])
def test_claim_settings_are_checked(name, value):
    assert (TrackerSettings().claim_frames, TrackerSettings().claim_colours) == (15, 5)
    with pytest.raises(ValueError, match=name):
        TrackerSettings(**{name: value})


MID = (FA + FB) / np.linalg.norm(FA + FB)  # as far from FA as from FB


def _back_after_an_absence(relink: float, back: np.ndarray) -> list[list[Track]]:
    """Two animals, ``FA`` at x=0 and ``FB`` at x=300, for 10 frames; none for 25; then one at x=300 for 15 frames,
    its colours unsure (``MID``) in its first 4 and ``back`` after. The offline output (no claim of the new track by a
    lost one live, ``claim_frames``: the offline step alone, by colours only, ``offline_relink_fit`` 0)."""
    settings = TrackerSettings(smoothing=SmoothingSettings(mode=SmoothingMode.OFFLINE), offline_relink_colour=relink,
                               offline_relink_fit=0.0, claim_frames=0)
    tracker = Tracker(settings)
    for _ in range(10):
        tracker.update(dets(box_at(0.0), box_at(300.0)), features=np.stack([FA, FB]), image_size=(1280, 720))
    for _ in range(25):
        tracker.update(Detections.empty(), features=np.zeros((0, 3)))
    for i in range(15):
        tracker.update(dets(box_at(300.0)), features=(MID if i < 4 else back)[None])
    return smooth_tracks_offline(tracker.history())


def test_offline_output_gives_an_animal_back_its_identity_by_its_colours():
    # Live, FB's track takes the animal back where FB was lost; its colours then refuse it (they are FA's) and a new
    # track follows it. Over the whole stretch the new track's colours are FA's: offline it is animal 1 again.
    for relink, expected in ((0.0, 3), (0.6, 1)):
        frames = _back_after_an_absence(relink, FA)
        assert {track.track_id for tracks in frames[41:] for track in tracks} == {expected}
    # Its age and hits count from animal 1's first frame.
    matched = 0
    for t, tracks in enumerate(frames):
        for track in tracks:
            if track.track_id == 1:
                matched += track.detection_index >= 0
                assert track.age == t and track.hits == matched
    assert matched == 10 + sum(any(track.track_id == 1 for track in tracks) for tracks in frames[35:]) > 10 + 9


def test_offline_output_keeps_identities_the_colours_confirm():
    # The animal back is FB: the tracker kept its identity, and the colours agree.
    kept, relinked = _back_after_an_absence(0.0, FB), _back_after_an_absence(0.6, FB)
    assert {track.track_id for tracks in relinked[35:] for track in tracks} == {2}
    for a, b in zip(kept, relinked, strict=True):
        assert [(t.track_id, t.age, t.hits) for t in a] == [(t.track_id, t.age, t.hits) for t in b]


def _at(track_id: int, t: int, index: int) -> Track:
    return Track(track_id=track_id, state=TrackState.CONFIRMED, box=np.array(box_at(0.0), np.float32), score=0.9,
                 class_id=0, keypoints=np.zeros((K, 3), np.float32), keypoint_status=np.zeros(K, np.int8), age=t,
                 hits=t + 1, frames_since_update=0, detection_index=index, frame_index=t)


def _relinked(stretches: list[tuple], max_distance: float = 0.6, max_fit: float = 0.0) -> dict:
    """:func:`_relink_stretches` on 20 frames where each identity holds one detection per frame of its ranges, with
    those colours (NaN: none) and boxes (``box_at(0.0)`` unless a fourth item gives one), and no detection
    elsewhere."""
    from tracking.tracker import _relink_stretches

    frames: list[list[Track]] = [[] for _ in range(20)]
    rows, colours = [], []
    for track_id, span, colour, *box in stretches:
        box = box[0] if box else box_at(0.0)
        for t in span:
            frames[t].append(dataclasses.replace(_at(track_id, t, len(frames[t])), box=np.array(box, np.float32)))
            rows.append([t, len(frames[t]) - 1, *box, 0.9])
            colours.append(colour)
    order = np.argsort([row[0] for row in rows], kind="stable")
    settings = TrackerSettings(offline_relink_colour=max_distance, offline_relink_fit=max_fit)
    return _relink_stretches(frames, np.array(rows)[order], np.array(colours, np.float16)[order], settings)


def test_relink_stretches_exchanges_identities_swapped_by_colour():
    swapped = [(1, range(0, 5), FA), (2, range(0, 5), FB), (1, range(10, 15), FB), (2, range(10, 15), FA)]
    assert _relinked(swapped) == {1: [(0, 1), (10, 2)], 2: [(0, 2), (10, 1)]}
    assert _relinked(swapped, max_distance=0.0) == {}


def test_relink_stretches_joins_a_fragment_and_keeps_links_colours_cannot_judge():
    assert _relinked([(1, range(0, 5), FA), (3, range(12, 20), FA)]) == {1: [(0, 1)], 3: [(12, 1)]}
    # Colours as near to both earlier stretches: the tracker's link stands.
    assert _relinked([(1, range(0, 5), FA), (2, range(0, 5), FB), (1, range(10, 15), MID)]) == {}
    # Other colours than any stretch before: a new identity, which it already is.
    assert _relinked([(1, range(0, 5), FA), (2, range(8, 15), FB)]) == {}
    # A stretch without colours goes with the one before it (frames 6-7 stay identity 1's).
    assert _relinked([(1, range(0, 5), FA), (1, range(6, 8), NO_COLOURS), (1, range(10, 15), FB),
                      (2, range(0, 5), FB)]) == {1: [(0, 1), (10, 2)], 2: [(0, 2)]}


@pytest.mark.parametrize("seed", range(20))
def test_stretches_are_linked_as_the_dense_assignment_links_them(seed):
    """With as many candidates as stretches, the sparse graph's matching is the dense optimal assignment's."""
    from tracking.matching import linear_assignment
    from tracking.tracker import _FIT_KEEP_BONUS, _RELINK_KEEP_BONUS, _link_stretches, _stretch_fit

    rng = np.random.default_rng(seed)
    n = 9
    colours = rng.dirichlet(np.ones(6), n) ** 0.5
    owner = rng.integers(1, 4, n)
    first = rng.integers(0, 50, n)
    last = first + rng.integers(0, 20, n)
    order = np.lexsort((first, owner))  # identity by identity, in frame order, as _relink_stretches lists them
    colours, owner, first, last = colours[order], owner[order], first[order], last[order]
    kept = {k: k + 1 for k in range(n - 1) if owner[k + 1] == owner[k] and last[k] < first[k + 1]}
    cost = 1.0 - (colours / np.linalg.norm(colours, axis=1, keepdims=True)) @ (
        colours / np.linalg.norm(colours, axis=1, keepdims=True)).T
    cost += np.where(owner[:, None] == owner[None, :], 0.0, _RELINK_KEEP_BONUS)
    cost[last[:, None] >= first[None, :]] = np.inf
    dense = dict(linear_assignment(cost, 0.65).matches.tolist())
    assert _link_stretches(colours, None, owner, first, last, kept, 0.6, 0.0) == dense
    # Some stretches without colours: those pairs are judged by the fit of their boxes, each cost over its limit.
    ends = np.column_stack([rng.uniform(60, 120, (n, 1)), rng.uniform(0, 400, (n, 2)), rng.uniform(60, 120, (n, 1)),
                            rng.uniform(0, 400, (n, 2)), rng.normal(0, 3, (n, 1))])
    colours[rng.random(n) < 0.4] = np.nan
    cost = np.where(np.isnan(cost), np.inf, cost / 0.65)
    fit = _stretch_fit(ends, np.arange(n), np.arange(n), np.maximum(first[None] - last[:, None], 1).astype(float))
    fit = (fit + np.where(owner[:, None] == owner[None, :], 0.0, _FIT_KEEP_BONUS)) / (16.0 + _FIT_KEEP_BONUS)
    no_colours = np.isnan(colours).any(axis=1)
    cost = np.where(no_colours[:, None] | no_colours[None, :], fit, cost)
    cost[last[:, None] >= first[None, :]] = np.inf
    dense = dict(linear_assignment(cost, 1.0).matches.tolist())
    assert _link_stretches(colours, ends, owner, first, last, kept, 0.6, 16.0) == dense


def test_offline_relink_colour_is_checked():
    assert TrackerSettings().offline_relink_colour == 0.6
    with pytest.raises(ValueError, match="offline_relink_colour"):
        TrackerSettings(offline_relink_colour=1.5)


def test_stretch_fit_weighs_height_depth_and_place_across_in_the_earlier_height():
    from tracking import tracker

    _stretch_ends, _stretch_fit = tracker._stretch_ends, tracker._stretch_fit

    # The earlier stretch walks right at 2 px per frame and ends at x=66 (bottom centre), 100 px tall, feet at 300.
    earlier = _stretch_ends(np.array([[8.0 + 2 * t, 200.0, 48.0 + 2 * t, 300.0] for t in range(20)]))
    np.testing.assert_allclose(earlier[3:], [100.0, 66.0, 300.0, 2.0])

    def fit(box: list[float], gap: int) -> float:
        later = _stretch_ends(np.array([box] * 5))
        return float(_stretch_fit(np.stack([earlier, later]), np.array([0]), np.array([1]), np.full((1, 1), gap))[0, 0])

    assert fit([66.0, 200.0, 106.0, 300.0], 10) == pytest.approx(0.0)  # where it would be at its speed
    assert fit([46.0, 200.0, 86.0, 300.0], 10) == pytest.approx(0.0)  # where it stopped: the nearer of the two
    assert fit([56.0, 200.0, 96.0, 300.0], 10) > 0.0
    taller = 100.0 * np.exp(tracker._FIT_HEIGHT_NOISE)
    assert fit([46.0, 300.0 - taller, 86.0, 300.0], 1) == pytest.approx(1.0)
    # One std nearer the camera, 4 frames later.
    lower = 100.0 * (tracker._FIT_DEPTH_NOISE + tracker._FIT_DEPTH_GROWTH * 4)
    assert fit([54.0, 200.0 + lower, 94.0, 300.0 + lower], 4) == pytest.approx(1.0)
    # Two std back from where it stopped, 10 frames later.
    across = 100.0 * 2 * (tracker._FIT_ACROSS_NOISE + tracker._FIT_ACROSS_GROWTH * 10)
    assert fit([46.0 - across, 200.0, 86.0 - across, 300.0], 10) == pytest.approx(4.0)


def test_relink_stretches_judges_stretches_without_colours_by_their_boxes():
    small, large = box_at(0.0, 100.0, 60.0, 40.0), box_at(0.0, 20.0, 120.0, 120.0)  # feet at 140
    swapped = [(1, range(0, 5), NO_COLOURS, small), (2, range(0, 5), NO_COLOURS, large),
               (1, range(10, 15), NO_COLOURS, large), (2, range(10, 15), NO_COLOURS, small)]
    assert _relinked(swapped, max_fit=16.0) == {1: [(0, 1), (10, 2)], 2: [(0, 2), (10, 1)]}
    assert _relinked(swapped, max_fit=0.0) == {}
    # Colours, where both stretches have them, judge before the boxes: these swapped boxes have their colours.
    coloured = [(1, range(0, 5), FA, small), (2, range(0, 5), FB, large), (1, range(10, 15), FA, large),
                (2, range(10, 15), FB, small)]
    assert _relinked(coloured, max_fit=16.0) == {}
    # A fragment whose boxes fit where an identity ended, and a stretch whose boxes fit none: a new identity.
    far = box_at(900.0, 300.0)
    assert _relinked([(1, range(0, 5), NO_COLOURS, small), (3, range(12, 20), NO_COLOURS, small)],
                     max_fit=16.0) == {1: [(0, 1)], 3: [(12, 1)]}
    assert _relinked([(1, range(0, 5), NO_COLOURS, small), (3, range(12, 20), NO_COLOURS, far)], max_fit=16.0) == {}
    # The tracker's link stands where the boxes cannot tell.
    assert _relinked([(1, range(0, 5), NO_COLOURS, small), (2, range(0, 5), NO_COLOURS, small),
                      (1, range(10, 15), NO_COLOURS, small)], max_fit=16.0) == {}


def test_offline_output_gives_an_animal_back_its_identity_by_its_boxes_without_colours():
    """No colours: an animal gone for longer than ``max_lost_frames`` comes back where it left, a new identity live;
    offline its boxes there join it to its identity before, and its neighbour keeps its own."""
    outputs = {}
    for fit in (0.0, 16.0):
        settings = TrackerSettings(smoothing=SmoothingSettings(mode=SmoothingMode.OFFLINE), max_lost_frames=10,
                                   offline_relink_fit=fit)
        tracker = Tracker(settings)
        for _ in range(15):
            tracker.update(dets(box_at(100.0), box_at(600.0, 60.0, 90.0, 150.0)), image_size=(1280, 720))
        for _ in range(30):
            tracker.update(dets(box_at(600.0, 60.0, 90.0, 150.0)), image_size=(1280, 720))
        for _ in range(15):
            tracker.update(dets(box_at(104.0), box_at(600.0, 60.0, 90.0, 150.0)), image_size=(1280, 720))
        outputs[fit] = smooth_tracks_offline(tracker.history())
    for fit, expected in ((0.0, 3), (16.0, 1)):
        back = {t.track_id for tracks in outputs[fit][50:] for t in tracks if t.box[0] < 300}
        assert back == {expected}
        assert {t.track_id for tracks in outputs[fit] for t in tracks if t.box[0] > 300} == {2}


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_offline_relink_fit_is_checked(value):
    assert TrackerSettings().offline_relink_fit == 16.0
    with pytest.raises(ValueError, match="offline_relink_fit"):
        TrackerSettings(offline_relink_fit=value)


def test_in_shadow_marks_boxes_largely_inside_or_around_a_box_ranked_before_them():
    from tracking.tracker import _in_shadow

    whole, part, apart = [0.0, 0.0, 100.0, 100.0], [10.0, 10.0, 50.0, 50.0], [200.0, 0.0, 300.0, 100.0]
    beside = [60.0, 0.0, 160.0, 100.0]  # overlaps ``whole`` by 40% of either
    boxes = np.array([whole, part, apart, beside])
    np.testing.assert_array_equal(_in_shadow(boxes, np.array([0, 1, 2, 3])), [False, True, False, False])
    # The whole box around the part: in its shadow where the part ranks first.
    np.testing.assert_array_equal(_in_shadow(boxes, np.array([1, 0, 2, 3])), [True, False, False, False])
    # Half of the smaller box covered: in the shadow.
    half = np.array([whole, [50.0, 0.0, 150.0, 100.0]])
    np.testing.assert_array_equal(_in_shadow(half, np.array([0, 1])), [False, True])


def _animal_with_part_box(part_frames: range, shadow_frames: int, size: int = 60) -> list[list[Track]]:
    """Offline output of an animal walking right for ``size`` frames, a second box on its head (a part the detector
    found too) in ``part_frames``, and an animal elsewhere in frames 10-29."""
    settings = TrackerSettings(smoothing=SmoothingSettings(mode=SmoothingMode.OFFLINE),
                               offline_shadow_frames=shadow_frames)
    tracker = Tracker(settings)
    for t in range(size):
        body = box_at(100.0 + 3.0 * t, 300.0, 200.0, 120.0)
        boxes = [body]
        if t in part_frames:
            boxes.append([body[2] - 60.0, body[1], body[2], body[1] + 50.0])
        if 10 <= t < 30:
            boxes.append(box_at(900.0, 100.0))
        found = dets(*boxes)
        tracker.update(found, poses_for(found), image_size=(1280, 720))
    return smooth_tracks_offline(tracker.history())


def test_offline_output_drops_a_short_identity_in_another_ones_shadow():
    kept = _animal_with_part_box(range(20, 36), shadow_frames=0)
    assert len({t.track_id for tracks in kept for t in tracks}) == 3  # the animal, its head, the animal elsewhere
    frames = _animal_with_part_box(range(20, 36), shadow_frames=45)
    ids = {t.track_id for tracks in frames for t in tracks}
    assert len(ids) == 2
    (body,) = {t.track_id for t in frames[0]}
    assert _frames_of(frames, body) == list(range(60))
    (elsewhere,) = ids - {body}
    assert _frames_of(frames, elsewhere) == _frames_of(kept, elsewhere)  # short, but in no one's shadow
    # Every other track as it was.
    for before, after in zip(kept, frames):
        others = [t for t in before if t.track_id in ids]
        assert len(others) == len(after)
        for a, b in zip(others, after):
            assert a.track_id == b.track_id and a.state is b.state
            np.testing.assert_array_equal(a.box, b.box)
            np.testing.assert_array_equal(a.keypoints, b.keypoints)


def test_offline_output_keeps_a_shadowed_identity_reported_longer_than_the_limit():
    frames = _animal_with_part_box(range(5, 55), shadow_frames=45)
    assert len({t.track_id for tracks in frames for t in tracks}) == 3


def test_offline_output_keeps_the_longer_of_two_short_identities_in_each_others_shadow():
    """A clip shorter than the limit: the animal and the part box on it in most of its frames are both short, each
    in the other's shadow; the longer one stays."""
    frames = _animal_with_part_box(range(3, 28), shadow_frames=45, size=30)
    ids = {t.track_id for tracks in frames for t in tracks}
    assert len(ids) == 2  # the animal and the animal elsewhere
    (body,) = {t.track_id for t in frames[0]}
    assert _frames_of(frames, body) == list(range(30))


@pytest.mark.parametrize("value", [-1])
def test_offline_shadow_frames_must_not_be_negative(value):
    assert TrackerSettings().offline_shadow_frames == 45
    with pytest.raises(ValueError, match="offline_shadow_frames"):
        TrackerSettings(offline_shadow_frames=value)


def _animal_and_weak_track(weak_score: float, every: int, weak_frames: int = 30, limit: int = 45,
                           size: int = 60) -> list[list[Track]]:
    """Offline output of an animal walking right for ``size`` frames and, elsewhere, boxes first found twice at a
    score that starts a track (0.7, frames 10-11), then for ``weak_frames`` frames only every ``every``-th frame at
    ``weak_score`` (the track kept alive between them, filled offline)."""
    settings = TrackerSettings(smoothing=SmoothingSettings(mode=SmoothingMode.OFFLINE), offline_weak_frames=limit)
    tracker = Tracker(settings)
    for t in range(size):
        boxes, scores = [box_at(100.0 + 3.0 * t, 300.0, 200.0, 120.0)], [0.9]
        if t in (10, 11) or (12 <= t < 12 + weak_frames and (t - 11) % every == 0):
            boxes.append(box_at(900.0, 100.0))
            scores.append(0.7 if t < 12 else weak_score)
        found = dets(*boxes, scores=scores)
        tracker.update(found, poses_for(found), image_size=(1280, 720))
    return smooth_tracks_offline(tracker.history())


def test_offline_output_drops_a_short_identity_kept_alive_on_weak_boxes():
    kept = _animal_and_weak_track(0.3, every=3, limit=0)
    ids = {t.track_id for tracks in kept for t in tracks}
    assert len(ids) == 2
    (body,) = {t.track_id for t in kept[0]}
    (weak,) = ids - {body}
    found = [t for tracks in kept for t in tracks if t.track_id == weak and t.detection_index >= 0]
    assert len(found) < 0.8 * len(_frames_of(kept, weak))  # found in 12 of its frames, filled between
    frames = _animal_and_weak_track(0.3, every=3)
    assert {t.track_id for tracks in frames for t in tracks} == {body}
    # The animal as it was.
    for before, after in zip(kept, frames):
        (a,) = [t for t in before if t.track_id == body]
        (b,) = after
        assert a.track_id == b.track_id and a.state is b.state
        np.testing.assert_array_equal(a.box, b.box)
        np.testing.assert_array_equal(a.keypoints, b.keypoints)


@pytest.mark.parametrize(("weak_score", "every", "weak_frames"), [
    (0.75, 3, 30),  # confident boxes, found in few frames: an animal the detector often misses
    (0.3, 1, 30),  # unsure boxes in every frame: an animal half hidden
    (0.3, 3, 46),  # reported longer than the limit
])
def test_offline_output_keeps_an_identity_found_confidently_often_or_long(weak_score, every, weak_frames):
    frames = _animal_and_weak_track(weak_score, every=every, weak_frames=weak_frames)
    assert len({t.track_id for tracks in frames for t in tracks}) == 2


def test_drop_weak_counts_an_identity_never_found_as_weak():
    from tracking.tracker import _drop_weak

    def track(track_id: int, frame: int, detection: int, score: float) -> Track:
        return Track(track_id=track_id, state=TrackState.LOST, box=np.array(box_at(0.0), np.float32), score=score,
                     class_id=0, keypoints=np.zeros((17, 3), np.float32),
                     keypoint_status=np.zeros(17, np.int8), age=frame, hits=0, frames_since_update=0,
                     detection_index=detection, frame_index=frame)

    frames = [[track(1, t, -1, 0.9), track(2, t, 0, 0.5), track(3, t, t % 2 - 1, 0.5)] for t in range(4)]
    # 1: never found; 2: found in every frame; 3: found in half of them at 0.5.
    assert [[t.track_id for t in tracks] for tracks in _drop_weak(frames, 4, 0.6)] == [[2]] * 4
    assert [[t.track_id for t in tracks] for tracks in _drop_weak(frames, 3, 0.6)] == [[1, 2, 3]] * 4
    assert [[t.track_id for t in tracks] for tracks in _drop_weak(frames, 4, 0.5)] == [[2, 3]] * 4
    assert _drop_weak(frames, 0, 0.6) is frames


@pytest.mark.parametrize("value", [-1])
def test_offline_weak_frames_must_not_be_negative(value):
    assert TrackerSettings().offline_weak_frames == 45
    with pytest.raises(ValueError, match="offline_weak_frames"):
        TrackerSettings(offline_weak_frames=value)


def _track_walking_animal(mode: SmoothingMode) -> list[list[Track]]:
    """One animal walking right with noisy poses given after tracking (the pipeline's default order)."""
    rng = np.random.default_rng(7)
    tracker = Tracker(TrackerSettings(smoothing=SmoothingSettings(mode=mode)))
    frames = []
    for t in range(40):
        box = box_at(10.0 + 6.0 * t, 100.0 + 0.5 * t)
        tracks = tracker.update(dets(box))
        if tracks:
            pose = pose_in(box)
            pose[:, :2] += rng.normal(0, 2.0, (K, 2))
            tracks = tracker.attach_poses([t.track_id for t in tracks], Poses(pose[None], dets(box).xyxy))
        frames.append(tracks)
    return frames


def test_offline_forward_pass_is_the_causal_pass():
    causal = _track_walking_animal(SmoothingMode.CAUSAL)
    offline = _track_walking_animal(SmoothingMode.OFFLINE)
    assert sum(map(len, causal)) >= 38
    for a, b in zip(causal, offline):
        assert [t.track_id for t in a] == [t.track_id for t in b]
        for ta, tb in zip(a, b):
            np.testing.assert_array_equal(ta.keypoints, tb.keypoints)
            np.testing.assert_array_equal(ta.box, tb.box)



# -- geometry, re-identification and the pose review ------------------------------------------------------------


def _tracks_at(*boxes) -> tuple[Tracker, list]:
    """A tracker that has followed standing animals at ``boxes`` for 10 frames, and its live tracks."""
    tracker = Tracker()
    for _ in range(10):
        tracker.update(dets(*boxes))
    return tracker, tracker._tracks


def test_geometry_is_stricter_in_depth_and_size_than_across():
    """Unseen a while, an animal may have walked on across the view, less likely nearer or away."""
    from tracking.tracker import _geometry

    tracker = Tracker()
    box = np.array([400.0, 100.0, 700.0, 300.0])  # 300 x 200 pixels
    for t in range(10):
        tracker.update(dets(box + [5.0 * t, 0, 5.0 * t, 0]))
    for _ in range(5):
        tracker.update(Detections.empty())
    tracker._advance()
    expected = tracker._tracks[0].box
    moved = {name: expected + offset for name, offset in (("across", [60.0, 0, 60.0, 0]),
                                                          ("deeper", [0, -60.0, 0, -60.0]))}
    taller = expected.copy()
    taller[1] -= 0.6 * (expected[3] - expected[1])
    d2, _ = _geometry(tracker._tracks, np.stack([moved["across"], moved["deeper"], taller]), tracker.settings)
    across, deeper, bigger = d2[0]
    assert across < tracker.settings.relink_gate / 4
    assert deeper > 3 * across
    assert bigger > tracker.settings.match_gate


def test_uncertainty_grows_while_unseen():
    from tracking.tracker import _geometry

    tracker, tracks = _tracks_at(box_at(100.0))
    log_dets = []
    for _ in range(5):
        tracker.update(Detections.empty())
        log_dets.append(_geometry(tracks, np.array([box_at(100.0)]), tracker.settings)[1][0])
    assert np.all(np.diff(log_dets) > 0)


def test_a_box_at_another_depth_is_not_taken_even_if_it_overlaps():
    tracker, _ = _tracks_at(box_at(100.0))
    # A nearer, bigger animal: its box covers the track's, its feet are lower; the tracked one is hidden.
    (track,) = [t for t in tracker.update(dets([90.0, 80.0, 240.0, 260.0])) if t.detection_index == 0] or [None]
    assert track is None or track.track_id != 1
    assert tracker.tracks()[0].state is TrackState.LOST


def test_a_false_box_does_not_take_a_long_lost_identity():
    settings = TrackerSettings()
    tracker, _ = _tracks_at(box_at(300.0))
    for _ in range(settings.relink_delay + 5):
        tracker.update(Detections.empty())  # hidden
    assert tracker.update(dets(box_at(440.0))) == []  # a false box, once, where the animal may have walked
    for _ in range(settings.relink_hits - 1):
        assert tracker.update(dets(box_at(170.0))) == []  # the animal back on the other side: unlabelled a while
    (track,) = tracker.update(dets(box_at(170.0)))
    assert track.track_id == 1


def test_a_newcomer_no_lost_track_wants_is_confirmed_after_hold_hits():
    settings = TrackerSettings()
    tracker, _ = _tracks_at(box_at(300.0))
    for _ in range(settings.relink_delay + 5):
        tracker.update(Detections.empty())
    far = dets(box_at(300.0), box_at(900.0, 100.0, 120.0, 80.0))
    reported = [tracker.update(far) for _ in range(settings.hold_hits + 1)]
    ids = sorted({t.track_id for frame in reported for t in frame})
    assert ids == [1, 2]
    first_frame_of_2 = next(i for i, frame in enumerate(reported) if any(t.track_id == 2 for t in frame))
    assert first_frame_of_2 == settings.min_hits - 1  # far from the lost track: not held


def _walk_towards_each_other(tracker: Tracker, frames: int = 8) -> None:
    """Two animals walking at each other for ``frames`` frames, one facing right (detection 0), one left, with
    their poses attached after tracking."""
    for t in range(frames):
        right, left = box_at(20.0 + 10 * t, 100.0), box_at(180.0 - 10 * t, 108.0)
        tracks = tracker.update(dets(right, left))
        if tracks:
            tracker.attach_poses([tr.track_id for tr in tracks],
                                 poses_for(dets(right, left)[[tr.detection_index for tr in tracks]],
                                           [1.0 if tr.detection_index == 0 else -1.0 for tr in tracks]))


def _crossing(review_iou: float, min_pose_similarity: float = 0.0) -> dict[int, float]:
    """Two animals walking at each other, one facing right, one left, poses given after tracking. In the frame they
    meet, each detection is nearer the other's prediction. Returns {track id: facing of the pose it ends with}, for
    the tracks that keep a detection."""
    tracker = Tracker(TrackerSettings(review_iou=review_iou, min_pose_similarity=min_pose_similarity))
    _walk_towards_each_other(tracker)
    # They meet at x = 100; the boxes came out swapped in height (the right-walker's box a little lower).
    right, left = box_at(101.0, 108.0), box_at(99.0, 100.0)
    tracks = tracker.update(dets(right, left))
    facing = {0: 1.0, 1: -1.0}
    poses = poses_for(dets(right, left)[[tr.detection_index for tr in tracks]],
                      [facing[tr.detection_index] for tr in tracks])
    after = tracker.attach_poses([tr.track_id for tr in tracks], poses)
    return {tr.track_id: facing[tr.detection_index] for tr in after if tr.detection_index >= 0}


def test_poses_after_tracking_undo_a_swap_at_a_crossing():
    assert _crossing(review_iou=1.0) == {1: -1.0, 2: 1.0}  # boxes alone swap the two
    assert _crossing(review_iou=0.3) == {1: 1.0, 2: -1.0}  # their poses give each its own back
    assert _crossing(review_iou=0.3, min_pose_similarity=0.2) == {1: 1.0, 2: -1.0}


def test_without_the_review_a_swapped_pair_gives_up_its_boxes():
    """The poses contradict both swapped matches: each track is left without a box this frame."""
    assert _crossing(review_iou=1.0, min_pose_similarity=0.2) == {}


def _partly_seen_pair_moved_together(shift: float) -> tuple[dict[int, int], dict[int, int]]:
    """Two overlapping animals standing for 10 frames, the pose model seeing only keypoints 0-7 of one (track 1)
    and only keypoints 9-16 of the other (track 2); then their boxes move ``shift`` pixels towards
    each other while the animals stay, their poses where they were. Each pose shares too few keypoints with the
    other track to compare (no pose evidence for that pair). Returns {track id: detection index} from the boxes
    alone and after the poses."""
    boxes = [box_at(100.0, 100.0, 120.0, 80.0), box_at(140.0, 110.0, 120.0, 80.0)]

    def pose_of(animal: int) -> np.ndarray:
        pose = pose_in(boxes[animal])
        pose[slice(8, None) if animal == 0 else slice(0, 9), 2] = 0.1  # under keypoint_threshold: not seen
        return pose

    def attach(tracks: list[Track]) -> list[Track]:
        if not tracks:  # the first frame: tentative tracks, none reported
            return tracks
        poses = Poses(np.stack([pose_of(t.detection_index) for t in tracks]).astype(np.float32),
                      np.stack([t.box for t in tracks]))
        return tracker.attach_poses([t.track_id for t in tracks], poses)

    tracker = Tracker(TrackerSettings(min_pose_similarity=0.0))
    for _ in range(10):
        attach(tracker.update(dets(*boxes)))
    moved = dets(np.add(boxes[0], [shift, 0, shift, 0]), np.add(boxes[1], [-shift, 0, -shift, 0]))
    tracks = tracker.update(moved)
    return {t.track_id: t.detection_index for t in tracks}, {t.track_id: t.detection_index for t in attach(tracks)}


def test_the_review_does_not_favour_a_pair_without_pose_evidence():
    """Where a pose and a track share too few keypoints, the pair keeps its boxes-only cost (as when the poses
    come first): the review never takes a track from the detection showing its own animal, and gives it back where
    the boxes alone swapped the two."""
    own = {1: 0, 2: 1}
    swaps_undone = 0
    for shift in range(16, 31):
        by_boxes, after = _partly_seen_pair_moved_together(float(shift))
        if by_boxes == own:
            assert after == own, shift
        else:
            swaps_undone += after == own
    assert swaps_undone >= 1


def _step_with_poses(tracker: Tracker, boxes: list[list[float]], facings: list[float],
                     colours: np.ndarray | None = None, found_unseen: bool = True) -> list[Track]:
    """One frame of ``boxes`` (their colours: ``colours``, as both whole and own), then the pose model on each reported
    box: the detection's own animal (facing ``facings``), or one facing left, unseen, in a missed track's box (with
    ``found_unseen`` False: nothing found there, every keypoint's confidence 0)."""
    tracks = tracker.update(dets(*boxes), features=None if colours is None else BoxColours(colours, colours))
    if not tracks:
        return tracks
    poses = [pose_in(boxes[tr.detection_index], facings[tr.detection_index]) if tr.detection_index >= 0
             else pose_in(tr.box, -1.0, conf=0.9 if found_unseen else 0.0) for tr in tracks]
    return tracker.attach_poses([tr.track_id for tr in tracks],
                                Poses(np.stack(poses).astype(np.float32), np.stack([tr.box for tr in tracks])))


def _one_box_at_a_crossing(review_iou: float, min_pose_similarity: float = 0.0) -> dict[int, tuple[str, int]]:
    """As :func:`_crossing`, but in the frame they meet only the left-walker is detected, its box where the
    right-walker's track expects one. Returns {track id: (state, detection index)} after the poses."""
    tracker = Tracker(TrackerSettings(review_iou=review_iou, min_pose_similarity=min_pose_similarity))
    _walk_towards_each_other(tracker)
    # The pose model on each reported box: the detection's own pose for the matched track, the left-walker's pose
    # in the missed track's predicted box (it is there too).
    after = _step_with_poses(tracker, [box_at(101.0, 100.0)], [-1.0])
    return {tr.track_id: (tr.state.value, tr.detection_index) for tr in after}


def test_poses_after_tracking_give_a_lone_box_to_the_missed_track_whose_pose_it_is():
    assert _one_box_at_a_crossing(review_iou=1.0) == {1: ("confirmed", 0), 2: ("lost", -1)}  # by boxes alone
    assert _one_box_at_a_crossing(review_iou=0.3) == {1: ("lost", -1), 2: ("confirmed", 0)}  # by its pose
    assert _one_box_at_a_crossing(0.3, min_pose_similarity=0.2) == {1: ("lost", -1), 2: ("confirmed", 0)}
    # Without the review the right-walker's track would take it, but the pose is not its animal's: unlabelled.
    assert _one_box_at_a_crossing(1.0, min_pose_similarity=0.2) == {1: ("lost", -1), 2: ("lost", -1)}


def _walking_together_one_missed_then_boxes_swapped(review_iou: float, min_pose_similarity: float
                                                    ) -> dict[int, tuple[str, int]]:
    """Two animals walking side by side, their boxes overlapping (a facing right, track 1; b facing left, track 2),
    poses given after tracking; b is missed for a frame, then only a is detected, its box drawn nearer where b's
    track expects b. Returns {track id: (state, detection index)} after the poses of that frame."""
    tracker = Tracker(TrackerSettings(review_iou=review_iou, min_pose_similarity=min_pose_similarity))
    for t in range(8):
        _step_with_poses(tracker, [box_at(100.0 + 5 * t, 100.0), box_at(112.0 + 5 * t, 110.0)], [1.0, -1.0])
    _step_with_poses(tracker, [box_at(140.0, 100.0)], [1.0])  # b missed
    # a where a is expected at (145, 100) and b at (157, 110)
    after = _step_with_poses(tracker, [box_at(150.0, 105.0)], [1.0])
    return {tr.track_id: (tr.state.value, tr.detection_index) for tr in after}


def test_the_review_gives_a_box_back_from_a_track_lost_a_frame():
    # By boxes alone b's track, back from one missed frame, takes a's box and a's track misses a frame ...
    assert _walking_together_one_missed_then_boxes_swapped(1.0, 0.0) == {1: ("lost", -1), 2: ("confirmed", 0)}
    # ... and keeps it with min_pose_similarity too: back from a missed frame it judges a's pose (OKS 0.15 with its
    # predicted keypoints, 0.33 with twice the tolerance) as its own animal's.
    assert _walking_together_one_missed_then_boxes_swapped(1.0, 0.2) == {1: ("lost", -1), 2: ("confirmed", 0)}
    # Reviewed with the poses (b's track was lost until this frame), a's track takes its animal back.
    for min_pose_similarity in (0.0, 0.2):
        assert _walking_together_one_missed_then_boxes_swapped(0.3, min_pose_similarity) == {
            1: ("confirmed", 0), 2: ("lost", -1)}


def _one_box_after_the_hidden_animal_expired(review_iou: float) -> dict[int, tuple[str, int]]:
    """a (track 1, facing right) walks slowly past b (track 2, facing left, smaller: farther), which stands behind
    it, their boxes overlapping; poses given after tracking. b is then hidden for 3 frames, longer than its keypoints
    are predicted (max_predicted_frames 2), the pose model finding nothing in its predicted box; then only a is
    detected, its box drawn nearer where b's track expects b. Returns {track id: (state, detection index)} after the
    poses of that frame."""
    tracker = Tracker(TrackerSettings(review_iou=review_iou))
    for t in range(8):
        _step_with_poses(tracker, [box_at(100.0 + 2 * t), box_at(150.0, 95.0, 110.0, 75.0)], [1.0, -1.0],
                         found_unseen=False)
    for t in range(8, 11):
        _step_with_poses(tracker, [box_at(100.0 + 2 * t)], [1.0], found_unseen=False)
    # a expected at x 122, b at 150
    after = _step_with_poses(tracker, [box_at(136.0, 98.0, 116.0, 78.0)], [1.0], found_unseen=False)
    return {tr.track_id: (tr.state.value, tr.detection_index) for tr in after}


def test_the_review_compares_a_track_whose_keypoints_expired_by_those_it_carries():
    # By boxes alone the hidden animal's track, lost 3 frames, takes a's box, and a's track misses the frame.
    assert _one_box_after_the_hidden_animal_expired(review_iou=1.0) == {1: ("lost", -1), 2: ("confirmed", 0)}
    # In the review b's track has no predicted keypoints left: compared by nothing, its match kept its boxes-only cost
    # and b's track kept the box (checked before this rule). The keypoints its filter still carries face the other
    # way from the pose in the box, while a's track's fit it: a's track takes its animal back.
    assert _one_box_after_the_hidden_animal_expired(review_iou=0.3) == {1: ("confirmed", 0), 2: ("lost", -1)}


def _one_box_shows_the_hidden_animals_pose(appearance: float, min_pose_similarity: float = 0.0, review_iou: float = 0.3
                                           ) -> dict[int, tuple[str, int]]:
    """Two animals walking side by side (a facing right, track 1, colours FA; b facing left, track 2, colours FB),
    poses given after tracking; then b, hidden behind a, is not detected, and the pose model finds b's pose in a's
    box (a box of two animals may show the other one's pose). Returns {track id: (state, detection index)} after the
    poses of that frame."""
    tracker = Tracker(TrackerSettings(appearance_weight=appearance, min_pose_similarity=min_pose_similarity,
                                      review_iou=review_iou))
    for t in range(8):
        _step_with_poses(tracker, [box_at(100.0 + 5 * t, 100.0), box_at(112.0 + 5 * t, 110.0)], [1.0, -1.0],
                         np.stack([FA, FB]))
    after = _step_with_poses(tracker, [box_at(144.0, 103.0)], [-1.0], FA[None])  # a's box, a's colours, b's pose
    return {tr.track_id: (tr.state.value, tr.detection_index) for tr in after}


def test_the_review_gives_no_box_to_a_track_its_colours_refuse():
    # By boxes a's track keeps a's box (no review) ...
    assert _one_box_shows_the_hidden_animals_pose(0.0, review_iou=1.0) == {1: ("confirmed", 0), 2: ("lost", -1)}
    # ... the pose review, without colours, hands it to b's track, whose pose it shows ...
    assert _one_box_shows_the_hidden_animals_pose(0.0) == {1: ("lost", -1), 2: ("confirmed", 0)}
    # ... with them b's track refuses a's colours there, as it would in the match: a's track keeps its box, or, as
    # the pose contradicts a's track (min_pose_similarity), nobody takes it.
    assert _one_box_shows_the_hidden_animals_pose(0.6) == {1: ("confirmed", 0), 2: ("lost", -1)}
    assert _one_box_shows_the_hidden_animals_pose(0.6, 0.2) == {1: ("lost", -1), 2: ("lost", -1)}


def _box_with_a_strangers_pose(min_pose_similarity: float, poses_first: bool) -> tuple[list[Track], list[Track]]:
    """An animal facing right, followed for 8 frames with its poses; then the one box where the track expects it
    holds an animal facing left (a neighbour in front of it). Returns what the tracker reported in that frame and
    every live track after it."""
    tracker = Tracker(TrackerSettings(min_pose_similarity=min_pose_similarity))
    for t in range(8):
        detections = dets(box_at(100.0 + 5 * t))
        if poses_first:
            tracker.update(detections, poses_for(detections))
        else:
            tracks = tracker.update(detections)
            if tracks:
                tracker.attach_poses([tr.track_id for tr in tracks], poses_for(detections))
    detections = dets(box_at(140.0))
    if poses_first:
        reported = tracker.update(detections, poses_for(detections, [-1.0]))
    else:
        tracks = tracker.update(detections)
        reported = tracker.attach_poses([tr.track_id for tr in tracks], poses_for(detections, [-1.0]))
    return reported, tracker.tracks()


@pytest.mark.parametrize("poses_first", [False, True])
def test_a_track_gives_up_a_box_whose_pose_is_not_its_animals(poses_first):
    from tracking.tracker import _paired_similarity

    ahead = np.array(box_at(140.0), float)[None]
    stranger = _paired_similarity(pose_in(ahead[0])[None], pose_in(ahead[0], -1.0)[None], ahead, np.ones((1, K), bool))
    assert stranger[0] < 0.2
    reported, _ = _box_with_a_strangers_pose(0.0, poses_first)
    assert [(tr.track_id, tr.state, tr.detection_index) for tr in reported] == [(1, TrackState.CONFIRMED, 0)]
    reported, live = _box_with_a_strangers_pose(0.2, poses_first)
    # Left unlabelled for this frame: the track is lost, with no pose from that box, and the box starts no track.
    assert [(tr.track_id, tr.state, tr.detection_index) for tr in reported] == [(1, TrackState.LOST, -1)]
    assert [tr.track_id for tr in live] == [1]
    assert live[0].hits == 8
    assert not (live[0].keypoint_status == int(KeypointStatus.SMOOTHED)).any()


def _back_with_a_shifted_pose(missed: int, shift: float) -> Track:
    """An animal walking right, followed for 8 frames with its poses, then not detected for ``missed`` frames (the
    pose model still finding it in the track's predicted box), then detected where the track expects it, its pose
    ``shift`` pixels up from where the track's keypoints are predicted (the pose model's error, or the animal lowering
    its head). Returns the track as reported in that frame."""
    tracker = Tracker(TrackerSettings(min_pose_similarity=0.2))
    for t in range(8):
        detections = dets(box_at(100.0 + 5 * t))
        tracks = tracker.update(detections)
        if tracks:
            tracker.attach_poses([tr.track_id for tr in tracks], poses_for(detections))
    for _ in range(missed):
        tracks = tracker.update(dets())
        found = np.stack([pose_in(tr.box) for tr in tracks]).astype(np.float32)
        tracker.attach_poses([tr.track_id for tr in tracks], Poses(found, np.stack([tr.box for tr in tracks])))
    detections = dets(box_at(100.0 + 5 * (8 + missed)))
    (track,) = tracker.update(detections)
    pose = pose_in(detections.xyxy[0])
    pose[:, 1] -= shift
    (reported,) = tracker.attach_poses([track.track_id], Poses(pose[None].astype(np.float32), detections.xyxy))
    return reported


def test_a_track_back_from_missed_frames_judges_its_pose_with_more_tolerance():
    """The track's predicted keypoints drift while it goes unseen: a pose off by as much as makes a track seen in
    the last frame give its detection up is its own animal's for a track back from two missed frames (the
    tolerance grows with the frames since its last detection), and a pose off by far more is still refused."""
    from tracking.tracker import _paired_similarity

    box = np.array(box_at(150.0), float)[None]
    shifted = pose_in(box[0])
    shifted[:, 1] -= 32.0
    valid = np.ones((1, K), bool)
    assert _paired_similarity(pose_in(box[0])[None], shifted[None], box, valid)[0] < 0.2
    assert _paired_similarity(pose_in(box[0])[None], shifted[None], box, valid, tolerance=np.array([3.0]))[0] > 0.2
    seen = _back_with_a_shifted_pose(missed=0, shift=32.0)
    assert (seen.state, seen.detection_index) == (TrackState.LOST, -1)
    back = _back_with_a_shifted_pose(missed=2, shift=32.0)
    assert (back.state, back.detection_index, back.hits) == (TrackState.CONFIRMED, 0, 9)
    assert _back_with_a_shifted_pose(missed=0, shift=0.0).state is TrackState.CONFIRMED
    far = pose_in(box[0])
    far[:, 1] -= 100.0
    assert _paired_similarity(pose_in(box[0])[None], far[None], box, valid, tolerance=np.array([3.0]))[0] < 0.2
    assert _back_with_a_shifted_pose(missed=2, shift=100.0).state is TrackState.LOST


def _three_live_tracks(settings: TrackerSettings) -> list:
    from tracking.tracker import _LiveTrack

    rng = np.random.default_rng(5)
    tracks = []
    for i in range(3):
        box = np.array([100.0 + 200 * i, 100.0, 180.0 + 200 * i, 170.0])
        track = _LiveTrack(i + 1, box, 0.9, 0, 0, settings)
        if i < 2:  # the third never has a pose
            pose = np.concatenate([rng.uniform(box[:2], box[2:], (K, 2)), np.full((K, 1), 0.8)], 1)
            track.attach_pose(pose)
        tracks.append(track)
    return tracks


def test_ghosts_predicted_with_all_tracks_are_each_predicted_alone():
    from tracking.tracker import _Ghost, _predict_tracks

    together, alone = _three_live_tracks(TrackerSettings()), _three_live_tracks(TrackerSettings())
    for tracks in (together, alone):
        _predict_tracks(tracks)
        tracks[1].box_filter.mean[0, 1] = (5.0, -2.0)  # one of them walking
    ghosts = [_Ghost(t, 1, (0.5, {})) for t in together[:2]]  # the third has none
    own = [_Ghost(t, 1, (0.5, {})) for t in alone[:2]]
    for _ in range(3):
        _predict_tracks(together, ghosts)
        for track, ghost in zip(alone, [*own, None]):
            _predict_tracks([track], [] if ghost is None else [ghost])
    for a, b, track in zip(ghosts, own, together):
        np.testing.assert_array_equal(a.box_filter.mean, b.box_filter.mean)
        np.testing.assert_array_equal(a.box_filter.cov, b.box_filter.cov)
        np.testing.assert_array_equal(a.box, b.box)
        assert a.frames_since_update == b.frames_since_update == track.frames_since_update  # all missed 3 frames
    for a, b in zip(together, alone):
        np.testing.assert_array_equal(a.box_filter.mean, b.box_filter.mean)
        np.testing.assert_array_equal(a.box, b.box)
    assert ghosts[1].box[0] > 300.0 + 10.0  # walked on from x = 300


@pytest.mark.parametrize("mode", [SmoothingMode.CAUSAL, SmoothingMode.NONE])
def test_reported_arrays_are_read_only(mode):
    tracker = Tracker(TrackerSettings(min_hits=1, smoothing=SmoothingSettings(mode=mode)))
    detections = Detections(xyxy=np.array([[10, 10, 50, 60], [100, 100, 150, 160]], np.float32),
                            scores=np.array([0.9, 0.9], np.float32), class_ids=np.zeros(2, np.int64))
    tracks = tracker.update(detections, image_size=(640, 480))
    poses = Poses(keypoints=np.full((2, NUM_KEYPOINTS, 3), 30.0, np.float32), boxes=detections.xyxy)
    tracks += tracker.attach_poses([t.track_id for t in tracks], poses)
    assert len(tracks) == 4
    for track in tracks:
        for array in (track.box, track.keypoints, track.keypoint_status):
            with pytest.raises(ValueError):
                array[0] = 1
            with pytest.raises(ValueError):
                array.setflags(write=True)  # each track's rows of the frame's arrays: not to be made writable either


def test_frame_costs_slice_what_each_stage_would_compute():
    from tracking.matching import box_iou
    from tracking.tracker import _box_costs, _FrameCosts, _predict_tracks

    settings = TrackerSettings()
    tracks = _three_live_tracks(settings)
    for _ in range(3):  # the third lost for three frames: held to the re-link gate
        _predict_tracks(tracks)
    tracks[2].state = TrackState.LOST
    rng = np.random.default_rng(8)
    boxes = np.array([t.box for t in tracks] * 2) + rng.normal(0, 8, (6, 4))
    costs = _FrameCosts(tracks, boxes, settings)
    for rows, detections in [([0, 1, 2], np.arange(6)), ([2, 0], np.array([5, 1, 3])), ([1], np.array([4])),
                             ([0, 2], np.array([], int))]:
        cost, iou = costs([tracks[i] for i in rows], detections)
        want_cost, want_iou = _box_costs([tracks[i] for i in rows], boxes[detections], settings)
        np.testing.assert_array_equal(cost, want_cost)
        np.testing.assert_array_equal(iou, want_iou)
    cost, _ = costs(tracks, np.arange(6))
    assert np.isfinite(cost[[0, 1, 2], [0, 1, 2]]).all() and np.isinf(cost[0, 1])  # its own box, not another's
    for detections in (np.arange(6), np.array([4, 0, 3])):
        overlaps = costs.overlaps(detections)
        np.testing.assert_array_equal(overlaps, box_iou(boxes[detections], boxes[detections]))
        overlaps[:] = 0.0  # a copy: the frame's own stay
    assert costs.overlaps(np.array([0, 3]))[0, 1] > 0.3  # a box and its repeat, not zeroed above


def test_tracks_predicted_and_updated_together_are_each_alone():
    from tracking.tracker import _predict_tracks, _update_tracks

    settings = TrackerSettings()
    together, alone = _three_live_tracks(settings), _three_live_tracks(settings)
    rng = np.random.default_rng(6)
    for step in range(1, 5):
        boxes = np.array([t.last_box for t in alone]) + rng.normal(0, 3, (3, 4)) + [6.0 * step, 0, 6.0 * step, 0]
        _predict_tracks(together)
        for track in alone:
            track.predict()
        _update_tracks(together[:2], boxes[:2], [0.8, 0.7], [0, 1])
        for track, box, score, index in zip(alone[:2], boxes, [0.8, 0.7], [0, 1]):
            track.update(box, score, index)
    for a, b in zip(together, alone):
        np.testing.assert_array_equal(a.box_filter.mean, b.box_filter.mean)
        np.testing.assert_array_equal(a.box_filter.cov, b.box_filter.cov)
        np.testing.assert_array_equal(a.box, b.box)
        np.testing.assert_array_equal(a.maneuver, b.maneuver)
        np.testing.assert_array_equal(a.keypoints.output()[0], b.keypoints.output()[0])
        assert (a.hits, a.frames_since_update, a.age, a.detection_index) == (b.hits, b.frames_since_update, b.age,
                                                                             b.detection_index)
    assert together[2].frames_since_update == 4 and together[0].frames_since_update == 0
    together[0].unmatch()  # back to its prediction of the last frame
    assert together[0].hits == alone[0].hits - 1 and together[0].frames_since_update == 1


def test_scale_is_numpys_to_the_bit():
    from tracking.tracker import _scale

    rng = np.random.default_rng(5)
    boxes = rng.uniform(-1e3, 1e3, (2000, 4))
    boxes[:, 2:] += rng.uniform(-2.0, 300.0, (2000, 2))  # some sizes under 1 pixel: floored at 1
    sizes = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0)
    want = np.sqrt(sizes[:, 0] * sizes[:, 1])
    assert [_scale(box) for box in boxes] == want.tolist()


def test_confident_reads_nan_as_zero():
    from tracking.tracker import _confident

    confidence = np.array([0.9, 0.3, np.nan, 0.0, np.inf, -np.inf])
    for threshold in (0.0, 0.3, 0.5, 1.0):
        np.testing.assert_array_equal(_confident(confidence, threshold), np.nan_to_num(confidence) >= threshold)
    assert _confident(confidence, 0.0)[2] and not _confident(confidence, 0.3)[2]


@pytest.mark.parametrize("height_window", [0, 30])
@pytest.mark.parametrize("relinking", [False, True])
def test_geometry_per_track_variances_are_numpys_to_the_bit(height_window, relinking):
    from tracking.tracker import _geometry, _predict_tracks

    settings = TrackerSettings(height_window=height_window)
    tracks = _three_live_tracks(settings) + [_lost_runner(settings, 4)]
    _predict_tracks(tracks[:3])
    _predict_tracks(tracks[2:3])  # unseen 1, 1, 2 and the runner 4
    rng = np.random.default_rng(3)
    boxes = np.array([t.box for t in tracks] * 2) + rng.normal(0, 20, (8, 4))
    d2, log_det = _geometry(tracks, boxes, settings, relinking=relinking)
    # The formula on (T,) arrays, as numpy computes it.
    s = settings
    last, predicted = np.array([t.last_box for t in tracks]), np.array([t.box for t in tracks])
    bottom = lambda b: np.stack([0.5 * (b[:, 0] + b[:, 2]), b[:, 3]], 1)  # noqa: E731
    points, starts = bottom(boxes), bottom(last)
    direction = bottom(predicted) - starts
    length2 = np.maximum(direction[:, 0] ** 2 + direction[:, 1] ** 2, 1e-12)
    towards = (points[None] - starts[:, None]) * direction[:, None]
    along = np.clip((towards[..., 0] + towards[..., 1]) / length2[:, None], 0.0, 1.0)
    offset = points[None] - (starts[:, None] + along[..., None] * direction[:, None])
    height = np.maximum(predicted[:, 3] - predicted[:, 1], 1.0)
    unseen = np.array([t.frames_since_update for t in tracks], float)
    velocity = np.array([t.box_filter.mean[0, 1] for t in tracks])
    walked = (np.maximum(s.reach_speed * height, np.sqrt(velocity[:, 0] ** 2 + velocity[:, 1] ** 2))
              * np.maximum(unseen - 1, 0.0))
    lost = (unseen > 1) | relinking
    noise = (s.box_measurement_noise * height) ** 2 + np.where(lost, (s.relink_noise * height) ** 2, 0.0)
    spread = np.minimum(np.array([t.box_filter.cov[0, 0, 0] for t in tracks]) + walked**2,
                        (s.reach_limit * height) ** 2)
    across, depth = spread + noise, s.vertical_ratio**2 * spread + noise
    reference = np.sqrt(height * np.array([t.median_height for t in tracks])) if height_window else height
    height_var = s.height_noise**2 + (s.height_drift * unseen) ** 2
    log_ratio = np.log(np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)[None, :] / reference[:, None])
    want = (offset[..., 0] ** 2 / across[:, None] + offset[..., 1] ** 2 / depth[:, None]
            + log_ratio**2 / height_var[:, None])
    assert s.reach_limit > 0 and lost.any() and not lost.all() or relinking
    np.testing.assert_array_equal(d2, want)
    np.testing.assert_array_equal(log_det, np.log(across * depth * height_var))
    # The predicted boxes passed in (as _box_costs has them) change nothing; no boxes: (T, 0) and the same (T,).
    given = _geometry(tracks, boxes, settings, relinking=relinking, predicted=predicted)
    np.testing.assert_array_equal(given[0], d2)
    np.testing.assert_array_equal(given[1], log_det)
    none, none_log_det = _geometry(tracks, boxes[:0], settings, relinking=relinking)
    assert none.shape == (len(tracks), 0)
    np.testing.assert_array_equal(none_log_det, log_det)
