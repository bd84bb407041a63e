"""Resolve ``--pose-weights``: a model name to a cached official checkpoint, or a local path as is.

The official AP-10K checkpoints are served by OpenMMLab: the HRNets and SimpleBaselines trained with
mmpose 0.x and RTMPose-m trained with mmpose 1.x. Their file names end in ``-<hash>_<date>.pth``
where ``<hash>`` is the first 8 hex digits of the file's SHA-256 (the mmcv and mmpose 1.x
convention alike); a download is checked against it before it enters the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

logger = logging.getLogger(__name__)

#: Official AP-10K checkpoints: the mmpose 0.x heatmap models of the AP-10K authors and mmpose 1.x's
#: RTMPose-m (AP 0.722 on AP-10K val as OpenMMLab reports it; HRNet-w32 0.738).
OFFICIAL_WEIGHTS: dict[str, str] = {
    "hrnet_w32": "https://download.openmmlab.com/mmpose/animal/hrnet/hrnet_w32_ap10k_256x256-18aac840_20211029.pth",
    "hrnet_w48": "https://download.openmmlab.com/mmpose/animal/hrnet/hrnet_w48_ap10k_256x256-d95ab412_20211029.pth",
    "res50": "https://download.openmmlab.com/mmpose/animal/resnet/res50_ap10k_256x256-35760eb8_20211029.pth",
    "res101": "https://download.openmmlab.com/mmpose/animal/resnet/res101_ap10k_256x256-9edfafb9_20211029.pth",
    "rtmpose_m": "https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/"
    "rtmpose-m_simcc-ap10k_pt-aic-coco_210e-256x256-7a041aa1_20230206.pth",
}

DEFAULT_POSE_WEIGHTS = "hrnet_w32"

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})(?:_\d+)?\.[A-Za-z0-9]+$")


class WeightsError(RuntimeError):
    """Weights could not be found, downloaded or verified; the message says what to do."""


def cache_dir() -> Path:
    """Folder for downloaded checkpoints: ``$ANIMALPOSE_CACHE``, else ``$XDG_CACHE_HOME/animalpose``,
    else ``~/.cache/animalpose``."""
    if os.environ.get("ANIMALPOSE_CACHE"):
        return Path(os.environ["ANIMALPOSE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "animalpose"


def hash_prefix_from_name(name: str) -> str | None:
    """The SHA-256 prefix embedded in an mmcv-style file name (``...-18aac840_20211029.pth``), or None."""
    match = _HASH_IN_NAME.search(name)
    return match.group(1) if match else None


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, directory: Path, timeout_s: float = 30.0, progress: bool = True) -> Path:
    """Download ``url`` into ``directory`` (atomically), verifying the hash prefix in its name.

    Returns the cached path. An existing cached file is reused without a download. Raises
    :class:`WeightsError` when the server cannot be reached or the file does not match its hash.
    """
    name = url.rstrip("/").rsplit("/", 1)[-1]
    target = directory / name
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    expected = hash_prefix_from_name(name)
    logger.info("Downloading %s to %s", url, target)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=name + ".", suffix=".part", delete=False) as tmp:
        tmp_path = Path(tmp.name)
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not progress) as bar:
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        tmp.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            tmp.close()
            tmp_path.unlink(missing_ok=True)
            reason = getattr(exc, "reason", exc)
            raise WeightsError(
                f"could not download {url} ({reason}). If this machine is offline, download the file "
                f"elsewhere and pass it with --pose-weights PATH (or copy it to {target})."
            ) from exc
    if expected is not None:
        actual = sha256_of(tmp_path)
        if not actual.startswith(expected):
            tmp_path.unlink(missing_ok=True)
            raise WeightsError(
                f"downloaded {url} but its SHA-256 {actual[:16]}... does not start with {expected}: "
                "the download is corrupt or the server sent something else; try again."
            )
    shutil.move(str(tmp_path), target)
    return target


def resolve_pose_weights(weights: str | Path, directory: Path | None = None) -> Path:
    """Turn ``--pose-weights`` into a local file path.

    ``weights`` is a local file (used as is) or one of :data:`OFFICIAL_WEIGHTS`'s names
    (downloaded once into :func:`cache_dir`).
    """
    text = str(weights)
    if text in OFFICIAL_WEIGHTS:
        return download(OFFICIAL_WEIGHTS[text], directory or cache_dir())
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise WeightsError(f"pose weights {path} is not a file")
    names = ", ".join(OFFICIAL_WEIGHTS)
    raise WeightsError(f"pose weights {text!r} not found: give a checkpoint file or one of {names}")


def cached_weights(directory: Path | None = None) -> list[Path]:
    """Checkpoint files already in the cache folder."""
    folder = directory or cache_dir()
    return sorted(p for p in folder.glob("*.pth") if p.is_file()) if folder.is_dir() else []
