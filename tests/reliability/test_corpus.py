"""The bad-input and fault corpus: how every command meets what users really give it.

Each case runs the real command line (``app.cli.main``) on a workspace of inputs (an image, a clip, a
folder of videos, image sequences, checkpoints, evaluation files, damaged and empty files) and checks
the contract of the command line:

- the exit code: 0, 1 (a run that went on past a failure: a lost stream) or 2 (the user's input);
- stderr: no traceback, and on failure exactly one line ``animalpose COMMAND: error: ...`` naming the
  problem (log lines of the run may precede it); documented warnings where the case expects one;
- no input modified, and nothing new among the inputs;
- on failure nothing under the outputs' final names, and never a temporary file (``.part``, lock,
  probe) or an ``animalpose-*`` folder in the temporary folder left behind;
- on success every output holds every processed frame.

The networks are stood in for by the ground truth of the synthetic clip (detector) and the small
reference HRNet (pose model), as in the CLI tests. Signals (Ctrl-C, SIGTERM) run in a process of their
own: see ``test_signals.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import pytest
import torch
import ultralytics  # noqa: F401  (imported here, its logger binds to pytest's session stream, not a test's)
from streaming import MJPEGServer, panning_frames

import app.cli.video as cli_track
from animalpose import Model
from app.cli import main
from app.runs import Models
from train.e2e import GroundTruthDetector

EVAL = Path(__file__).resolve().parents[1] / "data" / "reference" / "eval"
TEMPORARY = re.compile(r"(\.part\b|\.part\.|\.lock$|animalpose-probe|\.tmp$)")


@dataclass(frozen=True)
class Case:
    """One command line and what must come of it.

    Attributes:
        argv: the arguments, with ``{name}`` for the workspace's files (see :func:`workspace`) and
            ``{out}`` for a folder of outputs that does not exist yet.
        code: the exit code.
        error: a regular expression the one error line must match (None for exit code 0).
        warning: text that must appear in the output (a documented warning), if any.
        outputs: files (relative to the workspace) that must exist afterwards.
    """

    argv: tuple[str, ...]
    code: int
    error: str | None = None
    warning: str | None = None
    outputs: tuple[str, ...] = field(default_factory=tuple)


POSE = ("pose", "{image}", "--pose-weights", "{weights}", "--no-flip")
TRACK = ("track", "{clip}", "-q", "--no-flip")
EXPORT = ("export", "--pose-weights", "{weights}")
EVAL_CMD = ("eval", "--gt", "{gt}")

CASES: dict[str, Case] = {
    # pose: images, boxes, outputs, models, devices
    "pose/missing image": Case(("pose", "{missing}.jpg", "--box", "1,2,3,4"), 2, "does not exist"),
    "pose/image is a folder": Case(("pose", "{videos}", "--box", "1,2,3,4"), 2, "is not a file"),
    "pose/text named .jpg": Case(("pose", "{text_jpg}", "--box", "1,2,3,4"), 2, "not an image OpenCV can read"),
    "pose/empty image": Case(("pose", "{empty_jpg}", "--box", "1,2,3,4"), 2, "is empty"),
    "pose/jpeg cut in half": Case(("pose", "{cut_jpg}", "--box", "1,2,3,4"), 2, "damaged: its JPEG data ends early"),
    "pose/box nan": Case((*POSE, "--box", "nan,1,2,3"), 2, "box numbers must be finite"),
    "pose/box inf": Case((*POSE, "--box", "1,2,inf,3"), 2, "box numbers must be finite"),
    "pose/box of 3 numbers": Case((*POSE, "--box", "1,2,3"), 2, "box must have 4 numbers"),
    "pose/box of zero width": Case((*POSE, "--box", "1,2,0,3"), 2, "width and height must be positive"),
    "pose/box left of the image": Case((*POSE, "--box", "-20,30,100,80", "--json", "{out}/p.json"), 0,
                                       outputs=("out/p.json",)),
    "pose/box outside the image": Case((*POSE, "--box", "5000,5000,100,80", "--json", "{out}/p.json"), 0,
                                       warning="lies entirely outside", outputs=("out/p.json",)),
    "pose/json over the image": Case((*POSE, "--box", "1,2,3,4", "--json", "{image}"), 2, "is the input"),
    "pose/image over the image": Case((*POSE, "--box", "1,2,3,4", "--out", "{image}"), 2, "is the input"),
    "pose/unknown image extension": Case((*POSE, "--box", "1,2,3,4", "--out", "{out}/x.xyz"), 2,
                                         "cannot write images with the extension"),
    "pose/json under a file": Case((*POSE, "--box", "1,2,3,4", "--json", "{text_jpg}/x.json"), 2,
                                   "is a file, not a folder"),
    "pose/json is a folder": Case((*POSE, "--box", "1,2,3,4", "--json", "{videos}"), 2, "it is a folder"),
    "pose/two outputs one file": Case((*POSE, "--box", "1,2,3,4", "--json", "{out}/a.png", "--out", "{out}/a.png"),
                                      2, "two outputs of this run are the same file"),
    "pose/missing weights": Case(("pose", "{image}", "--box", "1,2,3,4", "--pose-weights", "{missing}.pth"), 2,
                                 "not found"),
    "pose/weights cut in half": Case(("pose", "{image}", "--box", "1,2,3,4", "--pose-weights", "{cut_pth}"), 2,
                                     "truncated"),
    "pose/text as weights": Case(("pose", "{image}", "--box", "1,2,3,4", "--pose-weights", "{text_pth}"), 2,
                                 "not a PyTorch checkpoint"),
    "pose/ten keypoints": Case(("pose", "{image}", "--box", "1,2,3,4", "--pose-weights", "{ten_pth}"), 2,
                               "estimates 10 keypoints; animalpose runs AP-10K models"),
    "pose/no box, no detector weights": Case((*POSE, "--det-weights", "{missing}.pt"), 2,
                                             "no --box given and the detector failed"),
    "pose/no box, text as detector": Case((*POSE, "--det-weights", "{text_pt}"), 2,
                                          "no --box given and the detector failed"),
    "pose/no box, pose checkpoint as detector": Case((*POSE, "--det-weights", "{weights}"), 2,
                                                     "small.pth is not a YOLO weights file"),
    "pose/device tpu": Case((*POSE, "--box", "1,2,3,4", "--device", "tpu"), 2, "--device must be auto, cpu, cuda"),
    "pose/keypoint threshold 2": Case((*POSE, "--box", "1,2,3,4", "--kpt-thr", "2"), 2, "--kpt-thr must be in"),
    # track: sources, outputs, options
    "track/missing video": Case(("track", "{missing}.mp4", "--json", "{out}/r.json"), 2, "does not exist"),
    "track/text named .mp4": Case(("track", "{text_mp4}", "--json", "{out}/r.json"), 2, "cannot be read as a video"),
    "track/empty video": Case(("track", "{empty_mp4}", "--json", "{out}/r.json"), 2, "is empty"),
    "track/video over itself": Case((*TRACK, "--out", "{clip}"), 2, "is the input"),
    "track/json over the video": Case((*TRACK, "--json", "{clip}"), 2, "is the input"),
    "track/csv over the json": Case((*TRACK, "--json", "{out}/s.out", "--csv", "{out}/s.out"), 2,
                                    "two outputs of this run are the same file"),
    "track/json named .jsonl": Case((*TRACK, "--json", "{out}/x.jsonl"), 2, "give the JSON the extension .json"),
    "track/folder into itself": Case(("track", "{videos}", "--out-dir", "{videos}", "-q"), 2, "is the input"),
    "track/unknown video extension": Case((*TRACK, "--out", "{out}/v.xyz"), 2, "unknown video extension"),
    "track/csv is a folder": Case((*TRACK, "--csv", "{videos}"), 2, "it is a folder"),
    "track/json under a file": Case((*TRACK, "--json", "{text_mp4}/r.json"), 2, "is a file, not a folder"),
    "track/fps 0": Case((*TRACK, "--fps", "0"), 2, "--fps: must be a positive number"),
    "track/det-every 0": Case((*TRACK, "--det-every", "0"), 2, "--det-every must be an integer >= 1"),
    "track/kpt-thr 5": Case((*TRACK, "--kpt-thr", "5"), 2, "--kpt-thr must be in"),
    "track/trails -1": Case((*TRACK, "--trails", "-1"), 2, "--trails must be >= 0"),
    "track/stream given to track": Case(("track", "rtsp://127.0.0.1:9/cam"), 2, "use 'animalpose live"),
    "track/single files for a folder": Case(("track", "{videos}", "--json", "{out}/r.json"), 2,
                                            "writes into --out-dir"),
    "track/unreadable image in a sequence": Case(
        ("track", "{images}", "-q", "--no-flip", "--out", "{out}/v.mp4", "--json", "{out}/r.json",
         "--csv", "{out}/r.csv", "--coco", "{out}/r.coco.json"), 0, warning="skipping frame 2",
        outputs=("out/v.mp4", "out/r.json", "out/r.jsonl", "out/r.csv", "out/r.coco.json")),
    "track/a bad video among good ones": Case(("track", "{mixed}", "--out-dir", "{out}", "--save", "json", "-q",
                                               "--no-flip"), 1, r"failed: .*b\.mp4", outputs=("out/a.json",)),
    # live
    "live/unreachable stream": Case(("live", "http://127.0.0.1:9/stream", "--max-reconnect", "1"), 2,
                                    "cannot open the stream"),
    "live/offline smoothing": Case(("live", "{clip}", "--smoothing", "offline"), 2, "live streams use causal"),
    "live/negative max frames": Case(("live", "{clip}", "--max-frames", "-1"), 2, "--max-frames must be 0"),
    "live/negative reconnect time": Case(("live", "{clip}", "--max-reconnect", "-1"), 2, "--max-reconnect"),
    "live/output over the file": Case(("live", "{clip}", "--out", "{clip}"), 2, "is the input"),
    "live/a file ends at its end": Case(("live", "{clip}", "--json", "{out}/l.json", "--no-flip"), 0,
                                        outputs=("out/l.json", "out/l.jsonl")),
    # eval
    "eval/missing gt": Case(("eval", "--gt", "{missing}.json", "--pred", "{pred}"), 2, "missing.json"),
    "eval/pred not json": Case((*EVAL_CMD, "--pred", "{text_jpg}"), 2, "text.jpg"),
    "eval/json over the gt": Case((*EVAL_CMD, "--pred", "{pred}", "--json", "{gt}"), 2, "is the input"),
    "eval/json is a folder": Case((*EVAL_CMD, "--pred", "{pred}", "--json", "{videos}"), 2, "it is a folder"),
    "eval/null keypoints count as misses": Case((*EVAL_CMD, "--pred", "{pred_null}", "--json", "{out}/m.json"), 0,
                                                warning="count as misses", outputs=("out/m.json",)),
    # export
    "export/width 0": Case((*EXPORT, "--out", "{out}/m.onnx", "--width", "0"), 2, "--width must be a multiple of 4"),
    "export/over the weights": Case((*EXPORT, "--out", "{weights}"), 2, "is the input"),
    "export/not .onnx": Case((*EXPORT, "--out", "{out}/m.txt"), 2, "must end in .onnx"),
    "export/nothing to export": Case(("export",), 2, "nothing to export"),
    "export/det weights missing": Case(("export", "--det-weights", "{missing}.pt", "--det-out", "{out}/d.onnx"), 2,
                                       "no such file"),
    # serve (refused before the server starts)
    "serve/port out of range": Case(("serve", "--port", "70000"), 2, "--port must be in"),
    "serve/no upload size": Case(("serve", "--max-upload-mb", "0"), 2, "--max-upload-mb must be"),
    "serve/no concurrency": Case(("serve", "--concurrency", "0"), 2, "--concurrency must be"),
}


# --------------------------------------------------------------------------------------------------
# The workspace


def _write_frames(clip: Path, folder: Path, count: int) -> None:
    folder.mkdir()
    capture = cv2.VideoCapture(str(clip))
    for n in range(count):
        ok, image = capture.read()
        assert ok
        cv2.imwrite(str(folder / f"{n:03d}.jpg"), image)
    capture.release()


def _ten_keypoints(reference_dir: Path, path: Path) -> None:
    state = torch.load(reference_dir / "resnet_small" / "resnet_small_ap10k.pth", weights_only=True)["state_dict"]
    for key in ("keypoint_head.final_layer.weight", "keypoint_head.final_layer.bias"):
        state[key] = state[key][:10]
    torch.save({"state_dict": state}, path)


def _null_keypoints(source: Path, target: Path) -> None:
    predictions = json.loads(source.read_text())
    for prediction in predictions:
        keypoints = list(prediction["keypoints"])
        for k in range(0, 9):
            keypoints[3 * k: 3 * k + 2] = [None, None]
        prediction["keypoints"] = keypoints
    target.write_text(json.dumps(predictions))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, synthetic_clip, reference_dir, samples_dir) -> Path:
    """The files the cases read, made once; each case works on a copy."""
    root = tmp_path_factory.mktemp("inputs")
    clip, _ = synthetic_clip
    shutil.copy(clip, root / "clip.mp4")
    jaguar = samples_dir / "ap10k" / "000000037516.jpg"
    shutil.copy(jaguar, root / "image.jpg")
    data = jaguar.read_bytes()
    (root / "cut.jpg").write_bytes(data[: len(data) // 2])
    (root / "text.jpg").write_text("not an image")
    (root / "text.mp4").write_text("not a video")
    (root / "text.pth").write_text("not a checkpoint")
    (root / "text.pt").write_text("not YOLO weights")
    (root / "empty.jpg").write_bytes(b"")
    (root / "empty.mp4").write_bytes(b"")
    weights = reference_dir / "hrnet_small" / "hrnet_small_ap10k.pth"
    shutil.copy(weights, root / "small.pth")
    (root / "cut.pth").write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _ten_keypoints(reference_dir, root / "ten.pth")
    (root / "videos").mkdir()
    shutil.copy(clip, root / "videos" / "a.mp4")
    (root / "mixed").mkdir()
    shutil.copy(clip, root / "mixed" / "a.mp4")
    (root / "mixed" / "b.mp4").write_text("not a video")
    _write_frames(clip, root / "images", 5)
    (root / "images" / "002.jpg").write_text("not an image")
    shutil.copy(EVAL / "gt_synthetic_20.json", root / "gt.json")
    shutil.copy(EVAL / "pred_synthetic_20_high.json", root / "pred.json")
    _null_keypoints(EVAL / "pred_synthetic_20_high.json", root / "pred_null.json")
    return root


def workspace(inputs: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the inputs under ``tmp_path/inputs`` and the placeholder values of the cases."""
    root = tmp_path / "inputs"
    shutil.copytree(inputs, root)
    names = {
        "image": "image.jpg", "clip": "clip.mp4", "videos": "videos", "mixed": "mixed", "images": "images",
        "weights": "small.pth", "cut_jpg": "cut.jpg", "text_jpg": "text.jpg", "text_mp4": "text.mp4",
        "text_pth": "text.pth", "text_pt": "text.pt", "empty_jpg": "empty.jpg", "empty_mp4": "empty.mp4",
        "cut_pth": "cut.pth", "ten_pth": "ten.pth", "gt": "gt.json", "pred": "pred.json",
        "pred_null": "pred_null.json",
    }
    values = {name: str(root / file) for name, file in names.items()}
    values.update(missing=str(tmp_path / "missing"), out=str(tmp_path / "out"))
    return root, values


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def temporary_leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if TEMPORARY.search(p.name))


def animalpose_temp_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("animalpose-*")}


def error_lines(err: str, command: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"animalpose {command}")]


def check_contract(case: Case, code: int, err: str, out: str, tmp_path: Path, before: dict[str, str],
                   temp_before: set[str]) -> None:
    command = case.argv[0]
    assert code == case.code, err
    assert "Traceback" not in err and "Traceback" not in out, err
    errors = error_lines(err, command)
    if case.error is None:
        assert errors == [], err
    else:
        assert len(errors) == 1, err
        assert re.search(case.error, errors[0]), errors[0]
    if case.warning is not None:
        assert case.warning in err + out
    assert snapshot(tmp_path / "inputs") == before, "an input was modified, or an output written among them"
    assert temporary_leftovers(tmp_path) == []
    assert animalpose_temp_folders() <= temp_before, "a temporary folder was left behind"
    for name in case.outputs:
        assert (tmp_path / name).is_file(), f"{name} is missing"
    if case.code == 2:
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*")), "outputs of a refused run"


def check_outputs_hold_every_frame(tmp_path: Path) -> None:
    """Every JSON beside its JSON Lines holds the same frames."""
    for document in (tmp_path / "out").glob("*.json"):
        lines = document.with_suffix(".jsonl")
        if not lines.exists() or document.name.endswith(".coco.json"):
            continue
        frames = [f["frame"] for f in json.loads(document.read_text())["frames"]]
        assert frames == [json.loads(line)["frame"] for line in lines.read_text().splitlines()]


# --------------------------------------------------------------------------------------------------
# The cases


@pytest.fixture()
def stand_ins(monkeypatch, synthetic_clip, small_estimator):
    """The ground truth as the detector and the small HRNet as the pose model of track and live."""
    _, gt = synthetic_clip
    monkeypatch.setattr(cli_track, "models_from_args",
                        lambda args, choices=None, live=False: Model(Models(GroundTruthDetector(gt, auto_advance=True),
                                                              small_estimator)))


def test_the_corpus_is_large_enough():
    commands = {name.split("/")[0] for name in CASES}
    assert len(CASES) >= 40 and commands == {"pose", "track", "live", "eval", "export", "serve"}


@pytest.mark.parametrize("name", list(CASES))
def test_case(name: str, inputs: Path, tmp_path: Path, capfd, caplog, stand_ins, monkeypatch):
    case = CASES[name]
    root, values = workspace(inputs, tmp_path)
    before = snapshot(root)
    temp_before = animalpose_temp_folders()
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    code = main([arg.format(**values) for arg in case.argv])
    captured = capfd.readouterr()
    # Log records reach pytest's handler (the root handler's stream was chosen by the first test).
    check_contract(case, code, captured.err, captured.out + caplog.text, tmp_path, before, temp_before)
    if case.code == 0 and (tmp_path / "out").exists():
        check_outputs_hold_every_frame(tmp_path)


def test_live_that_loses_its_stream_keeps_its_frames_and_says_so(inputs, tmp_path, capfd, stand_ins, samples_dir):
    """A stream that drops for good: the outputs are complete for what came, and exit code 1."""
    import threading
    import time

    root, _ = workspace(inputs, tmp_path)
    before = snapshot(root)
    backgrounds = panning_frames(samples_dir / "ap10k" / "000000037516.jpg", size=(320, 192), count=8)
    lines = tmp_path / "out" / "l.jsonl"
    with MJPEGServer(backgrounds, fps=15, max_frames=5000) as server:
        def cut() -> None:
            while not lines.exists() or len(lines.read_text().splitlines()) < 3:
                time.sleep(0.05)
            server.cut()

        threading.Thread(target=cut, daemon=True).start()
        code = main(["live", server.url, "--json", str(tmp_path / "out" / "l.json"), "--no-flip",
                     "--max-reconnect", "1"])
    captured = capfd.readouterr()
    case = Case(("live",), 1, "could not reconnect .* the outputs hold the", outputs=("out/l.json",))
    check_contract(case, code, captured.err, captured.out, tmp_path, before, animalpose_temp_folders())
    check_outputs_hold_every_frame(tmp_path)


def test_two_runs_into_one_folder_do_not_mix_their_outputs(inputs, tmp_path, capfd, stand_ins):
    """The second run is refused while the first holds the outputs; the first's files are its own."""
    from app.outputs import OutputLock

    root, values = workspace(inputs, tmp_path)
    out = tmp_path / "out"
    with OutputLock([out / "walk.json"]):
        code = main(["track", values["clip"], "--json", str(out / "walk.json"), "-q", "--no-flip"])
    captured = capfd.readouterr()
    case = Case(("track",), 2, "walk.json is being written by another animalpose run")
    check_contract(case, code, captured.err, captured.out, tmp_path, snapshot(root), animalpose_temp_folders())


def test_no_case_writes_non_standard_json(inputs, tmp_path, stand_ins):
    """JSON written by pose and track never holds NaN or Infinity (invalid for most readers)."""
    _, values = workspace(inputs, tmp_path)
    out = tmp_path / "out"
    assert main(["pose", values["image"], "--pose-weights", values["weights"], "--box", "5000,5000,10,10",
                 "--json", str(out / "p.json")]) == 0
    assert main(["track", values["clip"], "--json", str(out / "t.json"), "-q", "--no-flip"]) == 0
    for path in out.glob("*.json"):
        json.loads(path.read_text(), parse_constant=_refuse)


def _refuse(name: str) -> float:
    raise AssertionError(f"non-standard JSON constant {name}")
