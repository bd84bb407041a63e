"""Neurodata Without Borders (``.nwb``) with the ndx-pose extension, written with pynwb.

The processing module ``behavior`` holds the AP-10K skeleton (``Skeletons``/``AP-10K``: the keypoint
names and the 0-based links) and one ``PoseEstimation`` per animal, named ``track_<id>``, with a
``PoseEstimationSeries`` per keypoint: x, y in pixels (NaN where the animal is absent or the keypoint
missing) and the keypoint's confidence. Each ``PoseEstimation`` links the skeleton and the source video
(``source_video``: the ``ImageSeries`` ``acquisition/video``, an external file with its path, frame rate
and size), and names ``animalpose`` and its version as the source software. Time: the video's frame
rate (``rate``) when the frames are evenly spaced from frame 0, else every frame's time stamp (variable
frame rate, or frames that could not be read).

pynwb, movement (``load_poses.from_nwb_file(path, pose_estimation_key="track_3")``: one animal per
call) and NWB tools (NWB Widgets, DANDI) read it.
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path

import numpy as np

from app.sinks.tracks import PoseFileSink, PoseTable, video_path
from app.sources import VideoInfo

SKELETON_NAME = "AP-10K"
PROCESSING_MODULE = "behavior"
REFERENCE_FRAME = "(0, 0) is the top-left corner of the video frame; x grows to the right, y downwards (pixels)"
#: Largest gap (seconds) between a time stamp and frame index / rate for the rate to describe the frames.
RATE_TOLERANCE_S = 1e-4


def even_rate(table: PoseTable, fps: float | None) -> bool:
    """Whether the rows of ``table`` are frames 0, 1, 2... at ``fps`` (then a rate describes their times)."""
    if not fps or not len(table.frames):
        return False
    contiguous = np.array_equal(table.frames, np.arange(len(table.frames)))
    return contiguous and bool(np.all(np.abs(table.times - table.frames / fps) <= RATE_TOLERANCE_S))


def frame_times(table: PoseTable, fps: float | None) -> np.ndarray:
    """Each row's time in seconds: its time stamp, or frame index / fps where the stamps are unusable."""
    times = table.times
    if len(times) and np.all(np.isfinite(times)) and np.all(np.diff(times) > 0):
        return times
    return table.frames / (fps or 30.0)


def _session_start(info: VideoInfo | None) -> datetime.datetime:
    """When the video was recorded, as far as a file tells (its modification time), else now."""
    path = Path(info.name) if info else None
    if path is not None and path.is_file():
        return datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
    return datetime.datetime.now(datetime.timezone.utc)


def nwb_file(table: PoseTable, info: VideoInfo | None = None):
    """``table`` as a ``pynwb.NWBFile`` (in memory) laid out as this module says."""
    import ndx_pose
    import pynwb
    import pynwb.image
    from hdmf.backends.hdf5 import H5DataIO

    from animalpose import __version__

    source = video_path(info)
    nwbfile = pynwb.NWBFile(
        session_description=f"Animal pose tracking of {Path(source).name or 'a video'} by animalpose "
                            "(AP-10K keypoints)",
        identifier=str(uuid.uuid4()), session_start_time=_session_start(info),
        source_script=f"animalpose {__version__}", source_script_file_name="animalpose")
    behavior = nwbfile.create_processing_module(PROCESSING_MODULE, "Keypoints of each tracked animal (animalpose)")
    skeleton = ndx_pose.Skeleton(name=SKELETON_NAME, nodes=list(table.keypoint_names),
                                 edges=np.asarray(table.skeleton, np.uint8).reshape(-1, 2))
    behavior.add(ndx_pose.Skeletons(skeletons=[skeleton]))
    fps = info.fps if info else None
    video = None
    if source:
        video = pynwb.image.ImageSeries(
            name="video", description=f"the video the poses were estimated in: {source}", external_file=[source],
            format="external", starting_frame=[0], rate=float(fps or 30.0), starting_time=0.0, unit="n.a.",
            num_samples=int((info.total_frames if info else None) or (table.frames[-1] + 1 if len(table) else 0)),
            dimension=[info.width, info.height] if info else None)
        nwbfile.add_acquisition(video)
    by_rate = even_rate(table, fps)
    times = frame_times(table, fps)
    for column, name in enumerate(table.individuals):
        series = []
        for k, keypoint in enumerate(table.keypoint_names):
            timing = ({"starting_time": 0.0, "rate": float(fps)} if by_rate
                      else {"timestamps": series[0] if series else H5DataIO(times, compression="gzip")})
            series.append(ndx_pose.PoseEstimationSeries(
                name=keypoint, description=f"{keypoint} of {name}",
                data=H5DataIO(table.keypoints[:, column, k, :2], compression="gzip"), unit="pixels",
                reference_frame=REFERENCE_FRAME,
                confidence=H5DataIO(table.keypoints[:, column, k, 2], compression="gzip"),
                confidence_definition="the pose model's confidence in the keypoint, 0 to 1", **timing))
        behavior.add(ndx_pose.PoseEstimation(
            name=name, pose_estimation_series=series,
            description=f"AP-10K keypoints of animal {name} in {source or 'the source'}",
            source_video=video, scorer="animalpose", source_software="animalpose",
            source_software_version=__version__, skeleton=skeleton))
    return nwbfile


def write_nwb(path: Path, table: PoseTable, info: VideoInfo | None = None) -> None:
    """Write ``table`` as an NWB file."""
    import pynwb

    nwbfile = nwb_file(table, info)  # first: importing ndx_pose registers its types for the writer
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)


class NwbSink(PoseFileSink):
    """An NWB file with ndx-pose (:mod:`app.sinks.nwb`), written at the end.

    Raises:
        SinkError: the packages of the ``formats`` extra are missing.
    """

    format_name = "the NWB format"

    @classmethod
    def modules(cls, path: Path) -> tuple[str, ...]:
        return ("pynwb", "ndx_pose")

    def write_file(self, path: Path, table: PoseTable) -> None:
        write_nwb(path, table, self.info)
