"""train.synthetic.video: clips with per-frame ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from train.synthetic.video import VideoSettings, frame_record, iter_video, render_video

SMALL = VideoSettings(num_animals=3, num_frames=24, width=96, height=64, fps=15.0, seed=1)
LONG = VideoSettings(num_animals=3, num_frames=300, width=96, height=54, seed=0)


@pytest.fixture(scope="module")
def long_truth() -> list[dict]:
    return [frame_record(frame) for frame in iter_video(LONG)]


def test_video_has_the_frames_and_ground_truth(tmp_path):
    out = tmp_path / "clip.mp4"
    truth = render_video(out, SMALL)
    assert json.loads(out.with_suffix(".json").read_text()) == truth
    capture = cv2.VideoCapture(str(out))
    frames = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        assert image.shape == (64, 96, 3)
        frames += 1
    capture.release()
    assert frames == SMALL.num_frames == len(truth["frames"])
    assert (truth["fps"], truth["width"], truth["height"]) == (15.0, 96, 64)
    assert [a["track_id"] for a in truth["animals"]] == [1, 2, 3]
    assert [f["frame"] for f in truth["frames"]] == list(range(SMALL.num_frames))
    for frame in truth["frames"]:
        for animal in frame["animals"]:
            assert animal.keys() == {"track_id", "bbox", "keypoints"}
            x, y, w, h = animal["bbox"]
            assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 96 and y + h <= 64
            keypoints = np.array(animal["keypoints"])
            assert keypoints.shape == (17, 3) and set(keypoints[:, 2]) <= {0, 1, 2}


def test_ground_truth_path_can_be_chosen(tmp_path):
    gt = tmp_path / "truth" / "gt.json"
    render_video(tmp_path / "clip.mp4", VideoSettings(num_frames=2, width=64, height=48), gt)
    assert gt.is_file() and not (tmp_path / "clip.json").exists()


def test_same_seed_same_clip():
    a = list(iter_video(SMALL))
    b = list(iter_video(SMALL))
    assert all(x.image.tobytes() == y.image.tobytes() for x, y in zip(a, b))
    assert [frame_record(x) for x in a] == [frame_record(y) for y in b]


def test_every_nth_frame_is_the_clips_own_frame():
    settings = VideoSettings(num_animals=3, num_frames=60, width=96, height=64, fps=10, seed=5)
    full = list(iter_video(settings))
    sparse = list(iter_video(settings, every=7))
    assert [f.index for f in sparse] == list(range(0, 60, 7))
    for frame in sparse:
        assert frame.image.tobytes() == full[frame.index].image.tobytes()
        assert frame_record(frame) == frame_record(full[frame.index])
    with pytest.raises(ValueError, match="every must be >= 1"):
        next(iter_video(settings, every=0))


def _presence(truth: list[dict], track_id: int) -> np.ndarray:
    return np.array([any(a["track_id"] == track_id for a in f["animals"]) for f in truth])


def test_an_animal_leaves_and_re_enters(long_truth):
    re_entered = []
    for track_id in (1, 2, 3):
        present = _presence(long_truth, track_id)
        first_gone = np.flatnonzero(present[:-1] & ~present[1:])
        re_entered.append(len(first_gone) > 0 and present[first_gone[0] + 1 :].any())
    assert any(re_entered)


def test_the_first_two_animals_cross_and_occlude(long_truth):
    """Tracks 1 and 2 start on opposite sides facing each other: at some frame their boxes
    overlap and one hides keypoints of the other."""
    crossed = False
    for frame in long_truth:
        animals = {a["track_id"]: a for a in frame["animals"]}
        if 1 in animals and 2 in animals:
            (x1, y1, w1, h1), (x2, y2, w2, h2) = animals[1]["bbox"], animals[2]["bbox"]
            overlap = min(x1 + w1, x2 + w2) > max(x1, x2) and min(y1 + h1, y2 + h2) > max(y1, y2)
            occluded = any(v == 1 for k in (1, 2) for _, _, v in animals[k]["keypoints"])
            crossed |= overlap and occluded
    assert crossed


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_animals": 0}, "num_animals must be in"),
        ({"num_frames": 0}, "num_frames must be >= 1"),
        ({"fps": 0.0}, "fps must be positive"),
        ({"width": 10}, "width and height must be >= 32"),
        ({"background_dir": Path("/no/such/folder")}, "is not a folder"),
    ],
)
def test_settings_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VideoSettings(**kwargs)
