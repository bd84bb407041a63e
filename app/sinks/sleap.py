"""SLEAP's pose files: the analysis HDF5 (``.h5``, written with h5py) and the labels file (``.slp``,
written with sleap-io).

The analysis file holds SLEAP's datasets in SLEAP's own axis order (its "matlab" layout, with each
dataset's axes named in a ``dims`` attribute): ``tracks`` (animals, xy, nodes, frames; NaN where absent
or missing), ``track_occupancy`` (frames, animals), ``point_scores`` (animals, nodes, frames: keypoint
confidences), ``instance_scores`` (animals, frames: the detector's box scores), ``tracking_scores``
(NaN: not computed), ``track_names`` (``track_<id>``), ``node_names`` (AP-10K), ``edge_names`` and
``edge_inds`` (the AP-10K skeleton, 0-based), ``video_path``, ``video_ind``, ``labels_path`` and
``provenance`` (JSON: software, version, source). SLEAP, sleap-io and movement
(``source_software="SLEAP"``) read both files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.sinks.base import SinkError
from app.sinks.tracks import PoseFileSink, PoseTable, video_path
from app.sources import VideoInfo
from pose.keypoints import FLIP_PAIRS

EXTENSIONS: tuple[str, ...] = (".h5", ".slp")
#: Axis names of the analysis datasets, as SLEAP (and sleap-io's "matlab" preset) store them.
ANALYSIS_DIMS: dict[str, tuple[str, ...]] = {
    "tracks": ("track", "xy", "node", "frame"),
    "track_occupancy": ("frame", "track"),
    "point_scores": ("track", "node", "frame"),
    "instance_scores": ("track", "frame"),
    "tracking_scores": ("track", "frame"),
}
SKELETON_NAME = "AP-10K"


def _provenance(info: VideoInfo | None) -> dict:
    from animalpose import __version__

    return {"software": "animalpose", "version": __version__, "source": video_path(info),
            "fps": info.fps if info else None}


def write_analysis_h5(path: Path, table: PoseTable, info: VideoInfo | None = None) -> None:
    """Write ``table`` (every frame from 0) as SLEAP's analysis HDF5 file."""
    import h5py

    table = table.every_frame()
    keypoints = table.keypoints  # (F, T, K, 3)
    present = table.present
    arrays = {
        "tracks": keypoints[..., :2].transpose(1, 3, 2, 0),
        "track_occupancy": present.astype(np.uint8),
        "point_scores": keypoints[..., 2].transpose(1, 2, 0),
        "instance_scores": table.box_scores.T,
        "tracking_scores": np.full(table.box_scores.T.shape, np.nan),
    }
    names = list(table.keypoint_names)
    with h5py.File(path, "w") as f:
        for name, values in arrays.items():
            dataset = f.create_dataset(name, data=values, compression="gzip", compression_opts=4)
            dataset.attrs["dims"] = json.dumps(ANALYSIS_DIMS[name])
        f.create_dataset("track_names", data=np.array([n.encode() for n in table.individuals], dtype="S"))
        f.create_dataset("node_names", data=np.array([n.encode() for n in names], dtype="S"))
        f.create_dataset("edge_names", data=np.array([[names[a].encode(), names[b].encode()]
                                                      for a, b in table.skeleton], dtype="S").reshape(-1, 2))
        f.create_dataset("edge_inds", data=np.asarray(table.skeleton, np.int64).reshape(-1, 2))
        f.create_dataset("video_path", data=video_path(info).encode())
        f.create_dataset("video_ind", data=0)
        f.create_dataset("labels_path", data=b"")
        f.create_dataset("provenance", data=json.dumps(_provenance(info)).encode())
        f.attrs["format"] = "analysis"
        f.attrs["preset"] = "matlab"
        f.attrs["skeleton_name"] = SKELETON_NAME
        f.attrs["skeleton_symmetries"] = json.dumps([[names[a], names[b]] for a, b in FLIP_PAIRS])


def sleap_labels(table: PoseTable, info: VideoInfo | None = None):
    """``table`` as a ``sleap_io.Labels``: one predicted instance per animal and frame, with its track, the
    AP-10K skeleton (edges and left/right symmetries) and the source video."""
    import sleap_io as sio

    names = list(table.keypoint_names)
    skeleton = sio.Skeleton(nodes=names, edges=[(names[a], names[b]) for a, b in table.skeleton],
                            symmetries=[(names[a], names[b]) for a, b in FLIP_PAIRS], name=SKELETON_NAME)
    tracks = [sio.Track(name=name) for name in table.individuals]
    video = sio.Video(filename=video_path(info), open_backend=False)
    frames = []
    for row, frame_index in enumerate(table.frames):
        instances = [
            sio.PredictedInstance.from_numpy(points_data=table.keypoints[row, column, :, :2], skeleton=skeleton,
                                             point_scores=table.keypoints[row, column, :, 2],
                                             score=float(table.box_scores[row, column]), track=tracks[column])
            for column in np.flatnonzero(table.present[row])
        ]
        if instances:
            frames.append(sio.LabeledFrame(video=video, frame_idx=int(frame_index), instances=instances))
    labels = sio.Labels(labeled_frames=frames, videos=[video], skeletons=[skeleton], tracks=tracks)
    labels.provenance.update(_provenance(info))
    return labels


def write_slp(path: Path, table: PoseTable, info: VideoInfo | None = None) -> None:
    """Write ``table`` as a SLEAP labels file (``.slp``) with sleap-io."""
    import sleap_io as sio

    sio.save_slp(sleap_labels(table, info), str(path), verbose=False)


class SleapSink(PoseFileSink):
    """SLEAP's analysis HDF5 (``.h5``) or labels file (``.slp``), by ``path``'s extension, written at the end.

    Raises:
        SinkError: another extension, or the packages of the ``formats`` extra are missing.
    """

    format_name = "the SLEAP format"

    @classmethod
    def modules(cls, path: Path) -> tuple[str, ...]:
        suffix = path.suffix.lower()
        if suffix not in EXTENSIONS:
            raise SinkError(f"cannot write {path}: a SLEAP file ends in .h5 (analysis) or .slp (labels), "
                            f"not {suffix!r}")
        return ("h5py",) if suffix == ".h5" else ("sleap_io",)

    def write_file(self, path: Path, table: PoseTable) -> None:
        if self.path.suffix.lower() == ".slp":
            write_slp(path, table, self.info)
        else:
            write_analysis_h5(path, table, self.info)
