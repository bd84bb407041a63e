"""animalpose: pose tracking of animals (AP-10K's 17 keypoints) in images, videos and live streams.

    import animalpose

    model = animalpose.load()                                  # hrnet_w32 + yolo11n.pt, on the GPU if any
    model = animalpose.load(profile="realtime")                # rtmpose_m, real time on a CPU
    poses = model.pose("cat.jpg")                              # keypoints (N, 17, 3): x, y, score
    for frame in model.track("safari.mp4"):                    # a FrameResult per frame
        print(frame.frame_index, frame.track_ids, frame.keypoints.shape)
    model.track("safari.mp4", save=["video", "json"], out_dir="results")

The command line (``animalpose``), the web app and the benchmarks run through this package.
"""

from __future__ import annotations

from animalpose.model import Model, load, track_settings
from app.drawing import DrawSettings, draw_frame
from app.profiles import Profile, default_profile
from app.runs import FolderSummary, OutputPaths, TrackProgress, TrackSettings, TrackSummary
from pose.estimator import PoseSettings
from pose.precision import Precision
from pose.structures import Detections, FrameResult, Poses
from tracking.detector import DetectorSettings
from tracking.smoothing import SmoothingMode

__all__ = [
    "Detections",
    "DetectorSettings",
    "DrawSettings",
    "FolderSummary",
    "FrameResult",
    "Model",
    "OutputPaths",
    "PoseSettings",
    "Poses",
    "Profile",
    "Precision",
    "SmoothingMode",
    "TrackProgress",
    "TrackSettings",
    "TrackSummary",
    "__version__",
    "default_profile",
    "draw_frame",
    "load",
    "track_settings",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("animalpose")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _version()
