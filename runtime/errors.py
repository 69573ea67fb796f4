"""Named errors for bad input. Each message names the bad value and how to fix it.

They subclass ValueError so callers can catch them broadly; every ``__main__`` turns an
``EdgeCNNError`` into one line on stderr and exit code 2.
"""

import re


class EdgeCNNError(ValueError):
    """Base class: something the user gave us is wrong and can be fixed by the user."""


class ModelFileError(EdgeCNNError):
    """A model file is missing, truncated, corrupt or of an unknown kind."""


class SpecError(EdgeCNNError):
    """A model spec (embedded metadata, sidecar or spec.json) is missing or invalid."""


class ImageError(EdgeCNNError):
    """An image cannot be decoded or has an unexpected shape or dtype."""


class SourceError(EdgeCNNError):
    """A frame source (camera, video, folder, stream) cannot be opened or has failed."""


class BundleError(EdgeCNNError):
    """A bundle folder is missing, incomplete, or would be overwritten without consent."""


class OutputError(EdgeCNNError):
    """An output file cannot be written where the user asked (a folder, a folder that takes no
    files), or would destroy an input or an existing file without ``--overwrite``."""


class MissingPackageError(EdgeCNNError):
    """An optional package (an engine, the export toolchain, matplotlib…) is not installed;
    the message names it and the pip command. Raised by :func:`runtime.optional.require`."""



class SelfCheckFailed(RuntimeError):
    """A model file does not give, on this machine, the answers it gave at export
    (runtime.selfcheck). Not bad input: entry points report it as one line, exit code 1."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message: engines often append pages of context.

    A line longer than ``limit`` keeps its whole sentences that fit (at least the first one,
    so nothing stops mid-sentence); only a first sentence past twice the limit is cut, at a
    word, and marked with "…".
    """
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    if len(line) <= limit:
        return line
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s)", line)]
    fitting = [end for end in ends if end <= limit] or ends[:1]
    if fitting and fitting[-1] <= 2 * limit:
        return line[:fitting[-1]]
    return line[:line.rfind(" ", 0, limit) if " " in line[:limit] else limit].rstrip() + " …"
