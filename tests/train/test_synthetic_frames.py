"""train.synthetic.frames: datasets of frames sampled from synthetic clips."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from train.synthetic.dataset import SPLITS, annotated
from train.synthetic.frames import FrameDatasetSettings, render_clip_frames, write_frame_dataset
from train.synthetic.video import iter_video

SETTINGS = FrameDatasetSettings(num_clips=5, frames_per_clip=3, frame_step=4, width=96, height=64, seed=2,
                                val_fraction=0.2, test_fraction=0.2, formats=("ap10k", "yolo"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("frames") / "ds"
    write_frame_dataset(out, SETTINGS)
    return out


def _load(dataset: Path, split: str) -> dict:
    return json.loads((dataset / "annotations" / f"ap10k-{split}-split1.json").read_text())


def test_frames_of_one_clip_stay_in_one_split(dataset):
    ids = {split: sorted(image["id"] for image in _load(dataset, split)["images"]) for split in SPLITS}
    assert ids == {"train": list(range(1, 10)), "val": [10, 11, 12], "test": [13, 14, 15]}
    assert len(list((dataset / "data").glob("*.jpg"))) == 15
    for split in SPLITS:
        labels = sorted(p.stem for p in (dataset / "labels" / split).glob("*.txt"))
        assert labels == [f"{i:012d}" for i in ids[split]]
    images = _load(dataset, "train")["images"]
    assert {(image["width"], image["height"]) for image in images} == {(96, 64)}
    assert all(image["background"] >= 1 for image in images)


def test_frames_are_the_clips_frames_with_the_dataset_annotation_rule():
    clip = SETTINGS.clip_settings(1)
    assert clip.num_frames == 12 and (clip.width, clip.height, clip.fps) == (96, 64, 15.0)
    assert 1 <= clip.num_animals <= SETTINGS.max_animals and 0 <= clip.num_occluders <= SETTINGS.max_occluders
    video = [frame for frame in iter_video(clip) if frame.index % 4 == 0]
    kept = list(render_clip_frames(1, SETTINGS))
    assert [index for index, *_ in kept] == [3, 4, 5]
    for (_, image, labels, kind), frame in zip(kept, video):
        np.testing.assert_array_equal(image, frame.image)
        keep = annotated(frame.labels, SETTINGS.min_visible_fraction)
        np.testing.assert_array_equal(labels.boxes, frame.labels.boxes[keep])
        assert kind == frame.background_kind + 1


def test_the_annotation_rule_drops_hidden_and_unlabelled_animals(dataset):
    annotations = [a for split in SPLITS for a in _load(dataset, split)["annotations"]]
    assert annotations and all(a["num_keypoints"] >= 1 for a in annotations)
    assert all(a["bbox"][2] >= 2 and a["bbox"][3] >= 2 for a in annotations)


def test_clips_vary_and_the_dataset_is_deterministic(dataset, tmp_path):
    clips = [SETTINGS.clip_settings(c) for c in range(20)]
    assert len({c.seed for c in clips}) == 20
    assert len({c.num_animals for c in clips}) > 1 and len({c.num_occluders for c in clips}) > 1
    again = tmp_path / "again"
    write_frame_dataset(again, replace(SETTINGS, workers=2))
    for split in SPLITS:
        name = f"ap10k-{split}-split1.json"
        assert (again / "annotations" / name).read_bytes() == (dataset / "annotations" / name).read_bytes()
    other = replace(SETTINGS, seed=3)
    assert other.clip_settings(0).seed != SETTINGS.clip_settings(0).seed


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_clips": 0}, "num_clips must be >= 1"),
        ({"frame_step": 0}, "frame_step must be >= 1"),
        ({"max_occluders": -1}, "max_occluders must be >= 0"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "must leave training clips"),
        ({"formats": ("coco",)}, "formats must be a non-empty subset"),
        ({"width": 8}, "width and height must be >= 32"),
        ({"fps": 0}, "fps must be positive"),
        ({"background_dir": Path("/no/such/folder")}, "is not a folder"),
    ],
)
def test_settings_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FrameDatasetSettings(**kwargs)
