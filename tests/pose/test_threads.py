"""pose.threads.torch_threads: the count is set for the block and put back after it."""

from __future__ import annotations

import pytest
import torch

from pose.threads import torch_threads


def test_count_is_set_inside_and_restored_after():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_count_changed_inside_the_block_is_put_back_even_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads():
        torch.set_num_threads(before + 1)  # what ultralytics does to the whole process
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_threads_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"), torch_threads(0):
        pass
