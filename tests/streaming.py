"""A real network video stream for tests: an HTTP MJPEG server on 127.0.0.1.

The server behaves like an IP camera: frames are produced on a wall clock at
``fps`` whether or not anybody is watching, and each client receives the newest
frame at each tick as one part of a ``multipart/x-mixed-replace`` response.
Every frame carries its number in a strip of black and white blocks along its
top edge (:func:`frame_number` reads it back), so a test can tell exactly which
frames reached the consumer and which were lost.

:meth:`MJPEGServer.cut` drops every open connection and answers new ones with
``503`` until :meth:`MJPEGServer.resume`; frames produced meanwhile are lost, as
they would be from a camera whose network went down. The stream ends by itself
after ``max_frames`` frames.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

BITS = 16
STRIP_HEIGHT = 16
BOUNDARY = "animalposeframe"


def stamp_frame_number(image: np.ndarray, number: int) -> np.ndarray:
    """Return a copy of ``image`` with ``number`` (0 <= number < 2**16) drawn as a bit strip on top."""
    if not 0 <= number < 2**BITS:
        raise ValueError(f"number must be in [0, {2**BITS}), got {number}")
    stamped = image.copy()
    width = stamped.shape[1]
    for bit in range(BITS):
        x1, x2 = bit * width // BITS, (bit + 1) * width // BITS
        stamped[:STRIP_HEIGHT, x1:x2] = 255 if (number >> bit) & 1 else 0
    return stamped


def frame_number(image: np.ndarray) -> int:
    """Read back the number drawn by :func:`stamp_frame_number` (robust to JPEG compression)."""
    width = image.shape[1]
    gray = image[:STRIP_HEIGHT].mean(axis=2) if image.ndim == 3 else image[:STRIP_HEIGHT]
    number = 0
    for bit in range(BITS):
        x1, x2 = bit * width // BITS, (bit + 1) * width // BITS
        centre = gray[4:STRIP_HEIGHT - 4, x1 + 2:x2 - 2]
        if centre.mean() > 127:
            number |= 1 << bit
    return number


def panning_frames(image_path: str | Path, size: tuple[int, int] = (160, 120), count: int = 32) -> list[np.ndarray]:
    """``count`` crops of a real image, panning left to right, resized to ``size`` (width, height)."""
    image = cv2.imread(str(image_path))
    if image is None:
        raise FileNotFoundError(image_path)
    height, width = image.shape[:2]
    crop_w = min(width, int(height * size[0] / size[1]))
    xs = np.linspace(0, width - crop_w, count).astype(int)
    return [cv2.resize(image[:, x:x + crop_w], size, interpolation=cv2.INTER_AREA) for x in xs]


class MJPEGServer:
    """HTTP MJPEG camera on ``127.0.0.1`` serving numbered frames at ``fps``.

    Args:
        backgrounds: images cycled through as the picture (BGR uint8, all one size).
        fps: frames produced per second.
        max_frames: the stream ends after this many frames (the clock keeps the server bounded).
        jpeg_quality: JPEG quality of each part.

    Use as a context manager; ``url`` is the stream address.
    """

    def __init__(self, backgrounds: list[np.ndarray], fps: float = 20.0, max_frames: int = 2000,
                 jpeg_quality: int = 85) -> None:
        if not backgrounds:
            raise ValueError("backgrounds must hold at least one image")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = fps
        self.max_frames = max_frames
        self._backgrounds = backgrounds
        self._quality = jpeg_quality
        self._cut = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._connections = 0
        self._frames_sent = 0
        self._start = time.monotonic()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="mjpeg-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/stream.mjpg"

    @property
    def connections(self) -> int:
        """Number of stream requests served with ``200``."""
        with self._lock:
            return self._connections

    @property
    def frames_sent(self) -> int:
        with self._lock:
            return self._frames_sent

    def current_frame(self) -> int:
        """Number of the frame the camera is producing now."""
        return int((time.monotonic() - self._start) * self.fps)

    def cut(self) -> None:
        """Drop every connection now and refuse new ones (``503``) until :meth:`resume`."""
        self._cut.set()

    def resume(self) -> None:
        self._cut.clear()

    def encode(self, number: int) -> bytes:
        background = self._backgrounds[number % len(self._backgrounds)]
        ok, data = cv2.imencode(".jpg", stamp_frame_number(background, number),
                                [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return data.tobytes()

    def start(self) -> "MJPEGServer":
        self._start = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=2)

    def __enter__(self) -> "MJPEGServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _stream_to(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self._connections += 1
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        last = -1
        while not (self._cut.is_set() or self._stopped.is_set()):
            number = self.current_frame()
            if number >= self.max_frames:
                return
            if number == last:
                time.sleep(min(0.005, 0.25 / self.fps))
                continue
            data = self.encode(number)
            handler.wfile.write(
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                + data + b"\r\n"
            )
            handler.wfile.flush()
            last = number
            with self._lock:
                self._frames_sent += 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if server._cut.is_set() or server._stopped.is_set():
                    self.send_error(503, "camera offline")
                    return
                try:
                    server._stream_to(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                logger.debug("mjpeg server: " + format, *args)

        return Handler
