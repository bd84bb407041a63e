"""``animalpose track`` and ``animalpose live`` end to end, with a ground-truth detector and a small pose model."""

from __future__ import annotations

import csv
import json
import logging
import shutil

import cv2
import pytest
from streaming import MJPEGServer, panning_frames

import app.cli.video as cli_track
from animalpose import Model
from app.cli import main
from app.runs import Models
from pose.estimator import PoseSettings
from train.e2e import GroundTruthDetector


@pytest.fixture()
def models(monkeypatch, synthetic_clip, small_estimator):
    _, gt = synthetic_clip
    detector = GroundTruthDetector(gt, auto_advance=True)
    model = Model(Models(detector, small_estimator))
    monkeypatch.setattr(cli_track, "models_from_args", lambda args, choices=None, live=False: model)
    return detector


def _frame_count(path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


@pytest.mark.parametrize("smoothing", ["offline", "causal", "none"])
def test_track_writes_every_output(tmp_path, synthetic_clip, models, smoothing):
    clip, gt = synthetic_clip
    out = tmp_path / "out"
    code = main(["track", str(clip), "--out", str(out / "v.mp4"), "--json", str(out / "r.json"),
                 "--csv", str(out / "r.csv"), "--coco", str(out / "r.coco.json"), "--smoothing", smoothing,
                 "-q", "--no-flip"])
    assert code == 0
    n = len(gt["frames"])
    assert _frame_count(out / "v.mp4") == n
    document = json.loads((out / "r.json").read_text())
    assert [f["frame"] for f in document["frames"]] == list(range(n))
    assert document["source"]["width"] == gt["width"]
    lines = (out / "r.jsonl").read_text().splitlines()
    assert len(lines) == n  # streamed while running
    animals = sum(len(f["animals"]) for f in document["frames"])
    assert animals >= 0.8 * sum(len(f["animals"]) for f in gt["frames"])
    with open(out / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 17 * animals
    coco = json.loads((out / "r.coco.json").read_text())
    assert len(coco) == animals and len(coco[0]["keypoints"]) == 51
    statuses = {s for f in document["frames"] for a in f["animals"] for s in a["status"]}
    expected = {"offline": 3, "causal": 3, "none": 1}[smoothing]
    assert expected in statuses
    assert not list(out.glob(".*part*")), "temporary files left behind"


def test_folder_mode_resumes_and_reports_bad_videos(tmp_path, synthetic_clip, models, caplog):
    caplog.set_level(logging.INFO)
    clip, _ = synthetic_clip
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(clip, videos / "a.mp4")
    shutil.copy(clip, videos / "c.mp4")
    (videos / "b.mp4").write_text("this is not a video")
    out = tmp_path / "results"
    code = main(["track", str(videos), "--out-dir", str(out), "--save", "json", "csv", "-q",
                 "--smoothing", "causal", "--no-flip"])
    assert code == 1  # b.mp4 failed, the others went on
    assert sorted(p.name for p in out.glob("*.json")) == ["a.json", "c.json"]
    assert (out / "a.csv").is_file() and not (out / "b.json").exists()
    calls = models.calls
    stamp = (out / "a.json").stat().st_mtime_ns
    (out / "c.json").unlink()  # as if the first run had been interrupted during c
    caplog.clear()
    code = main(["track", str(videos), "--out-dir", str(out), "--save", "json", "csv", "-q",
                 "--smoothing", "causal", "--no-flip"])
    assert code == 1
    assert (out / "a.json").stat().st_mtime_ns == stamp  # skipped
    assert (out / "c.json").is_file()
    assert models.calls - calls == len(json.loads((out / "c.json").read_text())["frames"])
    assert "already done" in caplog.text


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.mp4", "does not exist"),
        (lambda d: (d / "text.mp4").write_text("hello") and d / "text.mp4", "cannot be read as a video"),
        (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", ""),
    ],
)
def test_bad_sources_fail_with_one_line(tmp_path, models, capsys, make, message):
    source = make(tmp_path)
    code = main(["track", str(source), "--json", str(tmp_path / "o.json"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert message in err
    assert not (tmp_path / "o.json").exists()


def test_a_history_that_cannot_be_kept_fails_with_one_line(synthetic_clip, models, capsys, tmp_path, monkeypatch):
    from tracking.smoothing import Rows

    monkeypatch.setattr(Rows.__init__, "__defaults__", (2, None))  # blocks of 2 frames: the spill writes at once
    monkeypatch.setattr("tempfile.TemporaryFile", lambda **kwargs: _Full())
    path, _ = synthetic_clip
    assert main(["track", str(path), "-q", "--json", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert "cannot keep the tracking history for offline smoothing" in err and "No space left on device" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o.json").exists()


class _Full:
    """A temporary file on a full disk."""

    def seek(self, offset):
        return offset

    def write(self, data):
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("option, message", [
    (["--det-every", "0"], "--det-every must be an integer >= 1, got 0"),
    (["--det-conf", "1.5"], "--det-conf must be in [0, 1]"),
    (["--det-iou", "-0.1"], "--det-iou must be in [0, 1]"),
    (["--max-lost", "-1"], "--max-lost must be >= 0 seconds, got -1"),
    (["--appearance", "1.5"], "--appearance must be in [0, 1]"),
    (["--min-hits", "0"], "--min-hits must be an integer >= 1, got 0"),
])
def test_bad_tracking_options_fail_with_one_line(synthetic_clip, models, capsys, option, message):
    path, _ = synthetic_clip
    assert main(["track", str(path), "-q", *option]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_detector_options_reach_the_detector_settings():
    from app.cli import build_parser
    from tracking.detector import DetectorSettings

    args = build_parser().parse_args(["track", "c.mp4", "--det-iou", "0.5", "--det-conf", "0.3", "--det-imgsz", "320"])
    settings = cli_track.detector_settings_from_args(args, PoseSettings())
    assert (settings.iou, settings.confidence, settings.image_size) == (0.5, 0.3, 320)
    default = build_parser().parse_args(["track", "c.mp4"])
    assert cli_track.detector_settings_from_args(default, PoseSettings()).iou == DetectorSettings.iou == 0.6


@pytest.mark.parametrize("backend", ["auto", "torch", "onnxruntime"])
def test_the_backend_runs_both_networks(backend):
    from app.cli import build_parser
    from app.cli.common import pose_settings_from_args

    args = build_parser().parse_args(["track", "c.mp4", "--backend", backend])
    pose_settings = pose_settings_from_args(args)
    assert cli_track.detector_settings_from_args(args, pose_settings).backend.value == backend


def test_stream_given_to_track_points_to_live(models, capsys):
    assert main(["track", "rtsp://127.0.0.1:9/cam"]) == 2
    assert "animalpose live" in capsys.readouterr().err


def test_unwritable_output_is_one_line(tmp_path, synthetic_clip, models, capsys):
    clip, _ = synthetic_clip
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["track", str(clip), "--json", str(blocker / "sub" / "r.json"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and str(blocker) in err and "Traceback" not in err


def test_live_stream_reports_latency_and_writes_jsonl(tmp_path, models, samples_dir, caplog):
    caplog.set_level(logging.INFO)
    backgrounds = panning_frames(samples_dir / "ap10k" / "000000037516.jpg", size=(320, 192), count=16)
    out = tmp_path / "live.jsonl"
    with MJPEGServer(backgrounds, fps=15, max_frames=2000) as server:
        code = main(["live", server.url, "--jsonl", str(out), "--max-frames", "12", "--no-flip",
                     "--max-reconnect", "2"])
    assert code == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 12
    frames = [json.loads(line)["frame"] for line in lines]
    assert frames == sorted(frames)
    assert "latency p50" in caplog.text


def test_live_writes_coco_results_alone(tmp_path, models, samples_dir):
    backgrounds = panning_frames(samples_dir / "ap10k" / "000000037516.jpg", size=(320, 192), count=16)
    out = tmp_path / "live.coco.json"
    with MJPEGServer(backgrounds, fps=15, max_frames=2000) as server:
        assert main(["live", server.url, "--coco", str(out), "--max-frames", "5", "--no-flip",
                     "--max-reconnect", "2"]) == 0
    results = json.loads(out.read_text())
    assert isinstance(results, list) and results
    assert {"image_id", "keypoints", "score"} <= set(results[0])


def test_live_unreachable_stream(models, capsys):
    code = main(["live", "http://127.0.0.1:9/stream", "--max-reconnect", "1", "--no-flip"])
    err = capsys.readouterr().err
    assert code == 2 and "127.0.0.1:9" in err


# --------------------------------------------------------------------------------------------------
# Nothing lost, nothing wrong (issue #25)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("INFO ", "WARNING "))]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_folder_run_into_its_own_folder_is_refused_before_any_work(tmp_path, synthetic_clip, models, capsys):
    clip, _ = synthetic_clip
    folder = tmp_path / "fold4"
    folder.mkdir()
    shutil.copy(clip, folder / "a.mp4")
    before = (folder / "a.mp4").read_bytes()
    assert main(["track", str(folder), "--out-dir", str(folder), "-q"]) == 2
    line = _error_line(capsys)
    assert "is the input" in line and "a.mp4" in line
    assert (folder / "a.mp4").read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["a.mp4"]
    assert models.calls == 0


@pytest.mark.parametrize(
    "outputs, message",
    [
        (lambda clip, tmp: ["--out", str(clip)], "is the input"),
        (lambda clip, tmp: ["--json", str(clip)], "is the input"),
        (lambda clip, tmp: ["--json", str(tmp / "s.out"), "--csv", str(tmp / "s.out")], "the same file"),
        (lambda clip, tmp: ["--json", str(tmp / "x.jsonl")], "give the JSON the extension .json"),
        (lambda clip, tmp: ["--out", str(tmp / "v.xyz")], "unknown video extension '.xyz'"),
        (lambda clip, tmp: ["--csv", str(tmp)], "it is a folder"),
    ],
)
def test_bad_outputs_are_refused_before_any_work(tmp_path, synthetic_clip, models, capsys, outputs, message):
    clip, _ = synthetic_clip
    source = tmp_path / "self.mp4"
    shutil.copy(clip, source)
    before = source.read_bytes()
    assert main(["track", str(source), *outputs(source, tmp_path), "-q"]) == 2
    assert message in _error_line(capsys)
    assert source.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["self.mp4"]
    assert models.calls == 0


def test_videos_of_one_name_in_a_folder_get_outputs_of_their_own(tmp_path, synthetic_clip, models):
    clip, _ = synthetic_clip
    for name in ("a.mp4", "a.avi", "sub/a.mp4"):
        (tmp_path / "v" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, tmp_path / "v" / name)
    assert main(["track", str(tmp_path / "v" / "**" / "*.*"), "--out-dir", str(tmp_path / "o"), "--save", "json",
                 "-q", "--smoothing", "none", "--no-flip"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").glob("*.json")) == ["a_avi.json", "a_mp4.json", "sub__a_mp4.json"]


def test_a_folder_run_skips_videos_another_run_is_writing(tmp_path, synthetic_clip, models, caplog):
    from app.outputs import OutputLock

    clip, _ = synthetic_clip
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(clip, videos / "a.mp4")
    shutil.copy(clip, videos / "b.mp4")
    out = tmp_path / "out"
    with OutputLock([out / "a.json"]):
        assert main(["track", str(videos), "--out-dir", str(out), "--save", "json", "-q", "--smoothing", "none",
                     "--no-flip"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["b.json", "b.jsonl"]
    assert "a.mp4: skipped" in caplog.text and "being written by another animalpose run" in caplog.text


def test_a_single_run_into_outputs_another_run_is_writing_fails_clearly(tmp_path, synthetic_clip, models, capsys):
    from app.outputs import OutputLock

    clip, _ = synthetic_clip
    with OutputLock([tmp_path / "r.json"]):
        assert main(["track", str(clip), "--json", str(tmp_path / "r.json"), "-q"]) == 2
    assert "r.json is being written by another animalpose run" in _error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_live_on_a_file_ends_at_its_end(tmp_path, synthetic_clip, models):
    import threading

    clip, _ = synthetic_clip
    out = tmp_path / "live.json"
    codes = []
    runner = threading.Thread(target=lambda: codes.append(main(["live", str(clip), "--json", str(out), "--no-flip"])),
                              daemon=True)
    runner.start()
    runner.join(60)
    assert not runner.is_alive(), "live on a file did not end at the end of the file"
    assert codes == [0] and json.loads(out.read_text())["frames"]


def test_live_that_loses_its_stream_keeps_every_processed_frame(tmp_path, models, samples_dir, capsys):
    import time

    backgrounds = panning_frames(samples_dir / "ap10k" / "000000037516.jpg", size=(320, 192), count=16)
    out = tmp_path / "live"
    with MJPEGServer(backgrounds, fps=15, max_frames=2000) as server:
        import threading

        def cut_after_a_while():
            while not (out / "l.jsonl").exists() or len((out / "l.jsonl").read_text().splitlines()) < 5:
                time.sleep(0.05)
            server.cut()

        threading.Thread(target=cut_after_a_while, daemon=True).start()
        code = main(["live", server.url, "--json", str(out / "l.json"), "--csv", str(out / "l.csv"), "--no-flip",
                     "--max-reconnect", "1"])
    assert code == 1
    line = _error_line(capsys)
    assert "could not reconnect" in line and "the outputs hold the" in line
    frames = json.loads((out / "l.json").read_text())["frames"]
    assert len(frames) == len((out / "l.jsonl").read_text().splitlines()) >= 5
    assert sorted(p.name for p in out.iterdir()) == ["l.csv", "l.json", "l.jsonl"]


# --------------------------------------------------------------------------------------------------
# Profiles (app/profiles.py)


def _choices(argv: list[str], live: bool):
    from app.cli import build_parser

    return cli_track.profile_from_args(build_parser().parse_args(argv), live=live)


@pytest.mark.parametrize("argv, live, expected", [
    (["track", "c.mp4"], False, ("hrnet_w32", True, 640, 1)),
    (["track", "c.mp4", "--profile", "realtime"], False, ("rtmpose_m", False, 640, 2)),
    (["live", "0"], True, ("rtmpose_m", False, 640, 2)),  # no CUDA GPU on this machine
    (["live", "0", "--profile", "full"], True, ("hrnet_w32", True, 640, 1)),
    (["track", "c.mp4", "--profile", "realtime", "--flip", "--det-imgsz", "416", "--det-every", "1",
      "--pose-weights", "a.pth"], False, ("a.pth", True, 416, 1)),
    (["live", "0", "--profile", "full", "--no-flip", "--det-every", "3"], True, ("hrnet_w32", False, 640, 3)),
])
def test_a_profile_chooses_what_was_not_given(argv, live, expected):
    from app.profiles import ProfileChoices

    assert _choices(argv, live) == ProfileChoices(*expected)


def test_live_says_which_profile_it_runs_and_why(caplog):
    with caplog.at_level(logging.INFO, logger="animalpose"):
        _choices(["live", "0"], live=True)
    assert "profile realtime (no CUDA GPU here; --profile full for the full models): rtmpose_m (no flip test), " \
        "detector at 640 px every 2nd frame" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="animalpose"):
        _choices(["track", "c.mp4"], live=False)  # a file with the default profile: nothing to say
    assert "profile" not in caplog.text


def test_the_profile_reaches_the_models_and_the_tracking(monkeypatch):
    import animalpose
    from app.cli import build_parser

    loaded = {}
    monkeypatch.setattr(animalpose, "load", lambda pose, detector, **kwargs: loaded.update(pose=pose, detector=detector,
                                                                                            **kwargs))
    args = build_parser().parse_args(["live", "0", "--det-every", "4", "--det-imgsz", "480"])
    choices = cli_track.profile_from_args(args, live=True)
    cli_track.models_from_args(args, choices, live=True)
    assert loaded["pose"] == "rtmpose_m" and loaded["pose_settings"].flip_test is False
    assert loaded["detector"].image_size == 480
    assert cli_track.track_settings_from_args(args, live=True, choices=choices).det_every == 4


@pytest.mark.parametrize("argv, message", [
    (["track", "CLIP", "--profile", "realtime", "--det-every", "0"], "--det-every must be"),
    (["track", "CLIP", "--profile", "realtime", "--det-imgsz", "100"], "--det-imgsz must be a positive multiple of 32"),
    (["live", "CLIP", "--device", "tpu"], "--device"),
])
def test_bad_options_beside_a_profile_are_one_line(argv, message, capsys, synthetic_clip, models):
    assert main([str(synthetic_clip[0]) if a == "CLIP" else a for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_flip_and_no_flip_exclude_each_other(capsys):
    assert main(["track", "c.mp4", "--flip", "--no-flip"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
