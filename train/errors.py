"""The training side's named error (runtime's EdgeCNNError covers the rest)."""

from runtime.errors import EdgeCNNError


class DataError(EdgeCNNError):
    """The requested dataset cannot be found or is unusable."""
