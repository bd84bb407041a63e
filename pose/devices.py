"""The one device convention of every setting: ``"auto"`` (CUDA when torch sees a GPU, else the CPU),
``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""

from __future__ import annotations

import re

import torch

#: The device every setting defaults to: the first CUDA GPU when torch sees one, else the CPU.
AUTO = "auto"

_PATTERN = re.compile(r"auto|cpu|cuda(?::\d+)?")


def check_device_name(device: object, name: str = "device") -> str:
    """``device`` if it is a device name of this convention (any case); a ValueError naming ``name`` else."""
    if not isinstance(device, str) or not _PATTERN.fullmatch(device.strip().lower()):
        raise ValueError(f"{name} must be auto, cpu, cuda or cuda:N, got {device!r}")
    return device.strip().lower()


def resolve_device(device: str = AUTO) -> str:
    """The torch device ``device`` names here: ``"auto"`` becomes ``"cuda"`` or ``"cpu"``.

    Raises:
        ValueError: not a device name, or a CUDA device that torch does not see on this machine.
    """
    device = check_device_name(device)
    if device == AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if not torch.cuda.is_available():
        raise ValueError(f"device {device}: torch {torch.__version__} sees no CUDA GPU here; use the CPU "
                         "(or a CUDA build of torch on a machine with an NVIDIA GPU)")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {device}: there are only {torch.cuda.device_count()} CUDA devices "
                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return device
