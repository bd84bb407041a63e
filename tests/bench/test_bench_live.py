"""bench.live: a short stream through a profile's pipeline writes the latency table."""

from __future__ import annotations

import pytest

import bench.live as bench


@pytest.mark.timeout(300)
def test_a_short_stream_in_the_realtime_profile(monkeypatch, tmp_path, one_torch_thread, caplog):
    import logging

    written = {}
    monkeypatch.setattr(bench, "write_section", lambda name, body, command, title=None: written.update(
        name=name, body=body, title=title))
    with caplog.at_level(logging.INFO):
        assert bench.main(["--profile", "realtime", "--random", "hrnet_tiny", "--frames", "40", "--fps", "20",
                           "--size", "320", "180"]) == 0
    assert written["name"] == "live-realtime" and "profile realtime" in written["title"]
    body = written["body"]
    assert "320x180" in body and "YOLO11n (random weights) at 640 px every 2 frames" in body
    assert "`hrnet_tiny (random weights)` without flip test" in body
    rows = [line for line in body.splitlines() if line.startswith("| 0-")]
    assert len(rows) == 1 and int(rows[0].split("|")[2]) >= 0
