"""Keep native libraries' chatter off the user's terminal: stderr is for errors.

TensorFlow 2.21 logs oneDNN notes through absl before ``TF_CPP_MIN_LOG_LEVEL`` applies,
LiteRT announces its XNNPACK delegate on every load, and FFmpeg (inside OpenCV) reports a
stream's reconnects. All write to file descriptor 2 from C or C++, so the only way to move
them is to point fd 2 elsewhere: :func:`native_stderr_silenced` while a library starts, and
:func:`native_stderr_logged` for a long-running loop, which turns each line into a log record.
Python-level errors still surface: they are raised as exceptions, and ``sys.stderr`` keeps
pointing at the real stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator

VERBOSE_ENV = "EDGECNN_NATIVE_LOGS"  # set to 1 to see the native libraries' own messages
FORWARD_JOIN_TIMEOUT = 2.0  # seconds to wait for the last native lines when the block ends
native_log = logging.getLogger("runtime.native")
OPENCV_LOG_LEVELS = {"silent": 0, "error": 2}  # OpenCV's LOG_LEVEL_SILENT, LOG_LEVEL_ERROR


def opencv_log_level(level: str) -> None:
    """Set OpenCV's own logging. OpenCV 4.6 (Raspberry Pi OS Bookworm's) has only
    ``cv2.setLogLevel``; newer builds also have ``cv2.utils.logging``."""
    import cv2

    getattr(cv2.utils, "logging", cv2).setLogLevel(OPENCV_LOG_LEVELS[level])


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with _fd2_pointed_at(devnull):
            yield
    finally:
        os.close(devnull)


@contextlib.contextmanager
def native_stderr_logged(logger: logging.Logger = native_log,
                         level: int = logging.INFO) -> Iterator[None]:
    """Send what native code writes to fd 2 to ``logger``, one record a line, while the
    block runs (FFmpeg's "Stream ends prematurely", OpenCV's warnings).

    Python's ``sys.stderr`` is pointed at the real stderr meanwhile, so an error message
    printed by Python still reaches the terminal, and a root log handler that wrote to stderr
    keeps doing so instead of feeding its own lines back into the log.
    """
    read_end, write_end = os.pipe()
    forwarder = threading.Thread(target=_forward, args=(read_end, logger, level), daemon=True,
                                 name="edgecnn native stderr")
    forwarder.start()  # it reads until the pipe's last writer is closed
    try:
        with _fd2_pointed_at(write_end) as real_stderr:
            os.close(write_end)  # fd 2 is the pipe's only writer now, until it is restored
            write_end = -1
            if real_stderr is None:
                yield
            else:
                with _python_stderr_on(real_stderr):
                    yield
    finally:
        if write_end != -1:
            os.close(write_end)
        forwarder.join(FORWARD_JOIN_TIMEOUT)


@contextlib.contextmanager
def _fd2_pointed_at(target: int) -> Iterator[int | None]:
    """Point fd 2 at ``target`` for the block; yields a copy of the real stderr's fd, or
    None when fd 2 is left alone (``EDGECNN_NATIVE_LOGS=1``, or no real fd 2)."""
    if os.environ.get(VERBOSE_ENV) == "1":
        yield None
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (some embedded interpreters): nothing to move
        yield None
        return
    os.dup2(target, 2)
    try:
        yield saved
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _python_stderr_on(fd: int) -> Iterator[None]:
    """``sys.stderr`` and the root log handlers that used it write to ``fd`` meanwhile."""
    python_stderr = sys.stderr
    with open(fd, "w", buffering=1, errors="backslashreplace", closefd=False,
              encoding=getattr(python_stderr, "encoding", None)) as terminal:
        retargeted = _retarget_handlers(python_stderr, terminal)
        sys.stderr = terminal
        try:
            yield
        finally:
            sys.stderr = python_stderr
            for handler in retargeted:
                handler.setStream(python_stderr)


def _forward(read_end: int, logger: logging.Logger, level: int) -> None:
    with open(read_end, "rb") as pipe:
        for raw in pipe:
            line = raw.decode("utf-8", "backslashreplace").rstrip()
            if line:
                logger.log(level, "%s", line)


def _retarget_handlers(old: object, new: object) -> list[logging.StreamHandler]:
    handlers = [h for h in logging.getLogger().handlers
                if isinstance(h, logging.StreamHandler) and h.stream is old]
    for handler in handlers:
        handler.setStream(new)  # type: ignore[arg-type]
    return handlers
