"""The training side's named errors (runtime's EdgeCNNError covers the rest)."""

from runtime.errors import EdgeCNNError


class DataError(EdgeCNNError):
    """The requested dataset cannot be found or is unusable."""


class RunFailed(RuntimeError):
    """A run broke for a reason outside the user's input (a lost worker, a diverged loss).
    The message says what to do; ``python -m train`` prints it as one line, exit code 1."""
