"""app.sinks.encoder: H.264 MP4 with its index first, VP9 WebM, H.264 MKV, Motion-JPEG AVI; time stamps of
variable-frame-rate sources kept; NVENC tried first on a GPU and libx264 used when it does not open."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import app.sinks.encoder as encoder
from app.sinks.encoder import VideoEncoder, codecs_for, cuda_in_use, even_size

av = pytest.importorskip("av")

SIZE = (160, 120)


def _frames(count: int, size=SIZE) -> list[np.ndarray]:
    width, height = size
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    return [np.roll(np.ascontiguousarray(base[:height, :width]), 2 * n, axis=1) for n in range(count)]


def _encode(path: Path, times: list[float], fps: float = 10.0, size=SIZE, codecs=None) -> VideoEncoder:
    video = VideoEncoder(path, size, fps, codecs or codecs_for(path))
    for image, t in zip(_frames(len(times), size), times):
        video.encode(image, t)
    video.close()
    return video


def _decoded(path: Path) -> tuple[str, str, tuple[int, int], list[float]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(frame.time) for frame in container.decode(stream)]
        return stream.codec_context.name, stream.codec_context.pix_fmt, (stream.width, stream.height), times


def _top_level_boxes(path: Path) -> list[str]:
    boxes, data, at = [], path.read_bytes(), 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        boxes.append(kind.decode())
        at += size if size > 1 else len(data)
    return boxes


@pytest.mark.parametrize("name, codec, pixels", [
    ("out.mp4", "h264", "yuv420p"), ("out.mov", "h264", "yuv420p"), ("out.mkv", "h264", "yuv420p"),
    ("out.webm", "vp9", "yuv420p"), ("out.avi", "mjpeg", "yuvj420p"),
])
def test_each_container_gets_its_codec_and_every_frame(tmp_path, name, codec, pixels):
    times = [n / 10 for n in range(12)]
    _encode(tmp_path / name, times)
    got_codec, got_pixels, size, decoded = _decoded(tmp_path / name)
    assert (got_codec, got_pixels, size) == (codec, pixels, SIZE)
    np.testing.assert_allclose(decoded, times, atol=1e-3)


@pytest.mark.parametrize("name", ["out.mp4", "out.mov"])
def test_mp4_has_its_index_before_the_data(tmp_path, name):
    _encode(tmp_path / name, [n / 10 for n in range(5)])
    boxes = _top_level_boxes(tmp_path / name)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # +faststart: a browser plays it while it loads


@pytest.mark.parametrize("name", ["out.mp4", "out.webm", "out.mkv"])
def test_variable_frame_rate_time_stamps_are_kept(tmp_path, name):
    times = [0.0, 0.033, 0.1, 0.133, 0.3, 0.5, 0.533, 1.0]
    _encode(tmp_path / name, times, fps=30.0)
    np.testing.assert_allclose(_decoded(tmp_path / name)[3], times, atol=1e-3)


def test_avi_counts_frames_at_the_source_rate(tmp_path):
    _encode(tmp_path / "out.avi", [0.0, 0.1, 0.2, 0.5], fps=10.0)
    np.testing.assert_allclose(_decoded(tmp_path / "out.avi")[3], [0.0, 0.1, 0.2, 0.5], atol=1e-3)


def test_time_stamps_start_at_zero_and_never_go_back(tmp_path):
    _encode(tmp_path / "out.mp4", [5.0, 5.1, float("nan"), 5.1, 5.4], fps=10.0)
    np.testing.assert_allclose(_decoded(tmp_path / "out.mp4")[3], [0.0, 0.1, 0.2, 0.3, 0.4], atol=1e-3)


def test_odd_sizes_lose_their_last_column_and_row(tmp_path):
    assert even_size(321, 193) == (320, 192)
    _encode(tmp_path / "out.mp4", [0.0, 0.1], size=(161, 121))
    assert _decoded(tmp_path / "out.mp4")[2] == (160, 120)


@pytest.mark.parametrize("name", ["out.mp4", "out.webm", "out.avi"])
def test_colours_survive_encoding(tmp_path, name):
    colours = [(0, 0, 255), (0, 200, 0), (255, 0, 0), (40, 120, 200)]
    video = VideoEncoder(tmp_path / name, SIZE, 10.0, codecs_for(tmp_path / name))
    for n, colour in enumerate(colours):
        video.encode(np.full((SIZE[1], SIZE[0], 3), colour, np.uint8), n / 10)
    video.close()
    with av.open(str(tmp_path / name)) as container:
        decoded = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    for image, colour in zip(decoded, colours, strict=True):
        assert np.abs(image[40:80, 40:120].reshape(-1, 3).mean(0) - colour).max() < 8


def test_hardware_encoders_come_first_and_libx264_is_used_when_nvenc_does_not_open(tmp_path):
    assert codecs_for("a.mp4", hardware=True) == ("h264_nvenc", "libx264")
    assert codecs_for("a.webm", hardware=True) == ("libvpx-vp9",) and codecs_for("a.MP4") == ("libx264",)
    video = _encode(tmp_path / "out.mp4", [0.0, 0.1, 0.2], codecs=codecs_for("out.mp4", hardware=True))
    nvenc = encoder._codec_opens("h264_nvenc", SIZE, 10.0)
    assert video.codec == ("h264_nvenc" if nvenc else "libx264")
    assert _decoded(tmp_path / "out.mp4")[0] == "h264"


def test_no_encoder_that_opens_is_an_error(tmp_path):
    with pytest.raises(encoder.EncoderError, match="none of the encoders nope, zilch opens for 160x120 .mp4 video"):
        VideoEncoder(tmp_path / "out.mp4", SIZE, 10.0, ["nope", "zilch"])
    assert list(tmp_path.iterdir()) == []


def test_cuda_is_in_use_only_once_torch_started_it():
    torch = pytest.importorskip("torch")
    assert cuda_in_use() == torch.cuda.is_initialized()


def test_the_quality_and_speed_settings_reach_the_encoder(tmp_path):
    _encode(tmp_path / "out.mp4", [n / 10 for n in range(3)])
    settings = (tmp_path / "out.mp4").read_bytes()  # x264 writes its settings into the stream
    assert b"crf=23.0" in settings and b"subme=1" in settings  # CRF 23, preset superfast
    video = VideoEncoder(tmp_path / "fast.mp4", SIZE, 10.0, ["libx264"],
                         {"libx264": {"crf": "30", "preset": "ultrafast"}})
    video.encode(_frames(1)[0], 0.0)
    video.close()
    assert b"crf=30.0" in (tmp_path / "fast.mp4").read_bytes()
