"""Fixtures of the RTMPose-m reference (tests/data/reference/rtmpose_m, made with mmpose 1.3.2)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

RTMPOSE_DIR = Path(__file__).resolve().parents[1] / "data" / "reference" / "rtmpose_m"


def _random_weights_module():
    spec = importlib.util.spec_from_file_location("rtmpose_random_weights", RTMPOSE_DIR / "random_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def rtmpose_dir() -> Path:
    return RTMPOSE_DIR


@pytest.fixture(scope="session")
def rtmpose_manifest() -> list[list]:
    """``[key, shape, dtype]`` of the official RTMPose-m AP-10K checkpoint, in its order."""
    return json.loads((RTMPOSE_DIR / "state_dict_manifest.json").read_text())


@pytest.fixture(scope="session")
def rtmpose_reference() -> dict:
    """reference.json: the cases and what mmpose 1.3.2 computed for them."""
    return json.loads((RTMPOSE_DIR / "reference.json").read_text())


@pytest.fixture(scope="session")
def rtmpose_weights(rtmpose_reference) -> dict[str, np.ndarray]:
    """The seeded random weights mmpose ran with (13.6 M, drawn again; checked against their digest)."""
    module = _random_weights_module()
    weights = module.reference_state_dict()
    assert module.digest(weights) == rtmpose_reference["weights_sha256"], "the random weights are not mmpose's"
    return weights


@pytest.fixture(scope="session")
def rtmpose_checkpoint(rtmpose_weights, tmp_path_factory) -> Path:
    """The reference weights in a file as mmpose 1.x publishes one: ``{'meta': ..., 'state_dict': ...}`` with
    the meta of ``published_meta_only.pth`` (numpy arrays in ``dataset_meta``)."""
    import torch

    meta = torch.load(RTMPOSE_DIR / "published_meta_only.pth", weights_only=False)["meta"]
    path = tmp_path_factory.mktemp("rtmpose") / "rtmpose-m_random-00000000_20230206.pth"
    torch.save({"meta": meta, "state_dict": {k: torch.from_numpy(v) for k, v in rtmpose_weights.items()}}, path)
    return path
