"""Benchmarks' named error: bad input (a bundle without model files, an unreadable
``--compare`` file, a nonsensical setting) is one stderr line and exit code 2."""

from runtime.errors import EdgeCNNError


class BenchmarkError(EdgeCNNError):
    """The bundle, a results file or an option cannot be benchmarked as asked."""
