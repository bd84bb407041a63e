"""bench.encode: one short run of every table (encoding, decoding, awkward files) without touching the docs."""

from __future__ import annotations

import pytest

pytest.importorskip("av")


def test_a_short_run_fills_every_table(tmp_path, monkeypatch):
    from bench import encode

    monkeypatch.setattr(encode, "write_section", lambda *a, **k: pytest.fail("--no-write must not write"))
    text = encode.main(encode.get_args_parser().parse_args(["--frames", "6", "--sizes", "720p", "--no-write"]))
    assert "| 720p | OpenCV (before) | .mp4, mp4v" in text and "| 720p | PyAV (ours) | .mp4, libx264" in text
    assert "| 720p H.264 |" in text and "| 720p mp4v |" in text
    assert "variable frame rate" in text and "turned upright" in text
