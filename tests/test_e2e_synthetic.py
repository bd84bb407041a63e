"""The end-to-end proof at test scale: train a tiny pose model on synthetic images, run
``animalpose track`` on a held-out 3-animal clip and score it against the truth.

The full-size version, with a trained detector, is ``bench/e2e_synthetic.py``. Here the detector
is replaced by the clip's ground-truth boxes, so the identity thresholds test the tracker on
crossing animals through the whole command, with a pose checkpoint that the training code has just
written. Keypoint accuracy needs minutes of training and is measured by the bench only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import app.cli.video as cli_track
from animalpose import Model
from app.cli import main
from app.runs import Models
from pose.estimator import PoseEstimator, PoseSettings
from pose.threads import torch_threads
from train.e2e import (
    GroundTruthDetector,
    clip_truth,
    frame_coco,
    score_clip,
    track_predictions,
)

EPOCHS = 1  # of at most four steps: seconds, not a useful model


def _perfect_output(gt: dict, id_offset: int = 10) -> list[dict]:
    """What a flawless tracker would write for ``gt``: truth boxes and labelled keypoints, other ids."""
    frames = []
    for frame in gt["frames"]:
        animals = []
        for a in frame["animals"]:
            x, y, w, h = a["bbox"]
            animals.append({"track_id": a["track_id"] + id_offset, "bbox": [x, y, x + w, y + h], "score": 0.9,
                            "keypoints": [[px, py, 1.0] if v > 0 else None for px, py, v in a["keypoints"]]})
        frames.append({"frame": frame["frame"], "animals": animals})
    return frames


@pytest.fixture(scope="module")
def crossing_clip(tmp_path_factory) -> tuple[Path, dict]:
    from train.synthetic import VideoSettings, render_video

    path = tmp_path_factory.mktemp("e2e") / "crossing.mp4"
    gt = render_video(path, VideoSettings(num_animals=3, num_frames=30, width=320, height=192, fps=12, seed=1001))
    return path, gt


@pytest.fixture(scope="module")
def trained_pose(tmp_path_factory) -> Path:
    """``best.pth`` of hrnet_tiny after a few steps on a tiny synthetic dataset."""

    from train.synthetic import DatasetSettings, write_dataset
    from train.train_pose import PoseTrainSettings, train

    root = tmp_path_factory.mktemp("e2e_train")
    write_dataset(root / "data", DatasetSettings(num_images=60, width=128, height=128, seed=7, formats=("ap10k",)))
    ann = root / "data" / "annotations"
    settings = PoseTrainSettings(
        train_ann=ann / "ap10k-train-split1.json", val_ann=ann / "ap10k-val-split1.json",
        image_root=root / "data" / "data", output_dir=root / "pose", arch="hrnet_tiny", input_size=(64, 64),
        heatmap_size=(16, 16), epochs=EPOCHS, batch_size=16, lr=5e-3, lr_steps=(EPOCHS,), warmup_iters=5,
        eval_interval=EPOCHS, workers=0, device="cpu", progress=False, flip_test=False, max_steps_per_epoch=4,
    )
    with torch_threads(1):  # on a shared machine, more threads than free cores slow training tenfold
        return train(settings).best_checkpoint



def _track(clip: Path, gt: dict, weights: Path, smoothing: str, out: Path, monkeypatch) -> dict[str, float]:
    estimator = PoseEstimator.from_weights(weights, PoseSettings(flip_test=False, device="cpu"))
    detector = GroundTruthDetector(gt, auto_advance=True)
    monkeypatch.setattr(cli_track, "models_from_args",
                        lambda args, choices=None, live=False: Model(Models(detector, estimator)))
    json_path = out / f"{weights.stem}_{smoothing}.json"
    assert main(["track", str(clip), "--json", str(json_path), "--smoothing", smoothing, "-q", "--no-flip"]) == 0
    return score_clip(gt, json.loads(json_path.read_text())["frames"])


def test_scores_of_a_flawless_output_are_perfect(crossing_clip):
    _, gt = crossing_clip
    scores = score_clip(gt, _perfect_output(gt))
    assert scores["idf1"] == pytest.approx(1.0)
    assert scores["idf1_ideal"] == pytest.approx(1.0)
    assert scores["mota"] == pytest.approx(1.0)
    assert scores["num_switches"] == 0
    assert scores["oks_ap"] == pytest.approx(1.0)
    assert scores["rmse"] == pytest.approx(0.0, abs=1e-9)
    assert scores["jitter"] == pytest.approx(scores["truth_jitter"])


def test_swapped_identities_count_as_switches(crossing_clip):
    _, gt = crossing_clip
    frames = _perfect_output(gt)
    half = len(frames) // 2
    for frame in frames[half:]:  # animals 1 and 2 swap identities half way
        for animal in frame["animals"]:
            animal["track_id"] = {11: 12, 12: 11}.get(animal["track_id"], animal["track_id"])
    scores = score_clip(gt, frames)
    assert scores["num_switches"] >= 2
    assert scores["idf1"] < 0.9
    assert scores["idf1_ideal"] == pytest.approx(1.0)  # the boxes are right, only identities are wrong
    assert scores["oks_ap"] == pytest.approx(1.0)  # per-frame keypoints are unaffected


def test_frame_coco_and_predictions_share_frames(crossing_clip):
    _, gt = crossing_clip
    coco = frame_coco(gt)
    predictions = track_predictions(_perfect_output(gt))
    assert [image["id"] for image in coco["images"]] == list(range(len(gt["frames"])))
    assert len(predictions) == len(coco["annotations"])
    assert {p["image_id"] for p in predictions} <= {image["id"] for image in coco["images"]}
    truth = clip_truth(gt)
    assert truth.present.shape == (len(gt["frames"]), 3)
    assert truth.keypoints.shape == (len(gt["frames"]), 3, 17, 2)


def test_track_with_a_trained_tiny_model(tmp_path, crossing_clip, trained_pose, monkeypatch):
    clip, gt = crossing_clip
    scores = _track(clip, gt, trained_pose, "offline", tmp_path, monkeypatch)
    assert scores["idf1"] >= 0.8
    assert scores["mota"] >= 0.8
    assert scores["num_switches"] <= 1
    # Seconds of training give keypoints too unsure for the tracker to report (RMSE is NaN when
    # none is reported) and an OKS AP near 0; the bench trains for real and scores them.
    assert 0.0 <= scores["oks_ap"] <= 1.0
