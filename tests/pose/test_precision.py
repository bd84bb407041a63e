"""The precision switch: names accepted, and what EXACT and FAST run on each device."""

from __future__ import annotations

import pytest
import torch

from pose.precision import ComputePlan, Precision, as_precision, compute_plan


@pytest.mark.parametrize(
    ("value", "expected"),
    [("exact", Precision.EXACT), ("FAST", Precision.FAST), ("Fast", Precision.FAST), (Precision.FAST, Precision.FAST)],
)
def test_as_precision_accepts_names_and_members(value, expected):
    assert as_precision(value) is expected


@pytest.mark.parametrize("value", ["half", "", None, 16])
def test_as_precision_names_the_field_it_rejects(value):
    with pytest.raises(ValueError, match="precision"):
        as_precision(value)


F32, F16 = torch.float32, torch.float16


@pytest.mark.parametrize(
    ("precision", "device", "kwargs", "plan"),
    [
        (Precision.EXACT, "cpu", {}, ComputePlan(F32, False, False)),
        (Precision.FAST, "cpu", {}, ComputePlan(F32, False, False)),  # FAST equals EXACT on the CPU
        (Precision.FAST, "cpu", {"half": True, "tf32": True}, ComputePlan(F32, False, False)),
        (Precision.EXACT, "cuda", {}, ComputePlan(F32, True, False)),
        (Precision.EXACT, "cuda:1", {"channels_last": False}, ComputePlan(F32, False, False)),
        (Precision.EXACT, "cuda", {"tf32": True}, ComputePlan(F32, True, True)),
        (Precision.EXACT, "cuda", {"half": True}, ComputePlan(F16, True, False)),
        (Precision.FAST, "cuda", {}, ComputePlan(F16, True, True)),
        (Precision.FAST, "cuda", {"channels_last": False}, ComputePlan(F16, False, True)),
    ],
)
def test_compute_plan_per_mode_and_device(precision, device, kwargs, plan):
    assert compute_plan(precision, device, **kwargs) == plan
    assert plan.half is (plan.dtype == F16)


def test_overlapping_tf32_blocks_in_two_threads_restore_the_flag_only_when_both_left():
    """The detector (a thread of its own) and the pose model both run inside cudnn_tf32 blocks; one
    leaving must not restore the flag while the other still computes."""
    import threading

    import torch

    from pose.precision import cudnn_tf32

    before = torch.backends.cudnn.allow_tf32
    inside, release, seen = threading.Event(), threading.Event(), []

    def other() -> None:
        with cudnn_tf32(not before):
            inside.set()
            release.wait(5)
            seen.append(torch.backends.cudnn.allow_tf32)

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(5)
    with cudnn_tf32(not before):
        pass  # leaves first
    release.set()
    thread.join(5)
    assert seen == [not before]  # still set while the other block ran
    assert torch.backends.cudnn.allow_tf32 == before  # restored once both left
