"""benchmarks.install_size: the parts that need no registry (the download is pip's own)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from benchmarks.errors import BenchmarkError
from benchmarks.install_size import Wheel, platform_tags, requirements, table


def test_extras_come_from_pyproject_and_the_litert_extra_drops_only_onnxruntime() -> None:
    full, litert = requirements("runtime"), requirements("runtime-litert")
    assert any(r.startswith("onnxruntime") for r in full)
    assert [r for r in full if not r.startswith("onnxruntime")] == litert
    with pytest.raises(BenchmarkError, match="runtime"):
        requirements("nonsense")


def test_platform_tags_cover_every_glibc_up_to_the_target() -> None:
    tags = platform_tags("aarch64", 36)
    assert tags[0] == "manylinux_2_17_aarch64" and "manylinux_2_36_aarch64" in tags
    assert "manylinux_2_37_aarch64" not in tags and "linux_aarch64" in tags


def test_wheel_sizes_are_the_file_and_what_it_unpacks_to(tmp_path: Path) -> None:
    path = tmp_path / "Some_Pkg-1.2.3-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("some_pkg/__init__.py", "x" * 10_000)
        archive.writestr("some_pkg/data.bin", b"\0" * 5_000)
    wheel = Wheel.read(path)
    assert (wheel.name, wheel.version, wheel.unpacked_bytes) == ("some-pkg", "1.2.3", 15_000)
    assert wheel.wheel_bytes == path.stat().st_size < 15_000
    row = table([{"extra": "runtime", "machine": "armv7l", "glibc": "2.36", "python": "3.11",
                  "wheels": [vars(wheel)], "wheel_bytes": wheel.wheel_bytes,
                  "unpacked_bytes": 15_000, "missing": ["numpy>=1.24"]}]).splitlines()[-1]
    assert "armv7l" in row and "0.0 MB" in row and "numpy>=1.24" in row
