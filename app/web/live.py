"""One visitor's webcam stream through the pipeline, without gradio.

The browser sends frames while the page's previous frame is still being processed; gradio keeps
only the newest one for a busy session, so a slow server skips frames instead of queueing them and
the latency stays bounded by one frame's processing time. Each :class:`LiveSession` owns its
pipeline (built by :meth:`animalpose.Model.pipeline` as ``animalpose live`` builds it, with causal
smoothing), so tracks never leak between visitors; each frame runs with the models of that frame's
settings (:meth:`app.web.models.SharedModels.for_call`), so moving a threshold keeps the tracks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from app.web.models import ModelSpec, RunOptions, track_settings

#: Weight of the newest frame in the running averages of frame rate and latency.
_EMA = 0.2


@dataclass(frozen=True)
class LiveFrame:
    """One processed webcam frame.

    Attributes:
        image_rgb: (H, W, 3) uint8 RGB frame with skeletons, boxes and track IDs drawn.
        fps: frames processed per second, averaged over the last few frames.
        latency_ms: time from receiving the frame to its labeled image, averaged, in milliseconds.
        track_ids: IDs of the animals reported in this frame.
        frames: frames processed since the stream (re)started.
    """

    image_rgb: np.ndarray = field(repr=False)
    fps: float
    latency_ms: float
    track_ids: tuple[int, ...]
    frames: int

    @property
    def animals(self) -> int:
        return len(self.track_ids)

    def describe(self) -> str:
        animals = f"{self.animals} animal{'s' if self.animals != 1 else ''}"
        return f"{self.fps:.1f} frames/s · latency {self.latency_ms:.0f} ms · {animals}"


class LiveSession:
    """The pipeline state of one visitor's webcam.

    Args:
        max_side: frames larger than this (pixels, longer side) are shrunk first, which bounds the
            time one frame takes.
        restart_after_s: a pause longer than this (the visitor stopped and restarted the camera)
            starts new tracks.
    """

    def __init__(self, max_side: int = 640, restart_after_s: float = 2.0) -> None:
        if max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {max_side}")
        self.max_side = max_side
        self.restart_after_s = restart_after_s
        self._pipeline = None
        self._key: tuple | None = None
        self._frames = 0
        self._start = 0.0
        self._last = 0.0
        self._fps = 0.0
        self._latency_s = 0.0

    def _shrunk(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        scale = self.max_side / max(height, width)
        if scale >= 1.0:
            return image
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def _ensure_pipeline(self, models, spec: ModelSpec, options: RunOptions, now: float) -> None:
        """Keep the pipeline (and its tracks) unless the models, the detector interval or the smoothing
        changed, or the stream paused; the detector confidence and the flip test are those of ``models``,
        this frame's (a threshold moved while streaming keeps the tracks)."""
        from animalpose import Model

        smoothing = "none" if options.smoothing == "none" else "causal"
        key = (spec, options.det_every, smoothing)
        if self._pipeline is not None and key == self._key and now - self._last <= self.restart_after_s:
            self._pipeline.detector = models.detector
            self._pipeline.pose_model = models.estimator
            return
        self._pipeline = Model(models).pipeline(live=True, settings=track_settings(options, smoothing))
        self._key = key
        self._frames = 0
        self._start = now
        self._fps = 0.0
        self._latency_s = 0.0

    def process(self, image_rgb: np.ndarray, models, spec: ModelSpec, options: RunOptions) -> LiveFrame:
        """Track and label one (H, W, 3) uint8 RGB webcam frame with ``models`` (loaded for ``spec``)."""
        from app.drawing import DrawSettings, draw_frame

        image_rgb = np.asarray(image_rgb)
        if image_rgb.ndim != 3 or image_rgb.shape[2] not in (3, 4) or image_rgb.dtype != np.uint8:
            raise ValueError(f"a webcam frame must be an (H, W, 3) uint8 image, "
                             f"got {image_rgb.shape} {image_rgb.dtype}")
        received = time.monotonic()
        self._ensure_pipeline(models, spec, options, received)
        image = self._shrunk(cv2.cvtColor(image_rgb[..., :3], cv2.COLOR_RGB2BGR))
        result = self._pipeline.process(image, self._frames, received - self._start)
        canvas = draw_frame(image, result, DrawSettings(kpt_thr=options.kpt_thr))
        done = time.monotonic()
        if self._frames:
            interval = max(done - self._last, 1e-6)
            self._fps = 1.0 / interval if self._frames == 1 else (1 - _EMA) * self._fps + _EMA / interval
        latency = done - received
        self._latency_s = latency if self._frames == 0 else (1 - _EMA) * self._latency_s + _EMA * latency
        self._frames += 1
        self._last = done
        return LiveFrame(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB), self._fps, 1e3 * self._latency_s,
                         tuple(int(t) for t in result.track_ids), self._frames)
