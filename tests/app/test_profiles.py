"""app/profiles.py: what each run profile chooses, and which one a run takes by default."""

from __future__ import annotations

import pytest

import app.profiles as profiles
from app.pipeline import PipelineSettings
from app.profiles import FULL_CHOICES, Profile, ProfileChoices, as_profile, default_profile
from pose.estimator import PoseSettings
from pose.weights import DEFAULT_POSE_WEIGHTS, OFFICIAL_WEIGHTS
from tracking.detector import DetectorSettings


def test_the_full_profile_is_the_settings_own_defaults():
    assert FULL_CHOICES == ProfileChoices(DEFAULT_POSE_WEIGHTS, PoseSettings().flip_test,
                                          DetectorSettings(weights="d.pt").image_size, PipelineSettings().det_every)
    assert profiles.profile_choices(Profile.FULL) is FULL_CHOICES


def test_the_realtime_profile_runs_less():
    choices = profiles.profile_choices(Profile.REALTIME)
    assert choices.pose_weights in OFFICIAL_WEIGHTS and choices.pose_weights != FULL_CHOICES.pose_weights
    assert not choices.flip_test
    assert choices.det_image_size == FULL_CHOICES.det_image_size  # a smaller input cost identities (bench.profiles)
    assert choices.det_every > FULL_CHOICES.det_every


def test_choices_say_what_they_run():
    assert FULL_CHOICES.describe() == "hrnet_w32 (with the flip test), detector at 640 px every frame"
    assert ProfileChoices("rtmpose_m", False, 320, 2).describe() == \
        "rtmpose_m (no flip test), detector at 320 px every 2nd frame"
    assert "every 3rd frame" in ProfileChoices("a.pth", False, 320, 3).describe()
    assert "every 11th frame" in ProfileChoices("a.pth", False, 320, 11).describe()


@pytest.mark.parametrize("kwargs, message", [
    ({"det_image_size": 300}, "image_size must be a positive multiple of 32"),
    ({"det_every": 0}, "det_every"),
])
def test_choices_are_checked_as_the_settings_check_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ProfileChoices(**{"pose_weights": "a.pth", "flip_test": False, "det_image_size": 320, "det_every": 2, **kwargs})


def test_profiles_are_taken_by_name():
    assert as_profile("realtime") is Profile.REALTIME and as_profile(Profile.FULL) is Profile.FULL
    with pytest.raises(ValueError, match=r"profile must be one of \['full', 'realtime'\], got 'fast'"):
        as_profile("fast")


def test_live_sources_without_a_gpu_run_in_real_time(monkeypatch):
    assert default_profile(live=True, device="cpu") is Profile.REALTIME
    assert default_profile(live=False, device="cpu") is Profile.FULL
    monkeypatch.setattr(profiles, "resolve_device", lambda device: "cuda:0")  # as on a machine with a GPU
    assert default_profile(live=True) is Profile.FULL
    assert default_profile(live=False) is Profile.FULL
    monkeypatch.setattr(profiles, "resolve_device", lambda device: "cpu")
    assert default_profile(live=True) is Profile.REALTIME


def test_a_bad_device_is_refused():
    with pytest.raises(ValueError, match="device"):
        default_profile(live=True, device="tpu")
