"""What machine a figure came from: CPU, cores, load, package versions and model hashes.

A latency means little without its machine, and a comparison between two machines means
nothing unless both records say what differed. Everything here degrades to ``None`` rather
than failing: a Raspberry Pi's ``/proc/cpuinfo`` has ``Model``/``Features``/``CPU part``
where x86 has ``model name``/``flags``, macOS has no ``/proc`` at all, and a device with
only the runtime extra has no TensorFlow to report.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from runtime.files import sha256

PACKAGES = ("numpy", "onnxruntime", "ai-edge-litert", "opencv-python-headless", "opencv-python",
            "tensorflow", "tensorflow-cpu", "keras", "matplotlib")
# The instruction-set extensions that decide which kernels the engines pick.
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16",
              "avx_vnni", "amx_int8", "neon", "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve")
ARM_PARTS = {  # "CPU part" of ARM Ltd. cores (implementer 0x41): the Pi 3, 4 and 5 among them
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78",
}


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """The CPU's name, feature flags and (ARM) part from ``/proc/cpuinfo`` text, x86 or ARM.

    The first value of each field wins; on big.LITTLE parts the cores differ and the first
    is as good a summary as any (the full text is not worth storing).
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    part = fields.get("cpu part")
    core = ARM_PARTS.get(part.lower()) if part and fields.get("cpu implementer") == "0x41" else None
    # x86 also has a numeric "model" and "processor"; ARM32 names the core in "Processor".
    names = (fields.get(key) for key in ("model name", "model", "hardware", "processor"))
    name = next((value for value in names if value and not value.isdigit()), None)
    flags = (fields.get("flags") or fields.get("features") or "").split()
    return {"model": name or core, "core": core, "cpu_part": part,
            "hardware": fields.get("hardware"), "flags": flags}


def simd(flags: Iterable[str]) -> list[str]:
    present = set(flags)
    return [flag for flag in SIMD_FLAGS if flag in present]


def cpu() -> dict[str, Any]:
    info: dict[str, Any] = {"model": None, "core": None, "cpu_part": None, "hardware": None,
                            "flags": []}
    with contextlib.suppress(OSError):
        info = parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    if not info["model"] and sys.platform == "darwin":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            info["model"] = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                           capture_output=True, text=True, timeout=5,
                                           check=True).stdout.strip() or None
    info["model"] = info["model"] or platform.processor() or None
    info["machine"] = platform.machine()
    info["simd"] = simd(info["flags"])
    info["cores"] = os.cpu_count()
    info["usable_cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count()
    info["governor"] = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return info


def load_average() -> list[float] | None:
    """1/5/15-minute load: a busy neighbour shows here, and explains a noisy run."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def packages() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def opencv_threads() -> int | None:
    """OpenCV's own pool (framing, resize): left at its default, as the runtime leaves it."""
    try:
        import cv2
    except ImportError:
        return None
    return int(cv2.getNumThreads())


def memory_mb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        return None


def environment(models: Iterable[Path], threads: int) -> dict[str, Any]:
    """The record saved with every result: machine, software, settings and model hashes."""
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu(),
        "memory_mb": memory_mb(),
        "load_average_start": load_average(),
        "packages": packages(),
        "threads": {"requested": threads,
                    "onnxruntime": f"intra_op={threads}, inter_op=1, spinning off",
                    "litert": f"num_threads={threads}",
                    "opencv": opencv_threads()},
        "models": {path.name: {"sha256": sha256(path), "size_bytes": path.stat().st_size}
                   for path in models},
    }


def summary(env: dict[str, Any]) -> list[str]:
    """A few human lines for the markdown report and ``--compare``."""
    cpu_info = env.get("cpu") or {}
    name = cpu_info.get("model") or "unknown CPU"
    if cpu_info.get("core") and cpu_info["core"] not in name:
        name += f" ({cpu_info['core']})"
    pkgs = env.get("packages") or {}
    tf = pkgs.get("tensorflow") or pkgs.get("tensorflow-cpu")
    return [
        f"CPU: {name}, {cpu_info.get('machine', '?')}, {cpu_info.get('usable_cores', '?')}/"
        f"{cpu_info.get('cores', '?')} cores usable, SIMD: "
        f"{' '.join(cpu_info.get('simd') or []) or 'none listed'}",
        f"Load average (1/5/15 min) at start: {env.get('load_average_start')}, "
        f"at end: {env.get('load_average_end')}",
        f"Python {env.get('python')} on {env.get('platform')}",
        f"onnxruntime {pkgs.get('onnxruntime', '-')}, ai-edge-litert "
        f"{pkgs.get('ai-edge-litert', '-')}, numpy {pkgs.get('numpy', '-')}, "
        f"TensorFlow {tf or 'not installed'}, Keras {pkgs.get('keras', '-')}",
        f"Threads: {(env.get('threads') or {}).get('requested')} per engine; OpenCV "
        f"{(env.get('threads') or {}).get('opencv', '?')} (its default)",
    ]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None
