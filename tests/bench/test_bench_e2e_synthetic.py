"""bench.e2e_synthetic: the detector's data, the held-out clips, the tracking options and the report table."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from app.runs import TrackSettings
from bench.e2e_synthetic import (
    detector_name,
    detector_seed,
    epochs_trained,
    get_args_parser,
    native_imgsz,
    render_clips,
    render_table,
    take_all_cores,
    track_options,
    tracking_summary,
)
from tracking.detector import DetectorSettings


def _summary(det: dict) -> dict:
    row = {"idf1": 0.7, "mota": 0.6, "num_switches": 2.0, "oks_ap": 0.3, "oks_ap50": 0.6, "rmse": 20.0,
           "jitter": 5.0, "truth_jitter": 2.0, "seconds": 6.0}
    return {
        "images": 2000, "image_size": 256, "videos": 2, "frames": 150, "video_size": [320, 256],
        "training_seconds": 1700.0, "concurrent": True, "load_start": 2.0, "load_end": 1.5, "tracking_imgsz": 320,
        "max_lost_s": 5.0,
        "pose": {"arch": "hrnet_tiny", "input": 96, "epochs": 100, "seconds": 1600.0, "AP": 0.55, "AP50": 0.9,
                 "AP_dark": 0.57, "shared_epochs": None},
        "detector": {"epochs": 20, "seconds": 1600.0, "imgsz": 256, "AP": 0.6, "AP50": 0.9, **det},
        "tracking": {"none": {**row, "idf1_min": 0.55, "idf1_ideal": 0.8}, "offline": {**row, "idf1": 0.85}},
    }


def test_tracking_runs_the_detector_at_the_clips_own_size():
    assert native_imgsz((320, 256)) == 320 and native_imgsz((330, 200)) == 352


def test_detector_trains_on_clip_frames_by_default():
    args = get_args_parser().parse_args([])
    assert args.det_data == "frames" and (args.det_clips, args.det_frames_per_clip) == (200, 10)
    assert args.max_lost is None and args.videos == 30  # None: animalpose track's
    assert get_args_parser().parse_args(["--det-data", "images"]).det_data == "images"


def test_table_names_the_detectors_data_and_both_ap50s():
    frames = render_table(_summary({"data": "frames", "clips": {"train": 80, "val": 10, "test": 10},
                                    "frames": {"train": 1600, "val": 200, "test": 200}, "AP50_images": 0.75}))
    assert "on 1600 frames of 80 synthetic clips at 320×256" in frames
    assert "| detector box AP50 (test split of its data, held-out clip frames) | 0.900 | ≥ 0.8 | yes |" in frames
    assert "| detector box AP50 on the pose model's test images | 0.750 | – | – |" in frames
    assert "lowest 0.700 over the smoothing modes (no)" in frames
    assert "| none | 0.700 | 0.550 | 0.800 | 0.600 | 2.0 |" in frames
    assert "| offline | 0.850 | – | – | 0.600 |" in frames  # a summary without the worst clip or the ceiling
    assert "(input 320 px, non-maximum suppression at IoU 0.7, `--det-iou`) and pose model, an animal keeps its " \
           "identity for 5 s unseen" in frames
    images = render_table(_summary({}))  # a summary written before the detector's data was recorded
    assert "on the pose model's training images" in images and "pose model's test images |" not in images
    assert "detector (YOLO11n from its YAML, 20 epochs" in images


def test_a_narrower_detector_is_named_and_reported():
    args = get_args_parser().parse_args([])  # the schedule of docs/benchmarks.md's table
    assert (args.det_width, args.det_epochs, args.det_imgsz, args.video_size) == (0.1875, 28, 256, [320, 256])
    assert (args.pose_arch, args.pose_input, args.pose_epochs) == ("hrnet_tiny_s2", 96, 88)
    assert (detector_name(0.25), detector_name(0.1875)) == ("yolo11n", "yolo11-w0.1875")
    table = render_table(_summary({"name": "yolo11-w0.1875", "width": 0.1875}))
    assert "detector (YOLO11 at channel width 0.1875 (YOLO11n: 0.25) from its YAML, 20 epochs" in table


def test_tracking_options_and_their_record():
    args = get_args_parser().parse_args(["--max-lost", "4", "--appearance", "0.5", "--min-hits", "4",
                                         "--det-iou", "0.6"])
    options = track_options(args, (320, 256))
    assert (options.det_imgsz, options.max_lost, options.min_hits, options.appearance, options.det_iou) == (
        320, 4.0, 4, 0.5, 0.6)
    assert track_options(get_args_parser().parse_args(["--track-imgsz", "256"]), (320, 256)).det_imgsz == 256
    shipped = track_options(get_args_parser().parse_args([]), (320, 256))  # what animalpose track ships with
    assert (shipped.max_lost, shipped.min_hits, shipped.appearance, shipped.det_iou) == (
        TrackSettings().max_lost_s, TrackSettings().min_hits, TrackSettings().appearance, DetectorSettings.iou)
    record = tracking_summary(options)
    assert record == {"tracking_imgsz": 320, "max_lost_s": 4.0, "min_hits": 4, "appearance": 0.5, "det_iou": 0.6}
    table = render_table({**_summary({}), **record})
    assert "colour-histogram appearance cue of weight 0.5 (`--appearance`), an identity after 4 detections" in table
    assert "non-maximum suppression at IoU 0.6, `--det-iou`" in table
    assert "suppression at IoU 0.7" in render_table(_summary({}))  # summaries from before the option: the default
    assert "no appearance cue" in render_table(_summary({}))  # summaries before the cue existed


def test_clips_are_rendered_once_and_more_can_be_added(tmp_path):
    clips = render_clips(tmp_path, 2, 6, (160, 128), seed=0)
    assert [path.name for path, _ in clips] == ["crossing_0.mp4", "crossing_1.mp4"]
    truth = json.loads((tmp_path / "crossing_0.json").read_text())
    assert clips[0][1]["frames"] == truth["frames"] and len(truth["frames"]) == 6
    (tmp_path / "crossing_0.json").write_text(json.dumps({**truth, "marker": 1}))
    more = render_clips(tmp_path, 3, 6, (160, 128), seed=0)
    assert more[0][1]["marker"] == 1  # read back, not rendered again
    assert len(more) == 3 and (tmp_path / "crossing_2.mp4").is_file()


def test_detector_for_a_time_with_its_own_seed_is_reported():
    args = get_args_parser().parse_args([])
    assert (args.det_minutes, args.det_seed) == (None, None)  # --det-epochs, and the seed of --seed
    args = get_args_parser().parse_args(["--det-minutes", "27.5", "--det-seed", "3"])
    assert (args.det_minutes, args.det_seed) == (27.5, 3)
    assert detector_seed(args) == 3 and detector_seed(get_args_parser().parse_args(["--seed", "2"])) == 2
    table = render_table({**_summary({"epochs": 34, "minutes": 27.5, "seed": 3}), "detector_all_cores": True})
    assert ", 34 epochs in 27.5 min (`--det-minutes`), seed 3, imgsz 256" in table
    assert "one core each, then the detector on both cores once the pose model was done" in table
    assert "(both models at once, one core each): " in render_table(_summary({}))  # summaries from before


def test_the_detector_takes_every_core_once_the_pose_model_is_done():
    pose_done, trainer = threading.Event(), SimpleNamespace(epoch=3)
    callback = take_all_cores(pose_done)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        callback(trainer)
        assert torch.get_num_threads() == 1
        pose_done.set()
        callback(trainer)
        assert torch.get_num_threads() == (os.cpu_count() or 1)
    finally:
        torch.set_num_threads(before)


def test_epochs_trained_counts_the_rows_of_ultralytics_results(tmp_path):
    assert epochs_trained(tmp_path) == 0  # no results yet
    (tmp_path / "results.csv").write_text("epoch,time\n1,2.5\n2,5.1\n")
    assert epochs_trained(tmp_path) == 2


def test_pose_settings_of_a_simcc_model_take_its_recipe(tmp_path):
    from bench.e2e_synthetic import pose_settings
    from train.train_pose import LRSchedule, Optimizer

    args = get_args_parser().parse_args(["--pose-arch", "rtmpose_m", "--pose-epochs", "40"])
    simcc = pose_settings(tmp_path, tmp_path / "pose", args, epochs=10)
    assert (simcc.arch, simcc.input_size, simcc.optimizer, simcc.lr, simcc.weight_decay) == (
        "rtmpose_m", (96, 96), Optimizer.ADAMW, 4e-3, 0.05)
    assert (simcc.lr_schedule, simcc.epochs, simcc.schedule_epochs) == (LRSchedule.FLAT_COSINE, 10, 40)
    heatmap = pose_settings(tmp_path, tmp_path / "pose", get_args_parser().parse_args([]), epochs=88)
    assert (heatmap.arch, heatmap.optimizer, heatmap.lr, heatmap.weight_decay, heatmap.lr_schedule) == (
        "hrnet_tiny_s2", Optimizer.ADAM, 2e-3, 0.0, LRSchedule.STEP)
    assert heatmap.heatmap_size == (48, 48) and heatmap.lr_steps == (71,)
    given = get_args_parser().parse_args(["--pose-arch", "rtmpose_m", "--pose-lr", "1e-3"])
    assert pose_settings(tmp_path, tmp_path / "pose", given, epochs=1).lr == 1e-3


def test_pose_only_trains_and_scores_the_pose_model_alone(tmp_path, monkeypatch):
    from bench.e2e_synthetic import main

    out = tmp_path / "run"
    monkeypatch.setattr("bench.e2e_synthetic.report", lambda *a, **k: (_ for _ in ()).throw(AssertionError("report")))
    summary = main(get_args_parser().parse_args([
        "--out-dir", str(out), "--images", "20", "--image-size", "128", "--pose-arch", "rtmpose_tiny",
        "--pose-epochs", "1", "--pose-batch", "8", "--pose-only"]))
    assert (out / "pose" / "best.pth").is_file()
    assert json.loads((out / "pose_summary.json").read_text()) == summary
    assert summary["arch"] == "rtmpose_tiny" and 0.0 <= summary["AP"] <= 1.0 and 0.0 <= summary["AP_dark"] <= 1.0
    assert not (out / "detector").exists() and not (out / "clips").exists()


def test_a_detector_of_another_seed_is_trained_beside_an_earlier_run(tmp_path, monkeypatch):
    from bench.e2e_synthetic import main

    base, out = tmp_path / "run", tmp_path / "seed3"
    for name in ("dataset", "frames", "pose"):
        (base / name).mkdir(parents=True)
    (base / "pose" / "best.pth").write_bytes(b"weights")
    render_clips(base / "clips", 2, 4, (160, 128), seed=0)
    earlier = {**_summary({"data": "frames", "clips": {"train": 16}, "frames": {"train": 160}, "seed": 0}),
               "frames": 4, "video_size": [160, 128], "rescored": "2026-12-01"}
    (base / "summary.json").write_text(json.dumps(earlier))
    trained, tracked = [], []

    def train(dataset: Path, folder: Path, args):
        trained.append((dataset, folder, args.det_seed, args.det_epochs))
        return folder / "best.pt", 60.0, args.det_epochs

    def track(clips, pose, det, folder, device, options):
        tracked.append(([path.name for path, _ in clips], pose, det))
        return {"causal": {**_summary({})["tracking"]["none"], "idf1": 0.5}}

    monkeypatch.setattr("bench.e2e_synthetic.train_yolo", train)
    monkeypatch.setattr("bench.e2e_synthetic.detector_ap50", lambda weights, dataset, args: {
        "AP": 0.5, "AP50": 0.9 if dataset.name == "frames" else 0.7})
    monkeypatch.setattr("bench.e2e_synthetic.track_all", track)
    monkeypatch.setattr("bench.e2e_synthetic.report", lambda summary, args: summary)
    summary = main(get_args_parser().parse_args([
        "--out-dir", str(out), "--detector-beside", str(base), "--det-seed", "3", "--det-epochs", "2",
        "--videos", "2"]))
    assert trained == [(out / "frames", out / "detector", 3, 2)]
    assert (out / "frames").resolve() == (base / "frames").resolve() and (out / "pose" / "best.pth").is_file()
    assert tracked == [(["crossing_0.mp4", "crossing_1.mp4"], out / "pose" / "best.pth", out / "detector" / "best.pt")]
    assert sorted(p.name for p in (out / "clips").iterdir()) == sorted(p.name for p in (base / "clips").iterdir())
    det = summary["detector"]
    assert (det["seed"], det["epochs"], det["AP50"], det["AP50_images"], det["frames"]) == (3, 2, 0.9, 0.7,
                                                                                          {"train": 160})
    assert summary["tracking"]["causal"]["idf1"] == 0.5 and summary["pose"] == earlier["pose"]
    assert summary["training_seconds"] == 60.0 and "rescored" not in summary and summary["beside"] == str(base)
    assert json.loads((out / "summary.json").read_text()) == summary
    assert json.loads((base / "summary.json").read_text()) == earlier  # the earlier run is left as it was
    table = render_table(summary)
    assert "(the detector alone)" in table and f"those of `{base}`" in table
    with pytest.raises(ValueError, match="must not be the run"):
        main(get_args_parser().parse_args(["--out-dir", str(base), "--detector-beside", str(base)]))
    with pytest.raises(FileNotFoundError, match="no finished run"):
        main(get_args_parser().parse_args(["--out-dir", str(out), "--detector-beside", str(tmp_path / "none")]))
