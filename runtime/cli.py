"""What every ``python -m`` entry point shares: one-line errors and exit codes.

Bad input never shows a traceback: argparse mistakes and :class:`EdgeCNNError` become one
``<prog>: error: …`` line on stderr and exit code 2, and so does a missing optional package.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from runtime.errors import EdgeCNNError
from runtime.optional import missing_message, missing_package

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `yes | head`


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage dump), so scripts can grep them."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def run_cli(prog: str, main: Callable[[], int],
            failures: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``main``; user errors, a missing package and Ctrl-C become one line and an exit
    code. ``failures`` are the caller's own "the run broke, here is what to do" errors: one
    line and exit code 1."""
    try:
        return main()
    except EdgeCNNError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        package = missing_package(exc)
        if package is None:  # not an optional package: a bug, which deserves its traceback
            raise
        print(f"{prog}: error: {missing_message(package, f'by {prog}', exc)}", file=sys.stderr)
        return EXIT_USAGE
    except failures as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader left (`… | head`): stop quietly, as Unix tools do
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout: nothing left to flush into
        pass


class StdoutHandler(logging.StreamHandler):
    """Writes to ``sys.stdout`` as it is when each record comes, not as it was when logging
    was set up: a caller that calls a ``main`` in process (a notebook, a test) and then
    swaps or closes its stdout would otherwise leave a handler on a closed stream."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:  # StreamHandler.__init__ sets it; sys.stdout rules
        pass


def setup_logging(*packages: str, verbose: bool = False) -> None:
    """Progress goes to stdout; stderr is kept for errors, so a failure reads as one line.

    The runtime's own loggers and those of ``packages`` (the caller's, e.g. ``"train"``)
    log at INFO (DEBUG when ``verbose``); other libraries' (TensorFlow's) stay at WARNING.
    """
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[StdoutHandler()],
                        force=True)
    for package in ("runtime", *packages):
        logging.getLogger(package).setLevel(logging.DEBUG if verbose else logging.INFO)


def parse_csv(text: str, allowed: Sequence[str], option: str) -> list[str]:
    """Parse ``a,b`` into a list, rejecting names outside ``allowed`` with a clear message."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    bad = [item for item in items if item not in allowed]
    if bad or not items:
        raise EdgeCNNError(f"{option} {text!r}: choose from {', '.join(allowed)}")
    return items


def override_framing(classifier: Any, framing: str | None, announce: bool = True) -> None:
    """``--framing``: frame camera images this way for this run, and say so once."""
    if framing is None:
        return
    before = classifier.use_framing(framing)
    if announce and before != framing:
        print(f"framing: {framing} for this run (--framing); {classifier.path.name}'s spec says "
              f"{before}")
