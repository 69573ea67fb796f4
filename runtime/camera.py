"""Frame sources — webcam, video file, folder of images, stream URL — that always release.

``open_source`` turns what a user typed to name a source into a :class:`FrameSource`::

    with open_source("0") as source:          # or a video path, a folder, rtsp://..., http://...
        for frame in source:                  # itertools.islice(source, n) to stop early
            classify(frame.image)

Live sources (webcams, URLs) are read by a capture thread that keeps only the newest frame,
so a slow model always sees the present instead of a growing backlog; the frames it skips
are counted in ``source.stats.dropped``. A live source that fails is reopened with back-off
a few times, then iteration ends with a :class:`SourceError` saying which source failed.
Files (videos, folders) are read in order and nothing is dropped; a folder's images are
listed as ``runtime predict`` lists them (:mod:`runtime.walk`: subfolders too, hidden names
left out).

The capture is released on every path out: end of the loop, ``close()``, leaving the
``with`` block (also on exceptions), an error, or the source being garbage-collected.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from runtime.errors import ImageError, SourceError
from runtime.preprocess import IMAGE_SUFFIXES, convert_color, read_image
from runtime.walk import images_under

log = logging.getLogger(__name__)

URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
REOPEN_ATTEMPTS = 3       # reopen a failed live source this many times before giving up
REOPEN_DELAY = 0.5        # seconds before the first reopen; doubles each time: 0.5, 1, 2
STREAM_TIMEOUT_MS = 5000  # FFmpeg open/read timeout for URLs (its own default is 30 s)
JOIN_TIMEOUT = 5.0        # seconds close() waits for a capture thread stuck in read()
PICK_ANOTHER = "pick another source: a camera index, video file, image folder or stream URL"


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` we use; tests pass fakes with these three methods."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def release(self) -> None: ...


CaptureFactory = Callable[[int | str], Capture]


def default_capture(target: int | str) -> Capture:
    """``cv2.VideoCapture``, with short timeouts for URLs so a dead stream fails fast."""
    if isinstance(target, str) and _is_url(target):
        return cv2.VideoCapture(target, cv2.CAP_ANY, [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
        ])
    return cv2.VideoCapture(target)


@dataclass(frozen=True, eq=False)  # eq would compare arrays
class Frame:
    """One delivered frame, with the timings the demo shows per stage."""

    index: int          # 0, 1, 2, ... over delivered frames; dropped frames get no index
    image: np.ndarray   # (H, W, 3) BGR uint8
    timestamp: float    # time.monotonic() when the frame was captured
    wait_ms: float      # how long the consumer waited for it: the "capture" stage time


@dataclass
class SourceStats:
    """Counters a benchmark or demo reports; live sources keep captured = delivered + dropped."""

    captured: int = 0   # frames read from the device, stream or file
    delivered: int = 0  # frames handed to the consumer
    dropped: int = 0    # live only: replaced by a newer frame before the consumer took them
    skipped: int = 0    # folders only: unreadable images
    reopens: int = 0    # live only: reopen attempts after a failure


class FrameSource:
    """An iterator of :class:`Frame` and a context manager that always releases the capture.

    It is its own iterator, so ``islice(source, 10)`` followed by another loop carries on
    where the first stopped. Iterating a closed source ends at once.
    """

    def __init__(self, name: str, kind: str, reader: _Reader) -> None:
        self.name = name  # for messages: "camera 0", "video clip.avi", "stream rtsp://host/x"
        self.kind = kind  # "webcam", "url", "video", "folder" or "image"
        self.stats = reader.stats
        self._reader = reader
        # Runs reader.close once: on close(), or when the source is garbage-collected unclosed.
        self._finalizer = weakref.finalize(self, reader.close)
        self._close_lock = threading.Lock()  # a second close() waits until the first is done

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Stop the capture thread and release the capture; safe to call more than once,
        from any thread, and when it returns the capture is released."""
        with self._close_lock:
            self._finalizer()

    def __iter__(self) -> FrameSource:
        return self

    def __next__(self) -> Frame:
        if self.closed:
            raise StopIteration
        start = time.monotonic()
        try:
            image, timestamp = self._reader.read()
        except BaseException:  # end of input, a failed source, Ctrl-C: release now
            self.close()
            raise
        frame = Frame(self.stats.delivered, image, timestamp, (time.monotonic() - start) * 1e3)
        self.stats.delivered += 1
        return frame

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<FrameSource {self.name} ({self.kind}, {state}) {self.stats}>"


def open_source(source: str | int | os.PathLike[str], *,
                capture_factory: CaptureFactory = default_capture,
                reopen_attempts: int = REOPEN_ATTEMPTS,
                reopen_delay: float = REOPEN_DELAY) -> FrameSource:
    """Open a webcam index (``0`` or ``"0"``), video file, image folder, image or stream URL.

    Files are checked here, so a bad path fails before any work starts. Live sources start
    their capture thread here (the camera warms up while the model loads); if they cannot
    be opened, the error comes from iterating, after ``reopen_attempts`` reopens waiting
    ``reopen_delay`` seconds, doubled each time.
    """
    if isinstance(source, bool):  # bool is an int: don't open camera 1 for True
        raise SourceError(f"source {source!r} is not a source; {PICK_ANOTHER}")
    if isinstance(source, int) or (isinstance(source, str) and _is_index(source)):
        index = int(source)
        if index < 0:
            raise SourceError(f"camera index {index} is negative; use 0 for the first camera "
                              f"or {PICK_ANOTHER}")
        name = f"camera {index}"
        return FrameSource(name, "webcam", _LiveReader(
            name, index, capture_factory, reopen_attempts, reopen_delay))
    text = os.fspath(source).strip()
    if _is_url(text):
        name = f"stream {_redact(text)}"
        return FrameSource(name, "url", _LiveReader(
            name, text, capture_factory, reopen_attempts, reopen_delay))
    if "://" in text:
        raise SourceError(f"unsupported stream URL {_redact(text)}: use one of "
                          f"{', '.join(URL_SCHEMES)}, or {PICK_ANOTHER}")
    path = Path(text).expanduser()
    if path.is_dir():
        images = [Path(p) for p in images_under(path) if os.path.isfile(p)]
        if not images:
            raise SourceError(f"folder {path} has no images ({', '.join(IMAGE_SUFFIXES)}) "
                              "in it or its subfolders; "
                              f"add some or {PICK_ANOTHER}")
        name = f"folder {path}"
        return FrameSource(name, "folder", _FolderReader(name, images))
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        name = f"image {path}"
        return FrameSource(name, "image", _FolderReader(name, [path]))
    if path.is_file():
        capture = capture_factory(str(path))
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open video {path}: OpenCV cannot decode it; convert it "
                              f"to .mp4 or .avi, or {PICK_ANOTHER}")
        return FrameSource(f"video {path}", "video", _VideoReader(capture))
    raise SourceError(f"source {text!r} is not a camera index, an existing file or folder, "
                      f"or a URL; {PICK_ANOTHER}")


class _Reader(Protocol):
    stats: SourceStats

    def read(self) -> tuple[np.ndarray, float]:
        """Next (BGR image, capture time); StopIteration at the end, SourceError on failure."""
        ...

    def close(self) -> None: ...


class _VideoReader:
    """A video file, frame by frame, in order."""

    def __init__(self, capture: Capture) -> None:
        self.stats = SourceStats()
        self._capture = capture
        self._lock = threading.Lock()  # close() from another thread must not race read()

    def read(self) -> tuple[np.ndarray, float]:
        with self._lock:
            ok, image = self._capture.read()
        if not ok or image is None:
            raise StopIteration
        self.stats.captured += 1
        return image, time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._capture.release()


class _FolderReader:
    """Images in name order; an unreadable one is skipped and counted, not fatal."""

    def __init__(self, name: str, paths: Iterable[Path]) -> None:
        self.stats = SourceStats()
        self._name = name
        self._paths = iter(paths)

    def read(self) -> tuple[np.ndarray, float]:
        for path in self._paths:
            try:
                image = read_image(path)
            except ImageError as exc:
                self.stats.skipped += 1
                log.warning("skipping %s", exc)
                continue
            self.stats.captured += 1
            return _to_bgr(image), time.monotonic()
        if self.stats.captured == 0:
            raise SourceError(f"{self._name} has no readable images ({self.stats.skipped} "
                              f"could not be decoded); {PICK_ANOTHER}")
        raise StopIteration

    def close(self) -> None:
        self._paths = iter(())


class _LiveReader:
    """A capture thread for webcams and streams that keeps only the newest frame.

    The thread owns the capture: it opens, reads, reopens and releases it, so a release
    never races a read blocked inside OpenCV.
    """

    def __init__(self, name: str, target: int | str, factory: CaptureFactory,
                 attempts: int, delay: float) -> None:
        self.stats = SourceStats()
        self._name, self._target, self._factory = name, target, factory
        self._attempts, self._delay = attempts, delay
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, float] | None = None  # one slot, never a queue
        self._error: SourceError | None = None
        self._done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"edgecnn capture: {name}",
                                        daemon=True)
        self._thread.start()

    def read(self) -> tuple[np.ndarray, float]:
        with self._cond:
            while self._latest is None:
                if self._error is not None:
                    raise self._error
                if self._done or self._stop.is_set():
                    raise StopIteration
                self._cond.wait()
            latest, self._latest = self._latest, None
            return latest

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(JOIN_TIMEOUT)
            if self._thread.is_alive():
                log.warning("%s: capture thread is stuck in read(); it releases the capture "
                            "when OpenCV returns", self._name)
        with self._cond:
            if self._latest is not None:  # captured, never delivered: count it so the books add up
                self._latest = None
                self.stats.dropped += 1

    def _run(self) -> None:
        capture: Capture | None = None
        failures = 0  # reopen attempts since the last good frame; a good frame resets it
        try:
            while not self._stop.is_set():
                if failures:
                    self.stats.reopens += 1
                capture, image, reason = self._grab(capture)
                if image is not None:
                    failures = 0
                    self._publish(image)
                    continue
                if failures >= self._attempts:
                    self._fail(f"no frames after {failures} reopen attempts ({reason})")
                    return
                failures += 1
                wait = self._delay * 2 ** (failures - 1)
                log.warning("%s: %s; reopening in %.1f s (attempt %d of %d)",
                            self._name, reason, wait, failures, self._attempts)
                self._stop.wait(wait)
        except Exception as exc:  # a bug or odd backend: end the consumer's loop, don't hang it
            log.exception("%s: capture thread crashed", self._name)
            self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            if capture is not None:
                capture.release()
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _grab(self, capture: Capture | None) -> tuple[Capture | None, np.ndarray | None, str]:
        """Open if needed and read one frame; on failure the capture comes back released."""
        reason = "it stopped sending frames"
        try:
            if capture is None:
                capture = self._factory(self._target)
                if not capture.isOpened():
                    capture.release()
                    return None, None, "cannot open it"
                log.info("opened %s", self._name)
            ok, image = capture.read()
        except Exception as exc:  # e.g. cv2.error from a flaky driver: one more failure to retry
            ok, image, reason = False, None, f"{type(exc).__name__}: {exc}"
        if ok and image is not None and image.size:
            return capture, image, ""
        if capture is not None:
            capture.release()
        return None, None, reason

    def _publish(self, image: np.ndarray) -> None:
        now = time.monotonic()
        with self._cond:
            self.stats.captured += 1
            if self._latest is not None:
                self.stats.dropped += 1
            self._latest = (image, now)
            self._cond.notify_all()

    def _fail(self, why: str) -> None:
        with self._cond:  # not logged: the consumer gets it as an exception, once
            self._error = SourceError(f"{self._name} failed: {why}; {PICK_ANOTHER}")


def _to_bgr(image: np.ndarray) -> np.ndarray:
    """Gray or BGRA (H, W, C) → BGR, compositing alpha the same way preprocessing does."""
    if image.shape[2] == 3:
        return image
    return cv2.cvtColor(convert_color(image, "rgb"), cv2.COLOR_RGB2BGR)


def _is_index(text: str) -> bool:
    """A camera index as typed: "0", or "-1" meant as one (unless a file has that name)."""
    text = text.strip()
    if text.isdecimal():
        return True
    return text.startswith("-") and text[1:].isdecimal() and not os.path.exists(text)


def _is_url(text: str) -> bool:
    return text.lower().startswith(URL_SCHEMES)


def _redact(url: str) -> str:
    """Hide ``user:password@`` so stream credentials never reach logs or error messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
