"""Train a top-down pose model on AP-10K (or any 17-keypoint COCO file), optionally distributed.

The defaults are the official AP-10K HRNet-W32 recipe (mmpose 0.x
``hrnet_w32_ap10k_256x256.py``): Adam, lr 5e-4, 210 epochs, step decay x0.1 at epochs 170
and 200, linear warm-up over 500 iterations from 0.001 x lr, batch 64 per process, 256x256
input, 64x64 heatmaps with sigma 2, flip / half-body / scale 0.5 / rotation 40 augmentation,
JointsMSE with target weights, flip-test evaluation every 10 epochs keeping the best AP.

``--arch rtmpose_m`` (or ``--weights rtmpose_m``, or any RTMPose checkpoint) trains the SimCC model
of mmpose 1.x with its config's loss and optimisation (``rtmpose-m_8xb64-210e_ap10k-256x256.py``):
SimCC targets with Gaussian label smoothing (sigma 5.66 bins, split ratio 2), KLDiscretLoss
(beta 10, label softmax, target weights), AdamW lr 4e-3 with weight decay 0.05 off biases and
norm layers, linear warm-up over 1000 iterations from 1e-5 x lr, flat for half the epochs then
cosine down to 0.05 x lr (:data:`SIMCC_RECIPE`; each can be overridden). Its crops, normalisation
and decoding are mmpose 1.x's (:mod:`train.targets`); the augmentation is the one above, not the
1.x config's (no HSV, blur or coarse dropout, no EMA of the weights, no stage-2 pipeline switch).
The loss, targets, crops and decoding follow the model's codec, never the architecture's name.

    python -m train.train_pose --data-root data/ap10k --output-dir runs/w32
    torchrun --nproc_per_node 8 -m train.train_pose --data-root data/ap10k --output-dir runs/w32
    python -m train.train_pose ... --train-families Felidae Canidae --eval-families Ursidae

Output folder: ``best.pth`` (official key layout: ``animalpose track --pose-weights`` takes
it), ``last.pth`` (model, optimizer, scheduler, scaler, epoch, best AP, history: pass it to
``--resume``), ``log.csv``, ``training.png`` and ``metrics.json`` (final evaluation of the
best weights with per-family and per-species AP). Only rank 0 writes.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import enum
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from pose.checkpoint import (
    CheckpointError,
    filter_state_dict,
    load_pose_model,
    portable_state_dict,
    save_checkpoint,
)
from pose.model import ARCHITECTURES, Architecture, PoseArchitecture, PoseModel, RTMPoseArchitecture, build_model
from pose.topdown import SimCCCodec, codec_of
from train.augment import AugmentSettings
from train.dataset import AP10KDataset, ap10k_paths, worker_init
from train.engine import (
    DistributedContext,
    EpochStats,
    WarmupFlatCosine,
    WarmupMultiStep,
    evaluate,
    init_distributed,
    train_one_epoch,
)
from train.metrics import Grouping, per_group_ap
from train.targets import Targets, training_targets

__all__ = [
    "HEATMAP_ARCHITECTURES",
    "LRSchedule",
    "Optimizer",
    "PoseTrainSettings",
    "SIMCC_RECIPE",
    "TrainResult",
    "build_optimizer",
    "build_schedule",
    "build_training_model",
    "default_heatmap_size",
    "get_args_parser",
    "load_backbone_weights",
    "main",
    "recipe_defaults",
    "settings_from_args",
    "train",
]

logger = logging.getLogger(__name__)

#: The heatmap architectures (the others, ``rtmpose_m``, are SimCC models); every name of
#: :data:`pose.model.ARCHITECTURES` trains.
HEATMAP_ARCHITECTURES: dict[str, PoseArchitecture] = {
    name: arch for name, arch in ARCHITECTURES.items() if isinstance(arch, PoseArchitecture)
}


class Optimizer(enum.Enum):
    """``adam``: Adam, ``weight_decay`` on every parameter (the HRNet recipe: none). ``adamw``: AdamW
    with no decay on biases and norm layers (mmpose's ``norm_decay_mult=0, bias_decay_mult=0``)."""

    ADAM = "adam"
    ADAMW = "adamw"


class LRSchedule(enum.Enum):
    """``step``: :class:`train.engine.WarmupMultiStep`. ``flat-cosine``: :class:`train.engine.WarmupFlatCosine`
    (flat for the first half of the epochs)."""

    STEP = "step"
    FLAT_COSINE = "flat-cosine"

METRIC_COLUMNS = ("AP", "AP50", "AP75", "APM", "APL", "AR")
LOG_COLUMNS = ("epoch", "iteration", "loss", "lr", "seconds", "images_per_s", *METRIC_COLUMNS)


@dataclass(frozen=True)
class PoseTrainSettings:
    """Everything a training run needs; the defaults are the official AP-10K HRNet-W32 recipe.

    Attributes:
        train_ann, val_ann: COCO keypoint files to train on and to evaluate on during training.
        image_root: folder the files' image names are relative to.
        test_ann: file for the final evaluation of the best weights (default ``val_ann``).
        output_dir: where checkpoints, the log and the plot go.
        arch: a name of :data:`pose.model.ARCHITECTURES` (ignored when ``weights`` is given); an
            RTMPose architecture is built for ``input_size`` (multiples of 32).
        weights: pose checkpoint to start from (path or official name); its architecture is used.
        backbone_weights: ImageNet-style backbone checkpoint (e.g. mmpose's
            ``hrnet_w32-36af842e.pth`` or torchvision's ResNet weights) loaded into the backbone.
        input_size, heatmap_size: ``(width, height)`` in pixels; their ratio is the model stride
            (heatmap models; a SimCC model ignores ``heatmap_size``).
        sigma: target Gaussian sigma in heatmap pixels (heatmap models).
        simcc_sigma: SimCC label smoothing ``(x, y)`` in bins (SimCC models; RTMPose AP-10K: 5.66).
        epochs, batch_size: schedule length; batch size per process.
        optimizer: :class:`Optimizer`.
        lr, lr_steps, lr_gamma: learning rate and, for the ``step`` schedule, its decay epochs / factor.
        lr_schedule: :class:`LRSchedule`.
        schedule_epochs: the epochs the ``flat-cosine`` schedule spans (default ``epochs``; more for a run
            that stops early and is resumed later).
        min_lr_ratio: the ``flat-cosine`` schedule's floor, times ``lr``.
        warmup_iters, warmup_ratio: linear warm-up from ``warmup_ratio * lr``.
        weight_decay: weight decay (the HRNet recipe has none; RTMPose's 0.05).
        clip_grad_norm: clip the gradient norm to this value (None: no clipping).
        amp: mixed precision (CUDA only).
        channels_last: train in channels-last memory order (on this project's 2-core CPU, 1.4x more
            training images/s for hrnet_tiny; the usual choice on CUDA with AMP too).
        eval_interval: evaluate every this many epochs (and after the last one).
        flip_test, mmpose_nms: evaluation as mmpose's AP-10K test (flip test, rescoring + OKS-NMS).
        eval_batch_size, workers: loader settings (workers per process).
        device: ``cpu``, ``cuda`` (default when available); under torchrun each rank takes its GPU.
        seed: seed of weights initialisation, shuffling and augmentation.
        resume: ``last.pth`` of an earlier run to continue.
        train_families, train_species: train on these categories only (empty: all).
        eval_families, eval_species: evaluate on these (empty: the training filter).
        augment: augmentation settings.
        max_steps_per_epoch: cut epochs short (quick checks).
        progress: show tqdm bars.
    """

    train_ann: Path
    val_ann: Path
    image_root: Path
    test_ann: Path | None = None
    output_dir: Path = Path("runs/pose")
    arch: str = "hrnet_w32"
    weights: str | None = None
    backbone_weights: Path | None = None
    input_size: tuple[int, int] = (256, 256)
    heatmap_size: tuple[int, int] = (64, 64)
    sigma: float = 2.0
    simcc_sigma: tuple[float, float] = (5.66, 5.66)
    epochs: int = 210
    batch_size: int = 64
    optimizer: Optimizer = Optimizer.ADAM
    lr: float = 5e-4
    lr_schedule: LRSchedule = LRSchedule.STEP
    schedule_epochs: int | None = None
    lr_steps: tuple[int, ...] = (170, 200)
    lr_gamma: float = 0.1
    min_lr_ratio: float = 0.05
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    weight_decay: float = 0.0
    clip_grad_norm: float | None = None
    amp: bool = False
    channels_last: bool = True
    eval_interval: int = 10
    flip_test: bool = True
    mmpose_nms: bool = True
    eval_batch_size: int = 32
    workers: int = 4
    device: str | None = None
    seed: int = 0
    resume: Path | None = None
    train_families: tuple[str, ...] = ()
    train_species: tuple[str, ...] = ()
    eval_families: tuple[str, ...] = ()
    eval_species: tuple[str, ...] = ()
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    max_steps_per_epoch: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("train_ann", "val_ann", "image_root", "test_ann", "output_dir", "backbone_weights", "resume"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        for name in ("input_size", "heatmap_size", "lr_steps", "train_families", "train_species", "eval_families",
                     "eval_species", "simcc_sigma"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "optimizer", Optimizer(self.optimizer))
        object.__setattr__(self, "lr_schedule", LRSchedule(self.lr_schedule))
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        if len(self.simcc_sigma) != 2 or min(self.simcc_sigma) <= 0:
            raise ValueError(f"simcc_sigma must be two positive values, got {self.simcc_sigma}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        for name in ("input_size", "heatmap_size"):
            size = getattr(self, name)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"{name} must be (width, height), got {size}")
        strides = {self.input_size[i] / self.heatmap_size[i] for i in (0, 1)}
        if len(strides) != 1:
            raise ValueError(f"input_size {self.input_size} and heatmap_size {self.heatmap_size} differ in aspect")
        for name in ("epochs", "batch_size", "eval_interval", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.sigma <= 0:
            raise ValueError(f"lr and sigma must be positive, got {self.lr} and {self.sigma}")
        if self.workers < 0 or self.weight_decay < 0:
            raise ValueError(f"workers and weight_decay must be >= 0, got {self.workers} and {self.weight_decay}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ValueError(f"clip_grad_norm must be positive, got {self.clip_grad_norm}")
        if self.schedule_epochs is not None and self.schedule_epochs < self.epochs:
            raise ValueError(f"schedule_epochs must be >= epochs ({self.epochs}), got {self.schedule_epochs}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"max_steps_per_epoch must be >= 1, got {self.max_steps_per_epoch}")
        if self.weights is not None and self.backbone_weights is not None:
            raise ValueError("give either weights (a whole pose model) or backbone_weights, not both")

    @property
    def stride(self) -> float:
        return self.input_size[0] / self.heatmap_size[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (paths as strings), for checkpoints and logs."""
        def plain(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, tuple):
                return list(value)
            if isinstance(value, enum.Enum):
                return value.value
            return value

        values = {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "augment"}
        return {**values, "augment": dataclasses.asdict(self.augment)}


#: The optimisation of the RTMPose AP-10K config (``rtmpose-m_8xb64-210e_ap10k-256x256.py``), which SimCC
#: models train with unless told otherwise (:func:`recipe_defaults`); the others have
#: :class:`PoseTrainSettings`'s defaults, the HRNet recipe.
SIMCC_RECIPE: dict[str, Any] = {
    "optimizer": Optimizer.ADAMW,
    "lr": 4e-3,
    "weight_decay": 0.05,
    "lr_schedule": LRSchedule.FLAT_COSINE,
    "min_lr_ratio": 0.05,
    "warmup_iters": 1000,
    "warmup_ratio": 1e-5,
}


def recipe_defaults(arch: Architecture) -> dict[str, Any]:
    """The optimisation settings an architecture trains with by default: :data:`SIMCC_RECIPE` for a SimCC
    model (RTMPose), :class:`PoseTrainSettings`'s defaults (the HRNet recipe) for a heatmap model."""
    if isinstance(arch.codec, SimCCCodec):
        return dict(SIMCC_RECIPE)
    fields = {f.name: f.default for f in dataclasses.fields(PoseTrainSettings)}
    return {name: fields[name] for name in SIMCC_RECIPE}


@dataclass(frozen=True)
class TrainResult:
    """What a run produced: the best validation AP and its epoch (1-based), the final
    evaluation (``metrics.json`` contents) and the output files."""

    best_ap: float
    best_epoch: int
    final_metrics: dict[str, Any]
    best_checkpoint: Path
    last_checkpoint: Path
    log_csv: Path
    plot: Path | None


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> int:
    """Load ImageNet-style weights into ``backbone`` where names and shapes agree.

    Accepts a bare state dict or one under ``state_dict``/``model``, with or without a
    ``backbone.`` or ``module.`` prefix; classifier keys (``fc``, ``classifier``, HRNet's
    ``incre_modules``...) are skipped. Returns the number of tensors loaded.

    Raises:
        CheckpointError: the file is unreadable or fits less than half of the backbone.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        state = filter_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err
    except Exception as err:  # torch raises many types for bad files
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from err
    if any(key.startswith("backbone.") for key in state):
        state = {key.removeprefix("backbone."): value for key, value in state.items() if key.startswith("backbone.")}
    own = backbone.state_dict()
    matched = {key: value for key, value in state.items() if key in own and own[key].shape == value.shape}
    if len(matched) < len(own) / 2:
        mismatched = [key for key in state if key in own and own[key].shape != state[key].shape]
        raise CheckpointError(
            f"{path}: only {len(matched)} of the backbone's {len(own)} tensors fit "
            f"({len(mismatched)} differ in shape, e.g. {mismatched[:3]}); is it weights for this architecture?"
        )
    backbone.load_state_dict(matched, strict=False)
    logger.info("Loaded %d/%d backbone tensors from %s (%d unused keys)", len(matched), len(own), path,
                len(state) - len(matched))
    return len(matched)


def build_training_model(settings: PoseTrainSettings) -> tuple[PoseModel, Architecture]:
    """The model to train: from ``weights``, or ``arch`` with optional backbone weights (an RTMPose
    architecture built for ``input_size``)."""
    if settings.weights is not None:
        from pose.weights import resolve_pose_weights

        model, arch = load_pose_model(resolve_pose_weights(settings.weights))
        logger.info("Starting from %s: %s", settings.weights, arch)
    else:
        arch = ARCHITECTURES[settings.arch]
        if isinstance(arch, RTMPoseArchitecture):
            arch = dataclasses.replace(arch, input_size=settings.input_size)
        model = build_model(arch)
        if settings.backbone_weights is not None:
            load_backbone_weights(model.backbone, settings.backbone_weights)
        else:
            logger.info("Training %s from scratch (the official recipe starts from ImageNet backbone weights)",
                        settings.arch)
    if isinstance(arch, RTMPoseArchitecture):
        if arch.input_size != settings.input_size:
            raise ValueError(f"{settings.weights} is built for {arch.input_size[0]}x{arch.input_size[1]} inputs, "
                             f"not input_size {settings.input_size}")
    elif arch.output_stride != settings.stride:
        raise ValueError(
            f"the model's output stride is {arch.output_stride} but input_size {settings.input_size} / "
            f"heatmap_size {settings.heatmap_size} is {settings.stride:g}"
        )
    return model.train(), arch


def build_optimizer(model: nn.Module, settings: PoseTrainSettings) -> torch.optim.Optimizer:
    """Adam over every parameter, or AdamW with no weight decay on biases and on norm layers' parameters."""
    if settings.optimizer is Optimizer.ADAM:
        return torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    norms = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
    no_decay = {id(p) for m in model.modules() if isinstance(m, norms) for p in m.parameters(recurse=False)}
    no_decay |= {id(p) for name, p in model.named_parameters() if name.endswith(".bias")}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in no_decay], "weight_decay": settings.weight_decay},
              {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=settings.lr)


def build_schedule(settings: PoseTrainSettings, iters_per_epoch: int) -> WarmupMultiStep | WarmupFlatCosine:
    """The learning-rate factor per iteration (for ``LambdaLR``)."""
    if settings.lr_schedule is LRSchedule.FLAT_COSINE:
        epochs = settings.schedule_epochs or settings.epochs
        return WarmupFlatCosine(iters_per_epoch, epochs, epochs // 2, settings.min_lr_ratio, settings.warmup_iters,
                                settings.warmup_ratio)
    return WarmupMultiStep(iters_per_epoch, settings.lr_steps, settings.lr_gamma, settings.warmup_iters,
                           settings.warmup_ratio)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def _targets(model: nn.Module, settings: PoseTrainSettings) -> Targets:
    """What ``model`` trains and is evaluated on, by its codec (:mod:`train.targets`)."""
    return training_targets(codec_of(model), settings.input_size, settings.heatmap_size, settings.sigma,
                            settings.simcc_sigma)


def _datasets(settings: PoseTrainSettings, targets: Targets) -> tuple[AP10KDataset, AP10KDataset]:
    common = dict(image_root=settings.image_root, targets=targets)
    train_set = AP10KDataset(settings.train_ann, train=True, augment=settings.augment, seed=settings.seed,
                             families=settings.train_families, species=settings.train_species, **common)
    val_set = AP10KDataset(settings.val_ann, train=False, **common, **_eval_filter(settings))
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"no instances to {'train' if len(train_set) == 0 else 'evaluate'} on after filtering")
    return train_set, val_set


def _eval_filter(settings: PoseTrainSettings) -> dict[str, tuple[str, ...]]:
    if settings.eval_families or settings.eval_species:
        return {"families": settings.eval_families, "species": settings.eval_species}
    return {"families": settings.train_families, "species": settings.train_species}


def _eval_loader(dataset: AP10KDataset, settings: PoseTrainSettings, ctx: DistributedContext) -> DataLoader:
    shard = Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size)) if ctx.distributed else dataset
    return DataLoader(shard, batch_size=settings.eval_batch_size, shuffle=False, num_workers=settings.workers,
                      worker_init_fn=worker_init, pin_memory=ctx.device.type == "cuda")


# ---------------------------------------------------------------------------
# Checkpoints, log, plot
# ---------------------------------------------------------------------------


@dataclass
class _State:
    """What changes during a run and goes into ``last.pth``."""

    next_epoch: int = 0
    best_ap: float = float("-inf")
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def _save_last(path: Path, model: nn.Module, optimizer, scheduler, scaler, state: _State,
               settings: PoseTrainSettings) -> None:
    checkpoint = {
        "model": portable_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": state.next_epoch,
        "best_ap": state.best_ap,
        "best_epoch": state.best_epoch,
        "history": state.history,
        "settings": settings.to_dict(),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)


def _load_last(path: Path, model: nn.Module, optimizer, scheduler, scaler) -> _State:
    if not path.is_file():
        raise FileNotFoundError(f"resume checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    missing = [key for key in ("model", "optimizer", "scheduler", "epoch") if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: not a full training checkpoint (lacks {missing}); pass last.pth")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if scaler is not None and checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])
    logger.info("Resumed from %s at epoch %d", path, checkpoint["epoch"] + 1)
    return _State(int(checkpoint["epoch"]), float(checkpoint.get("best_ap", float("-inf"))),
                  int(checkpoint.get("best_epoch", 0)), list(checkpoint.get("history", [])))


def write_log(path: Path, history: list[dict[str, float]]) -> None:
    """Write the per-epoch history as CSV with :data:`LOG_COLUMNS` (blank where not evaluated)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)


def plot_history(path: Path, history: list[dict[str, float]]) -> Path:
    """Loss and AP per epoch, side by side, as a PNG (matplotlib's Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    evaluated = [row for row in history if row.get("AP") not in (None, "")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [row["loss"] for row in history], marker=".")
    left.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    right.plot([row["epoch"] for row in evaluated], [row["AP"] for row in evaluated], marker="o")
    right.set(xlabel="epoch", ylabel="keypoint AP (val)", title="AP", ylim=(0, 1))
    for axis in (left, right):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def train(settings: PoseTrainSettings) -> TrainResult | None:
    """Train, evaluating every ``eval_interval`` epochs, then evaluate the best weights.

    Under ``torchrun`` every process calls this; rank 0 returns the result, the others None.
    """
    ctx = init_distributed(settings.device)
    try:
        return _train(settings, ctx)
    finally:
        if ctx.distributed:
            torch.distributed.destroy_process_group()


def _train(settings: PoseTrainSettings, ctx: DistributedContext) -> TrainResult | None:
    torch.manual_seed(settings.seed)
    if settings.workers > 0:
        # A forked loader worker that changes OpenCV's thread pool after the parent used it can
        # hang in the pool's teardown: settle on one OpenCV thread before any worker is forked.
        cv2.setNumThreads(1)
    out = settings.output_dir
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    amp = settings.amp and ctx.device.type == "cuda"
    if settings.amp and not amp:
        logger.warning("AMP needs CUDA; training in float32 on %s", ctx.device)

    model, arch = build_training_model(settings)
    targets = _targets(model, settings)
    train_set, val_set = _datasets(settings, targets)
    sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=settings.seed)
    train_loader = DataLoader(train_set, batch_size=settings.batch_size, sampler=sampler,
                              num_workers=settings.workers, worker_init_fn=worker_init,
                              pin_memory=ctx.device.type == "cuda")
    val_loader = _eval_loader(val_set, settings, ctx)
    iters_per_epoch = min(len(train_loader), settings.max_steps_per_epoch or len(train_loader))

    model.to(ctx.device, memory_format=torch.channels_last if settings.channels_last else torch.contiguous_format)
    optimizer = build_optimizer(model, settings)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, build_schedule(settings, iters_per_epoch))
    scaler = torch.amp.GradScaler("cuda") if amp else None
    state = _load_last(settings.resume, model, optimizer, scheduler, scaler) if settings.resume else _State()
    net: nn.Module = model
    if ctx.distributed:
        net = DistributedDataParallel(model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)
    paths = {name: out / name for name in ("best.pth", "last.pth", "log.csv", "training.png", "metrics.json")}
    logger.info("Training %s on %d instances (%d per process per step, %d processes), validating on %d; "
                "%d iterations per epoch, epochs %d..%d", arch, len(train_set), settings.batch_size,
                ctx.world_size, len(val_set), iters_per_epoch, state.next_epoch + 1, settings.epochs)

    criterion = targets.criterion()
    for epoch in range(state.next_epoch, settings.epochs):
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        stats = train_one_epoch(net, optimizer, train_loader, ctx.device, epoch + 1, scaler, scheduler=scheduler,
                                criterion=criterion, clip_grad_norm=settings.clip_grad_norm,
                                max_steps=settings.max_steps_per_epoch, progress=settings.progress)
        row = _log_row(epoch + 1, (epoch + 1) * iters_per_epoch, stats)
        if (epoch + 1) % settings.eval_interval == 0 or epoch + 1 == settings.epochs:
            row.update(_evaluate_epoch(model, val_loader, val_set, settings, ctx, state, epoch + 1,
                                       paths["best.pth"], str(arch)))
        state.history.append(row)
        state.next_epoch = epoch + 1
        if ctx.is_main:
            _save_last(paths["last.pth"], model, optimizer, scheduler, scaler, state, settings)
            write_log(paths["log.csv"], state.history)
        best = f", AP {row['AP']:.4f} (best {state.best_ap:.4f}, epoch {state.best_epoch})" if "AP" in row else ""
        logger.info("epoch %d/%d: loss %.6f, lr %.2e, %.0f img/s%s", epoch + 1, settings.epochs, stats.loss,
                    stats.lr, stats.images_per_second, best)

    final = _final_evaluation(settings, ctx, paths["best.pth"])
    if not ctx.is_main:
        return None
    plot = plot_history(paths["training.png"], state.history) if state.history else None
    paths["metrics.json"].write_text(json.dumps(final, indent=2) + "\n", encoding="utf-8")
    logger.info("Final evaluation of %s: %s", paths["best.pth"], _format_metrics(final))
    return TrainResult(state.best_ap, state.best_epoch, final, paths["best.pth"], paths["last.pth"],
                       paths["log.csv"], plot)


def _evaluate_epoch(model: nn.Module, loader: DataLoader, dataset: AP10KDataset, settings: PoseTrainSettings,
                    ctx: DistributedContext, state: _State, epoch: int, best_path: Path, arch: str) -> dict:
    """Validation metrics for the log row (empty on ranks > 0); saves ``best.pth`` on a new best AP."""
    result = evaluate(model, loader, ctx.device, dataset.ground_truth(), settings.flip_test, settings.mmpose_nms,
                      settings.progress)
    if result is None:
        return {}
    if result.metrics.AP > state.best_ap:
        state.best_ap, state.best_epoch = result.metrics.AP, epoch
        save_checkpoint(model, best_path, {"epoch": epoch, "AP": result.metrics.AP, "arch": arch,
                                           "input_size": list(settings.input_size), "settings": settings.to_dict()})
    return {key: result.metrics.to_dict()[key] for key in METRIC_COLUMNS}


def _log_row(epoch: int, iteration: int, stats: EpochStats) -> dict[str, float]:
    return {"epoch": epoch, "iteration": iteration, "loss": stats.loss, "lr": stats.lr,
            "seconds": round(stats.seconds, 3), "images_per_s": round(stats.images_per_second, 2)}


def _final_evaluation(settings: PoseTrainSettings, ctx: DistributedContext, best: Path) -> dict[str, Any]:
    """COCO metrics, per-family and per-species AP of the best weights on the test (or val) file."""
    if ctx.distributed:
        torch.distributed.barrier()  # rank 0 has written best.pth
    model, _ = load_pose_model(best, map_location=ctx.device)
    test_set = AP10KDataset(settings.test_ann or settings.val_ann, settings.image_root, train=False,
                            targets=_targets(model, settings), **_eval_filter(settings))
    result = evaluate(model, _eval_loader(test_set, settings, ctx), ctx.device, test_set.ground_truth(),
                      settings.flip_test, settings.mmpose_nms, settings.progress)
    if result is None:
        return {}
    gt = test_set.ground_truth()
    return {
        "annotations": str(test_set.ann_file),
        "instances": len(test_set),
        **result.metrics.to_dict(),
        "per_family": per_group_ap(gt, result.predictions, Grouping.FAMILY, mmpose_nms=settings.mmpose_nms),
        "per_species": per_group_ap(gt, result.predictions, Grouping.SPECIES, mmpose_nms=settings.mmpose_nms),
    }


def _format_metrics(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{key} {metrics[key]:.4f}" for key in METRIC_COLUMNS if key in metrics)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """Options of ``python -m train.train_pose`` and ``animalpose train pose``."""
    d = PoseTrainSettings(train_ann=Path("."), val_ann=Path("."), image_root=Path("."))
    a = d.augment
    parser = argparse.ArgumentParser(description="Train a top-down AP-10K pose model (official recipe by default).",
                                     add_help=add_help)
    data = parser.add_argument_group("data")
    data.add_argument("--data-root", type=Path, default=Path("data/ap10k"),
                      help="AP-10K folder with annotations/ and data/ (default: data/ap10k)")
    data.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="AP-10K split number")
    data.add_argument("--train-ann", type=Path, help="training COCO keypoint file (default: the split's train file)")
    data.add_argument("--val-ann", type=Path, help="validation file (default: the split's val file)")
    data.add_argument("--test-ann", type=Path, help="file for the final evaluation (default: the val file)")
    data.add_argument("--image-root", type=Path, help="image folder (default: DATA_ROOT/data)")
    data.add_argument("--train-families", nargs="+", default=[], metavar="F", help="train on these families only")
    data.add_argument("--train-species", nargs="+", default=[], metavar="S", help="train on these species only")
    data.add_argument("--eval-families", nargs="+", default=[], metavar="F",
                      help="evaluate on these families (held-out families: generalisation protocol)")
    data.add_argument("--eval-species", nargs="+", default=[], metavar="S", help="evaluate on these species")
    data.add_argument("--workers", type=int, default=d.workers, help="data loading processes per training process")

    model = parser.add_argument_group("model")
    model.add_argument("--arch", default=d.arch, choices=list(ARCHITECTURES),
                       help="architecture to train (rtmpose_m: the SimCC model of mmpose 1.x, trained with its "
                       "config's loss and optimisation)")
    model.add_argument("--weights", help="start from this pose checkpoint (path or official name, e.g. hrnet_w32)")
    model.add_argument("--backbone-weights", type=Path, help="ImageNet-style backbone checkpoint to start from")
    model.add_argument("--input-size", type=int, nargs=2, default=list(d.input_size), metavar=("W", "H"))
    model.add_argument("--heatmap-size", type=int, nargs=2, default=None, metavar=("W", "H"),
                       help="default: the input size over --arch's output stride (64x64 for hrnet_w32 at "
                       "256x256); with --weights, over 4 (give it for a checkpoint of another stride)")
    model.add_argument("--sigma", type=float, default=d.sigma, help="target Gaussian sigma (heatmap pixels)")
    model.add_argument("--simcc-sigma", type=float, nargs=2, default=list(d.simcc_sigma), metavar=("X", "Y"),
                       help="SimCC label smoothing in bins (SimCC models; default %(default)s, RTMPose AP-10K's)")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, default=d.epochs)
    optim.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    simcc = SIMCC_RECIPE

    def recipe(name: str) -> str:
        heatmap, sim = getattr(d, name), simcc[name]
        heatmap, sim = (v.value if isinstance(v, enum.Enum) else v for v in (heatmap, sim))
        return f"default: {heatmap} for heatmap models, {sim} for SimCC models (rtmpose_m)"

    optim.add_argument("--optimizer", choices=[o.value for o in Optimizer], help=recipe("optimizer"))
    optim.add_argument("--lr", type=float, help=recipe("lr"))
    optim.add_argument("--lr-schedule", choices=[s.value for s in LRSchedule], help=recipe("lr_schedule"))
    optim.add_argument("--lr-steps", type=int, nargs="+", default=list(d.lr_steps), help="decay epochs (step)")
    optim.add_argument("--lr-gamma", type=float, default=d.lr_gamma, help="decay factor (step)")
    optim.add_argument("--min-lr-ratio", type=float, help=recipe("min_lr_ratio") + "; the floor of flat-cosine")
    optim.add_argument("--warmup-iters", type=int, help=recipe("warmup_iters"))
    optim.add_argument("--warmup-ratio", type=float, help=recipe("warmup_ratio"))
    optim.add_argument("--weight-decay", type=float, help=recipe("weight_decay"))
    optim.add_argument("--clip-grad", type=float, default=None, metavar="NORM", help="clip the gradient norm")
    optim.add_argument("--amp", action="store_true", help="mixed precision (CUDA)")
    optim.add_argument("--max-steps-per-epoch", type=int, default=None, help="cut epochs short (quick checks)")

    aug = parser.add_argument_group("augmentation")
    aug.add_argument("--flip-prob", type=float, default=a.flip_prob)
    aug.add_argument("--half-body-prob", type=float, default=a.half_body_prob)
    aug.add_argument("--scale-factor", type=float, default=a.scale_factor)
    aug.add_argument("--rotation-factor", type=float, default=a.rotation_factor)
    aug.add_argument("--no-augment", action="store_true", help="no augmentation at all")

    run = parser.add_argument_group("evaluation and output")
    run.add_argument("--eval-interval", type=int, default=d.eval_interval, help="evaluate every N epochs")
    run.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size)
    run.add_argument("--no-flip-test", action="store_true", help="evaluate without the flip test")
    run.add_argument("--no-mmpose-nms", action="store_true", help="score predictions as they are (no OKS-NMS)")
    run.add_argument("--output-dir", type=Path, default=d.output_dir)
    run.add_argument("--resume", type=Path, help="last.pth of an earlier run")
    run.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    run.add_argument("--seed", type=int, default=d.seed)
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def default_heatmap_size(input_size: Sequence[int], arch: str, weights: str | Path | None = None) -> tuple[int, int]:
    """``input_size`` over the output stride of ``arch`` (4, that of every official model, when starting
    from ``weights``, and for a SimCC model, which has no heatmaps)."""
    model = ARCHITECTURES[arch]
    stride = 4 if weights is not None or not isinstance(model, PoseArchitecture) else model.output_stride
    return input_size[0] // stride, input_size[1] // stride


def _recipe_architecture(args: argparse.Namespace) -> Architecture:
    """The architecture whose recipe fills the optimisation options not given: ``--weights``' (an official
    name's, or read off the file), else ``--arch``'s."""
    if args.weights is None or (args.weights not in ARCHITECTURES and not Path(args.weights).is_file()):
        return ARCHITECTURES[args.arch]  # a weights name that is neither fails later, with its message
    if args.weights in ARCHITECTURES:
        return ARCHITECTURES[args.weights]
    return load_pose_model(args.weights)[1]


def settings_from_args(args: argparse.Namespace) -> PoseTrainSettings:
    """Turn parsed options into settings (paths of the AP-10K split unless given; the optimisation options
    not given from the architecture's recipe, :func:`recipe_defaults`)."""
    recipe = recipe_defaults(_recipe_architecture(args))
    given = {name: getattr(args, name) for name in recipe if getattr(args, name) is not None}
    optimisation = {**recipe, **given}
    train_ann, image_root = ap10k_paths(args.data_root, "train", args.split)
    val_ann, _ = ap10k_paths(args.data_root, "val", args.split)
    augment = AugmentSettings.disabled() if args.no_augment else AugmentSettings(
        flip_prob=args.flip_prob, half_body_prob=args.half_body_prob, scale_factor=args.scale_factor,
        rotation_factor=args.rotation_factor,
    )
    return PoseTrainSettings(
        train_ann=args.train_ann or train_ann, val_ann=args.val_ann or val_ann, test_ann=args.test_ann,
        image_root=args.image_root or image_root, output_dir=args.output_dir, arch=args.arch, weights=args.weights,
        backbone_weights=args.backbone_weights, input_size=tuple(args.input_size),
        heatmap_size=tuple(args.heatmap_size or default_heatmap_size(args.input_size, args.arch, args.weights)),
        sigma=args.sigma, simcc_sigma=tuple(args.simcc_sigma), epochs=args.epochs, batch_size=args.batch_size,
        lr_steps=tuple(args.lr_steps), lr_gamma=args.lr_gamma, **optimisation, clip_grad_norm=args.clip_grad,
        amp=args.amp, eval_interval=args.eval_interval, flip_test=not args.no_flip_test,
        mmpose_nms=not args.no_mmpose_nms, eval_batch_size=args.eval_batch_size, workers=args.workers,
        device=args.device, seed=args.seed, resume=args.resume, train_families=tuple(args.train_families),
        train_species=tuple(args.train_species), eval_families=tuple(args.eval_families),
        eval_species=tuple(args.eval_species), augment=augment, max_steps_per_epoch=args.max_steps_per_epoch,
        progress=not args.no_progress,
    )


def main(args: argparse.Namespace) -> int:
    """Run :func:`train` from parsed options; 0 on success."""
    result = train(settings_from_args(args))
    if result is not None:
        logger.info("Best AP %.4f at epoch %d; weights in %s", result.best_ap, result.best_epoch,
                    result.best_checkpoint)
    return 0


def _configure_logging() -> None:
    import os

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    _configure_logging()
    sys.exit(main(get_args_parser().parse_args()))
