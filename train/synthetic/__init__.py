"""A synthetic quadruped world with exact AP-10K ground truth.

Procedurally drawn animals in AP-10K's 17-keypoint layout let us train tiny models from
scratch and prove the whole system end to end on any machine, without downloadable weights
or the AP-10K images. The pieces, in the order data flows:

- :mod:`train.synthetic.species`: body-shape presets named after AP-10K species.
- :mod:`train.synthetic.animal`: ``AnimalAppearance`` + ``AnimalState`` -> keypoints and shapes.
- :mod:`train.synthetic.background`: procedural and photo backgrounds.
- :mod:`train.synthetic.scene`: drawing, occluders and visibility flags (the rules are there).
- :mod:`train.synthetic.dataset`: AP-10K-format and YOLO datasets on disk.
- :mod:`train.synthetic.video`: clips of walking, crossing animals with per-frame ground truth.
- :mod:`train.synthetic.frames`: datasets of frames sampled from many short clips (for detectors).

Everything is deterministic given a seed. This module gathers the public names.
"""

from __future__ import annotations

from train.synthetic.animal import (
    AnimalAppearance,
    AnimalGeometry,
    AnimalState,
    Shape,
    build_animal,
    mirrored,
    sample_appearance,
    standing_height,
)
from train.synthetic.background import BACKGROUND_KINDS, load_photos, sample_background
from train.synthetic.dataset import (
    DATASET_FORMATS,
    DatasetSettings,
    DatasetSummary,
    coco_categories,
    coco_keypoint_names,
    render_dataset_image,
    write_dataset,
)
from train.synthetic.frames import FrameDatasetSettings, write_frame_dataset
from train.synthetic.scene import SceneLabels, render_scene, sample_occluder, sample_scene, sample_state
from train.synthetic.species import SPECIES, BodyShape, Species, species_by_name
from train.synthetic.video import VideoFrame, VideoSettings, iter_video, render_video

__all__ = [
    "BACKGROUND_KINDS",
    "DATASET_FORMATS",
    "SPECIES",
    "AnimalAppearance",
    "AnimalGeometry",
    "AnimalState",
    "BodyShape",
    "DatasetSettings",
    "DatasetSummary",
    "FrameDatasetSettings",
    "SceneLabels",
    "Shape",
    "Species",
    "VideoFrame",
    "VideoSettings",
    "build_animal",
    "coco_categories",
    "coco_keypoint_names",
    "iter_video",
    "load_photos",
    "mirrored",
    "render_dataset_image",
    "render_scene",
    "render_video",
    "sample_appearance",
    "sample_background",
    "sample_occluder",
    "sample_scene",
    "sample_state",
    "species_by_name",
    "standing_height",
    "write_dataset",
    "write_frame_dataset",
]
