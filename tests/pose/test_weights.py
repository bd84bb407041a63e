"""Weights resolution: names, cache, hash check and offline errors, against a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import pytest

from pose import weights as w


@pytest.fixture()
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # keep test output quiet
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _publish(root: Path, payload: bytes, good_hash: bool = True) -> str:
    digest = hashlib.sha256(payload).hexdigest()[:8] if good_hash else "deadbeef"
    name = f"model_ap10k-{digest}_20211029.pth"
    (root / name).write_bytes(payload)
    return name


@pytest.mark.parametrize(
    ("name", "folder", "prefix"),
    [
        ("hrnet_w32", "mmpose/animal/hrnet/", "18aac840"),
        ("hrnet_w48", "mmpose/animal/hrnet/", "d95ab412"),
        ("res50", "mmpose/animal/resnet/", "35760eb8"),
        ("res101", "mmpose/animal/resnet/", "9edfafb9"),
        ("rtmpose_m", "mmpose/v1/projects/rtmposev1/", "7a041aa1"),  # mmpose 1.x: same naming convention
    ],
)
def test_official_names_have_hash_prefixes(name, folder, prefix):
    url = w.OFFICIAL_WEIGHTS[name]
    assert url.startswith("https://download.openmmlab.com/" + folder)
    assert w.hash_prefix_from_name(url) == prefix


def test_official_names_are_these():
    assert set(w.OFFICIAL_WEIGHTS) == {"hrnet_w32", "hrnet_w48", "res50", "res101", "rtmpose_m"}


def test_download_verifies_and_caches(http_root, tmp_path):
    root, base = http_root
    name = _publish(root, b"weights" * 1000)
    cache = tmp_path / "cache"
    path = w.download(f"{base}/{name}", cache, progress=False)
    assert path == cache / name and path.read_bytes() == b"weights" * 1000
    (root / name).unlink()  # a second call must not need the server
    assert w.download(f"{base}/{name}", cache, progress=False) == path
    assert w.cached_weights(cache) == [path]


def test_download_rejects_wrong_hash(http_root, tmp_path):
    root, base = http_root
    name = _publish(root, b"something else", good_hash=False)
    with pytest.raises(w.WeightsError, match="SHA-256"):
        w.download(f"{base}/{name}", tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []  # nothing half-written left behind


def test_offline_error_names_url_and_way_out(tmp_path):
    url = "http://127.0.0.1:9/hrnet_w32_ap10k_256x256-18aac840_20211029.pth"
    with pytest.raises(w.WeightsError) as info:
        w.download(url, tmp_path, timeout_s=2, progress=False)
    assert url in str(info.value) and "--pose-weights PATH" in str(info.value)


def test_resolve_local_path_and_errors(tmp_path, monkeypatch):
    local = tmp_path / "mine.pth"
    local.write_bytes(b"x")
    assert w.resolve_pose_weights(str(local)) == local
    with pytest.raises(w.WeightsError, match="not found"):
        w.resolve_pose_weights(tmp_path / "missing.pth")
    with pytest.raises(w.WeightsError, match="not a file"):
        w.resolve_pose_weights(tmp_path)
    monkeypatch.setenv("ANIMALPOSE_CACHE", str(tmp_path / "c"))
    assert w.cache_dir() == tmp_path / "c"


def test_resolve_name_uses_cache_without_network(tmp_path):
    name = w.OFFICIAL_WEIGHTS["res50"].rsplit("/", 1)[1]
    (tmp_path / name).write_bytes(b"cached")
    assert w.resolve_pose_weights("res50", directory=tmp_path) == tmp_path / name
