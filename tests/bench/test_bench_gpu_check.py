"""bench.gpu_check's report and its CPU run (the GPU variants need CUDA: tests/test_cuda.py, docs/gpu.md)."""

from __future__ import annotations

from bench.gpu_check import VARIANTS, main, render


def test_report_has_a_row_per_variant_and_batch():
    results = {
        "gpu": "NVIDIA H100", "cudnn": 91900,
        "heatmap_error": {v.name: {"hrnet_small": 1e-5, "resnet_small": 2e-2} for v in VARIANTS},
        "keypoint_shift": {"float16": {"mean_px": 0.1378, "p99_px": 0.0, "max_px": 222.21, "moved_1px": 0.0089,
                                       "keypoints": 2482}},
        "trained": "best.pth", "trained_images": 100,
        "pose_speed": [{"variant": "float32", "ms": {"2": 24.64, "6": 27.29}}],
        "detector_ms": {"float32": 11.23},
    }
    text = render(results, "cuda")
    assert "| float32 + TF32 | 1.0e-05 | 2.0e-02 |" in text
    assert "| float16 | 0.1378 | 0.000 | 222.21 | 0.89% of 2482 |" in text
    assert "| variant | 2 crops ms | 6 crops ms |" in text and "| float32 | 24.64 | 27.29 |" in text
    assert "float32 11.23 ms" in text and "on 100 synthetic images" in text


def test_cpu_run_reproduces_mmpose_heatmaps(tmp_path, capsys):
    # On the CPU only the float32 variant runs; its heatmap error is the CPU tests' 1e-4 at most.
    import json

    assert main(["--device", "cpu", "--repeats", "1", "--batches", "1", "--json", str(tmp_path / "r.json"),
                 "--no-write"]) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert list(results["heatmap_error"]) == ["float32"]
    assert max(results["heatmap_error"]["float32"].values()) < 1e-4
    assert "| float32 |" in capsys.readouterr().out
