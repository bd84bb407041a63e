"""The Gradio page: a Settings panel and three tabs (Image, Video, Webcam) over :mod:`app.web_jobs`.

Nothing here computes anything: each handler turns the page's inputs into :class:`RunOptions`,
calls one job and puts its result into the page. Problems a visitor can act on (a bad upload,
missing weights) come back as :class:`gradio.Error` messages in the page; anything else is logged
with its traceback on the server and shown as one line.

Endpoints (for ``gradio_client``): ``/image``, ``/video`` and ``/webcam`` (a stream); each takes its
media, then the settings in the order of :data:`SETTINGS_ORDER`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import gradio as gr
import pandas as pd
from PIL import UnidentifiedImageError

from app.web_jobs import IMAGE_UPLOAD_EXTENSIONS, VIDEO_UPLOAD_EXTENSIONS, VideoProgress, WebJobs, sample_images
from app.web_live import LiveSession
from app.web_models import ModelFactory, RunOptions, WebError, WebSettings, available_devices

logger = logging.getLogger(__name__)

#: The settings inputs every endpoint takes after its media, in this order.
SETTINGS_ORDER: tuple[str, ...] = (
    "pose", "detector", "device", "det_conf", "kpt_thr", "smoothing", "det_every", "flip_test",
)
KEYPOINT_COLUMNS: list[str] = ["animal", "keypoint", "x", "y", "confidence"]
PLOT_COLUMNS: list[str] = ["time_s", "animal", "confidence"]

INTRO = """# animalpose
Finds animals, follows them from frame to frame and estimates 17 AP-10K keypoints on each
(eyes, nose, neck, tail root, shoulders, elbows, paws, hips, knees). Choose the models and
thresholds under **Settings**."""

CSS = """
.gradio-container {max-width: 1280px !important; margin: auto;}
#video-summary, #image-summary, #webcam-stats {min-height: 1.5em;}
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


def _options(pose, detector, device, det_conf, kpt_thr, smoothing, det_every, flip_test) -> RunOptions:
    with page_errors():
        return RunOptions(pose=pose, detector=detector, device=device, det_conf=det_conf, kpt_thr=kpt_thr,
                          smoothing=smoothing, det_every=det_every, flip_test=flip_test)


def _settings_panel(jobs: WebJobs) -> list[gr.components.Component]:
    poses, detectors, devices = jobs.pose_choices(), jobs.detector_choices(), available_devices()
    with gr.Accordion("Settings", open=False):
        with gr.Row():
            pose = gr.Dropdown(poses, value=poses[0], label="Pose model", info="weights known to this server")
            detector = gr.Dropdown(detectors, value=detectors[0], label="Detector", info="YOLO weights")
            device = gr.Dropdown(devices, value=devices[0], label="Device")
        with gr.Row():
            det_conf = gr.Slider(0.05, 0.95, value=0.25, step=0.05, label="Detector confidence",
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


def _image_tab(jobs: WebJobs, settings_inputs: list) -> None:
    with gr.Row():
        with gr.Column():
            image_in = checked_image_input(type="filepath", sources=["upload", "clipboard"], label="Image",
                                           elem_id="image-input")
            button = gr.Button("Find poses", variant="primary")
            samples = sample_images(jobs.settings)
            if samples:
                gr.Examples([[str(p)] for p in samples], inputs=[image_in], label="Sample images",
                            examples_per_page=16)
        with gr.Column():
            image_out = gr.Image(label="Poses", interactive=False, format="jpeg", elem_id="image-output")
            summary = gr.Markdown(label="Summary", elem_id="image-summary")
            json_out = gr.File(label="Result (JSON)", interactive=False, height=80)
    table = gr.Dataframe(headers=KEYPOINT_COLUMNS, label="Keypoints (pixels)", interactive=False, max_height=320,
                         elem_id="keypoint-table")

    def analyse(image, pose, detector, device, det_conf, kpt_thr, smoothing, det_every, flip_test):
        if not image:
            raise gr.Error("Upload an image or pick a sample first.", print_exception=False)
        options = _options(pose, detector, device, det_conf, kpt_thr, smoothing, det_every, flip_test)
        with page_errors():
            result = jobs.image(image, options)
        found = f"{result.animals} animal{'s' if result.animals != 1 else ''} found"
        return result.image_rgb, pd.DataFrame(result.rows, columns=KEYPOINT_COLUMNS), str(result.json_path), found

    button.click(analyse, [image_in, *settings_inputs], [image_out, table, json_out, summary], api_name="image",
                 concurrency_id="pipeline", concurrency_limit=jobs.settings.concurrency, show_progress="full",
                 show_progress_on=[image_out])


def _video_tab(jobs: WebJobs, settings_inputs: list) -> None:
    with gr.Row():
        with gr.Column():
            # A file input rather than gr.Video: browsers cannot preview many camera formats, and the
            # page would show that as an error although the video is processed fine.
            video_in = gr.File(label="Video", file_types=list(VIDEO_UPLOAD_EXTENSIONS), elem_id="video-input",
                               height=140)
            button = gr.Button("Track", variant="primary", elem_id="video-button")
            gr.Markdown(f"Videos of up to {jobs.settings.max_video_s:.0f} s and "
                        f"{jobs.settings.max_upload_mb:.0f} MB.")
            plot = gr.LinePlot(x="time_s", y="confidence", color="animal",
                               title="Mean keypoint confidence of each animal", x_title="time (s)",
                               y_title="confidence", label="Confidence")
        with gr.Column():
            video_out = gr.Video(label="Labeled video", interactive=False, autoplay=True, loop=True,
                                 elem_id="video-output")
            summary = gr.Markdown(label="Summary", elem_id="video-summary")
            files = gr.File(label="Results (JSON, CSV)", file_count="multiple", interactive=False,
                            elem_id="video-files")

    def track(video, pose, detector, device, det_conf, kpt_thr, smoothing, det_every, flip_test,
              progress=gr.Progress()):
        if not video:
            raise gr.Error("Upload a video first.", print_exception=False)
        options = _options(pose, detector, device, det_conf, kpt_thr, smoothing, det_every, flip_test)

        def report(state: VideoProgress) -> None:
            progress((state.frames, state.total), desc=state.describe(), unit="frames")

        with page_errors():
            result = jobs.video(Path(video), options, report)
        table = pd.DataFrame(result.confidence, columns=PLOT_COLUMNS)
        return str(result.video), table, [str(result.json), str(result.csv)], result.describe()

    button.click(track, [video_in, *settings_inputs], [video_out, plot, files, summary], api_name="video",
                 concurrency_id="pipeline", concurrency_limit=jobs.settings.concurrency, show_progress="full",
                 show_progress_on=[video_out])


def _webcam_tab(jobs: WebJobs, settings_inputs: list) -> None:
    gr.Markdown("Start the camera: each frame goes through the detector, the tracker and the pose model with "
                "causal smoothing. When the server is slower than the camera, frames are skipped, not queued.")
    with gr.Row():
        camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera", elem_id="webcam-input",
                          webcam_options=gr.WebcamOptions(mirror=False))  # shown as processed
        labeled = gr.Image(label="Poses", interactive=False, elem_id="webcam-output", format="jpeg")
    stats = gr.Markdown(label="Stream", elem_id="webcam-stats")
    session = gr.State(None)

    def on_frame(frame, state, pose, detector, device, det_conf, kpt_thr, smoothing, det_every, flip_test):
        if frame is None:
            return gr.skip(), gr.skip(), state
        options = _options(pose, detector, device, det_conf, kpt_thr, smoothing, det_every, flip_test)
        state = state or LiveSession(max_side=jobs.settings.webcam_max_side)
        with page_errors():
            spec = jobs.spec(options)
            shown = state.process(frame, jobs.load(options), spec, options)
        return shown.image_rgb, shown.describe(), state

    camera.stream(on_frame, [camera, session, *settings_inputs], [labeled, stats, session], api_name="webcam",
                  stream_every=0.1, time_limit=int(jobs.settings.webcam_time_limit_s), show_progress="hidden",
                  concurrency_id="webcam", concurrency_limit=jobs.settings.webcam_streams)


def build_app(settings: WebSettings = WebSettings(), model_factory: ModelFactory | None = None) -> gr.Blocks:
    """The page, with its queue set up; start it with :func:`launch`.

    Args:
        settings: the server's limits and the weights it offers.
        model_factory: ``factory(spec) -> Models``; the command line's model loading by default.
    """
    jobs = WebJobs(settings, model_factory)
    samples = sample_images(settings)
    if samples:
        gr.set_static_paths(sorted({str(p.parent) for p in samples}))
    # No telemetry: the server talks to nobody but its visitors.
    with gr.Blocks(title="animalpose", analytics_enabled=False,
                   delete_cache=(1800, int(settings.keep_results_s))) as demo:
        gr.Markdown(INTRO)
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

    Returns gradio's ``(app, local_url, share_url)``; with ``block`` it returns only when the
    server stops (Ctrl-C).
    """
    jobs: WebJobs = demo.jobs
    jobs.work_dir.mkdir(parents=True, exist_ok=True)
    return demo.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=not block, quiet=quiet,
        max_file_size=int(jobs.settings.max_upload_mb * 1024 * 1024), allowed_paths=[str(jobs.work_dir)],
        show_error=False, footer_links=["api"], css=CSS, theme=gr.themes.Soft(),
    )
