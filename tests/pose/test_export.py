"""ONNX export round trip: dynamic batch, outputs equal torch's within float tolerance."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from pose.checkpoint import load_pose_model
from pose.export import export_onnx, onnx_session, run_onnx


@pytest.mark.parametrize("name", ["hrnet_small", "resnet_small"])
def test_onnx_matches_torch_for_any_batch(name, reference_dir, tmp_path):
    model, _ = load_pose_model(reference_dir / name / f"{name}_ap10k.pth")
    path = export_onnx(model, tmp_path / "pose.onnx")
    onnx.checker.check_model(str(path))
    assert not list(tmp_path.glob("*.part"))
    session = onnx_session(path, threads=2)
    inputs = np.load(reference_dir / "preprocess" / "000000037516_input.npy")
    batch = np.concatenate([inputs, inputs[..., ::-1], np.zeros_like(inputs)])
    with torch.inference_mode():
        expected = model(torch.from_numpy(batch.copy())).numpy()
    got = run_onnx(session, batch)
    assert got.shape == expected.shape == (3, 17, 64, 64)
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
    reference = np.load(reference_dir / name / "heatmaps.npy")
    np.testing.assert_allclose(got[:1], reference, atol=1e-4 * np.abs(reference).max())


def test_rtmpose_exports_simcc_x_and_y(tmp_path):
    from pose.model import RTMPoseArchitecture, build_model

    torch.manual_seed(0)
    model = build_model(RTMPoseArchitecture(input_size=(64, 96), widths=(8, 16, 32, 64), depths=(1, 1, 1, 1),
                                            stem_width=8, hidden_dims=16, attention_dims=8)).eval()
    path = export_onnx(model, tmp_path / "rtmpose.onnx", input_size=(64, 96))
    graph = onnx.load(str(path)).graph
    assert [o.name for o in graph.output] == ["simcc_x", "simcc_y"]
    session = onnx_session(path, threads=1)
    batch = np.random.default_rng(0).standard_normal((3, 3, 96, 64)).astype(np.float32)
    simcc_x, simcc_y = session.run(None, {"input": batch})
    assert simcc_x.shape == (3, 17, 128) and simcc_y.shape == (3, 17, 192)
    with torch.inference_mode():
        expected = model(torch.from_numpy(batch)).numpy()
    got = run_onnx(session, batch)  # both outputs, side by side as the torch model gives them
    assert got.shape == expected.shape == (3, 17, 320)
    np.testing.assert_allclose(got, expected, atol=1e-4 * (expected.max() - expected.min()))
