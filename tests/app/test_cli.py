"""The ``animalpose`` command line: pose on an image, info, and one-line errors."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from app.cli import build_parser, main

JAGUAR_BOX = "66,192,1092,512"


@pytest.fixture(scope="module")
def hrnet_small(reference_dir):
    return str(reference_dir / "hrnet_small" / "hrnet_small_ap10k.pth")


@pytest.fixture(scope="module")
def jaguar(samples_dir):
    return str(samples_dir / "ap10k" / "000000037516.jpg")


def test_pose_writes_json_and_image(tmp_path, hrnet_small, jaguar, reference_dir):
    out_json, out_img = tmp_path / "out.json", tmp_path / "out.png"
    code = main(["pose", jaguar, "--pose-weights", hrnet_small, "--box", JAGUAR_BOX,
                 "--box", "100,100,300,200", "--json", str(out_json), "--out", str(out_img), "--device", "cpu"])
    assert code == 0
    result = json.loads(out_json.read_text())
    assert result["image"] == jaguar
    assert [inst["bbox"] for inst in result["instances"]] == [[66, 192, 1092, 512], [100, 100, 300, 200]]
    expected = json.loads((reference_dir / "hrnet_small" / "keypoints_e2e.json").read_text())["keypoints_xy_score"]
    np.testing.assert_allclose(result["instances"][0]["keypoints"], expected, atol=1e-3, rtol=1e-4)
    drawn = cv2.imread(str(out_img))
    assert drawn.shape == cv2.imread(jaguar).shape
    assert not np.array_equal(drawn, cv2.imread(jaguar))


def test_pose_prints_json_without_outputs(capsys, hrnet_small, jaguar):
    assert main(["pose", jaguar, "--pose-weights", hrnet_small, "--box", JAGUAR_BOX, "--no-flip"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["instances"]) == 1 and len(result["instances"][0]["keypoints"]) == 17


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_image", "does not exist"),
        ("not_an_image", "not an image"),
        ("missing_weights", "not found"),
        ("truncated_weights", "truncated"),
        ("text_weights", "not a PyTorch checkpoint"),
    ],
)
def test_errors_are_one_line(case, expected, tmp_path, capsys, hrnet_small, jaguar):
    image, weights = jaguar, hrnet_small
    if case == "missing_image":
        image = str(tmp_path / "nope.jpg")
    elif case == "not_an_image":
        image = str(tmp_path / "fake.jpg")
        (tmp_path / "fake.jpg").write_text("hello")
    elif case == "missing_weights":
        weights = str(tmp_path / "nope.pth")
    elif case == "truncated_weights":
        data = open(hrnet_small, "rb").read()
        weights = str(tmp_path / "half.pth")
        open(weights, "wb").write(data[: len(data) // 2])
    elif case == "text_weights":
        weights = str(tmp_path / "notes.pth")
        open(weights, "w").write("not a checkpoint")
    code = main(["pose", image, "--pose-weights", weights, "--box", JAGUAR_BOX])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("box", ["1,2,3", "a,b,c,d", "0,0,-5,10"])
def test_bad_box_is_a_usage_error(box, hrnet_small, jaguar):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["pose", jaguar, "--box", box])
    assert info.value.code == 2


def test_wrong_keys_checkpoint_names_keys(tmp_path, capsys, jaguar, reference_dir):
    import torch

    state = torch.load(reference_dir / "resnet_small" / "resnet_small_ap10k.pth", weights_only=True)["state_dict"]
    state.pop("keypoint_head.final_layer.bias")
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": state}, path)
    assert main(["pose", jaguar, "--pose-weights", str(path), "--box", JAGUAR_BOX]) == 2
    err = capsys.readouterr().err
    assert "keypoint_head.final_layer.bias" in err and "broken.pth" in err


def test_info_lists_versions_and_cache(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMALPOSE_CACHE", str(tmp_path))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and str(tmp_path) in out and "hrnet_w32" in out


def test_console_script_help():
    exe = shutil.which("animalpose")
    assert exe is not None, "the package must install the animalpose console script"
    import subprocess

    done = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "pose" in done.stdout and "info" in done.stdout


def test_export_writes_checked_onnx(tmp_path, reference_dir):
    out = tmp_path / "pose.onnx"
    weights = str(reference_dir / "resnet_small" / "resnet_small_ap10k.pth")
    assert main(["export", "--pose-weights", weights, "--out", str(out)]) == 0
    import onnx

    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[2:]] == [256, 256]


def _input_hw(path) -> list[int]:
    import onnx

    return [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[2:]]


def test_export_takes_the_input_size_the_checkpoint_records(tmp_path, reference_dir):
    from pose.checkpoint import load_pose_model, save_checkpoint

    model, _ = load_pose_model(reference_dir / "resnet_small" / "resnet_small_ap10k.pth")
    save_checkpoint(model, tmp_path / "trained.pth", meta={"input_size": [96, 128]})
    assert main(["export", "--pose-weights", str(tmp_path / "trained.pth"), "--out", str(tmp_path / "a.onnx")]) == 0
    assert _input_hw(tmp_path / "a.onnx") == [128, 96]  # (height, width)
    assert main(["export", "--pose-weights", str(tmp_path / "trained.pth"), "--out", str(tmp_path / "b.onnx"),
                 "--width", "64"]) == 0
    assert _input_hw(tmp_path / "b.onnx") == [128, 64]


@pytest.mark.parametrize(
    "extra, message",
    [([], "nothing to export"), (["--det-out", "d.onnx"], "go together")],
)
def test_export_argument_errors(extra, message, capsys):
    assert main(["export", *extra]) == 2
    assert message in capsys.readouterr().err


def test_export_detector_through_cli(tmp_path, capsys):
    from ultralytics import YOLO

    weights = tmp_path / "y.pt"
    YOLO("yolo11n.yaml").save(str(weights))
    out = tmp_path / "det.onnx"
    assert main(["export", "--det-weights", str(weights), "--det-out", str(out), "--det-image-size", "320"]) == 0
    assert out.is_file()
    missing = tmp_path / "nope.pt"
    assert main(["export", "--det-weights", str(missing), "--det-out", str(out)]) == 2
    assert "nope.pt" in capsys.readouterr().err
