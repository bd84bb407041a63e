"""bench.gpu_check's report and its CPU run (the GPU variants need CUDA: tests/test_cuda.py, docs/gpu.md)."""

from __future__ import annotations

import json

import pytest

from bench.gpu_check import (
    DETECTOR_VARIANTS,
    SPEED_VARIANTS,
    VARIANTS,
    main,
    quick_trained_checkpoint,
    render,
    variants_on,
)


def test_report_has_a_row_per_variant_and_batch():
    results = {
        "gpu": "NVIDIA H200", "cudnn": 91900,
        "heatmap_error": {v.name: {"hrnet_small": 1e-5, "resnet_small": 2e-2} for v in VARIANTS},
        "keypoint_shift": {"fast (float16)": {"mean_px": 0.1378, "p99_px": 0.0, "max_px": 222.21,
                                             "moved_1px": 0.0089, "keypoints": 2482}},
        "trained": "best.pth", "trained_images": 100,
        "replay_vs_eager": {"exact": 0.0, "fast": 0.0},
        "pose_speed": [{"variant": "exact, eager", "ms": {"2": 24.64, "6": 27.29, "frame": 40.5}},
                       {"variant": "fast, graphs", "ms": {"2": 4.1, "6": 5.0, "frame": 9.75}}],
        "detector_ms": {"exact, predict": 11.23, "exact, graphs": 2.5},
        "detector_same_boxes": {"exact": True, "fast": False},
    }
    text = render(results, "cuda")
    assert "| exact + TF32 | 1.0e-05 | 2.0e-02 |" in text
    assert "| fast (float16) | 0.1378 | 0.000 | 222.21 | 0.89% of 2482 |" in text
    assert "| variant | 2 crops ms | 6 crops ms | 3 animals, whole call ms |" in text
    assert "| exact, eager | 24.64 | 27.29 | 40.50 |" in text and "| fast, graphs | 4.10 | 5.00 | 9.75 |" in text
    assert "exact, predict 11.23 ms, exact, graphs 2.50 ms" in text and "on 100 synthetic images" in text
    assert "exact 0.0e+00, fast 0.0e+00" in text and "exact yes, fast NO" in text


@pytest.mark.parametrize(
    ("variants", "device", "names"),
    [
        (VARIANTS, "cpu", ["exact (float32)"]),
        (SPEED_VARIANTS, "cpu", ["exact, eager"]),
        (DETECTOR_VARIANTS, "cpu", ["exact, predict"]),
        (SPEED_VARIANTS, "cuda", [v.name for v in SPEED_VARIANTS]),
    ],
)
def test_only_the_exact_eager_rows_run_on_the_cpu(variants, device, names):
    assert [v.name for v in variants_on(variants, device)] == names


def test_cpu_run_reproduces_mmpose_heatmaps(tmp_path, capsys):
    # On the CPU only the EXACT eager variants run; their heatmap error is the CPU tests' 1e-4 at most.
    assert main(["--device", "cpu", "--repeats", "1", "--batches", "1", "--json", str(tmp_path / "r.json"),
                 "--no-write"]) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert list(results["heatmap_error"]) == ["exact (float32)"]
    assert max(results["heatmap_error"]["exact (float32)"].values()) < 1e-4
    assert [row["variant"] for row in results["pose_speed"]] == ["exact, eager"]
    assert set(results["pose_speed"][0]["ms"]) == {"1", "frame"}
    assert list(results["detector_ms"]) == ["exact, predict"] and not results["replay_vs_eager"]
    assert "| exact, eager |" in capsys.readouterr().out


def test_quick_training_gives_a_checkpoint(tmp_path, one_torch_thread):
    from pose.checkpoint import load_pose_checkpoint

    checkpoint = quick_trained_checkpoint(tmp_path, "cpu", images=20, epochs=1)
    assert checkpoint.is_file() and load_pose_checkpoint(checkpoint)[2] == (96, 96)
