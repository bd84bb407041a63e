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

from web_support import served_app, web_clip  # noqa: F401

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--use-fake-device-for-media-stream",  # a synthetic camera...
    "--use-fake-ui-for-media-stream",  # ...that the page may use without asking
]


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


def test_a_video_is_uploaded_tracked_and_played(page, web_clip, screenshots):
    _upload_video(page, web_clip)
    page.click("#video-button")
    texts = _wait_for(lambda: page.locator("#video-output video[src]").count() and page.inner_text("#video-summary"))
    assert "24 frames (2.0 s of video), 2 animals tracked" in texts[-1]
    playable = page.eval_on_selector(
        "#video-output video", "v => new Promise(done => v.readyState >= 2 ? done(true) : "
        "(v.onloadeddata = () => done(true), v.onerror = () => done(false)))")
    assert playable, "the browser cannot play the labeled video"
    width = page.eval_on_selector("#video-output video", "v => v.videoWidth")
    assert width == 320
    downloads = page.inner_text("#video-files").replace("\n", "")  # the page splits name and extension
    assert "walk.json" in downloads and "walk.csv" in downloads
    page.screenshot(path=str(screenshots / "video_tab.png"), full_page=True)


def test_progress_shows_frames_per_second_and_time_left(page, web_clip):
    _upload_video(page, web_clip)
    page.click("#video-button")
    seen = _wait_for(lambda: ("frames/s" in page.inner_text("#video-output") and "left" in
                              page.inner_text("#video-output")) or page.locator("#video-output video[src]").count(),
                     every_s=0.05)
    assert seen[-1] is True, "no progress with frames/s and time left was shown while the video was processed"


def test_a_bad_upload_shows_a_message(page, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    _upload_video(page, broken)
    page.click("#video-button")
    page.get_by_text("broken.mp4 cannot be read as a video").wait_for()
    assert page.get_by_text("Traceback").count() == 0


def test_a_sample_image_gets_skeletons(page):
    page.locator("button.gallery-item").first.click()  # the first sample image
    page.locator("#image-input img[src]").wait_for()
    page.get_by_role("button", name="Find poses").click()
    page.get_by_text("2 animals found").wait_for()
    assert page.locator("#image-output img[src]").count() == 1
    table = page.inner_text("#keypoint-table")
    assert "L_Eye" in table and "#2" in table


def test_the_webcam_streams_processed_frames(page, screenshots):
    page.get_by_role("tab", name="Webcam").click()
    page.get_by_text("Click to Access Webcam").click()
    page.click("#webcam-input button[aria-label='capture photo']")  # start streaming
    sources: set[str] = set()

    def enough_frames() -> bool:
        src = page.eval_on_selector_all("#webcam-output img", "images => images.map(i => i.src)")
        sources.update(s for s in src if s)
        return len(sources) >= 3 and "frames/s" in page.inner_text("#webcam-stats")

    _wait_for(enough_frames, timeout_s=60)
    stats = page.inner_text("#webcam-stats")
    assert "latency" in stats and "2 animals" in stats
    page.screenshot(path=str(screenshots / "webcam_tab.png"), full_page=True)
    page.click("#webcam-input button[aria-label='capture photo']")  # stop
