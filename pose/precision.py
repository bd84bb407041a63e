"""The precision switch shared by the pose model and the detector: EXACT or FAST, and what each runs.

* ``EXACT``: float32 with cuDNN's TF32 convolutions off. On the GPU the pose model's keypoints equal
  mmpose's and our CPU path's within float32 rounding.
* ``FAST``: float16 weights and activations, TF32 allowed for whatever still runs in float32. Keypoints
  move a little (``docs/gpu.md``: measured by ``bench.gpu_check``).

The pose model runs channels-last on CUDA in both modes (``PoseSettings.channels_last``, on by default);
the detector keeps the memory format ultralytics gives it.

On the CPU both modes run float32, exactly as before the switch existed: FAST equals EXACT there.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


class Precision(enum.Enum):
    """How the networks compute on a GPU (see the module docstring)."""

    EXACT = "exact"
    FAST = "fast"


#: The precision of the commands that write results to keep (``pose``, ``track``, ``eval``, the web
#: app's Image and Video tabs): the keypoints equal mmpose's.
DEFAULT_PRECISION = Precision.EXACT
#: The precision of live video (``animalpose live``, the web app's Webcam tab), where latency counts
#: more than a sub-pixel drift of a few keypoints.
LIVE_PRECISION = Precision.FAST


def as_precision(value: Precision | str, name: str = "precision") -> Precision:
    """``value`` as a :class:`Precision` (its name or value accepted, any case); a ValueError names ``name``."""
    if isinstance(value, Precision):
        return value
    if isinstance(value, str):
        for member in Precision:
            if value.lower() in (member.value, member.name.lower()):
                return member
    raise ValueError(f"{name} must be one of {[p.value for p in Precision]}, got {value!r}")


@dataclass(frozen=True)
class ComputePlan:
    """What a network runs with on one device, resolved from the settings.

    Attributes:
        dtype: the weights' and activations' dtype (float16 or float32).
        channels_last: convert the weights and inputs to channels-last.
        tf32: allow cuDNN's TF32 convolutions while the network runs.
    """

    dtype: torch.dtype = torch.float32
    channels_last: bool = False
    tf32: bool = False

    @property
    def half(self) -> bool:
        return self.dtype == torch.float16


def compute_plan(
    precision: Precision, device: str | torch.device, half: bool = False, tf32: bool = False,
    channels_last: bool = True,
) -> ComputePlan:
    """The :class:`ComputePlan` of ``precision`` on ``device``.

    ``half`` and ``tf32`` are finer controls kept from before the switch: ``half`` asks for float16 (as
    FAST does), ``tf32`` allows TF32 in float32 (FAST allows it too). ``channels_last`` applies in both
    modes. On the CPU every plan is plain float32 in the default memory format.
    """
    if torch.device(device).type != "cuda":
        return ComputePlan()
    fast = precision is Precision.FAST
    return ComputePlan(
        dtype=torch.float16 if fast or half else torch.float32, channels_last=channels_last, tf32=fast or tf32
    )


_tf32_lock = threading.Lock()
_tf32_users = 0
_tf32_before = True


@contextmanager
def cudnn_tf32(allowed: bool) -> Iterator[None]:
    """cuDNN's TF32 convolutions allowed or not inside the block. The flag is process-wide: blocks may
    overlap in several threads (the detector running ahead of the pose model), so it is set by the first
    block to enter and restored by the last to leave, not by each (which would let one thread restore it
    while another still runs). Blocks that overlap must agree (both networks of a run share one
    precision); the last to enter decides otherwise."""
    global _tf32_users, _tf32_before
    with _tf32_lock:
        if _tf32_users == 0:
            _tf32_before = torch.backends.cudnn.allow_tf32
        _tf32_users += 1
        torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        with _tf32_lock:
            _tf32_users -= 1
            if _tf32_users == 0:
                torch.backends.cudnn.allow_tf32 = _tf32_before
