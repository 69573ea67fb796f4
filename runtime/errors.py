"""Named errors for bad input. Each message names the bad value and how to fix it.

They subclass ValueError so callers can catch them broadly; every ``__main__`` turns an
``EdgeCNNError`` into one line on stderr and exit code 2.
"""


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


class MissingPackageError(EdgeCNNError):
    """An optional package (an engine, the export toolchain, matplotlib…) is not installed;
    the message names it and the pip command. Raised by :func:`runtime.optional.require`."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message: engines often append pages of context."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
