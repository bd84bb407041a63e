"""Reading and writing pose checkpoints in the official mmpose 0.x key layout.

``load_pose_model(path)`` is the whole story: read the file with
``weights_only=True``, turn whatever layout it has into ours with the pure
function :func:`filter_state_dict`, read the architecture off the key names and
shapes with :func:`infer_architecture`, build that model and load it strictly.
Every failure becomes a :class:`CheckpointError` that names the file and what
is wrong with it.

Accepted layouts: a bare state dict, or one under ``'state_dict'`` or
``'model'``; keys with a DataParallel ``module.`` prefix; mmpose 1.x keys
(``head.*`` instead of ``keypoint_head.*``; a 1.x head with extra
``conv_layers`` is not supported and its keys are reported as unexpected);
mmpose 1.x RTMPose (CSPNeXt + RTMCC head, ``head.*`` kept as it is), whose
published files keep numpy arrays in ``meta['dataset_meta']``.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pose.keypoints import NUM_KEYPOINTS
from pose.model import (
    CSPNEXT_STRIDE,
    Architecture,
    BackboneKind,
    PoseArchitecture,
    PoseModel,
    RTMPoseArchitecture,
    build_model,
)

__all__ = [
    "Architecture",
    "CheckpointError",
    "PoseArchitecture",
    "RTMPoseArchitecture",
    "build_model",
    "filter_state_dict",
    "infer_architecture",
    "load_pose_checkpoint",
    "load_pose_model",
    "portable_state_dict",
    "recorded_input_size",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model")
#: The key that marks an RTMCC (SimCC) head.
_RTMCC_KEY = "head.cls_x.weight"
_MAX_LISTED = 5

def _numpy_scalar_globals() -> list[Any]:
    """What unpickling numpy scalars and arrays needs: their reconstructors (under numpy 1.x's and 2.x's
    module names), ``ndarray`` and the dtypes. Rebuilding them runs no user code.

    mmcv keeps evaluation scores as numpy scalars in a checkpoint's ``meta``
    (``hook_msgs.best_score``) and mmengine the dataset's metadata with numpy arrays (sigmas, colours:
    ``meta['dataset_meta']``), which ``weights_only`` loading refuses by default.
    """
    scalar = np.float64(0).__reduce__()[0]
    array = np.zeros(1).__reduce__()[0]
    dtypes = [
        type(np.dtype(name))
        for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                     "float16", "float32", "float64")
    ]
    aliases = [
        (function, f"{module}.multiarray.{name}")
        for module in ("numpy.core", "numpy._core")
        for function, name in ((scalar, "scalar"), (array, "_reconstruct"))
    ]
    return [np.dtype, np.ndarray, *dtypes, *aliases]


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not fit a supported model."""


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return f"{len(keys)}: {shown}{more}"


def filter_state_dict(obj: Any) -> dict[str, Tensor]:
    """Turn a loaded checkpoint object into a state dict in our key layout.

    Unwraps ``{'state_dict': ...}`` or ``{'model': ...}``, strips a DataParallel
    ``module.`` prefix, renames the ``head.*`` of an mmpose 1.x heatmap model to
    0.x's ``keypoint_head.*`` (an RTMCC head, ``head.cls_x``, keeps ``head.*``: it is
    our :class:`~pose.model.RTMPoseModel`'s layout) and drops entries that are not
    tensors. The input is not modified.

    Raises:
        CheckpointError: if ``obj`` holds no tensors under string keys.
    """
    for wrapper in _WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"expected a state dict (a mapping of names to tensors), found {type(obj).__name__}")
    tensors = {key: value for key, value in obj.items() if isinstance(key, str) and isinstance(value, Tensor)}
    if not tensors:
        raise CheckpointError(f"no tensors found; top-level keys: {_listing([str(k) for k in obj])}")
    if all(key.startswith("module.") for key in tensors):
        tensors = {key.removeprefix("module."): value for key, value in tensors.items()}
    if _RTMCC_KEY in tensors:
        return tensors
    return {re.sub(r"^head\.", "keypoint_head.", key): value for key, value in tensors.items()}


def _count_indices(state_dict: Mapping[str, Tensor], pattern: str, step: int = 1, start: int = 0) -> int:
    """How many consecutive ``i = 0, 1, ...`` have ``pattern.format(start + i * step)`` in ``state_dict``."""
    count = 0
    while pattern.format(start + count * step) in state_dict:
        count += 1
    return count


def _require(state_dict: Mapping[str, Tensor], key: str, what: str) -> Tensor:
    if key not in state_dict:
        raise CheckpointError(
            f"missing {key!r}, so this is not {what}; keys start with {_listing(list(state_dict))}"
        )
    return state_dict[key]


def _infer_hrnet(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    def width(key: str) -> int:
        return _require(state_dict, "backbone." + key, "an mmpose HRNet").shape[0]

    def count(pattern: str) -> int:
        return _count_indices(state_dict, "backbone." + pattern)

    return {
        "stem_channels": width("conv1.weight"),
        "stage1_channels": width("layer1.0.conv1.weight"),
        "stage1_blocks": count("layer1.{}.conv1.weight"),
        "widths": tuple(
            width(f"stage4.0.branches.{i}.0.conv1.weight") for i in range(count("stage4.0.branches.{}.0.conv1.weight"))
        ),
        "num_modules": tuple(count(f"stage{s}.{{}}.branches.0.0.conv1.weight") for s in (2, 3, 4)),
        "num_blocks": tuple(count(f"stage{s}.0.branches.0.{{}}.conv1.weight") for s in (2, 3, 4)),
    }


def _infer_resnet(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    def width(key: str) -> int:
        return _require(state_dict, "backbone." + key, "a Bottleneck ResNet").shape[0]

    return {
        "stem_channels": width("conv1.weight"),
        "base_channels": width("layer1.0.conv1.weight"),
        "layers": tuple(_count_indices(state_dict, f"backbone.layer{s}.{{}}.conv1.weight") for s in (1, 2, 3, 4)),
    }


def _infer_head(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    final = _require(state_dict, "keypoint_head.final_layer.weight", "a top-down heatmap model")
    if final.ndim != 4:
        raise CheckpointError(f"'keypoint_head.final_layer.weight' has shape {tuple(final.shape)}, expected a conv")
    # deconv_layers is (ConvTranspose2d, BN, ReLU) * n: deconvolutions sit at 0, 3, 6, ...
    num_deconv = _count_indices(state_dict, "keypoint_head.deconv_layers.{}.weight", step=3)
    head: dict[str, Any] = {
        "num_keypoints": final.shape[0],
        "final_kernel": final.shape[-1],
        "num_deconv_layers": num_deconv,
    }
    if num_deconv:
        deconvs = [state_dict[f"keypoint_head.deconv_layers.{3 * i}.weight"] for i in range(num_deconv)]
        widths = {w.shape[1] for w in deconvs}
        if len(widths) != 1:
            raise CheckpointError(f"deconvolutions of different widths {sorted(widths)} are not supported")
        head["deconv_channels"] = widths.pop()
        head["deconv_kernel"] = deconvs[0].shape[-1]
    return head


def _infer_cspnext(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    def tensor(key: str) -> Tensor:
        return _require(state_dict, "backbone." + key, "a CSPNeXt")

    num_stages = _count_indices(state_dict, "backbone.stage{}.0.conv.weight", start=1)
    if not num_stages:
        tensor("stage1.0.conv.weight")  # raises: no CSPNeXt stage
    # Each stage is a stride-2 conv then a CSP layer; the last has an SPP block in between.
    csp = [f"stage{i}.{2 if i == num_stages else 1}" for i in range(1, num_stages + 1)]
    widths = tuple(tensor(f"stage{i}.0.conv.weight").shape[0] for i in range(1, num_stages + 1))
    return {
        "widths": widths,
        "depths": tuple(_count_indices(state_dict, f"backbone.{layer}.blocks.{{}}.conv1.conv.weight") for layer in csp),
        "stem_width": tensor("stem.2.conv.weight").shape[0],
        "expand_ratio": tensor(f"{csp[0]}.main_conv.conv.weight").shape[0] / widths[0],
        "block_kernel": tensor(f"{csp[0]}.blocks.0.conv2.depthwise_conv.conv.weight").shape[-1],
        "channel_attention": f"backbone.{csp[0]}.attention.fc.weight" in state_dict,
    }


def _infer_rtmcc(state_dict: Mapping[str, Tensor], split_ratio: float = 2.0) -> dict[str, Any]:
    def tensor(key: str) -> Tensor:
        return _require(state_dict, "head." + key, "an RTMCC head")

    final, embed, out = tensor("final_layer.weight"), tensor("mlp.1.weight"), tensor("gau.o.weight")
    bins = (tensor("cls_x.weight").shape[0], tensor("cls_y.weight").shape[0])
    input_size = tuple(round(b / split_ratio) for b in bins)
    tokens = (input_size[0] // CSPNEXT_STRIDE) * (input_size[1] // CSPNEXT_STRIDE)
    if embed.shape[1] != tokens:
        raise CheckpointError(
            f"the RTMCC head has {bins[0]}x{bins[1]} SimCC bins, i.e. a {input_size[0]}x{input_size[1]} input at "
            f"split ratio {split_ratio:g}, whose 1/32 feature map has {tokens} cells, but 'head.mlp.1.weight' "
            f"takes {embed.shape[1]}"
        )
    return {
        "num_keypoints": final.shape[0],
        "final_kernel": final.shape[-1],
        "input_size": input_size,
        "hidden_dims": embed.shape[0],
        "attention_dims": tensor("gau.gamma").shape[1],
        "expansion_factor": out.shape[1] // out.shape[0],
        "split_ratio": split_ratio,
    }


def infer_architecture(state_dict: Mapping[str, Tensor]) -> Architecture:
    """Read the model's architecture off the key names and tensor shapes of a state dict.

    ``state_dict`` is in our layout (see :func:`filter_state_dict`). Only the
    keys that define the architecture are read; :func:`load_pose_model` then
    checks every key and shape with a strict load. An RTMCC head (``head.cls_x``)
    makes an :class:`~pose.model.RTMPoseArchitecture` (its split ratio, not in the
    keys, is RTMPose's 2.0); otherwise a :class:`~pose.model.PoseArchitecture`.

    Raises:
        CheckpointError: if the keys fit neither an HRNet nor a ResNet
            top-down heatmap model, nor a CSPNeXt with an RTMCC head.
    """
    if _RTMCC_KEY in state_dict:
        try:
            return RTMPoseArchitecture(**_infer_rtmcc(state_dict), **_infer_cspnext(state_dict))
        except ValueError as err:
            raise CheckpointError(f"unsupported RTMPose architecture: {err}") from err
    head = _infer_head(state_dict)
    if "backbone.stage4.0.branches.0.0.conv1.weight" in state_dict:
        kind, backbone = BackboneKind.HRNET, _infer_hrnet(state_dict)
    elif "backbone.layer4.0.conv3.weight" in state_dict:
        kind, backbone = BackboneKind.RESNET, _infer_resnet(state_dict)
    else:
        backbone_keys = [key for key in state_dict if key.startswith("backbone.")] or list(state_dict)
        raise CheckpointError(
            "the backbone is neither an mmpose HRNet (no 'backbone.stage4.*') nor a Bottleneck ResNet "
            f"(no 'backbone.layer4.0.conv3.*'); backbone keys {_listing(backbone_keys)}"
        )
    try:
        return PoseArchitecture(kind, **head, **backbone)
    except ValueError as err:
        raise CheckpointError(f"unsupported {kind.value} architecture: {err}") from err


def _check_state_dict(expected: Mapping[str, Tensor], found: Mapping[str, Tensor]) -> None:
    """Raise a CheckpointError naming missing/unexpected keys and shape mismatches."""
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    mismatched = [
        f"{key}: file {tuple(found[key].shape)}, model {tuple(value.shape)}"
        for key, value in expected.items()
        if key in found and found[key].shape != value.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches {_listing(mismatched)}")
    if problems:
        raise CheckpointError("; ".join(problems))


def _read(path: Path, map_location: str | torch.device) -> Any:
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        global_name = re.search(r"GLOBAL (\S+)", str(err))
        if "Weights only load failed" in str(err) and global_name:
            detail = f" ({global_name.group(1)})"
            raise CheckpointError(
                f"{path}: holds Python objects other than tensors{detail}, which are not loaded for safety; "
                "if you trust the file, load it with torch.load(path, weights_only=False) and torch.save "
                "only the model's state dict (names -> tensors)"
            ) from err
        raise CheckpointError(f"{path}: not a PyTorch checkpoint, or truncated/corrupt ({_describe(err)})") from err
    except Exception as err:  # torch raises RuntimeError, EOFError, ValueError, ... for bad files
        raise CheckpointError(f"{path}: not a PyTorch checkpoint, or truncated/corrupt ({_describe(err)})") from err


def _describe(err: BaseException) -> str:
    """First line of an exception, with its type: torch's messages run to paragraphs."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def load_pose_model(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[PoseModel, Architecture]:
    """Build the model a checkpoint describes, load its weights strictly, return it in eval mode.

    Args:
        path: ``.pth`` file written by mmpose 0.x/1.x, :func:`save_checkpoint`
            or ``torch.save(model.state_dict())``.
        map_location: device for the tensors and the returned model.

    Raises:
        CheckpointError: the message names the file and the problem (missing,
            unreadable, unsupported architecture, missing/unexpected keys,
            shape mismatches).
    """
    model, arch, _ = load_pose_checkpoint(path, map_location)
    return model, arch


def load_pose_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[PoseModel, Architecture, tuple[int, int] | None]:
    """:func:`load_pose_model`, plus the network input ``(width, height)``: the one its architecture is
    built for (an RTMPose head's, :attr:`~pose.model.RTMPoseArchitecture.fixed_input_size`), else the one
    the checkpoint was trained at when it records one (:func:`recorded_input_size`), else None."""
    path = Path(path)
    obj = _read(path, map_location)
    try:
        state_dict = filter_state_dict(obj)
        arch = infer_architecture(state_dict)
        model = build_model(arch)
        _check_state_dict(model.state_dict(), state_dict)
        model.load_state_dict(state_dict, strict=True)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err
    input_size = arch.fixed_input_size or recorded_input_size(obj)
    logger.debug("loaded %s: %s, input size %s", path, arch, input_size)
    return model.to(map_location).eval(), arch, input_size


def require_ap10k_keypoints(num_keypoints: int, weights: str | Path) -> None:
    """Refuse a model whose output is not AP-10K's 17 keypoints: its keypoints could not be named,
    drawn on the AP-10K skeleton or flip-tested with AP-10K's pairs.

    Raises:
        CheckpointError: naming ``weights`` and both counts.
    """
    if num_keypoints != NUM_KEYPOINTS:
        raise CheckpointError(f"{weights}: the model estimates {num_keypoints} keypoints; animalpose runs AP-10K "
                              f"models, which have {NUM_KEYPOINTS}")


def recorded_input_size(checkpoint: Any) -> tuple[int, int] | None:
    """The input ``(width, height)`` in a checkpoint's ``meta``: ``meta["input_size"]`` (written by
    :func:`train.train_pose.train`) or ``meta["settings"]["input_size"]`` (its earlier checkpoints).
    None when there is none, as in the official mmpose checkpoints (AP-10K's are all 256x256), or
    when it is not two positive multiples of 4."""
    meta = checkpoint.get("meta") if isinstance(checkpoint, Mapping) else None
    if not isinstance(meta, Mapping):
        return None
    settings = meta.get("settings")
    value = meta.get("input_size", settings.get("input_size") if isinstance(settings, Mapping) else None)
    if value is None:
        return None
    try:
        width, height = (int(v) for v in value)
    except (TypeError, ValueError):
        width = height = 0
    if min(width, height) <= 0 or width % 4 or height % 4:
        logger.warning("ignoring the checkpoint's recorded input size %r: not two positive multiples of 4", value)
        return None
    return width, height


def portable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s weights on the CPU in the standard (NCHW) memory order whatever the model trained in
    (e.g. channels-last), so that a saved file reads like any mmpose checkpoint."""
    return {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}


def save_checkpoint(model: nn.Module, path: str | Path, meta: Mapping[str, Any] | None = None) -> None:
    """Write ``{'state_dict': ..., 'meta': ...}`` as mmpose 0.x does, loadable by :func:`load_pose_model`.

    ``meta`` should hold plain Python values (str, int, float, lists, dicts) so
    that the file loads with ``weights_only=True``. The file is written to a
    temporary name first and then renamed, so an interrupted save never leaves
    a truncated checkpoint at ``path``.
    """
    path = Path(path)
    state_dict = portable_state_dict(model)
    tmp_path = path.with_name(path.name + ".tmp")
    torch.save({"state_dict": state_dict, "meta": dict(meta or {})}, tmp_path)
    tmp_path.replace(path)
