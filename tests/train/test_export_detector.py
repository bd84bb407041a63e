"""Detector ONNX export with a random YOLO built offline: file, parity with torch, argument errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pose.threads import torch_threads
from train.export_detector import check_parity, export_detector_command, export_detector_onnx, parity_input

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "ap10k" / "000000037516.jpg"


@pytest.fixture(scope="module")
def yolo_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("yolo") / "y.pt"
    with torch_threads():
        YOLO("yolo11n.yaml").save(str(path))
    return path


def test_export_writes_a_checked_model_that_ultralytics_loads(yolo_weights: Path, tmp_path: Path) -> None:
    from ultralytics import YOLO

    threads = torch.get_num_threads()
    out = export_detector_onnx(yolo_weights, tmp_path / "models" / "det.onnx", image_size=320, check_image=SAMPLE)
    assert out == tmp_path / "models" / "det.onnx" and out.is_file()
    assert torch.get_num_threads() == threads
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["det.onnx"]  # no temporary left behind
    assert sorted(p.name for p in yolo_weights.parent.iterdir()) == ["y.pt"]  # nothing written beside the weights
    with torch_threads():
        pt = YOLO(str(yolo_weights)).predict(str(SAMPLE), imgsz=320, conf=0.0, max_det=5, device="cpu",
                                             verbose=False)
        onnx = YOLO(str(out), task="detect").predict(str(SAMPLE), imgsz=320, conf=0.0, max_det=5, device="cpu",
                                                      verbose=False)
    np.testing.assert_allclose(onnx[0].boxes.conf.numpy(), pt[0].boxes.conf.numpy(), atol=1e-3)


def test_command_exports(yolo_weights: Path, tmp_path: Path) -> None:
    export_detector_command(yolo_weights, tmp_path / "det.onnx", image_size=256)
    assert (tmp_path / "det.onnx").stat().st_size > 1_000_000


@pytest.mark.parametrize(
    ("weights", "out", "size", "message"),
    [
        ("missing.pt", "det.onnx", 640, "no such file"),
        ("y.yaml", "det.onnx", 640, "expected an ultralytics .pt"),
        ("y.pt", "det.engine", 640, "must end in .onnx"),
        ("y.pt", "det.onnx", 500, "multiple of 32"),
        ("y.pt", "det.onnx", 0, "multiple of 32"),
    ],
)
def test_command_rejects_bad_arguments(tmp_path: Path, weights: str, out: str, size: int, message: str) -> None:
    for name in ("y.pt", "y.yaml"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ValueError, match=message):
        export_detector_command(tmp_path / weights, tmp_path / out, size)
    assert not (tmp_path / out).exists()


def test_command_reports_unreadable_weights(tmp_path: Path) -> None:
    (tmp_path / "y.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="y.pt"):
        export_detector_command(tmp_path / "y.pt", tmp_path / "det.onnx", 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.pt"]


@pytest.mark.parametrize(
    ("got_delta", "ok"),
    [(0.0, True), (5e-4, True), (0.1, True), (0.2, False)],  # tolerance at 100: 1e-3 + 0.1
)
def test_check_parity(got_delta: float, ok: bool) -> None:
    expected = np.array([[0.0, 100.0]], dtype=np.float32)
    got = expected + np.array([[0.0, got_delta]], dtype=np.float32)
    if ok:
        assert check_parity(expected, got) == pytest.approx(got_delta, abs=1e-5)
    else:
        with pytest.raises(RuntimeError, match="differs from torch"):
            check_parity(expected, got)


def test_check_parity_rejects_shape_mismatch() -> None:
    with pytest.raises(RuntimeError, match="outputs"):
        check_parity(np.zeros((1, 84, 10)), np.zeros((1, 84, 11)))


def test_parity_input() -> None:
    images = parity_input(64, SAMPLE)
    assert images.shape == (2, 3, 64, 64) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1
    np.testing.assert_array_equal(images[1], images[0][:, :, ::-1])
    assert parity_input(32).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="cannot read"):
        parity_input(32, SAMPLE.with_name("missing.jpg"))
