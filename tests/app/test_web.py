"""``animalpose serve``: the command line, and the launched app driven with gradio_client on 127.0.0.1."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from web_support import (  # noqa: F401
    MISSING_POSE,
    SMALL_POSE,
    UNREADABLE_POSE,
    fake_models,
    one_torch_thread,
    served_app,
    web_clip,
    web_settings,
)

from app.cli.serve import cmd_serve, register, settings_from_args

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "ap10k" / "000000037516.jpg"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client(served_app):
    from gradio_client import Client

    _, url = served_app
    return Client(url, verbose=False)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="animalpose")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_serve_options_become_settings(tmp_path):
    args = _parse(["serve", "--host", "0.0.0.0", "--port", "8080", "--share", "--pose-weights", "a.pth",
                   "--pose-weights", "hrnet_w48", "--det-weights", "mdv.pt", "--max-upload-mb", "50",
                   "--concurrency", "2", "--no-cached", "--work-dir", str(tmp_path)])
    assert args.func is cmd_serve and args.share and (args.host, args.port) == ("0.0.0.0", 8080)
    settings = settings_from_args(args)
    assert settings.pose_weights == ("a.pth", "hrnet_w48") and settings.det_weights == ("mdv.pt",)
    assert settings.max_upload_mb == 50 and settings.concurrency == 2 and not settings.offer_cached
    assert settings.work_dir == tmp_path
    defaults = settings_from_args(_parse(["serve"]))
    assert defaults.pose_weights == ("hrnet_w32", "rtmpose_m") and defaults.det_weights == ("yolo11n.pt",)


@pytest.mark.parametrize("argv, message", [
    (["serve", "--port", "70000"], "--port"),
    (["serve", "--concurrency", "0"], "concurrency"),
    (["serve", "--max-upload-mb", "-1"], "--max-upload-mb"),
])
def test_bad_serve_options_are_user_errors(argv, message):
    from app.cli.common import UserError

    with pytest.raises(UserError, match=message):
        cmd_serve(_parse(argv))


def test_importing_the_command_loads_neither_gradio_nor_torch():
    code = "import sys, app.web; print(sorted(m for m in ('gradio', 'torch', 'cv2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_image_endpoint_returns_drawn_image_keypoint_table_and_json(client):
    from gradio_client import handle_file

    image, table, json_path, summary = client.predict(handle_file(str(SAMPLE)), api_name="/image")
    drawn = cv2.imread(image)
    assert drawn.shape == cv2.imread(str(SAMPLE)).shape
    assert table["headers"] == ["animal", "keypoint", "x", "y", "confidence"]
    assert len(table["data"]) == 2 * 17 and table["data"][0][:2] == ["#1", "L_Eye"]
    document = json.loads(Path(json_path).read_text())
    assert len(document["keypoint_names"]) == 17 and document["source"]["width"] == drawn.shape[1]
    animals = document["frames"][0]["animals"]
    assert [a["track_id"] for a in animals] == [1, 2] and len(animals[0]["keypoints"]) == 17
    assert summary == "2 animals found"


def test_video_endpoint_returns_playable_video_downloads_and_plot(client, web_clip):
    from gradio_client import handle_file

    video, plot, files, summary = client.predict(handle_file(str(web_clip)), smoothing="offline", api_name="/video")
    assert Path(video).suffix == ".mp4"
    capture = cv2.VideoCapture(video)
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode(errors="replace")
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == 24 and fourcc.lower() in ("avc1", "h264")  # H.264: every browser plays it
    json_file, csv_file = sorted(files, key=lambda f: Path(f).suffix, reverse=True)
    document = json.loads(Path(json_file).read_text())
    assert len(document["frames"]) == 24
    tracked = {a["track_id"] for f in document["frames"] for a in f["animals"]}
    assert len(tracked) == 2
    with open(csv_file, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) >= {"frame", "track_id", "keypoint", "x", "y", "confidence"}
    assert plot["columns"] == ["time_s", "animal", "confidence"]
    assert {row[1] for row in plot["data"]} == {f"#{t}" for t in tracked}
    assert summary.startswith("24 frames (2.0 s of video), 2 animals tracked")


@pytest.mark.parametrize("endpoint, name, content, message", [
    ("/image", "broken.jpg", b"not a picture", "broken.jpg is not an image this app can read"),
    ("/video", "broken.mp4", b"not a film", "broken.mp4 cannot be read as a video"),
    ("/video", "empty.webm", b"", "empty.webm"),
    ("/video", "notes.txt", b"hello", "Invalid file type"),  # gradio checks the type itself
])
def test_a_bad_upload_gets_the_page_message(client, tmp_path, endpoint, name, content, message):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AppError) as error:
        client.predict(handle_file(str(path)), api_name=endpoint)
    text = str(error.value)
    assert message in text
    assert "Traceback" not in text and "/tmp/gradio" not in text  # no stack trace, no server paths


def test_weights_the_server_did_not_offer_are_refused(client):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict(handle_file(str(SAMPLE)), pose="/etc/passwd", api_name="/image")


@pytest.fixture(scope="module")
def real_client(tmp_path_factory):
    """The app with the command line's own model loading: tiny pose checkpoint, random YOLO, a missing file."""
    from gradio_client import Client
    from ultralytics import YOLO

    from app.web import build_app, launch

    folder = tmp_path_factory.mktemp("real")
    yolo = folder / "random_yolo11n.pt"
    YOLO("yolo11n.yaml").save(str(yolo))  # built from the yaml: random weights, no download
    settings = web_settings(folder / "work", pose_weights=(str(SMALL_POSE), str(folder / "missing.pth")),
                            det_weights=(str(yolo),), max_upload_mb=0.1)
    with one_torch_thread():
        demo = build_app(settings)
        _, url, _ = launch(demo, port=None, block=False, quiet=True)
        try:
            yield Client(url, verbose=False)
        finally:
            demo.close()


def test_the_real_model_loading_serves_an_image(real_client):
    from gradio_client import handle_file

    small = SAMPLE.parent.parent / "zebra" / "810.jpg"
    image, table, json_path, summary = real_client.predict(handle_file(str(small)), det_conf=0.05,
                                                           flip_test=False, api_name="/image")
    assert cv2.imread(image).shape == cv2.imread(str(small)).shape
    document = json.loads(Path(json_path).read_text())
    assert len(document["frames"]) == 1 and "found" in summary
    assert len(table["data"]) == 17 * len(document["frames"][0]["animals"])


def _notice(demo) -> str:
    """The text of the page's note on the models."""
    return next(b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "models-notice")


def test_missing_weights_are_not_offered_and_the_page_says_why(real_client, served_app):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    demo, _ = served_app
    notice = _notice(demo)
    assert f"{MISSING_POSE} (its file is missing on this server)" in notice and "Not available here" in notice
    assert "/" not in notice and "--" not in notice  # neither server paths nor options
    small = SAMPLE.parent.parent / "zebra" / "810.jpg"
    with pytest.raises(AppError, match="not in the list of choices"):
        real_client.predict(handle_file(str(small)), pose="missing.pth", api_name="/image")


def test_a_model_that_fails_to_load_gets_a_visitors_message(client):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as error:
        client.predict(handle_file(str(SAMPLE)), pose=UNREADABLE_POSE, api_name="/image")
    text = str(error.value)
    assert f"the pose model {UNREADABLE_POSE} could not be loaded on this server (its file could not be read)" in text
    assert "/tmp" not in text and "--" not in text


def test_no_animals_found_suggests_a_lower_confidence(client):
    from gradio_client import handle_file

    *_, summary = client.predict(handle_file(str(SAMPLE)), det_conf=0.95, api_name="/image")
    assert summary == "No animals found — try a lower detector confidence (now 0.95, under Settings)"


def test_changing_thresholds_loads_no_model(client, served_app):
    from gradio_client import handle_file

    demo, _ = served_app
    before = len(demo.jobs.models._models)
    for det_conf, flip_test in [(0.3, True), (0.6, False), (0.85, True)]:
        client.predict(handle_file(str(SAMPLE)), det_conf=det_conf, flip_test=flip_test, api_name="/image")
    assert len(demo.jobs.models._models) == before == 1


def test_a_server_without_weights_says_so_and_disables_its_buttons(tmp_path):
    from app.web import build_app

    settings = web_settings(tmp_path / "work", pose_weights=("hrnet_w48",))
    demo = build_app(settings, fake_models, can_download=lambda url: False)
    notice = _notice(demo)
    assert notice.startswith("**This server has no pose model it can use, so it cannot analyse anything yet.**")
    assert "hrnet_w48 (not downloaded yet, and this server cannot download it now)" in notice
    assert "--" not in notice and "cache" not in notice
    buttons = {b.elem_id: b.interactive for b in demo.blocks.values() if getattr(b, "elem_id", "") in
               ("image-button", "video-button", "webcam-input")}
    assert buttons == {"image-button": False, "video-button": False, "webcam-input": False}


def test_the_console_names_the_share_option_not_gradios_launch_argument(tmp_path, capfd, caplog):
    from app.web import build_app, launch

    demo = build_app(web_settings(tmp_path / "work"), fake_models)
    with caplog.at_level("INFO", logger="app.web.ui"):
        launch(demo, port=None, block=False, quiet=False)
    demo.close()
    printed = capfd.readouterr().out
    assert "share=True" not in printed and "launch()" not in printed
    assert "run `animalpose serve --share`" in caplog.text and "serving on http://127.0.0.1:" in caplog.text


def test_uploads_over_the_size_limit_are_refused(real_client):
    import httpx

    def upload(path: Path) -> httpx.Response:
        with open(path, "rb") as f:  # straight to the server: gradio_client would refuse it itself
            return httpx.post(real_client.src + "gradio_api/upload", files={"files": (path.name, f)}, timeout=30)

    refused = upload(SAMPLE)  # 236 KB > 0.1 MB
    assert refused.status_code == 413 and "maximum allowed size" in refused.text
    assert upload(SAMPLE.parent.parent / "zebra" / "810.jpg").status_code == 200  # 10 KB


def test_a_bad_image_is_refused_once_ultralytics_has_patched_pil(real_client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")  # PIL.Image.open would now try to install a HEIF plugin
    with pytest.raises(AppError, match="broken.png is not an image this app can read"):
        real_client.predict(handle_file(str(broken)), api_name="/image")


def test_the_webcam_tab_says_which_profile_it_starts_with(tmp_path):
    from app.profiles import Profile
    from app.web.jobs import WebJobs
    from app.web.ui import webcam_profile_notice

    jobs = WebJobs(web_settings(tmp_path / "work"), fake_models)
    text = webcam_profile_notice(jobs, Profile.REALTIME)
    assert "no GPU" in text and "**realtime**" in text and "no flip test" in text and "640 px every 2 frames" in text
    assert "RTMPose-m is not offered here" in text  # this server offers only the tiny model
    full = webcam_profile_notice(jobs, Profile.FULL)
    assert "GPU" in full and "**full**" in full


def test_the_served_page_starts_the_webcam_in_the_realtime_profile_without_a_gpu(served_app):
    demo, _ = served_app
    radios = [block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "webcam-profile"]
    assert len(radios) == 1 and radios[0].value == "realtime"  # this machine has no CUDA GPU
