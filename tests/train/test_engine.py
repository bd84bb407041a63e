"""Losses (heatmap MSE; SimCC KL against mmpose 1.3.2's values), learning-rate schedules, train_one_epoch and
evaluate (a small HRNet learns synthetic animals; a SimCC model is evaluated as it runs at inference)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from pose.checkpoint import load_pose_model
from pose.estimator import Backend, PoseEstimator, PoseSettings
from pose.model import ARCHITECTURES, RTMPoseArchitecture, build_model
from pose.topdown import SimCCCodec
from train.augment import AugmentSettings
from train.dataset import AP10KDataset, ap10k_paths
from train.engine import (
    JointsMSELoss,
    KLDiscretLoss,
    WarmupFlatCosine,
    WarmupMultiStep,
    evaluate,
    predict,
    train_one_epoch,
)
from train.synthetic import DatasetSettings, write_dataset
from train.targets import SimCCTargets

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLES = DATA / "samples" / "ap10k"
SMALL_CHECKPOINT = DATA / "reference" / "hrnet_small" / "hrnet_small_ap10k.pth"
SIMCC_REFERENCE = DATA / "reference" / "simcc_training" / "simcc_reference.npz"
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mmpose_loss(output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """mmpose 0.x JointsMSELoss(use_target_weight=True), joint by joint."""
    n, k = output.shape[:2]
    pred, gt = output.reshape(n, k, -1), target.reshape(n, k, -1)
    total = sum(nn.functional.mse_loss(pred[:, j] * weight[:, j, None], gt[:, j] * weight[:, j, None])
                for j in range(k))
    return total / k


def test_joints_mse_matches_the_per_joint_definition() -> None:
    generator = torch.Generator().manual_seed(0)
    output, target = torch.rand(3, 17, 8, 8, generator=generator), torch.rand(3, 17, 8, 8, generator=generator)
    weight = (torch.rand(3, 17, generator=generator) > 0.3).float()
    loss = JointsMSELoss()(output, target, weight)
    torch.testing.assert_close(loss, _mmpose_loss(output, target, weight))
    assert JointsMSELoss()(output, target, torch.zeros(3, 17)) == 0
    torch.testing.assert_close(JointsMSELoss()(output, target, weight[..., None]), loss)


def test_joints_mse_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        JointsMSELoss()(torch.zeros(1, 17, 8, 8), torch.zeros(1, 17, 4, 4), torch.ones(1, 17))


def test_kl_discret_loss_equals_mmposes_value_and_gradient() -> None:
    """KLDiscretLoss(beta=10, label_softmax=True, use_target_weight=True), as the RTMPose config, on the
    logits, targets and weights mmpose 1.3.2 was given (tests/data/reference/simcc_training)."""
    reference = np.load(SIMCC_REFERENCE)
    logits = torch.from_numpy(np.concatenate([reference["loss_logits_x"], reference["loss_logits_y"]], -1))
    logits.requires_grad_()
    target = torch.from_numpy(np.concatenate([reference["loss_target_x"], reference["loss_target_y"]], -1))
    loss = KLDiscretLoss(24)(logits, target, torch.from_numpy(reference["loss_weights"]))
    loss.backward()
    assert loss.item() == pytest.approx(float(reference["loss"]), rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(logits.grad[..., :24].numpy(), reference["loss_grad_x"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(logits.grad[..., 24:].numpy(), reference["loss_grad_y"], rtol=0, atol=1e-6)
    # Weighted per keypoint, summed over the batch (not averaged), divided by K.
    weights = torch.from_numpy(reference["loss_weights"])
    assert KLDiscretLoss(24)(logits, target, torch.zeros_like(weights)) == 0
    doubled = KLDiscretLoss(24)(torch.cat([logits, logits]), torch.cat([target, target]), torch.cat([weights] * 2))
    assert doubled.item() == pytest.approx(2 * loss.item(), rel=1e-6)
    assert KLDiscretLoss(24)(logits, target, weights[..., None]) == loss


@pytest.mark.parametrize(
    ("make", "match"),
    [(lambda: KLDiscretLoss(0), "bins_x"),
     (lambda: KLDiscretLoss(24)(torch.zeros(1, 2, 44), torch.zeros(1, 2, 40), torch.ones(1, 2)), "must both be"),
     (lambda: KLDiscretLoss(44)(torch.zeros(1, 2, 44), torch.zeros(1, 2, 44), torch.ones(1, 2)), "must both be")],
)
def test_kl_discret_loss_rejects_bad_shapes(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    ("iteration", "factor"),
    [(0, 1e-5), (500, 0.500005), (999, 1 - 0.001 * (1 - 1e-5)), (1000, 1.0), (1049, 1.0), (1050, 1.0),
     (1050 + 525, 0.525), (1050 + 1050, 0.05), (3000, 0.05)],
)
def test_warmup_flat_cosine_factor(iteration: int, factor: float) -> None:
    """RTMPose's schedule for 210 epochs of 10 iterations: flat to epoch 105, cosine to 0.05 at epoch 210."""
    schedule = WarmupFlatCosine(iters_per_epoch=10, epochs=210, flat_epochs=105)
    assert schedule(iteration) == pytest.approx(factor)


@pytest.mark.parametrize("field", [{"iters_per_epoch": 0}, {"flat_epochs": 211}, {"min_ratio": 1.5},
                                   {"warmup_ratio": 0.0}])
def test_warmup_flat_cosine_validates(field: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(field))):
        WarmupFlatCosine(**{"iters_per_epoch": 10, "epochs": 210, "flat_epochs": 105, **field})


@pytest.mark.parametrize(
    ("iteration", "factor"),
    [(0, 0.001), (250, 0.5005), (499, 1 - (1 / 500) * 0.999), (500, 1.0), (169 * 10 + 9, 1.0), (1700, 0.1),
     (1999, 0.1), (2000, 0.01), (2099, 0.01)],
)
def test_warmup_multistep_factor(iteration: int, factor: float) -> None:
    schedule = WarmupMultiStep(iters_per_epoch=10, milestones=(170, 200), gamma=0.1, warmup_iters=500,
                               warmup_ratio=0.001)
    assert schedule(iteration) == pytest.approx(factor)


def test_warmup_multistep_in_lambda_lr_survives_a_state_dict_round_trip() -> None:
    def make():
        optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=5e-4)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupMultiStep(4, (2,), warmup_iters=3))

    optimizer, scheduler = make()
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(5e-7) and lrs[3] == pytest.approx(5e-4) and lrs[8] == pytest.approx(5e-5)
    other_optimizer, other = make()
    other.load_state_dict(scheduler.state_dict())
    other_optimizer.load_state_dict(optimizer.state_dict())
    assert other_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize("field", [{"iters_per_epoch": 0}, {"milestones": (200, 170)}, {"warmup_ratio": 0.0}])
def test_warmup_multistep_validates(field: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(field))):
        WarmupMultiStep(**{"iters_per_epoch": 10, **field})


class _Nan(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float("nan")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1].repeat(1, 17, 1, 1)[:, :, ::4, ::4] * self.scale


def test_train_one_epoch_stops_on_a_nan_loss() -> None:
    model = _Nan()
    batch = (torch.zeros(2, 3, 32, 32), torch.zeros(2, 17, 8, 8), torch.ones(2, 17), {})
    with pytest.raises(FloatingPointError, match="epoch 3"):
        train_one_epoch(model, torch.optim.Adam(model.parameters()), [batch], CPU, 3, progress=False)


@pytest.mark.parametrize(("clip", "moves"), [(None, True), (1e-12, False)])
def test_gradient_clipping(clip: float | None, moves: bool) -> None:
    torch.manual_seed(0)
    model = build_model(ARCHITECTURES["hrnet_tiny"])
    before = [p.detach().clone() for p in model.parameters()]
    batch = (torch.randn(2, 3, 64, 64), torch.rand(2, 17, 16, 16), torch.ones(2, 17), {})
    stats = train_one_epoch(model, torch.optim.Adam(model.parameters(), lr=1e-3), [batch], CPU, 1,
                            clip_grad_norm=clip, progress=False)
    assert stats.steps == 1 and stats.samples == 2 and np.isfinite(stats.loss)
    change = max(float((p.detach() - b).abs().max()) for p, b in zip(model.parameters(), before))
    # Adam moves every weight by about lr; a gradient clipped to ~0 leaves them where they were.
    assert (change > 5e-4) if moves else (change < 1e-5)


def test_predictions_equal_the_pose_estimator_on_real_images() -> None:
    """Dataset crops + flip test + decoding give the test-time path's keypoints exactly."""
    model, _ = load_pose_model(SMALL_CHECKPOINT)
    dataset = AP10KDataset(SAMPLES / "test_ap10k.json", SAMPLES, train=False)
    records = predict(model, DataLoader(dataset, batch_size=2), CPU, progress=False)
    estimator = PoseEstimator(model, PoseSettings(backend=Backend.TORCH))
    gt = json.loads((SAMPLES / "test_ap10k.json").read_text())
    for record in records:
        annotation = next(a for a in gt["annotations"] if a["image_id"] == record["image_id"])
        image = dataset.read_image(record["index"])
        expected = estimator.estimate_xywh(image, np.array([annotation["bbox"]], np.float64)).keypoints[0]
        np.testing.assert_allclose(np.reshape(record["keypoints"], (17, 3)), expected, atol=1e-4)
        assert record["category_id"] == annotation["category_id"]
    result = evaluate(model, DataLoader(dataset, batch_size=2), CPU, dataset.ground_truth(), progress=False)
    assert 0.0 <= result.metrics.AP <= 1.0 and len(result.predictions) == 2


TINY_RTMPOSE = RTMPoseArchitecture(input_size=(64, 64), widths=(16, 32, 64, 128), depths=(1, 1, 1, 1), stem_width=8,
                                   hidden_dims=32, attention_dims=16, final_kernel=3)


def test_simcc_predictions_equal_the_pose_estimator_on_real_images() -> None:
    """A SimCC model's evaluation (1.x crops of ground-truth boxes, SimCC flip test and decoding) gives the
    keypoints of its inference path."""
    torch.manual_seed(0)
    model = build_model(TINY_RTMPOSE).eval()
    with torch.no_grad():  # logits far apart, so that no argmax hangs on rounding
        model.head.cls_x.weight.mul_(300)
        model.head.cls_y.weight.mul_(300)
    dataset = AP10KDataset(SAMPLES / "test_ap10k.json", SAMPLES, train=False, targets=SimCCTargets(model.codec))
    records = predict(model, DataLoader(dataset, batch_size=2), CPU, progress=False)
    estimator = PoseEstimator(model, PoseSettings(input_size=(64, 64), backend=Backend.TORCH, device="cpu",
                                                  flush_denormal=False))
    gt = json.loads((SAMPLES / "test_ap10k.json").read_text())
    for record in records:
        annotation = next(a for a in gt["annotations"] if a["image_id"] == record["image_id"])
        image = dataset.read_image(record["index"])
        expected = estimator.estimate_xywh(image, np.array([annotation["bbox"]], np.float64), clean=True)
        np.testing.assert_allclose(np.reshape(record["keypoints"], (17, 3)), expected.keypoints[0], atol=1e-4)
        # The record's scale is in units of 200 pixels whichever codec, for the OKS-NMS areas.
        np.testing.assert_allclose(record["scale"], dataset.scales[record["index"]] / 200, rtol=1e-6)
    assert isinstance(model.codec, SimCCCodec)
    result = evaluate(model, DataLoader(dataset, batch_size=2), CPU, dataset.ground_truth(), progress=False)
    assert 0.0 <= result.metrics.AP <= 1.0 and len(result.predictions) == 2


# ---------------------------------------------------------------------------
# A small HRNet learns the synthetic quadrupeds
# ---------------------------------------------------------------------------

INPUT, HEATMAP = (96, 96), (24, 24)
STEPS, BATCH, LR = 300, 16, 5e-3


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quadrupeds")
    write_dataset(root, DatasetSettings(num_images=360, width=128, height=128, seed=11, val_fraction=0.2,
                                        test_fraction=0.0, formats=("ap10k",)))
    return root


def test_a_few_hundred_steps_lower_the_loss_and_raise_ap(synthetic: Path) -> None:
    torch.manual_seed(0)
    train_ann, images = ap10k_paths(synthetic, "train")
    val_ann, _ = ap10k_paths(synthetic, "val")
    # Flips only: scale/rotation/shift augmentation slows learning too much for 300 steps.
    augment = AugmentSettings(scale_factor=0.0, rotation_factor=0.0, half_body_prob=0.0, shift_prob=0.0)
    train_set = AP10KDataset(train_ann, images, INPUT, HEATMAP, train=True, augment=augment)
    val_set = AP10KDataset(val_ann, images, INPUT, HEATMAP, train=False)
    model = build_model(ARCHITECTURES["hrnet_tiny"])
    val_loader = DataLoader(val_set, batch_size=64)
    untrained = evaluate(model, val_loader, CPU, val_set.ground_truth(), progress=False).metrics

    loader = DataLoader(train_set, batch_size=BATCH, shuffle=True, drop_last=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupMultiStep(len(loader), (1000,), warmup_iters=20))
    losses, steps, epoch, start = [], 0, 0, time.perf_counter()
    while steps < STEPS:
        train_set.set_epoch(epoch)
        stats = train_one_epoch(model, optimizer, loader, CPU, epoch, scheduler=scheduler,
                                max_steps=STEPS - steps, progress=False)
        losses.append(stats.loss)
        steps, epoch = steps + stats.steps, epoch + 1
    seconds = time.perf_counter() - start
    trained = evaluate(model, val_loader, CPU, val_set.ground_truth(), progress=False).metrics
    print(f"\n{STEPS} steps of {BATCH} in {seconds:.1f} s ({STEPS * BATCH / seconds:.0f} img/s); "
          f"loss {losses[0]:.5f} -> {losses[-1]:.5f}; AP {untrained.AP:.3f} -> {trained.AP:.3f} "
          f"(AP50 {trained.AP50:.3f})")
    assert losses[-1] < 0.85 * losses[0]
    assert untrained.AP < 0.01
    # Measured on one thread, torch seeds 0-3: loss 0.0148 -> 0.0108-0.0115, AP 0.000 -> 0.125-0.207
    # (AP50 0.40-0.52), 300 steps in 38-53 s on a busy 2-core machine.
    assert trained.AP > 0.06 and trained.AP50 > 0.2
