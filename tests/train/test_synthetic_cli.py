"""app.cli.synth: the ``synth dataset`` and ``synth video`` commands."""

from __future__ import annotations

import argparse
import json

import pytest

from app.cli.synth import parse_size, register


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="animalpose")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.mark.parametrize("text, expected", [("256", (256, 256)), ("640x360", (640, 360)), ("32X48", (32, 48))])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "0", "12x", "axb", "1x2x3", "-4"])
def test_parse_size_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError, match="size must be"):
        parse_size(text)


def test_dataset_command_writes_a_dataset(tmp_path):
    out = tmp_path / "ds"
    args = _parser().parse_args(
        ["synth", "dataset", "--n", "4", "--out", str(out), "--size", "64x48", "--val-fraction", "0.25",
         "--test-fraction", "0", "--format", "ap10k", "yolo", "--seed", "2"]
    )
    assert args.func(args) == 0
    train = json.loads((out / "annotations" / "ap10k-train-split1.json").read_text())
    assert len(train["images"]) == 3 and train["images"][0]["width"] == 64
    assert (out / "data.yaml").is_file() and not (out / "yolo-pose").exists()


def test_video_command_writes_video_and_ground_truth(tmp_path):
    out = tmp_path / "clip.mp4"
    args = _parser().parse_args(["synth", "video", "--animals", "2", "--frames", "3", "--out", str(out),
                                 "--size", "64x48", "--fps", "10"])
    assert args.func(args) == 0
    truth = json.loads(out.with_suffix(".json").read_text())
    assert out.is_file() and len(truth["frames"]) == 3 and len(truth["animals"]) == 2


def test_frames_command_writes_a_frame_dataset(tmp_path):
    out = tmp_path / "frames"
    args = _parser().parse_args(["synth", "frames", "--clips", "2", "--frames-per-clip", "2", "--frame-step", "3",
                                 "--out", str(out), "--size", "64x48", "--val-fraction", "0.5", "--test-fraction", "0",
                                 "--format", "yolo"])
    assert args.func(args) == 0
    assert sorted(p.name for p in (out / "images" / "train").glob("*.jpg")) == ["000000000001.jpg", "000000000002.jpg"]
    assert len(list((out / "labels" / "val").glob("*.txt"))) == 2 and not (out / "annotations").exists()


@pytest.mark.parametrize(
    "argv",
    [["synth"], ["synth", "dataset"], ["synth", "frames", "--out", "f", "--format", "coco"],
     ["synth", "video", "--out", "x.mp4", "--size", "big"], ["synth", "dataset", "--out", "d", "--format", "coco"]],
)
def test_bad_command_lines_exit(argv, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(argv)


@pytest.mark.parametrize(
    "argv",
    [["synth", "dataset", "--n", "0", "--out", "d"], ["synth", "dataset", "--val-fraction", "1.5", "--out", "d"],
     ["synth", "video", "--animals", "0", "--out", "v.mp4"], ["synth", "video", "--fps", "0", "--out", "v.mp4"],
     ["synth", "frames", "--clips", "0", "--out", "f"], ["synth", "frames", "--size", "16", "--out", "f"]],
)
def test_invalid_settings_return_an_error_status(argv, tmp_path, caplog):
    args = _parser().parse_args(argv)
    args.out = tmp_path / args.out
    assert args.func(args) == 2
    assert "must" in caplog.text
    assert not any(tmp_path.iterdir())
