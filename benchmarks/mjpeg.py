"""A loopback HTTP MJPEG stream: the stand-in for an IP camera in soak runs and tests.

It serves the same JPEG frames over and over as ``multipart/x-mixed-replace``, the way
cheap IP cameras and ``mjpg-streamer`` do, so OpenCV reads it through its real FFmpeg
backend. ``frames_per_connection`` makes the camera flaky: after that many frames it sends
half a frame and hangs up, as a camera on a weak link does, and FFmpeg complains.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import threading
import time
from collections.abc import Sequence
from types import TracebackType

BOUNDARY = b"edgecnnframe"
PATH = "/stream.mjpg"


class MjpegServer:
    """``with MjpegServer(jpegs) as server:`` then open ``server.url``; stops on exit."""

    def __init__(self, jpegs: Sequence[bytes], fps: float = 0.0,
                 frames_per_connection: int | None = None) -> None:
        if not jpegs:
            raise ValueError("an MJPEG stream needs at least one frame")
        self.jpegs, self.fps, self.frames_per_connection = list(jpegs), fps, frames_per_connection
        self.connections = 0  # how many times a client (re)connected
        self._stop = threading.Event()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="edgecnn mjpeg server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{PATH}"

    def __enter__(self) -> MjpegServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()  # ends the streams still being served
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # not the soak's business
                pass

            def do_GET(self) -> None:
                if self.path != PATH:
                    self.send_error(404)
                    return
                server.connections += 1
                self.send_response(200)
                self.send_header("Content-Type",
                                 f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client left
                    server._stream(self.wfile)

        return Handler

    def _stream(self, out: object) -> None:
        interval = 1.0 / self.fps if self.fps > 0 else 0.0
        due = time.monotonic()
        for sent, jpeg in enumerate(itertools.cycle(self.jpegs)):
            if self._stop.is_set():
                return
            part = (b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                    + str(len(jpeg)).encode() + b"\r\n\r\n")
            if self.frames_per_connection is not None and sent >= self.frames_per_connection:
                out.write(part + jpeg[: len(jpeg) // 2])  # type: ignore[attr-defined]
                return  # hang up mid-frame
            out.write(part + jpeg + b"\r\n")  # type: ignore[attr-defined]
            if interval:
                due += interval
                time.sleep(max(0.0, due - time.monotonic()))
