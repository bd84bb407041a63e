"""Video encoding and decoding speed: our PyAV writer against OpenCV's, PyAV's reader against OpenCV's
(``python -m bench.encode``).

Encoding (frames/s, in this process, on this CPU): OpenCV's ``cv2.VideoWriter`` with 'mp4v' (MPEG-4 Part 2,
what the labeled video was before: no browser plays it) against :class:`app.sinks.encoder.VideoEncoder`
for each container it writes (H.264 MP4 with libx264, VP9 WebM, Motion-JPEG AVI; NVENC too where it
opens), at 1280x720 and 1920x1080, with the size of the file per second of video.

Decoding, on the H.264 MP4 and the mp4v file just written: OpenCV's ``cv2.VideoCapture`` (what
:class:`app.sources.VideoFileSource` reads with) against PyAV with threaded decoding, its frames converted
to BGR by FFmpeg (swscale) or by OpenCV; with the largest difference of their pixels from OpenCV's. Then
two files of the kind a reader gets wrong: a variable-frame-rate clip (does each reader give every
frame's time stamp?) and a phone clip with a 90 degree rotation in its metadata (is it turned upright?).

The frames are a photo (a macaque, 1728x1424, from tests/data/samples) panned by a moving crop: real
texture and motion. The section "encode" of ``docs/benchmarks.md`` is rewritten unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from app.sinks.encoder import ENCODER_OPTIONS, VideoEncoder, _codec_opens
from bench.report import write_section

PHOTO = Path(__file__).resolve().parents[1] / "tests" / "data" / "samples" / "macaque" / "PRI_1473.jpg"
SIZES: dict[str, tuple[int, int]] = {"720p": (1280, 720), "1080p": (1920, 1080)}
FPS = 30.0
#: libx264 presets measured beside ours (ENCODER_OPTIONS), to show the trade of speed for file size.
PRESETS_COMPARED = ("ultrafast", "veryfast", "faster")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=240, help="frames encoded and decoded per size")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--no-write", action="store_true", help="print the tables, leave docs/benchmarks.md alone")
    return parser


def panned_frames(size: tuple[int, int], count: int) -> list[np.ndarray]:
    """``count`` BGR frames of ``size``: a crop of the photo moving right and down, then back (60 distinct)."""
    width, height = size
    photo = cv2.imread(str(PHOTO))
    scale = max(1.25 * width / photo.shape[1], 1.25 * height / photo.shape[0])
    photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    room_x, room_y = photo.shape[1] - width, photo.shape[0] - height
    distinct = [np.ascontiguousarray(photo[int(room_y * n / 59):][:height, int(room_x * n / 59):][:, :width])
                for n in range(60)]
    path = distinct + distinct[-2:0:-1]  # there and back: the motion never jumps
    return [path[n % len(path)] for n in range(count)]


def timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def encode_opencv(path: Path, frames: list[np.ndarray]) -> float:
    def run() -> None:
        height, width = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
        for image in frames:
            writer.write(image)
        writer.release()

    return timed(run)


def encode_pyav(path: Path, frames: list[np.ndarray], codec: str, options: dict[str, str] | None = None) -> float:
    def run() -> None:
        height, width = frames[0].shape[:2]
        video = VideoEncoder(path, (width, height), FPS, [codec], None if options is None else {codec: options})
        for n, image in enumerate(frames):
            video.encode(image, n / FPS)
        video.close()

    return timed(run)


def decode_opencv(path: Path) -> tuple[float, list[np.ndarray]]:
    kept: list[np.ndarray] = []

    def run() -> None:
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        while True:
            ok, image = capture.read()
            if not ok:
                break
            if len(kept) < 5:
                kept.append(image)
        capture.release()

    seconds = timed(run)
    return seconds, kept


def decode_pyav(path: Path, convert: str) -> tuple[float, int, list[np.ndarray]]:
    import av

    kept: list[np.ndarray] = []
    count = 0

    def run() -> None:
        nonlocal count
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if convert == "opencv" and frame.format.name == "yuv420p":
                    image = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
                else:
                    image = frame.to_ndarray(format="bgr24")
                if len(kept) < 5:
                    kept.append(image)
                count += 1

    seconds = timed(run)
    return seconds, count, kept


def largest_difference(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    return max(int(np.abs(x.astype(np.int16) - y.astype(np.int16)).max()) for x, y in zip(a, b, strict=True))


def encode_table(sizes: list[str], count: int, folder: Path) -> tuple[str, dict[str, Path]]:
    codecs = ["libx264", "libvpx-vp9", "mjpeg"]
    if _codec_opens("h264_nvenc", SIZES[sizes[0]], FPS):
        codecs.insert(1, "h264_nvenc")
    rows = ["| size | writer | container, codec | frames/s | x OpenCV mp4v | Mbit/s at 30 fps |",
            "| --- | --- | --- | ---: | ---: | ---: |"]
    sources: dict[str, Path] = {}
    for name in sizes:
        frames = panned_frames(SIZES[name], count)
        path = folder / f"{name}_opencv.mp4"
        base = count / encode_opencv(path, frames)
        rows.append(f"| {name} | OpenCV (before) | .mp4, mp4v (MPEG-4 Part 2) | {base:.0f} | 1.00 | "
                    f"{_mbits(path, count)} |")
        sources[f"{name} mp4v"] = path
        for codec in codecs:
            suffix = {"libvpx-vp9": ".webm", "mjpeg": ".avi"}.get(codec, ".mp4")
            path = folder / f"{name}_{codec}{suffix}"
            fps = count / encode_pyav(path, frames, codec)
            options = ", ".join(f"{k} {v}" for k, v in ENCODER_OPTIONS[codec].items()) or "defaults"
            rows.append(f"| {name} | PyAV (ours) | {suffix}, {codec} ({options}) | {fps:.0f} | {fps / base:.2f} | "
                        f"{_mbits(path, count)} |")
            if codec == "libx264":
                sources[f"{name} H.264"] = path
        for preset in PRESETS_COMPARED:
            path = folder / f"{name}_x264_{preset}.mp4"
            options = {**ENCODER_OPTIONS["libx264"], "preset": preset}
            fps = count / encode_pyav(path, frames, "libx264", options)
            rows.append(f"| {name} | PyAV, other preset | .mp4, libx264 (crf 23, preset {preset}) | {fps:.0f} | "
                        f"{fps / base:.2f} | {_mbits(path, count)} |")
        del frames
    return "\n".join(rows), sources


def _mbits(path: Path, count: int) -> str:
    return f"{path.stat().st_size * 8 / (count / FPS) / 1e6:.1f}"


def decode_table(sources: dict[str, Path]) -> str:
    rows = ["| file | OpenCV frames/s | PyAV, swscale BGR frames/s | PyAV, OpenCV BGR frames/s | "
            "largest pixel difference from OpenCV (swscale, OpenCV BGR) |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for name, path in sources.items():
        seconds, reference = decode_opencv(path)
        count = decode_pyav(path, "opencv")[1]
        sws_seconds, _, sws = decode_pyav(path, "swscale")
        cv_seconds, _, converted = decode_pyav(path, "opencv")
        rows.append(f"| {name} | {count / seconds:.0f} | {count / sws_seconds:.0f} | {count / cv_seconds:.0f} | "
                    f"{largest_difference(reference, sws)}, {largest_difference(reference, converted)} |")
    return "\n".join(rows)


def _write_clip(path: Path, times: list[float], rotation: int | None = None) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for n, t in enumerate(times):
            image = np.zeros((48, 64, 3), np.uint8)
            image[:24, :16] = 255  # a white block at the top left: where it ends up tells the orientation
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def robustness_table(folder: Path) -> str:
    import av

    times = [0.0, 0.033, 0.1, 0.133, 0.3, 0.5, 0.533, 1.0]
    vfr, rotated = folder / "vfr.mp4", folder / "rotated.mp4"
    _write_clip(vfr, times)
    _write_clip(rotated, times[:2], rotation=90)
    capture = cv2.VideoCapture(str(vfr), cv2.CAP_FFMPEG)
    opencv_times = []
    while capture.read()[0]:
        opencv_times.append(capture.get(cv2.CAP_PROP_POS_MSEC) / 1000)
    capture.release()
    with av.open(str(vfr)) as container:
        pyav_times = [float(f.time) for f in container.decode(video=0)]
    capture = cv2.VideoCapture(str(rotated), cv2.CAP_FFMPEG)
    opencv_shape = capture.read()[1].shape[:2]
    capture.release()
    with av.open(str(rotated)) as container:
        frame = next(container.decode(video=0))
        pyav_shape, pyav_rotation = frame.to_ndarray(format="bgr24").shape[:2], frame.rotation

    def error(got: list[float]) -> str:
        return f"{1000 * max(abs(a - b) for a, b in zip(got, times, strict=True)):.1f} ms"

    return "\n".join([
        "| clip | OpenCV | PyAV |",
        "| --- | --- | --- |",
        f"| variable frame rate (8 frames, gaps of 33 to 467 ms): largest time stamp error | {error(opencv_times)} | "
        f"{error(pyav_times)} |",
        f"| phone clip stored 64x48 with a 90 degree rotation: frame given (height x width) | "
        f"{opencv_shape[0]}x{opencv_shape[1]} ({'turned upright' if opencv_shape == (64, 48) else 'not turned'}) | "
        f"{pyav_shape[0]}x{pyav_shape[1]} (not turned; frame.rotation = {pyav_rotation}: the reader must turn it) |",
    ])


def main(args: argparse.Namespace) -> str:
    import av

    with tempfile.TemporaryDirectory(prefix="bench-encode-") as tmp:
        folder = Path(tmp)
        encode, sources = encode_table(args.sizes, args.frames, folder)
        decode = decode_table(sources)
        robust = robustness_table(folder)
    body = (
        f"{args.frames} frames per size of a photo panned by a moving crop, each writer and reader alone in one "
        f"process (2 cores shared with other work: compare within a run). PyAV {av.__version__} (FFmpeg "
        f"{av.ffmpeg_version_info}), "
        f"OpenCV {cv2.__version__}. Encoding frames/s count converting, encoding and writing, the file's "
        "finalisation included; the labeled video is encoded on the sink's writer thread, beside the pipeline.\n\n"
        f"Encoding:\n\n{encode}\n\n"
        f"Decoding the files just written (OpenCV: `cv2.VideoCapture`, what `VideoFileSource` uses; PyAV with "
        f"`thread_type = \"AUTO\"`):\n\n{decode}\n\n"
        f"What each reader gives for two awkward files:\n\n{robust}\n"
    )
    return body


if __name__ == "__main__":
    arguments = get_args_parser().parse_args()
    text = main(arguments)
    print(text)
    if not arguments.no_write:
        command = "python -m bench.encode" + (f" --frames {arguments.frames}" if arguments.frames != 240 else "")
        write_section("encode", text, command, title="Video encoding and decoding (PyAV against OpenCV)")
