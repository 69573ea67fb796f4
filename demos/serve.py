"""The demo in a browser, for devices without a display: ``--serve [HOST:]PORT``.

    /               a page with the live annotated stream and the current top-3
    /stream.mjpg    the annotated frames as MJPEG (multipart/x-mixed-replace)
    /predictions    the latest result as JSON

The standard library's threading HTTP server, one thread per request. The camera loop only
ever swaps in the newest JPEG and wakes the viewers; each viewer's thread sends at its own
pace and skips frames it was too slow for, so a slow or vanished viewer never stalls the
camera. Frames are JPEG-encoded only while someone is watching.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import cv2
import numpy as np

from runtime.camera import Frame, FrameSource
from runtime.errors import EdgeCNNError

log = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"  # other machines see the camera only when a host is given
MAX_VIEWERS = 8             # streams at once: each holds a thread and a socket
JPEG_QUALITY = 80
WAKE_SECONDS = 1.0          # a waiting viewer re-checks for shutdown this often
SEND_TIMEOUT = 10.0         # a viewer that takes no data for this long is dropped
BOUNDARY = "edgecnnframe"
FILE_FPS = 15.0             # folders and single images play at this rate when served


class ServeError(EdgeCNNError):
    """--serve names an address that cannot be parsed or listened on."""


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT`` → (host, port); host 127.0.0.1 if none."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]") if sep else DEFAULT_HOST
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535 or (sep and not host):
        raise ServeError(f"--serve {text!r}: expected [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080")
    return host, number


class LiveView:
    """The latest annotated frame and result, shared with any number of HTTP viewers."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._changed = threading.Condition()
        self._jpeg: bytes | None = None
        self._record: dict[str, Any] = {"frame": None}
        self._sequence = 0
        self._viewers = 0
        self._stopping = False
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    @property
    def watched(self) -> bool:
        """Is anyone reading the stream? Only then are frames drawn and encoded for it."""
        return self._viewers > 0

    def publish(self, annotated: np.ndarray | None, record: dict[str, Any]) -> None:
        """The camera loop's one call per frame: never blocks on a viewer."""
        jpeg = None
        if annotated is not None and self.watched:
            ok, encoded = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY,
                                                           JPEG_QUALITY])
            jpeg = encoded.tobytes() if ok else None
        with self._changed:
            self._record = record
            if jpeg is not None:
                self._jpeg = jpeg
                self._sequence += 1
            self._changed.notify_all()

    def frames(self, source: FrameSource, name: str) -> Iterator[Frame]:
        """``source``'s frames; files (``name`` is what the user typed) at their own rate,
        so a viewer sees a clip play rather than its last frame. Cameras and streams set
        their own pace."""
        if source.kind not in ("video", "folder", "image"):
            yield from source
            return
        period = 1.0 / (_video_fps(name) if source.kind == "video" else FILE_FPS)
        start = time.monotonic()
        for count, frame in enumerate(source):
            delay = start + count * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield frame

    def start(self, host: str, port: int) -> str:
        """Listen in a background thread; returns the page's URL."""
        handler = type("Handler", (_Handler,), {"view": self})
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        try:
            self._server = server_class((host, port), handler)
        except OSError as exc:
            raise ServeError(f"--serve {host}:{port}: cannot listen there "
                             f"({exc.strerror or exc})") from None
        self._server.daemon_threads = True  # a stuck viewer never keeps the process alive
        bound_port = self._server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound_port}/"
        threading.Thread(target=self._server.serve_forever, name="edgecnn-serve",
                         daemon=True).start()
        return self.url

    def stop(self) -> None:
        """Stop listening and release every waiting viewer; idempotent."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def record(self) -> dict[str, Any]:
        with self._changed:
            return self._record

    @property
    def stopping(self) -> bool:
        return self._stopping

    @contextlib.contextmanager
    def viewer(self) -> Iterator[bool]:
        """Count one stream viewer while the block runs; False when there are too many."""
        with self._changed:
            admitted = self._viewers < MAX_VIEWERS and not self._stopping
            self._viewers += admitted
        try:
            yield admitted
        finally:
            with self._changed:
                self._viewers -= admitted

    def next_jpeg(self, after: int) -> tuple[bytes | None, int]:
        """The newest JPEG once it is newer than ``after``; (None, after) on shutdown or
        after a quiet second, so the caller can check its socket and the shutdown flag."""
        with self._changed:
            self._changed.wait_for(lambda: self._stopping or self._sequence > after,
                                   timeout=WAKE_SECONDS)
            if self._stopping or self._sequence <= after:
                return None, after
            return self._jpeg, self._sequence


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    view: LiveView
    timeout = SEND_TIMEOUT
    server_version = "edgecnn"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            page = resources.files("demos").joinpath("live.html").read_text(encoding="utf-8")
            self._send(page.replace("{{title}}", html.escape(self.view.title)).encode(),
                       "text/html; charset=utf-8")
        elif path == "/predictions":
            self._send(json.dumps(self.view.record()).encode(), "application/json")
        elif path == "/stream.mjpg":
            self._stream()
        else:
            self.send_error(HTTPStatus.NOT_FOUND, "try /, /stream.mjpg or /predictions")

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        with self.view.viewer() as admitted:
            if not admitted:
                self.send_error(HTTPStatus.SERVICE_UNAVAILABLE,
                                f"{MAX_VIEWERS} viewers already watch this stream")
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.close_connection = True
            sent = 0
            try:
                while not self.view.stopping:
                    jpeg, sequence = self.view.next_jpeg(sent)
                    if jpeg is None:
                        continue
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                     f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg
                                     + b"\r\n")
                    self.wfile.flush()
                    sent = sequence
            except OSError:  # the viewer left or stalled: only this thread ends
                log.debug("viewer %s left", self.address_string())

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class NoView:
    """What the demo loop talks to without --serve: nothing watches, nothing is paced."""

    watched = False

    def publish(self, annotated: np.ndarray | None, record: dict[str, Any]) -> None:
        pass

    def frames(self, source: FrameSource, name: str) -> Iterable[Frame]:
        return source


@contextlib.contextmanager
def serving(address: str | None, title: str) -> Iterator[LiveView | NoView]:
    """A started :class:`LiveView` for ``--serve ADDRESS`` (a :class:`NoView` without it),
    stopped on every way out of the block, Ctrl-C included."""
    if address is None:
        yield NoView()
        return
    view = LiveView(title)
    url = view.start(*parse_address(address))
    print(f"serving {url} (stream {url}stream.mjpg, JSON {url}predictions); Ctrl-C stops",
          flush=True)
    try:
        yield view
    finally:
        view.stop()


def _video_fps(path: str) -> float:
    """The frame rate a video file was recorded at, or FILE_FPS if it does not say."""
    capture = cv2.VideoCapture(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return fps if 1.0 <= fps <= 240.0 else FILE_FPS
