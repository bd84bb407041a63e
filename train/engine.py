"""The training loop's parts, in the manner of torchvision's ``references/detection/engine.py``.

* :class:`JointsMSELoss`: mmpose's heatmap MSE with target weights.
* :class:`KLDiscretLoss`: mmpose 1.x's SimCC loss (RTMPose), KL divergence to label-softened targets.
* :class:`WarmupMultiStep`: the per-iteration learning-rate factor (linear warm-up, step decay
  by epoch) for ``torch.optim.lr_scheduler.LambdaLR``; :class:`WarmupFlatCosine` the same for
  RTMPose's schedule (linear warm-up, flat, then cosine to a floor over the second half).
* :func:`train_one_epoch`: one pass over the loader.
* :func:`predict` / :func:`evaluate`: flip-tested keypoints on ground-truth boxes, merged and
  decoded by the model's codec (heatmaps or SimCC, :mod:`pose.topdown`), COCO keypoint AP
  through :func:`train.metrics.evaluate_keypoints`.
* Distributed helpers: :func:`init_distributed`, :func:`is_main_process`, :func:`reduce_mean`.

Losses and learning rates are per process; under DDP each process sees its share of a
batch and the logged loss is the mean over processes.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from pose.codec import PostProcess
from pose.topdown import HeatmapCodec, PreparedBatch, SimCCCodec, codec_of
from pose.transforms import PIXEL_STD
from train.metrics import GroundTruth, KeypointMetrics, evaluate_keypoints

__all__ = [
    "DistributedContext",
    "EpochStats",
    "Evaluation",
    "JointsMSELoss",
    "KLDiscretLoss",
    "WarmupFlatCosine",
    "WarmupMultiStep",
    "evaluate",
    "init_distributed",
    "is_main_process",
    "predict",
    "reduce_mean",
    "train_one_epoch",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Loss and learning rate
# ---------------------------------------------------------------------------


class JointsMSELoss(nn.Module):
    """Mean squared heatmap error, each joint's map multiplied by its target weight.

    mmpose 0.x's ``JointsMSELoss(use_target_weight=True)``: the MSE of every joint's
    (N, H*W) maps, averaged over the K joints, which is the mean over all N*K*H*W values.
    """

    def __init__(self, use_target_weight: bool = True, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.use_target_weight = use_target_weight
        self.loss_weight = loss_weight

    def forward(self, output: Tensor, target: Tensor, target_weight: Tensor) -> Tensor:
        """``output``, ``target``: (N, K, H, W); ``target_weight``: (N, K) or (N, K, 1)."""
        if output.shape != target.shape:
            raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} differ in shape")
        difference = output - target
        if self.use_target_weight:
            difference = difference * target_weight.reshape(*target_weight.shape[:2], 1, 1)
        return difference.pow(2).mean() * self.loss_weight


class KLDiscretLoss(nn.Module):
    """mmpose 1.x's ``KLDiscretLoss`` on SimCC logits, as RTMPose's configs set it up.

    For each axis and each (instance, keypoint): the mean over the bins of
    ``KL(softmax(label_beta * target) || softmax(beta * logits))`` (the target softened when
    ``label_softmax``, else taken as it is), times the keypoint's target weight; summed over
    instances, keypoints and both axes, then divided by K. So the loss grows with the batch
    (mmpose sums over it).

    Args:
        bins_x: x bins ``Wx``; the last axis of the outputs and targets is ``Wx + Wy``
            (:func:`pose.simcc.split_simcc`).
        beta: temperature of the logits (RTMPose: 10).
        label_softmax: soften the targets with a softmax (RTMPose: yes).
        label_beta: temperature of that softmax (mmpose's default 10).
        use_target_weight: weight each keypoint by its target weight (RTMPose: yes).
    """

    def __init__(self, bins_x: int, beta: float = 10.0, label_softmax: bool = True, label_beta: float = 10.0,
                 use_target_weight: bool = True) -> None:
        super().__init__()
        if bins_x < 1:
            raise ValueError(f"bins_x must be positive, got {bins_x}")
        self.bins_x = int(bins_x)
        self.beta = float(beta)
        self.label_softmax = label_softmax
        self.label_beta = float(label_beta)
        self.use_target_weight = use_target_weight

    def _axis(self, logits: Tensor, target: Tensor) -> Tensor:
        """(N, K) mean KL divergence over the bins of one axis."""
        log_p = F.log_softmax(logits * self.beta, dim=-1)
        labels = F.softmax(target * self.label_beta, dim=-1) if self.label_softmax else target
        return F.kl_div(log_p, labels, reduction="none").mean(dim=-1)

    def forward(self, output: Tensor, target: Tensor, target_weight: Tensor) -> Tensor:
        """``output``, ``target``: (N, K, Wx + Wy); ``target_weight``: (N, K) or (N, K, 1)."""
        if output.shape != target.shape or output.ndim != 3 or not 0 < self.bins_x < output.shape[-1]:
            raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} must both be "
                             f"(N, K, {self.bins_x} + Wy)")
        per_keypoint = (self._axis(output[..., : self.bins_x], target[..., : self.bins_x])
                        + self._axis(output[..., self.bins_x :], target[..., self.bins_x :]))
        if self.use_target_weight:
            per_keypoint = per_keypoint * target_weight.reshape(per_keypoint.shape)
        return per_keypoint.sum() / output.shape[1]


@dataclass(frozen=True)
class WarmupMultiStep:
    """Learning-rate factor of iteration ``i`` (0-based): mmcv's ``step`` policy with linear warm-up.

    ``gamma ** (number of milestones <= epoch)`` with ``epoch = i // iters_per_epoch``, times
    ``1 - (1 - i / warmup_iters) * (1 - warmup_ratio)`` during the first ``warmup_iters``
    iterations. Use with ``LambdaLR`` stepped once per iteration.
    """

    iters_per_epoch: int
    milestones: tuple[int, ...] = (170, 200)
    gamma: float = 0.1
    warmup_iters: int = 500
    warmup_ratio: float = 0.001

    def __post_init__(self) -> None:
        if self.iters_per_epoch < 1:
            raise ValueError(f"iters_per_epoch must be >= 1, got {self.iters_per_epoch}")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        if self.warmup_iters < 0 or not 0 < self.warmup_ratio <= 1:
            raise ValueError(
                f"warmup_iters must be >= 0 and warmup_ratio in (0, 1], got {self.warmup_iters}, {self.warmup_ratio}"
            )

    def __call__(self, iteration: int) -> float:
        epoch = iteration // self.iters_per_epoch
        factor = self.gamma ** bisect.bisect_right(self.milestones, epoch)
        if iteration < self.warmup_iters:
            factor *= 1 - (1 - iteration / self.warmup_iters) * (1 - self.warmup_ratio)
        return factor


@dataclass(frozen=True)
class WarmupFlatCosine:
    """Learning-rate factor of iteration ``i`` (0-based): RTMPose's schedule (mmengine ``LinearLR`` then
    ``CosineAnnealingLR`` converted to iterations).

    1 until epoch ``flat_epochs``, then ``min_ratio + (1 - min_ratio) * (1 + cos(pi t / T)) / 2`` with
    ``t`` the iterations since then and ``T`` those of the remaining ``epochs - flat_epochs`` epochs
    (``min_ratio`` after); times ``1 - (1 - i / warmup_iters) * (1 - warmup_ratio)`` during the first
    ``warmup_iters`` iterations. The RTMPose configs: flat for half the epochs, floor 0.05, warm-up
    1000 iterations from 1e-5. Use with ``LambdaLR`` stepped once per iteration.
    """

    iters_per_epoch: int
    epochs: int
    flat_epochs: int
    min_ratio: float = 0.05
    warmup_iters: int = 1000
    warmup_ratio: float = 1e-5

    def __post_init__(self) -> None:
        if self.iters_per_epoch < 1 or self.epochs < 1:
            raise ValueError(f"iters_per_epoch and epochs must be >= 1, got {self.iters_per_epoch}, {self.epochs}")
        if not 0 <= self.flat_epochs <= self.epochs:
            raise ValueError(f"flat_epochs must be in [0, epochs={self.epochs}], got {self.flat_epochs}")
        if not 0 <= self.min_ratio <= 1:
            raise ValueError(f"min_ratio must be in [0, 1], got {self.min_ratio}")
        if self.warmup_iters < 0 or not 0 < self.warmup_ratio <= 1:
            raise ValueError(
                f"warmup_iters must be >= 0 and warmup_ratio in (0, 1], got {self.warmup_iters}, {self.warmup_ratio}"
            )

    def __call__(self, iteration: int) -> float:
        start = self.flat_epochs * self.iters_per_epoch
        length = (self.epochs - self.flat_epochs) * self.iters_per_epoch
        factor = 1.0
        if iteration >= start and length > 0:
            progress = min(iteration - start, length) / length
            factor = self.min_ratio + (1 - self.min_ratio) * (1 + math.cos(math.pi * progress)) / 2
        if iteration < self.warmup_iters:
            factor *= 1 - (1 - iteration / self.warmup_iters) * (1 - self.warmup_ratio)
        return factor


# ---------------------------------------------------------------------------
# Distributed helpers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DistributedContext:
    """Where this process runs: ``rank`` of ``world_size`` on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    The backend is NCCL on CUDA and gloo on the CPU; each process takes ``cuda:LOCAL_RANK``.
    Without ``torchrun`` (no ``WORLD_SIZE`` > 1) nothing is initialised.
    """
    wanted = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; use --device cpu")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(device=torch.device(wanted))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if wanted.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch_device.type == "cuda" else "gloo")
    return DistributedContext(rank, world_size, local_rank, torch_device)


def is_main_process() -> bool:
    """True outside distributed runs and on rank 0."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def reduce_mean(value: float, device: torch.device) -> float:
    """Mean of ``value`` over all processes (the value itself outside distributed runs)."""
    if not (dist.is_available() and dist.is_initialized()):
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / dist.get_world_size()


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochStats:
    """What one epoch did: mean ``loss``, last ``lr``, ``steps`` taken, ``samples`` seen by all
    processes, wall ``seconds`` and ``images_per_second`` (all processes together)."""

    loss: float
    lr: float
    steps: int
    samples: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable,
    device: torch.device,
    epoch: int,
    scaler: torch.amp.GradScaler | None = None,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    criterion: nn.Module | None = None,
    clip_grad_norm: float | None = None,
    max_steps: int | None = None,
    progress: bool = True,
) -> EpochStats:
    """One pass over ``loader`` of ``(images, targets, target_weights, meta)`` batches.

    ``scheduler`` is stepped after every iteration (see :class:`WarmupMultiStep`); with a
    ``scaler`` the forward pass runs under autocast (AMP). ``max_steps`` cuts the epoch short.

    Raises:
        FloatingPointError: the loss became NaN or infinite.
    """
    model.train()
    criterion = criterion or JointsMSELoss()
    total, steps, samples = 0.0, 0, 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", disable=not (progress and is_main_process()),
               total=_limited_length(loader, max_steps), leave=False)
    for images, targets, weights, _ in bar:
        if max_steps is not None and steps >= max_steps:
            break
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        weights = weights.to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=scaler is not None):
            loss = criterion(model(images).float(), targets, weights)
        value = float(loss.item())
        if not np.isfinite(value):
            raise FloatingPointError(
                f"loss is {value} at epoch {epoch}, step {steps}; lower the learning rate or set a gradient clip"
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total, steps, samples = total + value, steps + 1, samples + len(images)
        bar.set_postfix(loss=f"{value:.6f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    seconds = time.perf_counter() - start
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    return EpochStats(
        loss=reduce_mean(total / max(steps, 1), device),
        lr=float(optimizer.param_groups[0]["lr"]),
        steps=steps,
        samples=samples * world,
        seconds=seconds,
    )


def _limited_length(loader: Iterable, max_steps: int | None) -> int | None:
    try:
        length = len(loader)  # type: ignore[arg-type]
    except TypeError:
        return max_steps
    return length if max_steps is None else min(length, max_steps)


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


@torch.inference_mode()
def predict(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    flip_test: bool = True,
    post_process: PostProcess = PostProcess.DEFAULT,
    progress: bool = True,
) -> list[dict]:
    """COCO keypoint results for every instance of ``loader`` (test-time crops of GT boxes).

    The model's codec (:func:`pose.topdown.codec_of`) merges the flip test and decodes: heatmaps with
    ``post_process``, SimCC logits by their argmax (``post_process`` does not apply). The loader's
    ``meta`` ``center`` and ``scale`` are in that codec's unit.

    Each record has ``image_id``, ``category_id``, ``keypoints`` (17 x (x, y, confidence)
    in image pixels, flat), ``score`` (mean confidence), ``bbox_score``, ``center``,
    ``scale`` (units of 200 pixels, as mmpose 0.x's OKS-NMS takes it, for either codec)
    and the dataset ``index``, in loader order.
    """
    model.eval()
    codec = codec_of(getattr(model, "module", model))
    if isinstance(codec, HeatmapCodec):
        codec = replace(codec, post_process=post_process)
    to_200 = 1 / PIXEL_STD if isinstance(codec, SimCCCodec) else 1.0
    records: list[dict] = []
    bar = tqdm(loader, desc="eval", unit="batch", disable=not (progress and is_main_process()), leave=False)
    for images, _, _, meta in bar:
        n = len(images)
        batch = torch.cat([images, images.flip(3)]) if flip_test else images
        outputs = model(batch.to(device, non_blocking=True)).float().cpu().numpy()
        if flip_test:
            outputs = codec.merge_flip(outputs[:n], outputs[n:])
        center, scale = meta["center"].numpy(), meta["scale"].numpy()
        keypoints, scores = codec.decode(outputs, PreparedBatch(images.numpy(), center, scale))
        scale = scale * to_200
        for i in range(n):
            records.append({
                "image_id": int(meta["image_id"][i]),
                "category_id": int(meta["category_id"][i]),
                "keypoints": np.concatenate([keypoints[i], scores[i][:, None]], axis=1).reshape(-1).tolist(),
                "score": float(scores[i].mean()),
                "bbox_score": float(meta["bbox_score"][i]),
                "center": center[i].tolist(),
                "scale": scale[i].tolist(),
                "index": int(meta["index"][i]),
            })
    return records


@dataclass(frozen=True)
class Evaluation:
    """COCO keypoint metrics and the predictions they were computed from."""

    metrics: KeypointMetrics
    predictions: list[dict]


def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    ground_truth: GroundTruth,
    flip_test: bool = True,
    mmpose_nms: bool = True,
    progress: bool = True,
    post_process: PostProcess = PostProcess.DEFAULT,
) -> Evaluation | None:
    """Predict on ``loader`` and score against ``ground_truth`` (AP-10K sigmas, pycocotools).

    ``post_process`` is the heatmap decoding (mmpose's default, DARK or UDP; a SimCC model decodes by
    its argmax). With ``mmpose_nms`` predictions are rescored and OKS-NMS'd as mmpose's AP-10K
    evaluation does. Under DDP every process predicts its shard of the data; the predictions are
    gathered on rank 0, which alone returns the result (the others return None).
    """
    records = predict(model, loader, device, flip_test=flip_test, post_process=post_process, progress=progress)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        shards: list[list[dict]] | None = [[] for _ in range(dist.get_world_size())] if is_main_process() else None
        dist.gather_object(records, shards, dst=0)
        if not is_main_process():
            return None
        records = sorted((r for shard in shards for r in shard), key=lambda r: r["index"])
    metrics = evaluate_keypoints(ground_truth, records, mmpose_nms=mmpose_nms)
    return Evaluation(metrics=metrics, predictions=records)
