"""Shared pytest fixtures: paths to the copied reference data."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parent / "data"
REFERENCE_DIR = DATA_DIR / "reference"
SAMPLES_DIR = DATA_DIR / "samples"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES_DIR


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module: on a busy 2-core machine OpenMP's spinning threads
    slow training about 20x."""
    from pose.threads import torch_threads

    with torch_threads(1):
        yield
