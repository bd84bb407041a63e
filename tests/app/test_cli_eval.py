"""``animalpose eval``: tables, the --json file and one-line errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from app import cli_eval

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
