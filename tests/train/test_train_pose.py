"""The training script: settings, a whole run, resume, held-out families, DDP (gloo), the CLI, and SimCC
(RTMPose) models with their own recipe, trained, reloaded, run and exported."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import app.cli.training as cli_train
from pose.checkpoint import CheckpointError, load_pose_checkpoint, load_pose_model, save_checkpoint
from pose.model import ARCHITECTURES, RTMPoseArchitecture, build_model
from pose.topdown import SimCCCodec
from train.augment import AugmentSettings
from train.engine import JointsMSELoss
from train.synthetic import DatasetSettings, write_dataset
from train.train_pose import (
    SIMCC_RECIPE,
    LRSchedule,
    Optimizer,
    PoseTrainSettings,
    build_optimizer,
    build_schedule,
    build_training_model,
    default_heatmap_size,
    get_args_parser,
    load_backbone_weights,
    settings_from_args,
    train,
)

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
SAMPLES = DATA / "samples" / "ap10k"
SMALL_CHECKPOINT = DATA / "reference" / "hrnet_small" / "hrnet_small_ap10k.pth"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root, DatasetSettings(num_images=48, width=96, height=96, seed=7, val_fraction=0.25,
                                        test_fraction=0.0, formats=("ap10k",)))
    return root


def _quick(root: Path, out: Path, **overrides) -> PoseTrainSettings:
    """hrnet_tiny at 64x64, two steps of 8 per epoch, evaluated every epoch."""
    values = dict(
        train_ann=root / "annotations" / "ap10k-train-split1.json",
        val_ann=root / "annotations" / "ap10k-val-split1.json",
        image_root=root / "data", output_dir=out, arch="hrnet_tiny", input_size=(64, 64), heatmap_size=(16, 16),
        epochs=2, batch_size=8, max_steps_per_epoch=2, warmup_iters=2, eval_interval=1, workers=0,
        progress=False, device="cpu", lr=2e-3,
    )
    return PoseTrainSettings(**{**values, **overrides})


def test_defaults_are_the_official_recipe() -> None:
    s = settings_from_args(get_args_parser().parse_args([]))
    assert s.train_ann == Path("data/ap10k/annotations/ap10k-train-split1.json")
    assert s.val_ann == Path("data/ap10k/annotations/ap10k-val-split1.json") and s.image_root == Path("data/ap10k/data")
    assert (s.arch, s.lr, s.epochs, s.lr_steps, s.lr_gamma) == ("hrnet_w32", 5e-4, 210, (170, 200), 0.1)
    assert (s.warmup_iters, s.warmup_ratio, s.batch_size) == (500, 0.001, 64)
    assert (s.input_size, s.heatmap_size, s.sigma) == ((256, 256), (64, 64), 2.0)
    assert (s.eval_interval, s.flip_test, s.mmpose_nms, s.clip_grad_norm, s.amp) == (10, True, True, None, False)
    assert (s.augment.flip_prob, s.augment.half_body_prob, s.augment.scale_factor, s.augment.rotation_factor) == (
        0.5, 0.3, 0.5, 40.0)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"arch": "vit_h"}, "arch"),
        ({"input_size": (256, 192), "heatmap_size": (64, 64)}, "aspect"),
        ({"epochs": 0}, "epochs"),
        ({"clip_grad_norm": 0.0}, "clip_grad_norm"),
        ({"weights": "hrnet_w32", "backbone_weights": Path("x.pth")}, "either"),
        ({"max_steps_per_epoch": 0}, "max_steps_per_epoch"),
        ({"simcc_sigma": (0.0, 5.66)}, "simcc_sigma"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
        ({"schedule_epochs": 100}, "schedule_epochs"),
        ({"optimizer": "sgd"}, "Optimizer"),
        ({"lr_schedule": "poly"}, "LRSchedule"),
    ],
)
def test_settings_are_validated(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PoseTrainSettings(train_ann=Path("a"), val_ann=Path("b"), image_root=Path("c"), **overrides)


def test_model_stride_must_fit_the_heatmap(tmp_path: Path) -> None:
    settings = _quick(tmp_path, tmp_path, input_size=(64, 64), heatmap_size=(32, 32))
    with pytest.raises(ValueError, match="output stride is 4"):
        build_training_model(settings)


def test_heatmap_size_follows_the_architecture_stride() -> None:
    assert default_heatmap_size((256, 192), "hrnet_w32") == (64, 48)
    assert default_heatmap_size((96, 96), "hrnet_tiny_s2") == (48, 48)
    assert default_heatmap_size((96, 96), "hrnet_tiny_s2", weights="hrnet_w32") == (24, 24)
    args = get_args_parser().parse_args(["--arch", "hrnet_tiny_s2", "--input-size", "96", "96"])
    assert settings_from_args(args).heatmap_size == (48, 48)
    args = get_args_parser().parse_args(["--arch", "hrnet_tiny_s2", "--input-size", "96", "96",
                                         "--heatmap-size", "24", "24"])
    assert settings_from_args(args).heatmap_size == (24, 24)  # given: kept (and refused by the model's stride)


def test_stride_two_model_trains_and_runs_at_its_size(synthetic: Path, tmp_path: Path) -> None:
    from pose.estimator import PoseEstimator, PoseSettings

    settings = _quick(synthetic, tmp_path, arch="hrnet_tiny_s2", heatmap_size=(32, 32), epochs=1)
    assert ARCHITECTURES["hrnet_tiny_s2"].output_stride == 2
    result = train(settings)
    estimator = PoseEstimator.from_weights(result.best_checkpoint, PoseSettings(flip_test=True, device="cpu"))
    assert estimator.settings.input_size == (64, 64)
    heatmaps = estimator.heatmaps_with_flip(np.zeros((2, 3, 64, 64), np.float32))
    assert heatmaps.shape == (2, 17, 32, 32)
    image = np.full((120, 160, 3), 90, np.uint8)
    poses = estimator(image, np.array([[20, 30, 100, 90]], np.float32))
    inside = poses.keypoints[0, :, :2]
    # The decoded keypoints land in the box (padded to the model's aspect ratio by 1.25).
    assert (inside[:, 0] >= 20 - 0.15 * 80).all() and (inside[:, 0] <= 100 + 0.15 * 80).all()
    assert (inside[:, 1] >= 30 - 0.4 * 80).all() and (inside[:, 1] <= 90 + 0.4 * 80).all()


def test_backbone_weights_load_by_name_and_shape(tmp_path: Path) -> None:
    source = build_model(ARCHITECTURES["hrnet_tiny"])
    state = {f"backbone.{k}": v for k, v in source.backbone.state_dict().items()}
    state["backbone.classifier.weight"] = torch.zeros(1000, 8)  # ImageNet heads are skipped
    torch.save({"state_dict": state}, tmp_path / "imagenet.pth")
    target = build_model(ARCHITECTURES["hrnet_tiny"])
    assert load_backbone_weights(target.backbone, tmp_path / "imagenet.pth") == len(source.backbone.state_dict())
    for key, value in source.backbone.state_dict().items():
        torch.testing.assert_close(target.backbone.state_dict()[key], value)
    torch.save({k: torch.zeros(1) for k in state}, tmp_path / "other.pth")  # names fit, shapes do not
    with pytest.raises(CheckpointError, match="only 0 of"):
        load_backbone_weights(target.backbone, tmp_path / "other.pth")


def _history(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_a_run_writes_official_checkpoints_log_plot_and_resumes_exactly(synthetic: Path, tmp_path: Path) -> None:
    straight = train(_quick(synthetic, tmp_path / "straight"))
    assert straight is not None
    model, arch = load_pose_model(straight.best_checkpoint)
    assert arch == ARCHITECTURES["hrnet_tiny"]
    assert set(torch.load(straight.best_checkpoint, weights_only=True)) == {"state_dict", "meta"}
    assert load_pose_checkpoint(straight.best_checkpoint)[2] == (64, 64)  # the size it trained at, for inference
    rows = _history(straight.log_csv)
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["AP"] != "" for r in rows)
    assert straight.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert {"AP", "AP50", "AP75", "APM", "APL", "AR", "per_family", "per_species"} <= set(metrics)
    assert 0.0 <= metrics["AP"] <= 1.0 and metrics["per_family"]

    # One epoch, then resume for the second: the same weights and log as the straight run.
    train(_quick(synthetic, tmp_path / "split", epochs=1))
    resumed = train(_quick(synthetic, tmp_path / "split", resume=tmp_path / "split" / "last.pth"))
    first = torch.load(straight.last_checkpoint, weights_only=True)
    second = torch.load(resumed.last_checkpoint, weights_only=True)
    assert second["epoch"] == 2 and second["scheduler"]["last_epoch"] == 4
    for key, value in first["model"].items():
        torch.testing.assert_close(second["model"][key], value, rtol=0, atol=0, msg=key)
    assert [r["loss"] for r in _history(resumed.log_csv)] == [r["loss"] for r in rows]


def test_channels_last_training_matches_the_standard_memory_order(synthetic: Path, tmp_path: Path) -> None:
    # One forward and backward pass from the same weights: the same loss and gradients up to rounding.
    settings = _quick(synthetic, tmp_path)
    images, targets = torch.randn(4, 3, 64, 64), torch.rand(4, 17, 16, 16)
    grads = []
    for memory_format in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        model, _ = build_training_model(settings)
        model.to(memory_format=memory_format)
        loss = JointsMSELoss()(model(images), targets, torch.ones(4, 17, 1))
        loss.backward()
        grads.append((float(loss.detach()), {n: p.grad for n, p in model.named_parameters()}))
    assert grads[1][0] == pytest.approx(grads[0][0], rel=1e-5)
    for name, grad in grads[0][1].items():
        torch.testing.assert_close(grads[1][1][name], grad, rtol=1e-3, atol=1e-6, msg=name)
    # A run in channels-last order (the default) writes its checkpoints in the standard order.
    result = train(_quick(synthetic, tmp_path / "nhwc", epochs=1))
    for path in (result.last_checkpoint, result.best_checkpoint):
        saved = torch.load(path, weights_only=True)
        weights = saved["model"] if "model" in saved else saved["state_dict"]
        assert all(v.is_contiguous() for v in weights.values())


def test_generalisation_protocol_evaluates_held_out_families(synthetic: Path, tmp_path: Path) -> None:
    result = train(_quick(synthetic, tmp_path, epochs=1, train_families=("Felidae", "Canidae"),
                          eval_families=("Bovidae", "Cervidae")))
    assert set(result.final_metrics["per_family"]) <= {"Bovidae", "Cervidae"}
    assert result.final_metrics["per_family"]
    gt = json.loads((synthetic / "annotations" / "ap10k-val-split1.json").read_text())
    families = {c["id"]: c["supercategory"] for c in gt["categories"]}
    held_out = [a for a in gt["annotations"] if families[a["category_id"]] in ("Bovidae", "Cervidae")]
    assert result.final_metrics["instances"] == len(held_out)


def test_amp_on_the_cpu_falls_back_to_float32(synthetic: Path, tmp_path: Path, caplog) -> None:
    with caplog.at_level("WARNING"):
        result = train(_quick(synthetic, tmp_path, epochs=1, max_steps_per_epoch=1, amp=True))
    assert "AMP needs CUDA" in caplog.text
    assert torch.load(result.last_checkpoint, weights_only=True)["scaler"] is None


def test_fine_tuning_an_official_layout_checkpoint_on_real_images(tmp_path: Path) -> None:
    settings = PoseTrainSettings(
        train_ann=SAMPLES / "test_ap10k.json", val_ann=SAMPLES / "test_ap10k.json", image_root=SAMPLES,
        output_dir=tmp_path, weights=str(SMALL_CHECKPOINT), epochs=1, batch_size=2, lr=1e-7, warmup_iters=1,
        workers=0, progress=False, device="cpu",
    )
    result = train(settings)
    reference, _ = load_pose_model(SMALL_CHECKPOINT)
    tuned, _ = load_pose_model(result.best_checkpoint)
    assert tuned.state_dict().keys() == reference.state_dict().keys()
    assert set(result.final_metrics["per_species"]) == {"antelope", "jaguar"}


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="animalpose")
    cli_train.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_trains_and_reports_bad_input(synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"
    argv = ["train", "pose", "--data-root", str(synthetic), "--output-dir", str(out), "--arch", "hrnet_tiny",
            "--input-size", "64", "64", "--heatmap-size", "16", "16", "--epochs", "1", "--batch-size", "8",
            "--max-steps-per-epoch", "1", "--workers", "0", "--no-progress", "--device", "cpu", "--no-augment"]
    assert _run_cli(argv) == 0
    assert (out / "best.pth").is_file() and (out / "log.csv").is_file() and (out / "training.png").is_file()
    capsys.readouterr()
    assert _run_cli(["train", "pose", "--data-root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err
    assert _run_cli(argv[:2] + ["--data-root", str(synthetic), "--train-families", "Dinosauria"]) == 2
    assert "Dinosauria" in capsys.readouterr().err


def test_two_process_gloo_ddp_run(synthetic: Path, tmp_path: Path) -> None:
    """``torchrun --nproc_per_node 2 -m train.train_pose`` on the CPU: rank 0 alone logs and saves."""
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "train.train_pose", "--data-root", str(synthetic), "--output-dir", str(out), "--arch", "hrnet_tiny",
        "--input-size", "64", "64", "--heatmap-size", "16", "16", "--epochs", "1", "--batch-size", "4",
        "--max-steps-per-epoch", "2", "--workers", "0", "--no-progress", "--device", "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("epoch 1/1: loss") == 1  # only rank 0 logs
    rows = _history(out / "log.csv")
    assert len(rows) == 1 and rows[0]["AP"] != ""
    checkpoint = torch.load(out / "last.pth", weights_only=True)
    assert not any(key.startswith("module.") for key in checkpoint["model"])
    load_pose_model(out / "best.pth")
    assert json.loads((out / "metrics.json").read_text())["instances"] > 0


# ---------------------------------------------------------------------------
# SimCC (RTMPose)
# ---------------------------------------------------------------------------

#: CSPNeXt + RTMCC at 64x64 with 0.3 M parameters: the tests' RTMPose.
TINY_RTMPOSE = RTMPoseArchitecture(input_size=(64, 64), widths=(16, 32, 64, 128), depths=(1, 1, 1, 1), stem_width=8,
                                   hidden_dims=32, attention_dims=16, final_kernel=3)


@pytest.fixture(scope="module")
def tiny_rtmpose(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny RTMPose saved as a checkpoint (its architecture is read off the keys)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rtmpose") / "tiny_rtmpose.pth"
    save_checkpoint(build_model(TINY_RTMPOSE), path)
    return path


def test_rtmpose_m_takes_its_configs_recipe_from_the_command_line(tiny_rtmpose: Path) -> None:
    s = settings_from_args(get_args_parser().parse_args(["--arch", "rtmpose_m"]))
    assert (s.arch, s.optimizer, s.lr, s.weight_decay, s.lr_schedule) == (
        "rtmpose_m", Optimizer.ADAMW, 4e-3, 0.05, LRSchedule.FLAT_COSINE)
    assert (s.warmup_iters, s.warmup_ratio, s.min_lr_ratio, s.simcc_sigma, s.input_size) == (
        1000, 1e-5, 0.05, (5.66, 5.66), (256, 256))
    assert {name: getattr(s, name) for name in SIMCC_RECIPE} == SIMCC_RECIPE
    given = settings_from_args(get_args_parser().parse_args(
        ["--arch", "rtmpose_m", "--lr", "1e-3", "--optimizer", "adam", "--lr-schedule", "step", "--simcc-sigma",
         "4.9", "5.66"]))
    assert (given.lr, given.optimizer, given.lr_schedule, given.weight_decay, given.simcc_sigma) == (
        1e-3, Optimizer.ADAM, LRSchedule.STEP, 0.05, (4.9, 5.66))
    # Starting from an RTMPose checkpoint (an official name or a file) takes the same recipe.
    for weights in ("rtmpose_m", str(tiny_rtmpose)):
        tuned = settings_from_args(get_args_parser().parse_args(["--weights", weights]))
        assert (tuned.optimizer, tuned.lr, tuned.lr_schedule) == (Optimizer.ADAMW, 4e-3, LRSchedule.FLAT_COSINE)
    heatmap = settings_from_args(get_args_parser().parse_args(["--weights", str(SMALL_CHECKPOINT)]))
    assert (heatmap.optimizer, heatmap.lr, heatmap.weight_decay) == (Optimizer.ADAM, 5e-4, 0.0)


def test_rtmpose_m_is_built_for_the_input_size(tmp_path: Path) -> None:
    model, arch = build_training_model(_quick(tmp_path, tmp_path, arch="rtmpose_m"))
    assert arch == RTMPoseArchitecture(input_size=(64, 64)) and model.codec == SimCCCodec((64, 64))
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 17, 256)
    with pytest.raises(ValueError, match="multiples of 32"):
        build_training_model(_quick(tmp_path, tmp_path, arch="rtmpose_m", input_size=(80, 80),
                                    heatmap_size=(20, 20)))


def test_rtmpose_checkpoint_must_fit_the_input_size(tiny_rtmpose: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="built for 64x64"):
        build_training_model(_quick(tmp_path, tmp_path, weights=str(tiny_rtmpose), input_size=(96, 96),
                                    heatmap_size=(24, 24)))


def test_adamw_spares_biases_and_norm_layers_from_weight_decay(tmp_path: Path) -> None:
    model = build_model(TINY_RTMPOSE)
    optimizer = build_optimizer(model, _quick(tmp_path, tmp_path, optimizer=Optimizer.ADAMW, weight_decay=0.05))
    assert isinstance(optimizer, torch.optim.AdamW)
    decayed, spared = optimizer.param_groups
    assert (decayed["weight_decay"], spared["weight_decay"]) == (0.05, 0.0)
    names = {id(p): n for n, p in model.named_parameters()}
    spared_names = {names[id(p)] for p in spared["params"]}
    norms = {f"{m}.{p}" for m, module in model.named_modules() if isinstance(module, torch.nn.BatchNorm2d)
             for p in ("weight", "bias")}
    biases = {n for n in names.values() if n.endswith(".bias")}
    assert norms and spared_names == norms | biases
    assert "head.gau.gamma" in {names[id(p)] for p in decayed["params"]}
    assert len(decayed["params"]) + len(spared["params"]) == len(names)
    adam = build_optimizer(model, _quick(tmp_path, tmp_path))
    assert type(adam) is torch.optim.Adam and len(adam.param_groups) == 1


def test_the_schedule_spans_schedule_epochs(tmp_path: Path) -> None:
    settings = _quick(tmp_path, tmp_path, lr_schedule=LRSchedule.FLAT_COSINE, epochs=2, schedule_epochs=10,
                      warmup_iters=3, warmup_ratio=0.01, min_lr_ratio=0.1)
    schedule = build_schedule(settings, iters_per_epoch=4)
    assert (schedule.epochs, schedule.flat_epochs, schedule.min_ratio) == (10, 5, 0.1)
    assert (schedule.warmup_iters, schedule.warmup_ratio) == (3, 0.01)
    assert build_schedule(_quick(tmp_path, tmp_path), 4).milestones == (170, 200)


def test_a_simcc_model_trains_reloads_runs_and_exports(synthetic: Path, tiny_rtmpose: Path, tmp_path: Path) -> None:
    """RTMPose's recipe end to end: SimCC targets and KL loss (the loss falls), evaluation by SimCC decoding,
    best.pth in the official 1.x key layout back into PoseEstimator, and ONNX export of the trained model."""
    from pose.estimator import PoseEstimator, PoseSettings
    from pose.export import export_onnx, onnx_session, run_onnx

    settings = _quick(synthetic, tmp_path / "run", weights=str(tiny_rtmpose), epochs=6, max_steps_per_epoch=4,
                      optimizer=Optimizer.ADAMW, lr=4e-3, weight_decay=0.05, lr_schedule=LRSchedule.FLAT_COSINE,
                      warmup_iters=2, warmup_ratio=1e-3, augment=AugmentSettings.disabled(), eval_interval=3)
    result = train(settings)
    rows = _history(result.log_csv)
    losses = [float(r["loss"]) for r in rows]
    assert len(rows) == 6 and [r["AP"] != "" for r in rows] == [False, False, True, False, False, True]
    assert losses[-1] < 0.9 * losses[0], losses
    assert 0.0 <= result.final_metrics["AP"] <= 1.0 and result.final_metrics["per_family"]
    saved = torch.load(result.best_checkpoint, weights_only=True)
    assert set(saved) == {"state_dict", "meta"} and any(k.startswith("head.cls_x") for k in saved["state_dict"])
    model, arch = load_pose_model(result.best_checkpoint)
    assert arch == TINY_RTMPOSE

    estimator = PoseEstimator.from_weights(result.best_checkpoint, PoseSettings(device="cpu", flush_denormal=False))
    assert estimator.settings.input_size == (64, 64)
    poses = estimator(np.full((120, 160, 3), 90, np.uint8), np.array([[20, 30, 100, 90]], np.float32))
    assert poses.keypoints.shape == (1, 17, 3) and np.isfinite(poses.keypoints).all()

    crops = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    onnx_path = export_onnx(model, tmp_path / "tiny_rtmpose.onnx", input_size=(64, 64))
    exported = run_onnx(onnx_session(onnx_path, threads=1), crops)
    with torch.no_grad():
        expected = model(torch.from_numpy(crops)).numpy()
    assert exported.shape == expected.shape == (2, 17, 256)
    np.testing.assert_allclose(exported, expected, rtol=0, atol=1e-4 * float(np.ptp(expected)))


def test_cli_trains_a_simcc_checkpoint_and_reports_a_bad_input_size(synthetic: Path, tiny_rtmpose: Path,
                                                                     tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    argv = ["train", "pose", "--data-root", str(synthetic), "--output-dir", str(out), "--weights", str(tiny_rtmpose),
            "--input-size", "64", "64", "--epochs", "1", "--batch-size", "8", "--max-steps-per-epoch", "1",
            "--workers", "0", "--no-progress", "--device", "cpu", "--no-augment"]
    assert _run_cli(argv) == 0
    assert load_pose_model(out / "best.pth")[1] == TINY_RTMPOSE
    saved = torch.load(out / "last.pth", weights_only=True)["settings"]
    assert (saved["optimizer"], saved["lr"], saved["lr_schedule"]) == ("adamw", 4e-3, "flat-cosine")
    capsys.readouterr()
    assert _run_cli(["train", "pose", "--data-root", str(synthetic), "--arch", "rtmpose_m", "--input-size", "80",
                     "80", "--output-dir", str(tmp_path / "bad"), "--workers", "0", "--device", "cpu"]) == 2
    assert "multiples of 32" in capsys.readouterr().err


def test_rtmpose_backbone_weights_come_from_a_whole_rtmpose_checkpoint(tmp_path: Path) -> None:
    """As the config starts from cspnext-m_udp-aic-coco_210e-256x192: another input size's RTMPose file gives
    its ``backbone.*`` tensors (its head, of other shapes, is left)."""
    from dataclasses import replace

    source = build_model(replace(TINY_RTMPOSE, input_size=(64, 96)))
    save_checkpoint(source, tmp_path / "coco_256x192_like.pth")
    target = build_model(TINY_RTMPOSE)
    assert load_backbone_weights(target.backbone, tmp_path / "coco_256x192_like.pth") == len(
        target.backbone.state_dict())
    for key, value in source.backbone.state_dict().items():
        torch.testing.assert_close(target.backbone.state_dict()[key], value, rtol=0, atol=0)
