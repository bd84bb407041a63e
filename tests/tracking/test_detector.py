"""The detector wrapper, run on tiny randomly initialised YOLO models built offline from a model yaml."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")  # never reach for the network from the tests

import torch  # noqa: E402

from pose.estimator import Backend  # noqa: E402
from pose.graphs import capture_eager  # noqa: E402
from pose.precision import Precision  # noqa: E402
from pose.structures import Detections  # noqa: E402
from tracking.detector import (  # noqa: E402
    COCO_ANIMAL_CLASSES,
    Detector,
    DetectorError,
    DetectorPath,
    DetectorSettings,
    GraphedYolo,
    OnnxYolo,
    cached_tensors,
    class_ids_for,
    default_classes,
    first_tensor,
    unsupported_reason,
    wants_graphs,
    wants_onnx,
)

COCO_NAMES = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
              "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", *COCO_ANIMAL_CLASSES]
MEGADETECTOR_NAMES = {0: "animal", 1: "person", 2: "vehicle"}


def _save_tiny_yolo(path: Path, names: dict[int, str]) -> Path:
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = YOLO("yolo11n.yaml")  # built from the yaml: random weights, no download
    model.model = DetectionModel("yolo11n.yaml", nc=len(names), verbose=False)
    model.model.names = names
    model.save(str(path))
    return path


@pytest.fixture(scope="module")
def megadetector_like(tmp_path_factory) -> Path:
    return _save_tiny_yolo(tmp_path_factory.mktemp("yolo") / "tiny_md.pt", MEGADETECTOR_NAMES)


@pytest.fixture(scope="module")
def md_detector(megadetector_like) -> Detector:
    return Detector(DetectorSettings(megadetector_like, confidence=0.0, image_size=160, device="cpu",
                                     max_detections=20))


@pytest.fixture(scope="module")
def coco_like(tmp_path_factory) -> Path:
    return _save_tiny_yolo(tmp_path_factory.mktemp("yolo") / "tiny_coco.pt", dict(enumerate(COCO_NAMES)))


@pytest.fixture(scope="module")
def frame(samples_dir) -> np.ndarray:
    import cv2

    image = cv2.imread(str(samples_dir / "ap10k" / "000000037516.jpg"))
    assert image is not None
    return image


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (dict(enumerate(COCO_NAMES)), COCO_ANIMAL_CLASSES),
        (MEGADETECTOR_NAMES, ("animal",)),
        ({0: "antelope", 1: "dog", 2: "horse"}, ("antelope", "dog", "horse")),  # an AP-10K species model
        ({0: "cat", 1: "dog"}, ("cat", "dog")),
    ],
)
def test_default_classes(names, expected):
    assert default_classes(names) == expected


def test_class_ids_for_names_unknown_classes():
    assert class_ids_for(MEGADETECTOR_NAMES, ("vehicle", "animal")) == [0, 2]
    with pytest.raises(DetectorError, match="unicorn"):
        class_ids_for(MEGADETECTOR_NAMES, ("animal", "unicorn"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": ""}, "weights"),
        ({"weights": "m.pt", "classes": "dog"}, "classes"),
        ({"weights": "m.pt", "confidence": 1.5}, "confidence"),
        ({"weights": "m.pt", "iou": -0.1}, "iou"),
        ({"weights": "m.pt", "image_size": 100}, "image_size"),
        ({"weights": "m.pt", "max_detections": 0}, "max_detections"),
        ({"weights": "m.pt", "precision": "float16"}, "precision"),
    ],
)
def test_settings_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DetectorSettings(**kwargs)


def test_missing_weights_name_the_path(tmp_path):
    missing = tmp_path / "no_such_model.pt"
    with pytest.raises(DetectorError, match="no_such_model.pt"):
        Detector(DetectorSettings(missing))


def test_unreadable_weights_are_reported(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(DetectorError, match="broken.pt"):
        Detector(DetectorSettings(broken))


def test_weights_ultralytics_cannot_read_are_refused_at_construction(tmp_path, megadetector_like):
    """A pose checkpoint given as the detector (``.pth``): ultralytics reads it only when first used."""
    wrong = tmp_path / "hrnet.pth"
    wrong.write_bytes(megadetector_like.read_bytes())
    with pytest.raises(DetectorError, match=r"hrnet.pth is not a YOLO weights file ultralytics can load"):
        Detector(DetectorSettings(wrong))


def test_detects_with_a_tiny_random_model(md_detector, frame):
    threads = torch.get_num_threads()
    detector = md_detector
    assert detector.classes == ("animal",) and detector.class_ids == [0]
    detections = detector(frame)
    assert torch.get_num_threads() == threads  # ultralytics' device selection is undone
    assert isinstance(detections, Detections)
    assert 0 < len(detections) <= 20  # random weights, but confidence 0 keeps boxes
    assert detections.xyxy.dtype == np.float32 and detections.scores.dtype == np.float32
    assert detections.class_ids.dtype == np.int64 and set(detections.class_ids.tolist()) == {0}
    height, width = frame.shape[:2]
    assert (detections.xyxy[:, [0, 2]] >= 0).all() and (detections.xyxy[:, [0, 2]] <= width).all()
    assert (detections.xyxy[:, [1, 3]] >= 0).all() and (detections.xyxy[:, [1, 3]] <= height).all()


def test_class_filter_keeps_only_the_asked_classes(coco_like, frame):
    detector = Detector(DetectorSettings(coco_like, confidence=0.0, image_size=160, device="cpu"))
    assert detector.classes == COCO_ANIMAL_CLASSES
    assert detector.class_ids == list(range(14, 24))
    assert set(detector(frame).class_ids.tolist()) <= set(detector.class_ids)  # may be empty: random weights
    people = Detector(DetectorSettings(coco_like, classes=("person",), confidence=0.0, image_size=160, device="cpu"))
    assert set(people(frame).class_ids.tolist()) <= {0}


def test_unknown_class_is_an_error(megadetector_like):
    with pytest.raises(DetectorError, match="dog"):
        Detector(DetectorSettings(megadetector_like, classes=("dog",)))


@pytest.mark.parametrize(
    "bad_frame",
    [np.zeros((10, 10), np.uint8), np.zeros((0, 10, 3), np.uint8), np.zeros((10, 10, 3), np.float32)],
)
def test_rejects_bad_frames(md_detector, bad_frame):
    with pytest.raises(ValueError, match="frame_bgr"):
        md_detector(bad_frame)


def test_precision_setting_and_what_it_runs_on_the_cpu():
    assert DetectorSettings("m.pt").precision is Precision.EXACT
    fast = DetectorSettings("m.pt", precision="fast", device="cpu")
    assert fast.precision is Precision.FAST
    assert fast.compute_plan().dtype == torch.float32 and not fast.compute_plan().tf32  # FAST equals EXACT on a CPU
    assert not DetectorSettings("m.pt", half=True, device="cpu").compute_plan().half


@pytest.mark.parametrize(
    ("kwargs", "cuda_available", "expected"),
    [
        ({"device": "cuda"}, True, True),
        ({"device": "cuda:1"}, True, True),
        ({"device": "auto"}, None, torch.cuda.is_available()),  # the GPU if torch sees one
        ({"device": None}, None, torch.cuda.is_available()),  # None is taken as "auto"
        ({"device": "cuda", "cuda_graphs": False}, True, False),
        ({"device": "cpu"}, True, False),
        ({"device": "cuda"}, False, False),
    ],
)
def test_wants_graphs_per_device_and_setting(kwargs, cuda_available, expected):
    assert wants_graphs(DetectorSettings("m.pt", **kwargs), cuda_available=cuda_available) is expected


@pytest.mark.parametrize("device", ["0", "mps", "gpu", ""])
def test_devices_follow_the_one_convention(device):
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N"):
        DetectorSettings("m.pt", device=device)


def test_on_the_cpu_the_detector_runs_onnxruntime_by_default(md_detector, megadetector_like):
    assert md_detector.path is DetectorPath.ONNXRUNTIME
    torch_detector = Detector(DetectorSettings(megadetector_like, image_size=160, device="cpu", backend="torch"))
    assert torch_detector.path is DetectorPath.PREDICT


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"device": "cpu"}, True),
        ({"device": "cpu", "backend": Backend.ONNXRUNTIME}, True),
        ({"device": "cpu", "backend": Backend.TORCH}, False),
        ({"device": "cpu", "backend": "torch"}, False),
    ],
)
def test_wants_onnx_on_the_cpu_unless_torch_is_asked_for(kwargs, expected):
    assert wants_onnx(DetectorSettings("m.pt", **kwargs)) is expected


def test_the_backend_is_checked():
    assert DetectorSettings("m.pt", backend="onnxruntime").backend is Backend.ONNXRUNTIME
    with pytest.raises(ValueError, match="backend must be one of"):
        DetectorSettings("m.pt", backend="tensorrt")


def _save_calibrated_yolo(path: Path, names: dict[int, str], images: list[np.ndarray]) -> Path:
    """A random yolo11n whose batch norms are calibrated on ``images`` (so that its features carry the
    images' content instead of vanishing) and whose head outputs scores around 0.5 and boxes of tens of
    pixels: many overlapping boxes of different scores and classes, which exercises NMS."""
    import cv2
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    net = DetectionModel("yolo11n.yaml", nc=len(names), verbose=False)
    batch = np.stack([cv2.resize(image, (320, 320))[..., ::-1] for image in images]).transpose(0, 3, 1, 2)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the calibration batch
            module.reset_running_stats()
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(batch.copy()).float() / 255)
        head = net.model[-1]
        for classes in head.cv3:
            classes[-1].bias.zero_()
        for box in head.cv2:
            box[-1].bias.view(4, head.reg_max)[:, :4] += 3.0  # distances of a few strides
    net.eval()
    model = YOLO("yolo11n.yaml")
    model.model = net
    model.model.names = names
    model.save(str(path))
    return path


@pytest.fixture(scope="module")
def sample_images(samples_dir) -> list[np.ndarray]:
    import cv2

    paths = sorted(p for p in samples_dir.glob("*/*") if p.suffix in (".jpg", ".jpeg"))
    return [cv2.imread(str(p)) for p in paths]


@pytest.fixture(scope="module")
def calibrated_yolo(tmp_path_factory, sample_images) -> Path:
    return _save_calibrated_yolo(tmp_path_factory.mktemp("yolo") / "calibrated.pt",
                                 {0: "cat", 1: "dog", 2: "person"}, sample_images[:4])


def _graphed(detector: Detector, capture) -> GraphedYolo:
    """:class:`GraphedYolo` on the network of ``detector``'s ultralytics predictor, set up by one call (whose
    torch thread count is ultralytics' own; later calls run on the caller's, as the taken-apart path does)."""
    detector(np.zeros((32, 32, 3), np.uint8))
    classes = None if len(detector.class_ids) == len(detector.names) else detector.class_ids
    return GraphedYolo(detector.model.predictor.model, detector.settings, classes=classes, capture=capture)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # keeps cat and dog: classes filtered in NMS, agnostic NMS
        {"agnostic_nms": False, "confidence": 0.55},
        {"classes": ("cat", "dog", "person"), "agnostic_nms": False, "max_detections": 7},
        {"classes": ("person",), "iou": 0.3},
    ],
)
def test_taken_apart_predict_gives_predicts_boxes(calibrated_yolo, sample_images, kwargs):
    settings = DetectorSettings(calibrated_yolo, **{"confidence": 0.6, "image_size": 320, "device": "cpu",
                                                    "backend": "torch", **kwargs})
    detector = Detector(settings)
    assert detector.path is DetectorPath.PREDICT
    eager, graphed = _graphed(detector, None), _graphed(detector, capture_eager)
    found = 0
    for image in sample_images:
        expected = detector(image)
        for path in (eager, graphed):
            out = path(image)
            np.testing.assert_array_equal(out.xyxy, expected.xyxy)
            np.testing.assert_array_equal(out.scores, expected.scores)
            np.testing.assert_array_equal(out.class_ids, expected.class_ids)
        found += len(expected)
    assert found > 0  # the comparison saw boxes
    assert graphed.runner.uses_graphs and len(graphed.runner.graphs) >= 3  # one per letterboxed shape


def test_taken_apart_predict_falls_back_to_eager_when_capture_fails(calibrated_yolo, sample_images, caplog):
    detector = Detector(DetectorSettings(calibrated_yolo, confidence=0.6, image_size=320, device="cpu",
                                         backend="torch"))

    def failing(forward, static_input):
        raise RuntimeError("capture failed")

    graphed = _graphed(detector, failing)
    for image in sample_images[:3]:
        np.testing.assert_array_equal(graphed(image).xyxy, detector(image).xyxy)
    assert not graphed.runner.uses_graphs
    assert sum("capture of the detector network failed" in r.getMessage() for r in caplog.records) == 1


def test_the_graphs_keep_the_heads_cached_anchors_alive(calibrated_yolo, frame):
    detector = Detector(DetectorSettings(calibrated_yolo, image_size=320, device="cpu"))
    graphed = _graphed(detector, None)
    graphed(frame)
    anchors = cached_tensors(graphed.network)
    assert any(t.shape[0] == 2 for t in anchors)  # Detect's (2, anchors) grid for the last shape


class _Backend:
    def __init__(self, **attributes):
        self.__dict__.update(attributes)


@pytest.mark.parametrize(
    ("backend", "task", "reason"),
    [
        (_Backend(format="onnx"), "detect", "exported"),
        (_Backend(pt=False, onnx=True), "detect", "exported"),
        (_Backend(format="pt", model=torch.nn.Identity(), end2end=True), "detect", "end-to-end"),
        (_Backend(format="pt", model=None), "detect", "torch network"),
        (_Backend(format="pt", model=torch.nn.Identity()), "segment", "segment"),
        (_Backend(format="pt", model=torch.nn.Identity()), "detect", None),
        (_Backend(pt=True, model=torch.nn.Identity()), "detect", None),  # ultralytics 8.3's spelling
    ],
)
def test_unsupported_reason(backend, task, reason):
    got = unsupported_reason(backend, task)
    assert got is None if reason is None else reason in got


def test_the_cuda_wiring_falls_back_to_eager_when_capture_fails(calibrated_yolo, sample_images, monkeypatch,
                                                               caplog):
    # The graph path forced onto the CPU: ultralytics' predictor is set up and taken apart, the real
    # capture (CUDA only) fails, and the detector goes on eagerly with predict's boxes.
    import tracking.detector

    settings = DetectorSettings(calibrated_yolo, confidence=0.6, image_size=320, device="cpu", backend="torch")
    predict = Detector(settings)
    predict(np.zeros((32, 32, 3), np.uint8))  # sets up ultralytics' predictor: its first call runs on other threads
    monkeypatch.setattr(tracking.detector, "wants_graphs", lambda settings: True)
    detector = Detector(settings)
    assert detector.path is DetectorPath.GRAPHS  # nothing captured yet
    for image in sample_images[:3]:
        np.testing.assert_array_equal(detector(image).xyxy, predict(image).xyxy)
    assert detector.path is DetectorPath.EAGER
    assert sum("capture of the detector network failed" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # keeps cat and dog: classes filtered in NMS, agnostic NMS
        {"agnostic_nms": False, "confidence": 0.55},
        {"classes": ("person",), "iou": 0.3, "image_size": 256},
    ],
)
def test_onnxruntime_gives_predicts_boxes(calibrated_yolo, sample_images, kwargs):
    options = {"confidence": 0.6, "image_size": 320, "device": "cpu", **kwargs}
    predict = Detector(DetectorSettings(calibrated_yolo, backend="torch", **options))
    onnx = Detector(DetectorSettings(calibrated_yolo, backend="onnxruntime", **options))
    assert (predict.path, onnx.path) == (DetectorPath.PREDICT, DetectorPath.ONNXRUNTIME)
    found, shapes = 0, set()
    for image in sample_images:
        expected, got = predict(image), onnx(image)
        # one export for every frame size: the letterboxed shapes differ between the images
        shapes.add(onnx._taken_apart.letterbox(image=image).shape)
        assert len(got) == len(expected)
        # Boxes of (all but) equal scores may come in either order (2026-12-07, an AMD EPYC: two boxes 150 px apart
        # swapped places): each box is compared with the nearest of the other runtime's, one to one.
        if len(got):
            nearest = np.abs(got.xyxy[:, None] - expected.xyxy[None]).max(axis=-1).argmin(axis=1)
            assert len(set(nearest.tolist())) == len(got)
            expected = expected[nearest]
        # another runtime's float32 rounding, through a random network: measured up to 0.06 px (torch on 1 or 2
        # threads: up to 0.005 px)
        np.testing.assert_allclose(got.xyxy, expected.xyxy, atol=0.1)
        np.testing.assert_allclose(got.scores, expected.scores, atol=1e-4)
        np.testing.assert_array_equal(got.class_ids, expected.class_ids)
        found += len(expected)
    assert found > 0
    assert len(shapes) >= 3


def test_a_failed_export_falls_back_to_predict(calibrated_yolo, frame, monkeypatch, caplog):
    import tracking.detector

    def failing(network, path, opset=17):
        raise RuntimeError("exporter broke\non two lines")

    monkeypatch.setattr(tracking.detector, "export_yolo_onnx", failing)
    detector = Detector(DetectorSettings(calibrated_yolo, confidence=0.6, image_size=320, device="cpu"))
    assert detector.path is DetectorPath.PREDICT
    detector(frame)  # predict still runs
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("could not run in ONNX Runtime (exporter broke on two lines)" in w for w in warnings)


def test_onnx_yolo_refuses_a_network_off_the_cpu():
    backend = _Backend(model=torch.nn.Identity(), device=torch.device("cuda"), fp16=False, stride=32)
    with pytest.raises(ValueError, match="float32 network on the CPU"):
        OnnxYolo(backend, DetectorSettings("m.pt", image_size=320))


def test_first_tensor_unwraps_nested_outputs():
    tensor = torch.zeros(1, 84, 8)
    assert first_tensor(tensor) is tensor
    assert first_tensor(([tensor, torch.ones(1)], None)) is tensor
    with pytest.raises(RuntimeError, match="dict"):
        first_tensor({"output0": tensor})
