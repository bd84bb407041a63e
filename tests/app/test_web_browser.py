"""The web app in a real browser: headless Chromium (the system's, driven by Playwright) on 127.0.0.1.

Needs the Debian package ``chromium`` and the Python package ``playwright`` (no browser download:
Playwright drives /usr/bin/chromium). Outside CI the tests are skipped when either is missing; in CI
(``CI=true``) they fail instead, so that a missing install step cannot pass unnoticed.
Screenshots go to the test's temporary folder, or to ``$ANIMALPOSE_SCREENSHOTS`` when it is set.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from web_support import MISSING_POSE, UNREADABLE_POSE, served_app, web_clip  # noqa: F401

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--use-fake-device-for-media-stream",  # a synthetic camera...
    "--use-fake-ui-for-media-stream",  # ...that the page may use without asking
]


#: Resolves, once a <video> has loaded its first frame or failed, to what the page knows of it.
PLAYABLE = """v => new Promise(done => {
    const report = () => done({readyState: v.readyState, duration: v.duration, width: v.videoWidth,
                               error: v.error && (v.error.message || String(v.error.code))});
    if (v.readyState >= 2 || v.error) { report(); return; }
    v.addEventListener("loadeddata", report);
    v.addEventListener("error", report);
    setTimeout(report, 20000);
})"""


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser tests need {what}; CI must install it (see .ci/run)")
    pytest.skip(f"the browser tests need {what}")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the Python package playwright (pip install playwright)")
    if not Path(CHROMIUM).is_file():
        _missing("Chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def page(browser, served_app):
    _, url = served_app
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["camera"])
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_role("button", name="Find poses").wait_for()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """A 96-frame synthetic clip: a video job that keeps the queue busy for a few seconds."""
    from train.synthetic import VideoSettings, render_video

    path = tmp_path_factory.mktemp("longclip") / "long.mp4"
    render_video(path, VideoSettings(num_animals=2, num_frames=96, width=320, height=192, fps=12, seed=4))
    return path


@pytest.fixture()
def screenshots(tmp_path) -> Path:
    folder = Path(os.environ.get("ANIMALPOSE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait_for(condition, timeout_s: float = 60.0, every_s: float = 0.1) -> list:
    """Call ``condition()`` until it returns something true; returns every value seen (for progress checks)."""
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        seen.append(value)
        if value:
            return seen
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s; last values: {seen[-3:]}")


def _upload_video(page, path: Path) -> None:
    page.get_by_role("tab", name="Video").click()
    page.set_input_files("#video-input input[type=file]", str(path))
    _wait_for(lambda: path.name in page.inner_text("#video-input").replace("\n", ""))  # name and extension split
    _wait_for(lambda: path.name in page.inner_text("#video-summary"))  # the upload is checked at once


def _pick_sample(page) -> None:
    page.locator("button.gallery-item").first.click()  # the first sample image
    page.locator("#image-input img[src]").wait_for()
    _wait_for(lambda: page.is_enabled("#image-button"))


def _visible(page, selector: str) -> int:
    return page.locator(selector).evaluate_all("found => found.filter(e => e.offsetParent !== null).length")


def test_a_video_is_uploaded_tracked_and_played(page, web_clip, screenshots):
    _upload_video(page, web_clip)
    page.click("#video-button")
    texts = _wait_for(lambda: page.locator("#video-output video[src]").count() and page.inner_text("#video-summary"))
    assert "24 frames (2.0 s of video), 2 animals tracked" in texts[-1]
    state = page.eval_on_selector("#video-output video", PLAYABLE)
    assert state["error"] is None and state["readyState"] >= 2, f"the browser cannot play the labeled video: {state}"
    assert state["width"] == 320 and state["duration"] == pytest.approx(2.0, abs=0.1)
    assert page.eval_on_selector("#video-output video", "v => v.currentSrc").split("?")[0].endswith(".mp4")
    downloads = page.inner_text("#video-files").replace("\n", "")  # the page splits name and extension
    assert "walk.json" in downloads and "walk.csv" in downloads
    assert _visible(page, "#video-files button") == 0, "the results to download show remove buttons"
    page.screenshot(path=str(screenshots / "video_tab.png"), full_page=True)


def test_progress_shows_frames_per_second_and_time_left(page, long_clip):
    # The 96-frame clip: the 24-frame one can be done before the page shows a first rate on a fast machine.
    _upload_video(page, long_clip)
    page.click("#video-button")
    seen = _wait_for(lambda: ("frames/s" in page.inner_text("#video-output") and "left" in
                              page.inner_text("#video-output")) or page.locator("#video-output video[src]").count(),
                     every_s=0.05)
    assert seen[-1] is True, "no progress with frames/s and time left was shown while the video was processed"
    _wait_for(lambda: page.locator("#video-output video[src]").count())  # the job ends before the next test


@pytest.mark.parametrize("name, content, message", [
    ("broken.mp4", b"this is not a video", "broken.mp4 cannot be read as a video"),
    ("empty.mp4", b"", "empty.mp4 is empty (0 bytes)"),
])
def test_a_bad_video_is_refused_as_soon_as_it_is_uploaded(page, tmp_path, name, content, message):
    bad = tmp_path / name
    bad.write_bytes(content)
    _upload_video(page, bad)
    assert f"Cannot use this file: {message}" in page.inner_text("#video-summary")
    assert page.is_disabled("#video-button")
    assert page.get_by_text("Traceback").count() == 0


def test_a_bad_image_is_refused_as_soon_as_it_is_uploaded(page, tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("a text file named like a picture")
    page.set_input_files("#image-input input[type=file]", str(fake))
    _wait_for(lambda: "notes.jpg is not an image this app can read" in page.inner_text("#image-summary"))
    assert page.is_disabled("#image-button")
    page.click("#image-input button[aria-label='Remove Image']")
    _pick_sample(page)  # a good image: the button comes back and the message goes
    # (the summary's own status timer, hidden, is text in the page too: read the Markdown alone)
    _wait_for(lambda: page.inner_text("#image-summary [data-testid=markdown]").strip() == "")


def test_the_page_names_the_models_it_can_use_and_why_others_are_missing(page):
    notice = page.inner_text("#models-notice")
    assert "Models on this server: pose: resnet_small_ap10k.pth" in notice
    assert f"Not available here: {MISSING_POSE} (its file is missing on this server)" in notice
    assert "/" not in notice and "--" not in notice


def test_a_failed_run_stays_readable_until_the_next(page):
    page.locator("button.label-wrap", has_text="Settings").click()
    page.locator("#pose-model input").click()
    page.get_by_role("option", name=UNREADABLE_POSE).click()
    _pick_sample(page)
    page.click("#image-button")
    expected = f"Could not find poses: the pose model {UNREADABLE_POSE} could not be loaded on this server"
    _wait_for(lambda: expected in page.inner_text("#image-summary"))
    assert "/tmp" not in page.inner_text("body") and "--pose-weights" not in page.inner_text("body")
    page.locator(".toast-item").first.wait_for()  # gradio's pop-up with the error...
    _wait_for(lambda: page.locator(".toast-item").count() == 0, timeout_s=30)  # ...goes away...
    assert expected in page.inner_text("#image-summary")  # ...the message stays
    assert page.is_enabled("#image-button") and page.inner_text("#image-button") == "Find poses"


def test_a_job_waiting_in_the_queue_shows_it(browser, served_app, long_clip):
    _, url = served_app
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        pages = [context.new_page() for _ in range(2)]
        for one in pages:
            one.set_default_timeout(60_000)
            one.goto(url)
        video, image = pages
        _upload_video(video, long_clip)
        _pick_sample(image)
        video.click("#video-button")
        _wait_for(lambda: video.inner_text("#video-button") == "Working…")
        image.click("#image-button")
        seen = _wait_for(lambda: "queue:" in image.inner_text("#image-output") and (
            image.inner_text("#image-button"), image.is_disabled("#image-button"), image.inner_text("#image-summary")))
        label, disabled, summary = seen[-1]
        assert label == "Working…" and disabled and summary.startswith("Waiting for a free slot")
        _wait_for(lambda: "2 animals found" in image.inner_text("#image-summary"), timeout_s=120)
        _wait_for(lambda: image.inner_text("#image-button") == "Find poses" and image.is_enabled("#image-button"))
    finally:
        context.close()


def test_a_sample_image_gets_skeletons(page):
    _pick_sample(page)
    page.get_by_role("button", name="Find poses").click()
    page.get_by_text("2 animals found").wait_for()
    assert page.locator("#image-output img[src]").count() == 1
    table = page.inner_text("#keypoint-table")
    assert "L_Eye" in table and "#2" in table


def test_one_click_starts_the_webcam_stream(page, screenshots):
    page.get_by_role("tab", name="Webcam").click()
    page.get_by_text("Click to Access Webcam").click()  # the only click: the stream starts by itself
    sources: set[str] = set()

    def enough_frames() -> bool:
        src = page.eval_on_selector_all("#webcam-output img", "images => images.map(i => i.src)")
        sources.update(s for s in src if s)
        return len(sources) >= 3 and "frames/s" in page.inner_text("#webcam-stats")

    _wait_for(enough_frames, timeout_s=60)
    stats = page.inner_text("#webcam-stats")
    assert "latency" in stats and "2 animals" in stats
    assert page.inner_text("#webcam-input .capture-button").strip() == "Stop"
    page.screenshot(path=str(screenshots / "webcam_tab.png"), full_page=True)
    page.click("#webcam-input .capture-button")
    _wait_for(lambda: page.inner_text("#webcam-input .capture-button").strip() == "Start")  # not "Record"


@pytest.mark.parametrize("name, interrupted", [("labeled.mp4", False), ("labeled.webm", False), ("labeled.mp4", True)])
def test_chromium_plays_the_video_that_track_writes(browser, synthetic_clip, small_estimator, tmp_path, name,
                                                    interrupted):
    """What ``animalpose track clip.mp4 --out labeled.mp4`` writes (and the partial MP4 of an interrupted run)
    plays in the browser: first frame loaded, its duration known, no error."""
    from app.runs import Models, OutputPaths, TrackProgress, TrackSettings, process_source
    from app.sinks import partial_path
    from train.e2e import GroundTruthDetector

    clip, gt = synthetic_clip
    out = tmp_path / name

    def stop_half_way(where: TrackProgress) -> None:
        if interrupted and where.writing and where.done == 18:
            raise KeyboardInterrupt

    models = Models(GroundTruthDetector(gt, auto_advance=True), small_estimator)
    try:
        process_source(str(clip), OutputPaths(video=out), models, TrackSettings(progress_bar=False),
                       progress=stop_half_way)
    except KeyboardInterrupt:
        out = partial_path(out)
    (tmp_path / "page.html").write_text(f'<video id="v" src="{out.name}" muted></video>')
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto((tmp_path / "page.html").as_uri())
        state = page.eval_on_selector("#v", PLAYABLE)
    finally:
        context.close()
    assert state["error"] is None and state["readyState"] >= 2, state
    frames = 17 if interrupted else len(gt["frames"])
    assert state["width"] == 320 and state["duration"] == pytest.approx(frames / 12, abs=0.15)
