"""Keep native libraries' start-up chatter off the user's terminal.

TensorFlow 2.21 logs oneDNN notes through absl before ``TF_CPP_MIN_LOG_LEVEL`` applies, and
LiteRT announces its XNNPACK delegate on every load. Both write to file descriptor 2 from
C++, so the only way to hide them is to point fd 2 elsewhere while they start. Python-level
errors still surface: they are raised as exceptions after stderr is restored.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

VERBOSE_ENV = "EDGECNN_NATIVE_LOGS"  # set to 1 to see the native libraries' own messages


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    if os.environ.get(VERBOSE_ENV) == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (some embedded interpreters): nothing to hide
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)

