"""A dataset of frames from synthetic clips, for training a detector that will run on video.

:mod:`train.synthetic.dataset` draws still scenes: animals standing anywhere in a square image.
Frames of :mod:`train.synthetic.video` clips look different: wider frames, a ground plane where
farther animals are smaller and higher, animals walking in and out at the frame edges, crossing
each other and passing behind trunks and bushes. A detector trained on such frames sees what it
will meet in a clip; this module samples them from many short clips and writes them in the same
layouts as :func:`train.synthetic.dataset.write_dataset` (AP-10K annotation files, YOLO folders),
with the same annotation rule (:func:`train.synthetic.dataset.annotated`).

Clip ``c`` is drawn from ``numpy.random.default_rng([seed, c])`` (its number of animals and
occluders, and the clip's own seed), so a dataset is the same whatever the number of workers.
Clips are assigned to train, then val, then test: the frames of one clip stay in one split.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
from tqdm import tqdm

from train.synthetic.dataset import (
    SPLITS,
    DatasetSummary,
    DatasetWriter,
    OutputSettings,
    annotated,
    image_file_name,
    map_in_processes,
    split_sizes,
)
from train.synthetic.scene import SceneLabels
from train.synthetic.video import VideoSettings, iter_video

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameDatasetSettings(OutputSettings):
    """What to generate: frames of clips, plus the :class:`train.synthetic.dataset.OutputSettings`
    fields (whose splits divide clips here).

    Attributes:
        num_clips: clips to sample frames from (over all splits).
        frames_per_clip: frames kept from each clip.
        frame_step: frames between two kept frames (the clip has ``frames_per_clip * frame_step``).
        width, height: frame size in pixels.
        fps: frames per second of the clips (sets how far animals move between frames).
        max_animals: each clip has 1 to this many animals, uniformly.
        max_occluders: each clip has 0 to this many foreground trunks and bushes, uniformly.
        seed: seed of the whole dataset.
    """

    split_unit: ClassVar[str] = "clips"

    num_clips: int = 100
    frames_per_clip: int = 20
    frame_step: int = 8
    width: int = 320
    height: int = 256
    fps: float = 15.0
    max_animals: int = 4
    max_occluders: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_clips", "frames_per_clip", "frame_step", "max_animals"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_occluders < 0:
            raise ValueError(f"max_occluders must be >= 0, got {self.max_occluders}")
        super().__post_init__()
        # the clip itself checks the rest (sizes, fps)
        self.clip_settings(0)

    @property
    def num_images(self) -> int:
        return self.num_clips * self.frames_per_clip

    def split_sizes(self) -> dict[str, int]:
        """Number of clips in each split."""
        return split_sizes(self.num_clips, self.val_fraction, self.test_fraction)

    def clip_settings(self, clip: int) -> VideoSettings:
        """The clip frames ``clip * frames_per_clip ...`` are taken from."""
        rng = np.random.default_rng([self.seed, clip])
        return VideoSettings(
            num_animals=int(rng.integers(1, self.max_animals + 1)),
            num_frames=self.frames_per_clip * self.frame_step,
            width=self.width, height=self.height, fps=self.fps,
            seed=int(rng.integers(2**31)), background_dir=self.background_dir,
            num_occluders=int(rng.integers(0, self.max_occluders + 1)),
        )


def render_clip_frames(clip: int, settings: FrameDatasetSettings) -> Iterator[tuple[int, np.ndarray, SceneLabels, int]]:
    """The kept frames of clip ``clip``: image index, (H, W, 3) uint8 BGR frame, the labels of its
    annotated animals and its background kind (1-based, AP-10K's ``background`` field)."""
    for frame in iter_video(settings.clip_settings(clip), every=settings.frame_step):
        keep = np.flatnonzero(annotated(frame.labels, settings.min_visible_fraction))
        index = clip * settings.frames_per_clip + frame.index // settings.frame_step
        yield index, frame.image, frame.labels[keep], frame.background_kind + 1


def _render_and_save(task: tuple[int, FrameDatasetSettings, Path]) -> list[tuple[int, SceneLabels, int]]:
    clip, settings, data_dir = task
    out = []
    for index, image, labels, kind in render_clip_frames(clip, settings):
        path = data_dir / image_file_name(index)
        if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]):
            raise OSError(f"could not write {path}")
        out.append((index, labels, kind))
    return out


def write_frame_dataset(out_dir: Path, settings: FrameDatasetSettings) -> DatasetSummary:
    """Render ``settings.num_clips`` clips and write their kept frames into ``out_dir`` in the
    requested formats (the layout of :func:`train.synthetic.dataset.write_dataset`).

    ``DatasetSummary.images`` counts frames per split. Existing files of the same names are
    overwritten. With ``settings.workers > 1`` clips are rendered in spawned processes, so a
    calling script needs the usual ``if __name__ == "__main__":`` guard.
    """
    out_dir = Path(out_dir)
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    clips = settings.split_sizes()
    split_of = np.repeat(np.arange(len(SPLITS)), [clips[s] for s in SPLITS])
    writer = DatasetWriter(out_dir, settings.formats, settings.width, settings.height)
    logger.info("rendering %d frames of %d clips (%s) into %s", settings.num_images, settings.num_clips,
                ", ".join(settings.formats), out_dir)
    with tqdm(total=settings.num_images, desc="synth frames", unit="img") as progress:
        tasks = ((c, settings, out_dir / "data") for c in range(settings.num_clips))
        for frames in map_in_processes(_render_and_save, tasks, settings.workers):
            for index, labels, kind in frames:
                writer.add(SPLITS[split_of[index // settings.frames_per_clip]], index, labels, kind)
            progress.update(len(frames))
    files = writer.finish(f"animalpose synthetic video frames in the AP-10K layout, seed {settings.seed}")
    images = {split: clips[split] * settings.frames_per_clip for split in SPLITS}
    counts = {split: len(writer.coco[split]["annotations"]) for split in SPLITS}
    logger.info("wrote %s frames and %s animals to %s", images, counts, out_dir)
    return DatasetSummary(out_dir=out_dir, images=images, annotations=counts, files=files)
