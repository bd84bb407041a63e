"""``import animalpose``: the public Python API, tested like one (each argument, bad values, same results as
the command line)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import animalpose
from animalpose import Model, load, track_settings
from app.runs import Models, TrackSettings
from pose.estimator import Backend, PoseSettings
from pose.structures import Detections
from tracking.smoothing import SmoothingMode
from train.e2e import GroundTruthDetector

os.environ.setdefault("YOLO_OFFLINE", "1")

JAGUAR_XYWH = [66.0, 192.0, 1092.0, 512.0]


@pytest.fixture(scope="module")
def jaguar(samples_dir) -> Path:
    return samples_dir / "ap10k" / "000000037516.jpg"


@pytest.fixture(scope="module")
def small_weights(reference_dir) -> Path:
    return reference_dir / "hrnet_small" / "hrnet_small_ap10k.pth"


@pytest.fixture(scope="module")
def tiny_yolo(tmp_path_factory) -> Path:
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("yolo") / "tiny.pt"
    model = YOLO("yolo11n.yaml")
    model.model = DetectionModel("yolo11n.yaml", nc=1, verbose=False)
    model.model.names = {0: "animal"}
    model.save(str(path))
    return path


@pytest.fixture()
def gt_model(synthetic_clip, small_estimator) -> Model:
    """The clip's ground truth as the detector, the small HRNet as the pose model."""
    _, gt = synthetic_clip
    return Model(Models(GroundTruthDetector(gt, auto_advance=True), small_estimator))


def test_the_package_names_its_api():
    for name in animalpose.__all__:
        assert hasattr(animalpose, name), name
    assert {"load", "Model", "FrameResult", "Poses", "TrackSettings", "__version__"} <= set(animalpose.__all__)


# --------------------------------------------------------------------------------------------------
# load


def test_load_builds_both_networks_with_one_device_and_precision(small_weights, tiny_yolo):
    model = load(small_weights, tiny_yolo, device="cpu", precision="fast",
                 pose_settings=PoseSettings(flip_test=False, backend=Backend.TORCH))
    assert model.estimator.settings.device == "cpu" and model.estimator.settings.precision.value == "fast"
    assert model.estimator.settings.flip_test is False
    assert model.models.detector.settings.precision.value == "fast"
    assert model.models.detector.settings.device == "cpu"
    assert isinstance(model.detect(np.zeros((64, 96, 3), np.uint8)), Detections)


def test_load_without_a_detector_poses_given_boxes_only(small_weights, jaguar):
    model = load(small_weights, None, device="cpu")
    assert len(model.pose(jaguar, [JAGUAR_XYWH], box_format="xywh")) == 1
    with pytest.raises(ValueError, match="loaded without a detector"):
        model.pose(jaguar)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"device": "tpu"}, "device must be auto, cpu, cuda or cuda:N"),
        ({"precision": "medium"}, "precision must be one of"),
        ({"detector": 42}, "detector must be a weights path"),
    ],
)
def test_load_refuses_bad_arguments(kwargs, message, small_weights, tiny_yolo):
    arguments = {"pose": small_weights, "detector": tiny_yolo, **kwargs}
    with pytest.raises(ValueError, match=message):
        load(**arguments)


def test_load_reports_missing_weights(tmp_path, tiny_yolo):
    from pose.weights import WeightsError
    from tracking.detector import DetectorError

    with pytest.raises(DetectorError, match="nope.pt"):
        load(tmp_path / "nope.pth", tmp_path / "nope.pt", device="cpu")
    with pytest.raises((WeightsError, FileNotFoundError, ValueError), match="nope.pth"):
        load(tmp_path / "nope.pth", tiny_yolo, device="cpu")


# --------------------------------------------------------------------------------------------------
# pose


def test_pose_of_boxes_equals_the_estimator_and_the_command_line(gt_model, jaguar, tmp_path, small_weights):
    from app.cli import main

    image = cv2.imread(str(jaguar))
    xywh = gt_model.pose(jaguar, [JAGUAR_XYWH], box_format="xywh")
    np.testing.assert_array_equal(xywh.keypoints, gt_model.estimator.estimate_xywh(image, np.array([JAGUAR_XYWH]))
                                  .keypoints)
    xyxy = [[66.0, 192.0, 1158.0, 704.0]]
    np.testing.assert_array_equal(gt_model.pose(image, xyxy).keypoints, gt_model.estimator(image, xyxy).keypoints)
    out = tmp_path / "p.json"
    assert main(["pose", str(jaguar), "--pose-weights", str(small_weights), "--box", ",".join(map(str, JAGUAR_XYWH)),
                 "--no-flip", "--backend", "torch", "--json", str(out)]) == 0
    cli = np.array(json.loads(out.read_text())["frames"][0]["animals"][0]["keypoints"], np.float64)
    np.testing.assert_allclose(cli, xywh.keypoints[0], atol=1e-3)


def test_pose_without_boxes_uses_the_detector(gt_model, synthetic_clip):
    clip, gt = synthetic_clip
    capture = cv2.VideoCapture(str(clip))
    ok, frame = capture.read()
    capture.release()
    poses = gt_model.pose(frame)
    assert len(poses) == len(gt["frames"][0]["animals"]) and poses.keypoints.shape[1:] == (17, 3)


@pytest.mark.parametrize("image", [np.zeros((40, 50), np.uint8), np.zeros((40, 50, 1), np.uint8),
                                   np.zeros((40, 50, 4), np.uint8)])
def test_pose_takes_grey_and_bgra_arrays(gt_model, image):
    assert gt_model.pose(image, [[5, 5, 30, 30]]).keypoints.shape == (1, 17, 3)


@pytest.mark.parametrize(
    "image, boxes, box_format, message",
    [
        (np.zeros((40, 50, 3), np.float32), [[0, 0, 10, 10]], "xyxy", "must be a uint8 array"),
        (np.zeros((40, 50, 2), np.uint8), [[0, 0, 10, 10]], "xyxy", "must be \\(H, W\\)"),
        ("nope.jpg", [[0, 0, 10, 10]], "xyxy", "does not exist"),
        (42, [[0, 0, 10, 10]], "xyxy", "image must be a file path or a uint8 numpy array"),
        (np.zeros((40, 50, 3), np.uint8), [[0, 0, 10]], "xyxy", "boxes must be \\(N, 4\\)"),
        (np.zeros((40, 50, 3), np.uint8), [[0, 0, 10, np.nan]], "xyxy", "finite"),
        (np.zeros((40, 50, 3), np.uint8), [[0, 0, 10, 10]], "cxcywh", "box_format must be"),
    ],
)
def test_pose_refuses_bad_inputs(gt_model, image, boxes, box_format, message):
    from app.sources import SourceError

    with pytest.raises((ValueError, SourceError), match=message):
        gt_model.pose(image, boxes, box_format=box_format)


# --------------------------------------------------------------------------------------------------
# track


@pytest.mark.parametrize("smoothing", ["offline", "causal", "none"])
def test_track_streams_a_result_per_frame_equal_to_the_files_of_the_command_line(
        gt_model, synthetic_clip, tmp_path, smoothing, small_estimator):
    clip, gt = synthetic_clip
    streamed = list(gt_model.track(clip, smoothing=smoothing))
    assert [r.frame_index for r in streamed] == list(range(len(gt["frames"])))
    _, gt2 = synthetic_clip
    again = Model(Models(GroundTruthDetector(gt2, auto_advance=True), small_estimator))
    summary = again.track(clip, save=["json"], out_dir=tmp_path, smoothing=smoothing)
    assert summary.frames == len(gt["frames"]) and summary.complete
    document = json.loads((tmp_path / f"{clip.stem}.json").read_text())
    for result, frame in zip(streamed, document["frames"], strict=True):
        assert [a["track_id"] for a in frame["animals"]] == result.track_ids.tolist()
        if len(result):
            got = np.array([[[np.nan if v is None else v for v in k] for k in a["keypoints"]]
                            for a in frame["animals"]], np.float64)
            np.testing.assert_allclose(got, result.keypoints, atol=2e-3)


def test_track_of_frames_in_memory(gt_model, synthetic_clip):
    clip, gt = synthetic_clip
    capture = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    results = list(gt_model.track(iter(frames), fps=12.0, smoothing="causal"))
    assert len(results) == len(frames)
    assert results[-1].timestamp_s == pytest.approx((len(frames) - 1) / 12.0)
    assert sum(len(r) for r in results) > 0


def test_stopping_a_stream_early_closes_its_source(gt_model, synthetic_clip):
    clip, _ = synthetic_clip
    stream = gt_model.track(clip, smoothing="causal")
    first = next(stream)
    stream.close()
    assert first.frame_index == 0


def test_track_saves_a_folder_of_videos(gt_model, synthetic_clip, tmp_path):
    clip, _ = synthetic_clip
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (videos / name).write_bytes(clip.read_bytes())
    summary = gt_model.track(videos, save=["json", "csv"], out_dir=tmp_path / "out", smoothing="none")
    assert [Path(s.source).name for s in summary.done] == ["a.mp4", "b.mp4"] and not summary.failed
    again = gt_model.track(videos, save=["json", "csv"], out_dir=tmp_path / "out", smoothing="none")
    assert again.done == () and [p.name for p in again.skipped] == ["a.mp4", "b.mp4"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"smoothing": "bogus"}, "smoothing must be one of"),
        ({"pose_order": "sideways"}, "pose_order must be one of"),
        ({"min_hits": 0}, "min_hits must be an integer >= 1"),
        ({"frobnicate": 1}, "unknown tracking options \\['frobnicate'\\]"),
        ({"save": ["gif"]}, "save must name some of"),
        ({"save": []}, "save must name some of"),
        ({"out_dir": "x"}, "out_dir needs save"),
    ],
)
def test_track_refuses_bad_options(gt_model, synthetic_clip, kwargs, message):
    clip, _ = synthetic_clip
    with pytest.raises(ValueError, match=message):
        gt_model.track(clip, **kwargs)


def test_track_refuses_to_save_what_has_no_end(gt_model, synthetic_clip):
    with pytest.raises(ValueError, match="is a camera or stream"):
        gt_model.track("rtsp://127.0.0.1:9/cam", save=["json"])
    with pytest.raises(ValueError, match="saving results needs a file source"):
        gt_model.track([np.zeros((8, 8, 3), np.uint8)], save=["json"])


def test_track_settings_take_text_for_enums():
    settings = track_settings(smoothing="causal", pose_order="before", min_hits=3)
    assert settings.smoothing is SmoothingMode.CAUSAL and settings.pose_order.value == "before"
    assert settings.min_hits == 3 and track_settings(TrackSettings(det_every=2)).det_every == 2


def test_pipeline_for_frames_that_come_one_at_a_time(gt_model, synthetic_clip):
    clip, _ = synthetic_clip
    pipeline = gt_model.pipeline(live=True, fps=12.0)
    assert pipeline.smoothing_mode is SmoothingMode.CAUSAL
    capture = cv2.VideoCapture(str(clip))
    ok, frame = capture.read()
    capture.release()
    assert pipeline.process(frame, 0, 0.0).frame_index == 0
    with pytest.raises(ValueError, match="live"):
        gt_model.pipeline(live=True, smoothing="offline")


def test_track_writes_named_outputs_and_reports_progress(gt_model, synthetic_clip, tmp_path):
    from app.runs import OutputPaths

    clip, gt = synthetic_clip
    seen = []
    outputs = OutputPaths(json=tmp_path / "r.json", jsonl=tmp_path / "r.jsonl", csv=tmp_path / "r.csv")
    summary = gt_model.track(clip, outputs=outputs, smoothing="causal", progress=seen.append)
    assert summary.frames == len(gt["frames"]) and outputs.csv.is_file()
    assert [p.done for p in seen] == list(range(1, len(gt["frames"]) + 1))
    with pytest.raises(ValueError, match="give save \\(with out_dir\\) or outputs, not both"):
        gt_model.track(clip, outputs=outputs, save=["json"])


def test_track_saves_the_video_in_the_container_asked_for(gt_model, synthetic_clip, tmp_path):
    clip, _ = synthetic_clip
    gt_model.track(clip, save=["video"], out_dir=tmp_path, video_suffix=".avi", smoothing="none")
    assert (tmp_path / f"{clip.stem}.avi").is_file()


def test_overwrite_redoes_a_folder(gt_model, synthetic_clip, tmp_path):
    clip, _ = synthetic_clip
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(clip.read_bytes())
    gt_model.track(videos, save=["json"], out_dir=tmp_path / "out", smoothing="none")
    again = gt_model.track(videos, save=["json"], out_dir=tmp_path / "out", smoothing="none", overwrite=True)
    assert [Path(s.source).name for s in again.done] == ["a.mp4"] and again.skipped == ()


def test_a_folder_of_several_videos_is_not_streamed(gt_model, synthetic_clip, tmp_path):
    clip, _ = synthetic_clip
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(clip.read_bytes())
    with pytest.raises(ValueError, match="holds several videos"):
        gt_model.track(tmp_path)


# --------------------------------------------------------------------------------------------------
# profiles


def test_the_realtime_profile_loads_its_models(monkeypatch):
    import animalpose.model as api

    loaded = {}

    def fake_load(pose, pose_settings, detector_settings):
        loaded.update(pose=pose, pose_settings=pose_settings, detector_settings=detector_settings)
        return Models(lambda image: Detections.empty(), lambda image, boxes: None)

    monkeypatch.setattr(api, "load_models", fake_load)
    model = load(profile="realtime", device="cpu")
    assert model.profile is animalpose.Profile.REALTIME
    assert loaded["pose"] == "rtmpose_m" and loaded["pose_settings"].flip_test is False
    assert loaded["detector_settings"].image_size == 640
    assert model.track_defaults.det_every == 2
    full = load(device="cpu")
    assert loaded["pose"] == "hrnet_w32" and loaded["pose_settings"].flip_test is True
    assert loaded["detector_settings"].image_size == 640 and full.track_defaults == TrackSettings()
    # what is given explicitly wins over the profile
    load("mine.pth", animalpose.DetectorSettings(weights="d.pt", image_size=512), profile="realtime", device="cpu",
         pose_settings=PoseSettings(flip_test=True))
    assert loaded["pose"] == "mine.pth" and loaded["pose_settings"].flip_test is True
    assert loaded["detector_settings"].image_size == 512
    with pytest.raises(ValueError, match="profile must be one of"):
        load(profile="fast", device="cpu")


def test_the_pose_models_backend_is_the_detectors_when_the_detector_is_named(monkeypatch):
    import animalpose.model as api
    from pose.estimator import Backend

    loaded = {}
    monkeypatch.setattr(api, "load_models", lambda pose, pose_settings, detector_settings: loaded.update(
        detector_settings=detector_settings) or Models(lambda image: Detections.empty(), lambda image, boxes: None))
    load(device="cpu")
    assert loaded["detector_settings"].backend is Backend.AUTO  # ONNX Runtime on the CPU
    load(device="cpu", pose_settings=PoseSettings(backend=Backend.TORCH))
    assert loaded["detector_settings"].backend is Backend.TORCH
    load(detector=animalpose.DetectorSettings(weights="d.pt", backend="onnxruntime"), device="cpu",
         pose_settings=PoseSettings(backend=Backend.TORCH))
    assert loaded["detector_settings"].backend is Backend.ONNXRUNTIME  # settings given whole are kept


def test_a_realtime_model_tracks_with_the_detector_every_second_frame(synthetic_clip, small_estimator):
    clip, gt = synthetic_clip
    calls = []
    truth = GroundTruthDetector(gt)

    def detector(image):
        calls.append(1)
        return truth(image)

    model = Model(Models(detector, small_estimator), profile="realtime")
    frames = list(model.track(clip, smoothing="none"))
    assert len(calls) == (len(frames) + 1) // 2
    calls.clear()
    frames = list(model.track(clip, smoothing="none", det_every=1))  # an option given wins
    assert len(calls) == len(frames)
    assert model.pipeline(live=True).settings.det_every == 2
