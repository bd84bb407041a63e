"""Run profiles: what to run for accuracy (``full``) and what to run for real time on a CPU (``realtime``).

A profile chooses four things, each measured in ``python -m bench.profiles`` (docs/benchmarks.md,
"Run profiles"):

- the pose model: HRNet-w32 (mmpose 0.x, AP 0.738 on AP-10K val) or RTMPose-m (mmpose 1.x, AP 0.722,
  about 3x less computation per crop);
- the flip test: the mirrored crop run too and averaged in (twice the pose model's cost);
- the detector's input size in pixels (the longer side of the letterboxed frame);
- how often the detector runs: every frame, or every k-th frame with the tracks predicted in between.

The real-time profile keeps the detector's input size and runs it on every 2nd frame: on 40 synthetic clips that
cost IDF1 0.001 and OKS AP 0.023 (with no flip test too), while a smaller input cost OKS AP 0.015 at 0.8x the size
and IDF1 0.31 at 0.5x; see docs/benchmarks.md, "Run profiles".

Anything a user gives explicitly (``--pose-weights``, ``--flip``/``--no-flip``, ``--det-imgsz``,
``--det-every``; :func:`animalpose.load`'s ``pose``, ``detector`` or ``pose_settings``) wins over the
profile. ``animalpose live`` and the web app's webcam tab take ``realtime`` by default on a machine
without a CUDA GPU, and say so when they start; everything else takes ``full``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from app.pipeline import PipelineSettings
from pose.devices import AUTO, resolve_device
from pose.estimator import PoseSettings
from pose.weights import DEFAULT_POSE_WEIGHTS
from tracking.detector import DEFAULT_DETECTOR_WEIGHTS, DetectorSettings

__all__ = ["Profile", "ProfileChoices", "as_profile", "default_profile", "profile_choices"]


class Profile(enum.Enum):
    """What a run is tuned for."""

    FULL = "full"  # the most accurate keypoints: HRNet-w32 with the flip test, the detector on every frame
    REALTIME = "realtime"  # real time on a CPU: RTMPose-m without the flip test, the detector on every 2nd frame


@dataclass(frozen=True)
class ProfileChoices:
    """What one profile runs.

    Attributes:
        pose_weights: the pose model, an official name (:data:`pose.weights.OFFICIAL_WEIGHTS`) or a file.
        flip_test: run the mirrored crop too (:attr:`pose.estimator.PoseSettings.flip_test`).
        det_image_size: the detector's input size in pixels (:attr:`tracking.detector.DetectorSettings.image_size`).
        det_every: run the detector every this many frames (:attr:`app.pipeline.PipelineSettings.det_every`).
    """

    pose_weights: str
    flip_test: bool
    det_image_size: int
    det_every: int

    def __post_init__(self) -> None:
        # The same checks as the settings these values go into.
        DetectorSettings(weights=DEFAULT_DETECTOR_WEIGHTS, image_size=self.det_image_size)
        PipelineSettings(det_every=self.det_every)

    def describe(self) -> str:
        """In words, for the log line a run starts with."""
        flip = "with the flip test" if self.flip_test else "no flip test"
        every = "every frame" if self.det_every == 1 else f"every {_ordinal(self.det_every)} frame"
        return f"{self.pose_weights} ({flip}), detector at {self.det_image_size} px {every}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


#: The full profile is the settings' own defaults.
FULL_CHOICES = ProfileChoices(
    pose_weights=DEFAULT_POSE_WEIGHTS,
    flip_test=PoseSettings.flip_test,
    det_image_size=DetectorSettings.image_size,
    det_every=PipelineSettings.det_every,
)

#: The real-time profile (each choice measured by ``python -m bench.profiles``; docs/benchmarks.md, "Run profiles"):
#: a 3x cheaper pose model, no flip test and the detector on every 2nd frame, at its full input size.
REALTIME_CHOICES = ProfileChoices(
    pose_weights="rtmpose_m",
    flip_test=False,
    det_image_size=DetectorSettings.image_size,
    det_every=2,
)


def profile_choices(profile: Profile) -> ProfileChoices:
    """What ``profile`` runs."""
    return REALTIME_CHOICES if as_profile(profile) is Profile.REALTIME else FULL_CHOICES


def as_profile(value: Profile | str) -> Profile:
    """``value`` as a :class:`Profile` (its value as text is taken too).

    Raises:
        ValueError: not a profile.
    """
    if isinstance(value, Profile):
        return value
    try:
        return Profile(value)
    except ValueError:
        raise ValueError(f"profile must be one of {[p.value for p in Profile]}, got {value!r}") from None


def default_profile(live: bool, device: str = AUTO) -> Profile:
    """The profile a run takes when none is asked for: REALTIME for a live source (a camera, a stream, the
    web app's webcam) on a device that is not a CUDA GPU, FULL otherwise.

    Raises:
        ValueError: ``device`` is not a device name, or a CUDA device that torch does not see.
    """
    if live and not resolve_device(device).startswith("cuda"):
        return Profile.REALTIME
    return Profile.FULL
