"""The Gradio page: a notice of the models, a Settings panel and three tabs (Image, Video, Webcam)
over :mod:`app.web.jobs`.

Nothing here computes anything: each handler turns the page's inputs into :class:`RunOptions`,
calls one job and puts its result into the page. Problems a visitor can act on (a bad upload,
missing weights) come back as :class:`gradio.Error` messages, and stay written in the tab's summary
until the next run; anything else is logged with its traceback on the server and shown as one line.
Uploads are checked as soon as they arrive: the run button stays disabled for a file that cannot
be used. While a job waits in the queue or runs, its button is disabled and says so.

Endpoints (for ``gradio_client``): ``/image``, ``/video`` and ``/webcam`` (a stream); each takes its
media, then the settings in the order of :data:`SETTINGS_ORDER`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import gradio as gr
import pandas as pd
from PIL import UnidentifiedImageError

from app.profiles import REALTIME_CHOICES, Profile, default_profile
from app.web.jobs import IMAGE_UPLOAD_EXTENSIONS, VIDEO_UPLOAD_EXTENSIONS, VideoProgress, WebJobs, sample_images
from app.web.live import LiveSession
from app.web.models import (
    DETECTOR_FLOOR,
    DownloadCheck,
    ModelFactory,
    RunOptions,
    WebError,
    WebSettings,
    available_devices,
)

logger = logging.getLogger(__name__)

#: The settings inputs every endpoint takes after its media, in this order.
SETTINGS_ORDER: tuple[str, ...] = (
    "pose", "detector", "device", "det_conf", "kpt_thr", "smoothing", "det_every", "flip_test",
)
KEYPOINT_COLUMNS: list[str] = ["animal", "keypoint", "x", "y", "confidence"]
PLOT_COLUMNS: list[str] = ["time_s", "animal", "confidence"]
#: What a run button says while its job waits in the queue or runs (it is disabled meanwhile).
BUSY_LABEL = "Working…"
WAITING_TEXT = "Waiting for a free slot: other jobs run first (the position is shown over the result)…"

INTRO = """# animalpose
Finds animals, follows them from frame to frame and estimates 17 AP-10K keypoints on each
(eyes, nose, neck, tail root, shoulders, elbows, paws, hips, knees). Choose the models and
thresholds under **Settings**."""

CSS = """
.gradio-container {max-width: 1280px !important; margin: auto;}
#video-summary, #image-summary, #webcam-stats {min-height: 1.5em;}
/* the queue position and progress over a result, readable rather than small grey text */
#image-output .meta-text, #image-output .meta-text-center, #image-output .progress-text,
#video-output .meta-text, #video-output .meta-text-center, #video-output .progress-text {
  font-size: var(--text-lg) !important; font-weight: 600; color: var(--body-text-color) !important;
}
/* results to download are not the visitor's to remove (gradio shows a remove button on lists) */
#video-files .label-clear-button {display: none !important;}
"""

#: The webcam's start button says Start rather than Record (nothing is recorded).
WEBCAM_LABELS = {"audio.record": "Start", "audio.stop": "Stop", "audio.waiting": "Starting"}

#: One click starts the webcam: once the visitor has clicked "Click to Access Webcam" and the camera
#: shows a picture, the start button is pressed for them.
ONE_CLICK_WEBCAM_JS = """
() => {
  document.addEventListener("click", (event) => {
    if (!event.target.closest || !event.target.closest("#webcam-input [title='grant webcam access']")) return;
    const since = Date.now();
    const timer = setInterval(() => {
      const video = document.querySelector("#webcam-input video");
      const start = document.querySelector("#webcam-input .capture-button");
      if (start && video && video.videoWidth > 0) {
        clearInterval(timer);
        if (start.querySelector("[title='start recording']")) start.click();
      } else if (Date.now() - since > 20000) {
        clearInterval(timer);
      }
    }, 100);
  }, true);
}
"""


def checked_image_input(**kwargs) -> gr.Image:
    """A ``gr.Image`` input that answers a file which is not an image with a message, not a traceback.

    The file is checked with OpenCV (which reads it later) before PIL opens it: once ultralytics is
    loaded, PIL's ``open`` is patched to try installing a HEIF plugin for any file it cannot read.
    (The component's ``preprocess`` is wrapped rather than overridden in a subclass: gradio writes a
    ``.pyi`` stub beside any module that defines a component class.)
    """
    component = gr.Image(**kwargs)
    preprocess = component.preprocess

    def checked(payload):
        name = getattr(payload, "orig_name", None) or "the upload"
        message = f"{name} is not an image this app can read: upload one of {', '.join(IMAGE_UPLOAD_EXTENSIONS)}"
        path = getattr(payload, "path", None)
        if path and not cv2.haveImageReader(str(path)):
            raise gr.Error(message, print_exception=False)
        try:
            return preprocess(payload)
        except (UnidentifiedImageError, OSError, ValueError, ImportError):
            raise gr.Error(message, print_exception=False) from None

    component.preprocess = checked
    return component


@contextlib.contextmanager
def page_errors() -> Iterator[None]:
    """Turn a :class:`WebError` into the page's error message; log anything else and say so in one line."""
    try:
        yield
    except WebError as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    except gr.Error:
        raise
    except Exception as exc:
        logger.exception("web job failed")
        raise gr.Error(f"the server failed on this input ({type(exc).__name__}); the details are in its log",
                       print_exception=False) from None


def failure_text(action: str, error: gr.Error) -> str:
    """The summary that keeps a failed run's message readable until the next run."""
    return f"**Could not {action}:** {error.message}"


def _options(pose, detector, device, det_conf, kpt_thr, smoothing, det_every, flip_test) -> RunOptions:
    with page_errors():
        return RunOptions(pose=pose, detector=detector, device=device, det_conf=det_conf, kpt_thr=kpt_thr,
                          smoothing=smoothing, det_every=det_every, flip_test=flip_test)


def models_notice(jobs: WebJobs) -> str:
    """The page's note of which models this server can use and why others are not offered (in a
    visitor's words: no server paths, no command-line options; those are in the server's log)."""
    status = jobs.weights_status()
    lines = []
    if not jobs.ready:
        lines.append(f"**This server has no {jobs.missing_kinds()} it can use, so it cannot analyse anything yet.** "
                     "Its operator can see why in the server's log.")
    offered = []
    for kind, title in (("pose", "pose"), ("detector", "detector")):
        usable = [label + (f" ({s.note})" if s.note else "") for label, s in status[kind].items() if s.usable]
        if usable:
            offered.append(f"{title}: {', '.join(usable)}")
    if offered:
        lines.append(f"**Models on this server:** {'; '.join(offered)}.")
    gone = [f"{label} ({s.note})" for kind in ("pose", "detector") for label, s in status[kind].items()
            if not s.usable]
    if gone:
        lines.append(f"**Not available here:** {', '.join(gone)}.")
    return "\n\n".join(lines)


def _settings_panel(jobs: WebJobs) -> list[gr.components.Component]:
    poses, detectors, devices = jobs.pose_choices(), jobs.detector_choices(), available_devices()
    with gr.Accordion("Settings", open=False):
        with gr.Row():
            pose = gr.Dropdown(poses, value=poses[0] if poses else None, label="Pose model", elem_id="pose-model",
                               info="the models this server can use (see the note above)")
            detector = gr.Dropdown(detectors, value=detectors[0] if detectors else None, label="Detector",
                                   elem_id="detector-model", info="YOLO weights")
            device = gr.Dropdown(devices, value=devices[0], label="Device")
        with gr.Row():
            det_conf = gr.Slider(DETECTOR_FLOOR, 0.95, value=0.25, step=0.05, label="Detector confidence",
                                 info="boxes below this score are ignored")
            kpt_thr = gr.Slider(0.0, 1.0, value=0.3, step=0.05, label="Keypoint threshold",
                                info="keypoints below this confidence are not drawn")
            det_every = gr.Slider(1, 10, value=1, step=1, label="Detector interval (frames)",
                                  info="tracks are predicted in between")
        with gr.Row():
            smoothing = gr.Radio(["offline", "causal", "none"], value="offline", label="Smoothing",
                                 info="offline: over the whole video (the webcam then uses causal)")
            flip = gr.Checkbox(value=True, label="Flip test", info="slower, a little more accurate")
    return [pose, detector, device, det_conf, kpt_thr, smoothing, det_every, flip]


def _busy():
    """The run button and summary while a job waits in the queue (the job itself says when it starts)."""
    return gr.Button(value=BUSY_LABEL, interactive=False), WAITING_TEXT


def _image_tab(jobs: WebJobs, settings_inputs: list) -> None:
    label = "Find poses"
    with gr.Row():
        with gr.Column():
            image_in = checked_image_input(type="filepath", sources=["upload", "clipboard"], label="Image",
                                           elem_id="image-input")
            button = gr.Button(label, variant="primary", elem_id="image-button", interactive=jobs.ready)
            samples = sample_images(jobs.settings)
            if samples:
                gr.Examples([[str(p)] for p in samples], inputs=[image_in], label="Sample images",
                            examples_per_page=16)
        with gr.Column():
            image_out = gr.Image(label="Poses", interactive=False, format="jpeg", elem_id="image-output")
            summary = gr.Markdown(elem_id="image-summary")
            json_out = gr.File(label="Result (JSON)", interactive=False, height=80, elem_id="image-file")
    table = gr.Dataframe(headers=KEYPOINT_COLUMNS, label="Keypoints (pixels)", interactive=False, max_height=320,
                         elem_id="keypoint-table")

    def upload_problem(payload) -> str | None:
        """Why the image input's raw value (a FileData dict) cannot be analysed; None when it can."""
        if not payload or not payload.get("path"):
            return None
        try:
            jobs.check_image(payload["path"], payload.get("orig_name") or Path(payload["path"]).name)
        except WebError as exc:
            return str(exc)
        return None

    def on_upload(payload):
        problem = upload_problem(payload)
        if problem is not None:
            return gr.Button(value=label, interactive=False), f"**Cannot use this file:** {problem}"
        return gr.Button(value=label, interactive=jobs.ready), ""

    def on_done(payload):
        return gr.Button(value=label, interactive=jobs.ready and upload_problem(payload) is None)

    def analyse(image, pose, detector, device, det_conf, kpt_thr, smoothing, det_every, flip_test):
        yield None, None, None, "Finding poses…"
        try:
            if not image:
                raise gr.Error("Upload an image or pick a sample first.", print_exception=False)
            options = _options(pose, detector, device, det_conf, kpt_thr, smoothing, det_every, flip_test)
            with page_errors():
                result = jobs.image(image, options)
        except gr.Error as exc:
            yield gr.skip(), gr.skip(), gr.skip(), failure_text("find poses", exc)
            raise
        rows = pd.DataFrame(result.rows, columns=KEYPOINT_COLUMNS)
        yield result.image_rgb, rows, str(result.json_path), result.describe()

    quick = dict(queue=False, show_progress="hidden", api_visibility="private")
    image_in.change(on_upload, image_in, [button, summary], preprocess=False, **quick)
    run = button.click(_busy, None, [button, summary], **quick).then(
        analyse, [image_in, *settings_inputs], [image_out, table, json_out, summary], api_name="image",
        concurrency_id="pipeline", concurrency_limit=jobs.settings.concurrency, show_progress="full",
        show_progress_on=[image_out])
    for ended in (run.success, run.failure):  # (gradio's .then does not follow a failed job)
        ended(on_done, image_in, button, preprocess=False, **quick)


def _video_tab(jobs: WebJobs, settings_inputs: list) -> None:
    label = "Track"
    with gr.Row():
        with gr.Column():
            # A file input rather than gr.Video: browsers cannot preview many camera formats, and the
            # page would show that as an error although the video is processed fine.
            video_in = gr.File(label="Video", file_types=list(VIDEO_UPLOAD_EXTENSIONS), elem_id="video-input",
                               height=140)
            button = gr.Button(label, variant="primary", elem_id="video-button", interactive=jobs.ready)
            gr.Markdown(f"Videos of up to {jobs.settings.max_video_s:.0f} s and "
                        f"{jobs.settings.max_upload_mb:.0f} MB.")
            plot = gr.LinePlot(x="time_s", y="confidence", color="animal",
                               title="Mean keypoint confidence of each animal", x_title="time (s)",
                               y_title="confidence", label="Confidence")
        with gr.Column():
            video_out = gr.Video(label="Labeled video", interactive=False, autoplay=True, loop=True,
                                 elem_id="video-output")
            summary = gr.Markdown(elem_id="video-summary")
            files = gr.File(label="Results (JSON, CSV)", file_count="multiple", interactive=False,
                            elem_id="video-files")

    def upload_check(video) -> tuple[str | None, str]:
        """(why the upload cannot be tracked or None, what the page says about it)."""
        if not video:
            return None, ""
        try:
            info = jobs.check_video(Path(video))
        except WebError as exc:
            return str(exc), f"**Cannot use this file:** {exc}"
        length = f"{info.total_frames / info.fps:.1f} s, " if info.total_frames else ""
        return None, f"{Path(video).name}: {length}{info.width}×{info.height} at {info.fps:.0f} frames/s"

    def on_upload(video):
        problem, text = upload_check(video)
        return gr.Button(value=label, interactive=jobs.ready and problem is None), text

    def on_done(video):
        return gr.Button(value=label, interactive=jobs.ready and upload_check(video)[0] is None)

    def track(video, pose, detector, device, det_conf, kpt_thr, smoothing, det_every, flip_test,
              progress=gr.Progress()):
        yield None, None, None, "Tracking…"
        try:
            if not video:
                raise gr.Error("Upload a video first.", print_exception=False)
            options = _options(pose, detector, device, det_conf, kpt_thr, smoothing, det_every, flip_test)

            def report(state: VideoProgress) -> None:
                progress((state.frames, state.total), desc=state.describe(), unit="frames")

            with page_errors():
                result = jobs.video(Path(video), options, report)
        except gr.Error as exc:
            yield gr.skip(), gr.skip(), gr.skip(), failure_text("track this video", exc)
            raise
        table = pd.DataFrame(result.confidence, columns=PLOT_COLUMNS)
        yield str(result.video), table, [str(result.json), str(result.csv)], result.describe()

    quick = dict(queue=False, show_progress="hidden", api_visibility="private")
    video_in.change(on_upload, video_in, [button, summary], **quick)
    run = button.click(_busy, None, [button, summary], **quick).then(
        track, [video_in, *settings_inputs], [video_out, plot, files, summary], api_name="video",
        concurrency_id="pipeline", concurrency_limit=jobs.settings.concurrency, show_progress="full",
        show_progress_on=[video_out])
    for ended in (run.success, run.failure):
        ended(on_done, video_in, button, **quick)


@dataclass
class WebcamState:
    """One visitor's webcam: their pipeline, and the options whose models failed to load (not
    retried on every frame; changing a setting tries again)."""

    session: LiveSession
    failed: RunOptions | None = None


def _webcam_tab(jobs: WebJobs, settings_inputs: list) -> None:
    gr.Markdown("Click to access the webcam: the stream starts once the camera shows a picture. Each frame goes "
                "through the detector, the tracker and the pose model with causal smoothing; nothing is recorded. "
                "When the server is slower than the camera, frames are skipped, not queued.")
    with gr.Row():
        camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera", elem_id="webcam-input",
                          webcam_options=gr.WebcamOptions(mirror=False),  # shown as processed
                          interactive=jobs.ready)
        labeled = gr.Image(label="Poses", interactive=False, elem_id="webcam-output", format="jpeg")
    default = default_profile(live=True, device=available_devices()[0])
    if default is Profile.REALTIME:
        logger.info("no CUDA GPU here: the webcam tab starts with the realtime profile (%s)", _realtime_words(jobs))
    with gr.Row():
        profile = gr.Radio([p.value for p in Profile], value=default.value, label="Profile", elem_id="webcam-profile",
                           info=f"realtime: {_realtime_words(jobs)}; full: the Settings panel's models and options")
    gr.Markdown(webcam_profile_notice(jobs, default), elem_id="webcam-profile-notice")
    stats = gr.Markdown(elem_id="webcam-stats")
    state = gr.State(None)

    def on_frame(frame, current, chosen_profile, pose, detector, device, det_conf, kpt_thr, smoothing, det_every,
                 flip_test):
        if frame is None:
            return gr.skip(), gr.skip(), current
        current = current or WebcamState(LiveSession(max_side=jobs.settings.webcam_max_side))
        options = None
        try:
            options = _options(pose, detector, device, det_conf, kpt_thr, smoothing, det_every, flip_test)
            with page_errors():
                options = jobs.with_profile(options, chosen_profile or default.value)
            if options == current.failed:
                return gr.skip(), gr.skip(), current
            with page_errors():
                spec = jobs.spec(options, live=True)
                shown = current.session.process(frame, jobs.load(options, live=True), spec, options)
        except gr.Error as exc:
            current.failed = options
            return gr.skip(), failure_text("process the camera", exc), current
        current.failed = None
        return shown.image_rgb, shown.describe(), current

    camera.stream(on_frame, [camera, state, profile, *settings_inputs], [labeled, stats, state], api_name="webcam",
                  stream_every=0.1, time_limit=int(jobs.settings.webcam_time_limit_s), show_progress="hidden",
                  concurrency_id="webcam", concurrency_limit=jobs.settings.webcam_streams)


def _realtime_words(jobs: WebJobs) -> str:
    label = jobs.realtime_pose_label()
    model = label if label is not None else "the Settings panel's pose model (RTMPose-m is not offered here)"
    choices = REALTIME_CHOICES
    every = "every frame" if choices.det_every == 1 else f"every {choices.det_every} frames"
    return f"{model}, no flip test, the detector at {choices.det_image_size} px {every}"


def webcam_profile_notice(jobs: WebJobs, default: Profile) -> str:
    """The webcam tab's note of the profile it starts with, and why."""
    if default is Profile.REALTIME:
        return (f"This server has no GPU, so the webcam starts with the **realtime** profile ({_realtime_words(jobs)}) "
                "to keep up with the camera. Choose **full** for the Settings panel's models and options.")
    return ("The webcam runs the Settings panel's models and options (the **full** profile) on this server's GPU; "
            f"**realtime** runs {_realtime_words(jobs)}.")


def build_app(settings: WebSettings = WebSettings(), model_factory: ModelFactory | None = None,
              can_download: DownloadCheck | None = None) -> gr.Blocks:
    """The page, with its queue set up; start it with :func:`launch`.

    Args:
        settings: the server's limits and the weights it offers.
        model_factory: ``factory(spec) -> Models``; the command line's model loading by default.
        can_download: ``can_download(url) -> bool`` for weights not here yet (see :class:`WebJobs`).
    """
    jobs = WebJobs(settings, model_factory, can_download)
    samples = sample_images(settings)
    if samples:
        gr.set_static_paths(sorted({str(p.parent) for p in samples}))
    # No telemetry: the server talks to nobody but its visitors.
    with gr.Blocks(title="animalpose", analytics_enabled=False,
                   delete_cache=(1800, int(settings.keep_results_s))) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(models_notice(jobs), elem_id="models-notice")
        settings_inputs = _settings_panel(jobs)
        with gr.Tabs():
            with gr.Tab("Image", id="image"):
                _image_tab(jobs, settings_inputs)
            with gr.Tab("Video", id="video"):
                _video_tab(jobs, settings_inputs)
            with gr.Tab("Webcam", id="webcam"):
                _webcam_tab(jobs, settings_inputs)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    demo.jobs = jobs  # for launch() and tests
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
           block: bool = True, quiet: bool = False):
    """Serve ``demo`` (from :func:`build_app`) on ``host:port`` with its upload limit.

    Gradio's own start-up lines are silenced (they tell the reader to edit ``launch()``); the
    address, and how to publish a public link with ``animalpose serve --share``, are logged instead
    unless ``quiet``. Returns gradio's ``(app, local_url, share_url)``; with ``block`` it returns
    only when the server stops (Ctrl-C).
    """
    jobs: WebJobs = demo.jobs
    jobs.work_dir.mkdir(parents=True, exist_ok=True)
    served = demo.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=True, quiet=True,
        max_file_size=int(jobs.settings.max_upload_mb * 1024 * 1024), allowed_paths=[str(jobs.work_dir)],
        show_error=False, footer_links=["api"], css=CSS, js=ONE_CLICK_WEBCAM_JS, theme=gr.themes.Soft(),
        i18n=gr.I18n(en=WEBCAM_LABELS),
    )
    _, local_url, share_url = served
    if not quiet:
        logger.info("serving on %s (Ctrl-C to stop)", local_url)
        if share_url:
            logger.info("public link, valid for up to a week: %s", share_url)
        else:
            logger.info("to also publish a temporary public link (gradio.live), run `animalpose serve --share`")
    if block:
        demo.block_thread()
    return served
