"""``animalpose eval``: tables, the --json file and one-line errors."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
from pathlib import Path

import pytest

import app.cli.evaluate as cli_eval

DATA = Path(__file__).resolve().parents[1] / "data"
EVAL_DIR = DATA / "reference" / "eval"
SAMPLE_GT = DATA / "samples" / "ap10k" / "test_ap10k.json"
SYNTHETIC_GT = EVAL_DIR / "gt_synthetic_20.json"
EXPECTED = json.loads((EVAL_DIR / "expected_metrics.json").read_text())
METRIC_KEYS = ["AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL"]
METRIC_NAMES = dict(zip(EXPECTED["stats_order"], METRIC_KEYS))


def _pred_path(case: str) -> Path:
    return EVAL_DIR / EXPECTED["results"][case]["predictions"]


def _malformed(tmp_path: Path) -> Path:
    path = tmp_path / "broken.json"
    path.write_text("[{not json")
    return path


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="animalpose")
    cli_eval.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize(("flag", "mode"), [([], "cocoeval_direct"), (["--mmpose-nms"], "mmpose_evaluate")])
def test_cli_writes_metrics(
    flag: list[str], mode: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    case = "synthetic_20/low"
    out = tmp_path / "out" / "metrics.json"
    argv = ["eval", "--gt", str(SYNTHETIC_GT), "--pred", str(_pred_path(case)), "--json", str(out), *flag]
    assert _run_cli(argv) == 0
    written = json.loads(out.read_text())
    assert list(written) == METRIC_KEYS
    expected = {METRIC_NAMES[name]: value for name, value in EXPECTED["results"][case][mode].items()}
    assert written == pytest.approx(expected, abs=1e-9, rel=0)
    assert "AP50" in capsys.readouterr().out


def test_cli_per_group_tables(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "metrics.json"
    pred = EVAL_DIR / "pred_sample_medium.json"
    argv = ["eval", "--gt", str(SAMPLE_GT), "--pred", str(pred), "--json", str(out)]
    argv += ["--per-family", "--per-species"]
    assert _run_cli(argv) == 0
    written = json.loads(out.read_text())
    assert written["per_family"] == pytest.approx({"Bovidae": 0.7, "Felidae": 0.7}, abs=1e-9)
    assert set(written["per_species"]) == {"antelope", "jaguar"}
    printed = capsys.readouterr().out
    assert "Felidae" in printed and "jaguar" in printed and "n/a" in printed  # APM has no GT


@pytest.mark.parametrize("which", ["gt", "pred"])
@pytest.mark.parametrize("problem", ["missing", "malformed"])
def test_cli_bad_input(which: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "missing.json" if problem == "missing" else _malformed(tmp_path)
    paths = {"gt": SYNTHETIC_GT, "pred": EVAL_DIR / "pred_synthetic_20_low.json", which: bad}
    out = tmp_path / "metrics.json"
    argv = ["eval", "--gt", str(paths["gt"]), "--pred", str(paths["pred"]), "--json", str(out)]
    assert _run_cli(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and str(bad) in captured.err
    assert not out.exists()


# ---------------------------------------------------------------------------
# Through app.cli.main: one-line errors, inputs never touched
# ---------------------------------------------------------------------------

LOW_PRED = EVAL_DIR / "pred_synthetic_20_low.json"


def _main(argv: list[str]) -> int:
    from app.cli import main

    return main(argv)


def _one_error_line(captured: pytest.CaptureResult) -> str:
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1 and lines[0].startswith("animalpose eval: error: "), captured.err
    return lines[0]


def _snapshot(*folders: Path) -> dict[Path, bytes]:
    """Every file under the folders with its bytes."""
    return {p: p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def _write(folder: Path, name: str, content: object) -> Path:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _gt() -> dict:
    return json.loads(SYNTHETIC_GT.read_text())


def _pred() -> list[dict]:
    return json.loads(LOW_PRED.read_text())


def _gt_case(content: object):
    return lambda tmp: (["--gt", str(_write(tmp, "gt.json", content)), "--pred", str(LOW_PRED)])


def _pred_case(content: object, *flags: str):
    return lambda tmp: (["--gt", str(SYNTHETIC_GT), "--pred", str(_write(tmp, "pred.json", content)), *flags])


BAD_INPUTS = {
    "gt not JSON": (_gt_case("hello"), "is not valid JSON"),
    "gt truncated": (_gt_case(SYNTHETIC_GT.read_text()[:700]), "is not valid JSON"),
    "gt empty file": (_gt_case(""), "is empty"),
    "gt not UTF-8": (_gt_case(b'{"info": "\xe9"}'), "not UTF-8"),
    "gt a list": (_gt_case([1, 2]), "must hold a COCO dict, not a list"),
    "gt missing": (lambda tmp: ["--gt", str(tmp / "nope.json"), "--pred", str(LOW_PRED)], "not found"),
    "gt a folder": (lambda tmp: ["--gt", str(tmp), "--pred", str(LOW_PRED)], "is a folder"),
    "gt without annotations": (_gt_case({**_gt(), "annotations": []}), "no annotation with labelled keypoints"),
    "gt without labelled keypoints": (
        _gt_case({**_gt(), "annotations": [{**a, "num_keypoints": 0} for a in _gt()["annotations"]]}),
        "no annotation with labelled keypoints",
    ),
    "gt keypoints short": (
        _gt_case({**_gt(), "annotations": [{**a, "keypoints": a["keypoints"][:-3]} for a in _gt()["annotations"]]}),
        "needs 'keypoints' as 17 x",
    ),
    "gt category without id": (_gt_case({**_gt(), "categories": [{"name": "cat"}]}), "has no 'id'"),
    "pred not JSON": (_pred_case("[{not json"), "is not valid JSON"),
    "pred truncated": (_pred_case(LOW_PRED.read_text()[:700]), "is not valid JSON"),
    "pred a dict": (_pred_case({"annotations": _pred()}), "must hold a list of dicts"),
    "pred is the gt": (lambda tmp: ["--gt", str(SYNTHETIC_GT), "--pred", str(SYNTHETIC_GT)], "a COCO annotation file?"),
    "pred a folder": (lambda tmp: ["--gt", str(SYNTHETIC_GT), "--pred", str(tmp)], "is a folder"),
    "keypoints too short": (
        _pred_case([{**p, "keypoints": p["keypoints"][:-1]} for p in _pred()]), "50 keypoint values"
    ),
    "keypoints not numbers": (_pred_case([{**p, "keypoints": ["x"] * 51} for p in _pred()]), "not a list of numbers"),
    "image_id a list": (_pred_case([{**p, "image_id": [1]} for p in _pred()]), "image_id [1]"),
    "image ids not in gt": (_pred_case([{**p, "image_id": 77} for p in _pred()]), "20 of 20 predictions"),
    "image ids as strings": (_pred_case([{**p, "image_id": str(p["image_id"])} for p in _pred()]), "types differ"),
    "score not a number": (_pred_case([{**p, "score": "high"} for p in _pred()]), "score 'high'"),
    "bbox null (mmpose)": (_pred_case([{**p, "bbox": None} for p in _pred()], "--mmpose-nms"), "bbox None"),
    "bbox_score null (mmpose)": (
        _pred_case([{**p, "bbox_score": None} for p in _pred()], "--mmpose-nms"), "bbox_score None"
    ),
}


@pytest.mark.parametrize(("make_argv", "message"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_one_line(
    make_argv, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = make_argv(tmp_path)
    out = tmp_path / "metrics.json"
    before = _snapshot(tmp_path, EVAL_DIR)
    assert _main(["eval", *argv, "--json", str(out)]) == 2
    assert message in _one_error_line(capsys.readouterr())
    assert _snapshot(tmp_path, EVAL_DIR) == before  # inputs unchanged, no --json written


@pytest.mark.parametrize("which", ["--gt", "--pred"])
def test_unreadable_input(which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A file we may not read (simulated: the tests may run as root, who reads anything)."""
    paths = {
        "--gt": _write(tmp_path, "gt.json", SYNTHETIC_GT.read_text()),
        "--pred": _write(tmp_path, "pred.json", _pred()),
    }
    real = Path.read_bytes

    def refuse(self: Path) -> bytes:
        if self == paths[which]:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert _main(["eval", "--gt", str(paths["--gt"]), "--pred", str(paths["--pred"])]) == 2
    what = "ground-truth" if which == "--gt" else "predictions"
    assert _one_error_line(capsys.readouterr()).endswith(f"cannot read {what} file {paths[which]}: permission denied")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files without read permission")
def test_unreadable_input_for_real(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pred = _write(tmp_path, "pred.json", _pred())
    pred.chmod(0)
    try:
        assert _main(["eval", "--gt", str(SYNTHETIC_GT), "--pred", str(pred)]) == 2
    finally:
        pred.chmod(0o644)
    assert _one_error_line(capsys.readouterr()).endswith("permission denied")


# ---------------------------------------------------------------------------
# --json: checked before evaluating, written atomically, never over an input
# ---------------------------------------------------------------------------


@pytest.fixture
def no_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the evaluation starts (the output must be checked first)."""

    def evaluate(*args, **kwargs):
        raise AssertionError("evaluated before checking --json")

    monkeypatch.setattr(cli_eval, "evaluate_with_groups", evaluate)


OUTPUT_CLASHES = {
    "a folder": (lambda tmp, gt, pred: tmp, "it is a folder"),
    "the gt": (lambda tmp, gt, pred: gt, "is the input"),
    "the pred": (lambda tmp, gt, pred: pred, "is the input"),
    "the pred by another name": (lambda tmp, gt, pred: _other_name(pred), "is the input"),
    "a link to the gt": (lambda tmp, gt, pred: _link(tmp / "link.json", gt), "is the input"),
    "a hard link to the pred": (lambda tmp, gt, pred: _hard_link(tmp / "hard.json", pred), "is the input"),
    "inside a file": (lambda tmp, gt, pred: gt / "metrics.json", "is a file, not a folder"),
}


def _other_name(path: Path) -> Path:
    (path.parent / "sub").mkdir()
    return Path(f"{path.parent}/sub/../{path.name}")


def _link(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


def _hard_link(link: Path, target: Path) -> Path:
    os.link(target, link)
    return link


@pytest.mark.parametrize(("make_out", "message"), OUTPUT_CLASHES.values(), ids=OUTPUT_CLASHES.keys())
def test_bad_output_is_refused_before_evaluating(
    make_out, message: str, tmp_path: Path, capsys: pytest.CaptureFixture, no_evaluation: None
) -> None:
    gt = _write(tmp_path, "gt.json", SYNTHETIC_GT.read_text())
    pred = _write(tmp_path, "pred.json", LOW_PRED.read_text())
    out = make_out(tmp_path, gt, pred)
    before = _snapshot(tmp_path)
    assert _main(["eval", "--gt", str(gt), "--pred", str(pred), "--json", str(out)]) == 2
    assert message in _one_error_line(capsys.readouterr())
    assert _snapshot(tmp_path) == before


def _failing(monkeypatch: pytest.MonkeyPatch, name: str, code: int, after: int = 0) -> None:
    """Make ``os.<name>`` fail with ``code`` from its call number ``after`` + 1 on."""
    real = getattr(os, name)
    calls = []

    def fail(*args, **kwargs):
        calls.append(args)
        if len(calls) > after:
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, fail)


@pytest.mark.parametrize(
    ("name", "code", "reason"),
    [
        ("open", errno.EACCES, "permission denied"),
        ("open", errno.EROFS, "read-only file system"),
        ("fsync", errno.ENOSPC, "no space left on device"),
        ("fsync", errno.EDQUOT, "disk quota exceeded"),
    ],
)
def test_unwritable_output_is_refused_before_evaluating(
    name: str, code: int, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture, no_evaluation: None,
) -> None:
    out = tmp_path / "metrics.json"
    out.write_text("old")
    _failing(monkeypatch, name, code)
    assert _main(["eval", "--gt", str(SYNTHETIC_GT), "--pred", str(LOW_PRED), "--json", str(out)]) == 2
    assert _one_error_line(capsys.readouterr()) == (
        f"animalpose eval: error: cannot write {out}: {reason}"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"] and out.read_text() == "old"


@pytest.mark.parametrize(("name", "code"), [("fsync", errno.ENOSPC), ("replace", errno.EACCES)])
def test_failed_write_after_evaluating_leaves_nothing_behind(
    name: str, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The disk fills up (or the folder turns read-only) while evaluating."""
    out = tmp_path / "metrics.json"
    out.write_text("old")
    _failing(monkeypatch, name, code, after=1 if name == "fsync" else 0)  # the first fsync is the check's
    assert _main(["eval", "--gt", str(SYNTHETIC_GT), "--pred", str(LOW_PRED), "--json", str(out)]) == 2
    assert _one_error_line(capsys.readouterr()).endswith(os.strerror(code).lower())
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"] and out.read_text() == "old"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_for_real(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        argv = ["eval", "--gt", str(SYNTHETIC_GT), "--pred", str(LOW_PRED), "--json", str(folder / "m.json")]
        assert _main(argv) == 2
    finally:
        folder.chmod(0o755)
    assert _one_error_line(capsys.readouterr()).endswith("permission denied")


def test_json_replaces_an_old_file_whole(tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    out.write_text("old")
    assert _main(["eval", "--gt", str(SYNTHETIC_GT), "--pred", str(LOW_PRED), "--json", str(out)]) == 0
    assert list(json.loads(out.read_text())) == METRIC_KEYS
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left


# ---------------------------------------------------------------------------
# Inputs that evaluate, with a warning
# ---------------------------------------------------------------------------


def _null_keypoints(predictions: list[dict], value: object, keypoints: range) -> list[dict]:
    changed = json.loads(json.dumps(predictions))
    for record in changed:
        for k in keypoints:
            record["keypoints"][3 * k : 3 * k + 2] = [value, value]
    return changed


@pytest.mark.parametrize(
    ("text", "keypoints"),
    [("null", range(8, 17)), ("NaN", range(8, 17)), ("NaN", range(17))],
    ids=["9 null", "9 NaN", "17 NaN"],
)
@pytest.mark.parametrize("flag", [[], ["--mmpose-nms"]], ids=["cocoeval", "mmpose"])
def test_missing_keypoints_are_misses(
    text: str, keypoints: range, flag: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gt = _gt()
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"], "score": 1.0}
        for a in gt["annotations"]
    ]
    marker = 123456789.0
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(_null_keypoints(perfect, marker, keypoints)).replace(str(marker), text))
    far = _write(tmp_path, "far.json", _null_keypoints(perfect, 5000.0, keypoints))
    out, out_far = tmp_path / "m.json", tmp_path / "m_far.json"
    assert _main(["eval", "--gt", str(SYNTHETIC_GT), "--pred", str(pred), "--json", str(out), *flag]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"{20 * len(keypoints)} of 340 predicted keypoints")
    assert _main(["eval", "--gt", str(SYNTHETIC_GT), "--pred", str(far), "--json", str(out_far), *flag]) == 0
    written = json.loads(out.read_text())
    assert written["AP"] < 0.5 and written == json.loads(out_far.read_text())


@pytest.mark.parametrize(
    ("predictions", "warning"),
    [
        ([], "holds no predictions"),
        ([{**p, "category_id": 0} for p in _pred()], "20 of 20 predictions have a category_id the ground truth"),
        ([{**p, "category_id": 5} for p in _pred()], "none of the 20 predictions has the category of a ground-truth"),
    ],
    ids=["empty", "unknown category", "other category"],
)
def test_predictions_matching_nothing_warn(
    predictions: list, warning: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys
) -> None:
    pred = _write(tmp_path, "pred.json", predictions)
    out = tmp_path / "m.json"
    assert _main(["eval", "--gt", str(SYNTHETIC_GT), "--pred", str(pred), "--json", str(out)]) == 0
    (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning in message
    assert json.loads(out.read_text())["AP"] == 0.0
    assert capsys.readouterr().err == ""
