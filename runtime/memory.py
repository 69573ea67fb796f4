"""Process memory for reports and guards: peak resident set size and available memory.

Figures are in MB of 2**20 bytes. Platforms without the information give None.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def rss_megabytes(maxrss: int, platform: str) -> float:
    """``ru_maxrss`` in MB: Linux reports kilobytes, macOS bytes."""
    return maxrss / 2**20 if platform == "darwin" else maxrss / 2**10


def peak_rss_mb() -> float | None:
    """The highest resident memory this process has used so far."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    return rss_megabytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, sys.platform)


def available_bytes() -> int | None:
    """Memory the system can give without swapping (Linux ``MemAvailable``), else all RAM."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
