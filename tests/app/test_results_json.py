"""The one JSON layout of results (docs/formats.md): images like videos, a version, old files still read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.results_json import FORMAT_VERSION, image_document, image_result, layout_metadata, read_results
from pose.structures import Poses


def _poses() -> Poses:
    keypoints = np.random.default_rng(0).uniform(0, 50, (2, 17, 3)).astype(np.float32)
    keypoints[1, 4] = np.nan
    return Poses(keypoints, np.array([[1, 2, 30, 40], [10, 10, 60, 70]], np.float32))


def test_an_image_is_a_document_of_one_frame():
    result = image_result(_poses(), np.array([0.9, 0.8]))
    document = image_document("cat.jpg", 640, 480, result)
    assert document["format_version"] == FORMAT_VERSION == 2 and document["complete"] is True
    assert document["source"] == {"name": "cat.jpg", "fps": 1.0, "width": 640, "height": 480, "total_frames": 1,
                                  "is_live": False}
    (frame,) = document["frames"]
    assert frame["frame"] == 0 and frame["time"] == 0.0
    assert [a["track_id"] for a in frame["animals"]] == [1, 2]
    assert frame["animals"][0]["bbox"] == [1, 2, 30, 40] and frame["animals"][1]["score"] == pytest.approx(0.8)
    assert frame["animals"][1]["status"][4] == 0 and frame["animals"][1]["keypoints"][4] == [None, None, None]
    assert set(frame["animals"][0]["status"]) == {1}
    json.dumps(document, allow_nan=False)


def test_given_boxes_score_one():
    assert image_result(_poses()).box_scores.tolist() == [1.0, 1.0]


def test_video_documents_carry_the_version():
    assert layout_metadata()["format_version"] == FORMAT_VERSION


def test_the_image_layout_of_earlier_versions_is_still_read(tmp_path):
    old = {"image": "cat.jpg", "instances": [
        {"bbox": [10, 20, 30, 40], "keypoints": [[1.0, 2.0, 0.9]] * 16 + [[None, None, None]]},
    ]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    document = read_results(tmp_path / "old.json")
    assert document["format_version"] == FORMAT_VERSION and document["source"]["name"] == "cat.jpg"
    (animal,) = document["frames"][0]["animals"]
    assert animal["bbox"] == [10, 20, 40, 60] and animal["track_id"] == 1 and animal["status"][-1] == 0


def test_version_1_documents_are_read_as_they_are(tmp_path):
    (tmp_path / "v1.json").write_text(json.dumps({"frames": [{"frame": 0, "time": 0.0, "animals": []}]}))
    assert read_results(tmp_path / "v1.json")["format_version"] == 1


def test_other_json_is_refused(tmp_path):
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not an animalpose results file"):
        read_results(tmp_path / "x.json")


def test_an_image_without_animals():
    document = image_document("empty.jpg", 8, 8, image_result(Poses.empty()))
    assert document["frames"][0]["animals"] == []
