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
    assert result["source"]["name"] == jaguar and result["format_version"] == 2
    animals = result["frames"][0]["animals"]
    assert [a["bbox"] for a in animals] == [[66, 192, 1158, 704], [100, 100, 400, 300]]  # x1, y1, x2, y2
    assert [a["track_id"] for a in animals] == [1, 2] and [a["score"] for a in animals] == [1.0, 1.0]
    expected = json.loads((reference_dir / "hrnet_small" / "keypoints_e2e.json").read_text())["keypoints_xy_score"]
    np.testing.assert_allclose(animals[0]["keypoints"], expected, atol=1e-3, rtol=1e-4)
    drawn = cv2.imread(str(out_img))
    assert drawn.shape == cv2.imread(jaguar).shape
    assert not np.array_equal(drawn, cv2.imread(jaguar))


def test_pose_prints_json_without_outputs(capsys, hrnet_small, jaguar):
    assert main(["pose", jaguar, "--pose-weights", hrnet_small, "--box", JAGUAR_BOX, "--no-flip"]) == 0
    result = json.loads(capsys.readouterr().out)
    animals = result["frames"][0]["animals"]
    assert len(animals) == 1 and len(animals[0]["keypoints"]) == 17


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


# --------------------------------------------------------------------------------------------------
# Nothing lost, nothing wrong, never a traceback (issue #25)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("INFO ", "WARNING "))]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("value", ["nan,1,2,3", "1,inf,2,3", "1,2,-inf,3", "1,2,3,nan"])
def test_non_finite_boxes_are_refused(value, hrnet_small, jaguar, tmp_path, capsys):
    out = tmp_path / "o.json"
    assert main(["pose", jaguar, "--pose-weights", hrnet_small, "--box", value, "--json", str(out)]) == 2
    assert "must be finite" in _one_error_line(capsys)
    assert not (tmp_path / "o.json").exists()


def test_a_box_starting_left_of_the_image_is_accepted_as_typed(hrnet_small, jaguar, tmp_path):
    out = tmp_path / "o.json"
    assert main(["pose", jaguar, "--pose-weights", hrnet_small, "--box", "-20,30,100,80", "--box", "-5.5,-1,60,50",
                 "--json", str(out), "--no-flip"]) == 0
    animals = json.loads(out.read_text())["frames"][0]["animals"]
    assert [a["bbox"] for a in animals] == [[-20, 30, 80, 110], [-5.5, -1, 54.5, 49]]


def test_boxes_are_used_in_double_precision(hrnet_small, jaguar, tmp_path):
    """mmpose computes the centre and scale of a box in float64; a float32 box moves them (and the scores)."""
    from pose.estimator import Backend, PoseEstimator, PoseSettings, prepare_inputs

    box = [722.61, 393.97, 642.31, 354.17]
    out = tmp_path / "o.json"
    assert main(["pose", jaguar, "--pose-weights", hrnet_small, "--box", ",".join(map(str, box)),
                 "--json", str(out), "--device", "cpu", "--backend", "torch"]) == 0
    got = np.array(json.loads(out.read_text())["frames"][0]["animals"][0]["keypoints"])
    estimator = PoseEstimator.from_weights(hrnet_small, PoseSettings(backend=Backend.TORCH))
    image = cv2.imread(jaguar)
    expected = estimator.estimate_xywh(image, np.array([box], np.float64)).keypoints[0]
    np.testing.assert_allclose(got, expected, atol=5e-4, rtol=0)  # the JSON keeps 0.001 px
    as64 = prepare_inputs(image, np.array([box], np.float64), PoseSettings())
    as32 = prepare_inputs(image, np.array([box], np.float32), PoseSettings())
    assert not np.array_equal(as64.center, as32.center) or not np.array_equal(as64.scale, as32.scale)


def test_a_box_outside_the_image_is_warned_about(hrnet_small, jaguar, tmp_path, caplog):
    assert main(["pose", jaguar, "--pose-weights", hrnet_small, "--box", "5000,5000,100,80", "--no-flip",
                 "--json", str(tmp_path / "o.json")]) == 0
    assert "lies entirely outside the 1200x867 image" in caplog.text


def test_pose_json_is_standard_json_even_for_non_finite_keypoints(hrnet_small, jaguar, tmp_path, monkeypatch):
    from pose.estimator import PoseEstimator
    from pose.structures import Poses

    def nan_poses(self, image, boxes, clean=True):
        keypoints = np.full((len(boxes), 17, 3), np.nan, np.float32)
        return Poses(keypoints, np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1))

    monkeypatch.setattr(PoseEstimator, "estimate_xywh", nan_poses)
    out = tmp_path / "o.json"
    assert main(["pose", jaguar, "--pose-weights", hrnet_small, "--box", JAGUAR_BOX, "--json", str(out),
                 "--out", str(tmp_path / "o.jpg")]) == 0
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    animal = json.loads(text)["frames"][0]["animals"][0]
    assert animal["keypoints"][0] == [None, None, None] and animal["status"][0] == 0  # missing


def test_a_jpeg_cut_short_is_refused(hrnet_small, jaguar, tmp_path, capsys):
    data = open(jaguar, "rb").read()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    assert main(["pose", str(cut), "--pose-weights", hrnet_small, "--box", JAGUAR_BOX]) == 2
    assert "is damaged: its JPEG data ends early" in _one_error_line(capsys)


@pytest.mark.parametrize("flag", ["--json", "--out"])
def test_pose_refuses_to_overwrite_its_image(flag, hrnet_small, jaguar, tmp_path, capsys):
    image = tmp_path / "a.jpg"
    shutil.copy(jaguar, image)
    before = image.read_bytes()
    assert main(["pose", str(image), "--pose-weights", hrnet_small, "--box", JAGUAR_BOX, flag, str(image)]) == 2
    assert "is the input" in _one_error_line(capsys) and image.read_bytes() == before


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--out", "x.xyz"], "cannot write images with the extension '.xyz'"),
        (["--json", "{file}/x.json"], "is a file, not a folder"),
        (["--out", "{dir}"], "it is a folder"),
        (["--json", "same.png", "--out", "same.png"], "two outputs of this run are the same file"),
    ],
)
def test_pose_output_problems_are_found_before_any_work(extra, message, hrnet_small, jaguar, tmp_path, capsys,
                                                        monkeypatch):
    import pose.estimator

    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    monkeypatch.setattr(pose.estimator.PoseEstimator, "from_weights",
                        lambda *a, **k: pytest.fail("loaded the model before checking the outputs"))
    extra = [e.format(file=tmp_path / "file", dir=tmp_path / "dir") for e in extra]
    assert main(["pose", jaguar, "--pose-weights", hrnet_small, "--box", JAGUAR_BOX, *extra]) == 2
    assert message in _one_error_line(capsys)


def test_pose_on_a_read_only_place_is_one_line(hrnet_small, jaguar, tmp_path, capsys, monkeypatch):
    import errno
    import os

    import app.sinks.base

    real_open = open

    def read_only(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).startswith(str(tmp_path)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(app.sinks.base, "open", read_only, raising=False)
    assert main(["pose", jaguar, "--pose-weights", hrnet_small, "--box", JAGUAR_BOX, "--no-flip",
                 "--json", str(tmp_path / "o.json")]) == 2
    assert "read-only file system" in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_pose_without_box_and_no_detector_weights_is_one_line(hrnet_small, jaguar, tmp_path, capsys):
    assert main(["pose", jaguar, "--pose-weights", hrnet_small, "--det-weights", str(tmp_path / "none.pt")]) == 2
    line = _one_error_line(capsys)
    assert "no --box given and the detector failed" in line and "none.pt" in line


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_one_line(device, hrnet_small, jaguar, capsys):
    assert main(["pose", jaguar, "--pose-weights", hrnet_small, "--box", JAGUAR_BOX, "--device", device]) == 2
    assert "sees no CUDA GPU here; use --device cpu" in _one_error_line(capsys)


def test_unknown_device_is_one_line(hrnet_small, jaguar, capsys):
    assert main(["pose", jaguar, "--pose-weights", hrnet_small, "--box", JAGUAR_BOX, "--device", "tpu"]) == 2
    assert "--device must be auto, cpu, cuda or cuda:N" in _one_error_line(capsys)


def test_a_checkpoint_of_other_keypoints_is_refused(tmp_path, jaguar, reference_dir, capsys):
    import torch

    state = torch.load(reference_dir / "resnet_small" / "resnet_small_ap10k.pth", weights_only=True)["state_dict"]
    state["keypoint_head.final_layer.weight"] = state["keypoint_head.final_layer.weight"][:10]
    state["keypoint_head.final_layer.bias"] = state["keypoint_head.final_layer.bias"][:10]
    path = tmp_path / "ten.pth"
    torch.save({"state_dict": state}, path)
    for flags in ([], ["--no-flip"]):
        assert main(["pose", jaguar, "--pose-weights", str(path), "--box", JAGUAR_BOX, *flags]) == 2
        assert "the model estimates 10 keypoints; animalpose runs AP-10K models, which have 17" in \
            _one_error_line(capsys)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--width", "0"], "--width must be a multiple of 4 pixels, at least 8, got 0"),
        (["--height", "30"], "--height must be a multiple of 4"),
        (["--opset", "3"], "--opset must be an ONNX opset"),
    ],
)
def test_export_size_errors(extra, message, tmp_path, reference_dir, capsys):
    weights = str(reference_dir / "resnet_small" / "resnet_small_ap10k.pth")
    assert main(["export", "--pose-weights", weights, "--out", str(tmp_path / "m.onnx"), *extra]) == 2
    assert message in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_export_leaves_nothing_when_stopped(tmp_path, reference_dir, capsys, monkeypatch):
    """A SIGTERM (or Ctrl-C) during the check: no model under the final name, no temporary file."""
    import app.cli
    import pose.export

    def stopped(*args, **kwargs):
        raise app.cli.Terminated("SIGTERM")

    monkeypatch.setattr(pose.export, "run_onnx", stopped)
    weights = str(reference_dir / "resnet_small" / "resnet_small_ap10k.pth")
    assert main(["export", "--pose-weights", weights, "--out", str(tmp_path / "m.onnx")]) == 143
    assert capsys.readouterr().err.strip().splitlines()[-1] == "animalpose export: stopped by SIGTERM"
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_to_overwrite_the_weights(tmp_path, reference_dir, capsys):
    weights = tmp_path / "m.onnx"
    shutil.copy(reference_dir / "resnet_small" / "resnet_small_ap10k.pth", weights)
    before = weights.read_bytes()
    assert main(["export", "--pose-weights", str(weights), "--out", str(weights)]) == 2
    assert "is the input" in _one_error_line(capsys) and weights.read_bytes() == before


def test_usage_errors_are_one_line(capsys):
    assert main(["track", "x.mp4", "--fps", "0"]) == 2
    assert _one_error_line(capsys) == ("animalpose track: error: argument --fps: must be a positive number, got '0' "
                                       "(see 'animalpose track --help')")


def test_unexpected_errors_are_one_line_with_a_hint(monkeypatch, capsys):
    import app.cli.pose

    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(app.cli.pose, "cmd_info", broken)
    assert main(["info"]) == 1
    assert _one_error_line(capsys) == ("animalpose info: unexpected error: ZeroDivisionError: division by zero "
                                       "(run with -v for details and report it)")


@pytest.mark.parametrize(
    "argv, live, expected",
    [
        (["track", "c.mp4"], False, "exact"),
        (["live", "0"], True, "fast"),
        (["track", "c.mp4", "--precision", "fast"], False, "fast"),
        (["live", "0", "--precision", "exact"], True, "exact"),
        (["track", "c.mp4", "--half"], False, "fast"),
        (["pose", "i.jpg"], False, "exact"),
    ],
)
def test_precision_defaults_per_command(argv, live, expected):
    """One switch for every command: exact where results are kept, fast for live video."""
    import app.cli.video as cli_track
    from app.cli.common import pose_settings_from_args
    from pose.precision import DEFAULT_PRECISION, LIVE_PRECISION

    args = build_parser().parse_args(argv)
    settings = pose_settings_from_args(args, LIVE_PRECISION if live else DEFAULT_PRECISION)
    assert settings.precision.value == expected and settings.cuda_graphs
    detector = cli_track.detector_settings_from_args(build_parser().parse_args(["track", "c.mp4"]), settings)
    assert detector.precision is settings.precision and detector.device == settings.device


def test_half_and_exact_together_are_refused(hrnet_small, jaguar, capsys):
    assert main(["pose", jaguar, "--pose-weights", hrnet_small, "--box", JAGUAR_BOX, "--half",
                 "--precision", "exact"]) == 2
    assert "--half asks for --precision fast" in _one_error_line(capsys)


def test_no_cuda_graphs_reaches_the_settings():
    from app.cli.common import pose_settings_from_args

    assert not pose_settings_from_args(build_parser().parse_args(["track", "c.mp4", "--no-cuda-graphs"])).cuda_graphs


def test_export_of_a_fixed_size_model_refuses_another_size(tmp_path, capsys):
    import torch

    from pose.model import ARCHITECTURES, build_model

    path = tmp_path / "rtm.pth"
    torch.save({"state_dict": build_model(ARCHITECTURES["rtmpose_m"]).state_dict()}, path)
    assert main(["export", "--pose-weights", str(path), "--out", str(tmp_path / "m.onnx"), "--width", "192"]) == 2
    assert "takes only 256x256 input" in _one_error_line(capsys)
