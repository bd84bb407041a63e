"""Tracker settings scored on cached detections (``python -m bench.track_replay``).

Choosing tracker settings by running ``animalpose track`` again and again costs the detector and the
pose model on every frame. With the pose model after tracking (``animalpose track``'s default) the
identities depend only on the detector's boxes, scores and the boxes' colour histograms (each box's whole
colours and its own, :func:`tracking.appearance.box_colours`), so this
module runs the detector once per clip frame (:func:`cache_clip`, saved as ``.npz``), then replays the
tracker alone on the cache (:func:`replay`) and scores the boxes it reports against the clip's truth
(:func:`score_replay`: IDF1, MOTA, ID switches, precision, recall and the IDF1 with perfect
identities, as ``train.e2e.score_clip``). A replay of a 150-frame clip takes a fraction of a second.

The clips are synthetic clips of three crossing animals rendered from their seeds
(``train.synthetic.render_video``), as the end-to-end benchmark's held-out clips are, but with other
seeds: the validation clips on which the benchmark's tracking settings were chosen are seeds
5000-5002, 6000-6007 and 7000-7019 (``--seeds``).

The keypoints play no part here: this replays identities, not poses.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from app.runs import TrackSettings, tracker_settings
from bench.e2e_synthetic import mean_scores as mean_over_clips
from bench.tracking import outputs_from_tracks
from pose.structures import Detections
from tracking.appearance import BoxColours, box_colours
from tracking.detector import Detector, DetectorSettings
from tracking.smoothing import SmoothingMode
from tracking.tracker import Tracker, TrackerSettings, smooth_tracks_offline
from train.e2e import clip_truth
from train.tracking_metrics import FrameOutput, ideal_identities, identity_metrics

logger = logging.getLogger(__name__)

#: The validation clips' seeds (none of them a held-out clip of the benchmark, whose seeds start at 1000).
VALIDATION_SEEDS: tuple[int, ...] = (*range(5000, 5003), *range(6000, 6008), *range(7000, 7020))


@dataclass(frozen=True)
class CachedClip:
    """A clip's detections and their colour histograms, frame by frame.

    Attributes:
        detections: one :class:`~pose.structures.Detections` per frame.
        features: the colours of each frame's boxes, aligned with ``detections``.
        truth: the clip's ground truth (``train.synthetic.render_video``'s dict).
    """

    detections: tuple[Detections, ...]
    features: tuple[BoxColours, ...]
    truth: dict

    def __post_init__(self) -> None:
        if len(self.detections) != len(self.features):
            raise ValueError(f"detections and features must have one entry per frame, got {len(self.detections)} "
                             f"and {len(self.features)}")
        if len(self.detections) != len(self.truth["frames"]):
            raise ValueError(f"the truth has {len(self.truth['frames'])} frames, the detections "
                             f"{len(self.detections)}")

    def save(self, path: str | Path) -> None:
        """Write the cache as one ``.npz`` (detections and features concatenated, with frame counts)."""
        counts = np.array([len(d) for d in self.detections], np.int64)
        width = max((f.whole.shape[1] for f in self.features), default=0)
        whole = [f.whole.reshape(len(d), width) for d, f in zip(self.detections, self.features)]
        own = [f.own.reshape(len(d), width) for d, f in zip(self.detections, self.features)]
        np.savez_compressed(
            path, counts=counts,
            xyxy=np.concatenate([d.xyxy for d in self.detections]).reshape(-1, 4).astype(np.float32),
            scores=np.concatenate([d.scores for d in self.detections]).astype(np.float32),
            class_ids=np.concatenate([d.class_ids for d in self.detections]).astype(np.int64),
            features=np.concatenate(whole).reshape(-1, width).astype(np.float32),
            own_features=np.concatenate(own).reshape(-1, width).astype(np.float32),
            truth=np.array(json.dumps(self.truth)),
        )

    @classmethod
    def load(cls, path: str | Path) -> CachedClip:
        with np.load(path) as data:
            bounds = np.concatenate([[0], np.cumsum(data["counts"])])
            if "own_features" not in data:
                raise ValueError(f"{path} was cached without each box's own colours (before session 23): delete it "
                                 "to cache the clip again")
            xyxy, scores, class_ids = data["xyxy"], data["scores"], data["class_ids"]
            whole, own = data["features"], data["own_features"]
            truth = json.loads(str(data["truth"]))
        spans = list(itertools.pairwise(bounds))
        detections = tuple(Detections(xyxy[a:b], scores[a:b], class_ids[a:b]) for a, b in spans)
        return cls(detections, tuple(BoxColours(whole[a:b], own[a:b]) for a, b in spans), truth)


def cache_clip(video: str | Path, truth: dict, detector) -> CachedClip:
    """Run ``detector(frame_bgr) -> Detections`` on every frame of ``video`` and take the colour histograms of
    its boxes (what ``app.pipeline.Pipeline`` gives the tracker)."""
    from app.sources import VideoFileSource

    detections, features = [], []
    for frame in VideoFileSource(video):
        found = detector(frame.image)
        detections.append(found)
        features.append(box_colours(frame.image, found.xyxy))
    return CachedClip(tuple(detections), tuple(features), truth)


def replay(clip: CachedClip, settings: TrackerSettings) -> list[FrameOutput]:
    """The boxes and identities a fresh tracker with ``settings`` reports on every frame of ``clip`` (smoothed
    over the whole clip when ``settings.smoothing.mode`` is OFFLINE)."""
    tracker = Tracker(settings)
    size = (int(clip.truth["width"]), int(clip.truth["height"]))  # as the pipeline tells it the frame's
    frames = [tracker.update(detections, None, features if settings.appearance_weight > 0 else None, size)
              for detections, features in zip(clip.detections, clip.features)]
    if settings.smoothing.mode is SmoothingMode.OFFLINE:
        frames = smooth_tracks_offline(tracker.history())
    return outputs_from_tracks(frames)


def score_replay(clip: CachedClip, outputs: Sequence[FrameOutput]) -> dict[str, float]:
    """Identity metrics of ``outputs`` against the clip's truth, and ``idf1_ideal`` (perfect identities)."""
    truth = clip_truth(clip.truth)
    scores = identity_metrics(truth, outputs)  # type: ignore[arg-type]  # duck-typed sequence
    scores["idf1_ideal"] = identity_metrics(truth, ideal_identities(truth, outputs))["idf1"]  # type: ignore[arg-type]
    return scores


def track_settings(max_lost_frames: int, min_hits: int, appearance: float, mode: SmoothingMode,
                   **changes) -> TrackerSettings:
    """The tracker settings ``animalpose track`` uses (``app.runs.tracker_settings``), with ``changes``."""
    base = tracker_settings(TrackSettings(min_hits=min_hits, appearance=appearance), mode, max_lost_frames)
    return replace(base, **changes)


def mean_scores(clips: Sequence[CachedClip], settings: TrackerSettings) -> dict[str, float]:
    """Scores of ``settings`` averaged over ``clips``, with the lowest IDF1 of a clip (``idf1_min``)."""
    rows = [score_replay(clip, replay(clip, settings)) for clip in clips]
    return {**mean_over_clips(rows), "idf1_min": min(row["idf1"] for row in rows)}


def cached_clips(cache: Path, seeds: Sequence[int], det_weights: Path, det_imgsz: int, det_iou: float,
                 det_conf: float, frames: int, video_size: Sequence[int], fps: float) -> list[CachedClip]:
    """The clips of ``seeds``, rendered and run through the detector unless ``cache`` has them already."""
    from train.synthetic import VideoSettings, render_video

    cache.mkdir(parents=True, exist_ok=True)
    detector = None
    clips = []
    for seed in seeds:
        path = cache / f"clip_{seed}.npz"
        if path.is_file():
            clips.append(CachedClip.load(path))
            continue
        if detector is None:
            detector = Detector(DetectorSettings(weights=str(det_weights), confidence=det_conf, iou=det_iou,
                                                 image_size=det_imgsz))
        video = cache / f"clip_{seed}.mp4"
        truth = render_video(video, VideoSettings(num_animals=3, num_frames=frames, width=video_size[0],
                                                  height=video_size[1], fps=fps, seed=seed))
        clip = cache_clip(video, truth, detector)
        clip.save(path)
        video.unlink()
        clips.append(clip)
        logger.info("cached clip %d: %d detections", seed, sum(len(d) for d in clip.detections))
    return clips


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--det-weights", type=Path, required=True, help="the detector (a YOLO .pt)")
    parser.add_argument("--cache", type=Path, required=True,
                        help="folder of the cached clips (one per detector: the cache holds its boxes)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(VALIDATION_SEEDS), help="clip seeds")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--video-size", type=int, nargs=2, default=[320, 256], metavar=("W", "H"))
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--det-imgsz", type=int, default=320)
    shipped = TrackSettings()  # the tracking settings default to what ``animalpose track`` ships with
    parser.add_argument("--det-iou", type=float, default=DetectorSettings.iou, help="as animalpose track's --det-iou")
    parser.add_argument("--det-conf", type=float, default=DetectorSettings.confidence, help="the detector's")
    parser.add_argument("--max-lost", type=float, default=shipped.max_lost_s, help="seconds")
    parser.add_argument("--min-hits", type=int, default=shipped.min_hits, help="as animalpose track's")
    parser.add_argument("--appearance", type=float, default=shipped.appearance, help="as animalpose track's")
    return parser


def main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    clips = cached_clips(args.cache, args.seeds, args.det_weights, args.det_imgsz, args.det_iou, args.det_conf,
                         args.frames, args.video_size, args.fps)
    results = {}
    for mode in (SmoothingMode.NONE, SmoothingMode.CAUSAL, SmoothingMode.OFFLINE):
        settings = track_settings(round(args.max_lost * args.fps), args.min_hits, args.appearance, mode)
        results[mode.value] = mean_scores(clips, settings)
        logger.info("%s: %s", mode.value, {k: round(v, 4) for k, v in results[mode.value].items()})
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(get_args_parser().parse_args())
