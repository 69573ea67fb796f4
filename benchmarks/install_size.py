"""``python -m benchmarks.install_size``: what ``pip install ".[runtime]"`` really installs on
each platform, and what a smaller extra would save.

For each platform the host's pip picks the wheels a device would get (``pip download``
with that platform's tags, Python version and glibc), so one machine measures all of
them. Sizes are the wheel files and the bytes they unpack to (pip adds bytecode on top).
A requirement with no wheel for the platform is listed as missing: on 32-bit ARM that is
all of them but ``tflite-runtime``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.errors import BenchmarkError
from runtime.cli import Parser, run_cli, setup_logging

ROOT = Path(__file__).resolve().parents[1]
# glibc of Debian 12 / Raspberry Pi OS Bookworm; 41 for Trixie. A wheel for manylinux_2_N
# installs where glibc ≥ 2.N, and pip must be told every N it may accept.
GLIBC_MINOR = 36
EXTRA_PACKAGES = {"tflite": ["numpy<2", "tflite-runtime==2.14.*"]}  # 32-bit ARM: not an extra
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgecnn" / "wheels"


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    wheel_bytes: int
    unpacked_bytes: int

    @classmethod
    def read(cls, path: Path) -> Wheel:
        name, version = path.name.split("-")[:2]
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
        return cls(name.replace("_", "-").lower(), version, path.stat().st_size, unpacked)


def requirements(extra: str, pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The requirements of one of our extras (``runtime``…), or of ``EXTRA_PACKAGES``."""
    if extra in EXTRA_PACKAGES:
        return EXTRA_PACKAGES[extra]
    import tomllib

    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    if extra not in extras:
        raise BenchmarkError(f"--extra {extra}: pyproject.toml has "
                             f"{', '.join(sorted(extras))}")
    return list(extras[extra])


def platform_tags(machine: str, glibc_minor: int = GLIBC_MINOR) -> list[str]:
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(17, glibc_minor + 1)]
    return [*tags, f"manylinux2014_{machine}", f"linux_{machine}"]


def download(reqs: list[str], machine: str, python: str, dest: Path,
             glibc_minor: int = GLIBC_MINOR, deps: bool = True) -> list[Path]:
    """The wheels pip would install for ``reqs`` on that platform, dependencies included,
    in ``dest`` (its own folder: everything in it is this resolution). Cached."""
    done = dest / ".complete"
    if not done.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet",
                   "--disable-pip-version-check", "--only-binary=:all:", "--python-version",
                   python, "--implementation", "cp", "--dest", str(dest)]
        command += [] if deps else ["--no-deps"]
        for tag in platform_tags(machine, glibc_minor):
            command += ["--platform", tag]
        result = subprocess.run([*command, *reqs], capture_output=True, text=True)
        if result.returncode:
            errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
            raise BenchmarkError(f"no {machine} wheels for Python {python} satisfy "
                                 f"{' '.join(reqs)}: "
                                 f"{errors[0] if errors else result.stderr.strip()[-300:]}")
        done.touch()
    return sorted(dest.glob("*.whl"))


def measure(extra: str, machine: str, python: str, glibc_minor: int = GLIBC_MINOR,
            cache: Path = CACHE) -> dict:
    """One resolution of the whole extra; when that fails, each requirement alone and without
    its dependencies, so every package without a wheel for the platform is named."""
    reqs = requirements(extra)
    key = hashlib.sha256(json.dumps([reqs, machine, python, glibc_minor]).encode()).hexdigest()
    folder = cache / f"{machine}-cp{python.replace('.', '')}-{key[:12]}"
    missing: list[str] = []
    try:
        paths = download(reqs, machine, python, folder / "all", glibc_minor)
    except BenchmarkError:
        paths = []
        for i, req in enumerate(reqs):
            try:
                paths += download([req], machine, python, folder / str(i), glibc_minor,
                                  deps=False)
            except BenchmarkError:
                missing.append(req)
    wheels = {wheel.name: wheel for wheel in map(Wheel.read, paths)}.values()
    return {"extra": extra, "machine": machine, "python": python,
            "glibc": f"2.{glibc_minor}", "requirements": reqs, "missing": missing,
            "wheels": [vars(w) for w in sorted(wheels, key=lambda w: w.name)],
            "wheel_bytes": sum(w.wheel_bytes for w in wheels),
            "unpacked_bytes": sum(w.unpacked_bytes for w in wheels)}


def table(results: list[dict]) -> str:
    rows = ["| extra | platform | Python | packages | download | installed | no wheel for |",
            "|---|---|---|---:|---:|---:|---|"]
    for r in results:
        rows.append(f"| `{r['extra']}` | {r['machine']} (glibc {r['glibc']}) | {r['python']} | "
                    f"{len(r['wheels'])} | {_mb(r['wheel_bytes'])} | "
                    f"{_mb(r['unpacked_bytes'])} | {', '.join(r['missing']) or '-'} |")
    return "\n".join(rows)


def packages(result: dict) -> str:
    rows = [f"`{result['extra']}` on {result['machine']}, Python {result['python']}:", "",
            "| package | version | download | installed |", "|---|---|---:|---:|"]
    for w in sorted(result["wheels"], key=lambda w: -w["unpacked_bytes"]):
        rows.append(f"| {w['name']} | {w['version']} | {_mb(w['wheel_bytes'])} | "
                    f"{_mb(w['unpacked_bytes'])} |")
    return "\n".join(rows)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.install_size", description=__doc__,
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--extra", nargs="+", default=["runtime", "runtime-litert"],
                   help=f"extras of pyproject.toml, or {', '.join(EXTRA_PACKAGES)}")
    p.add_argument("--platform", nargs="+", default=["x86_64", "aarch64"],
                   help="x86_64, aarch64, armv7l")
    p.add_argument("--python", default="3.11", help="target Python version (Trixie: 3.13)")
    p.add_argument("--glibc", type=int, default=GLIBC_MINOR,
                   help="target glibc minor version (Bookworm 36, Trixie 41)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--packages", action="store_true", help="list every wheel too")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("install_size", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    setup_logging()
    results = [measure(extra, machine, args.python, args.glibc)
               for extra in args.extra for machine in args.platform]
    print(table(results))
    if args.packages:
        for result in results:
            print(f"\n{packages(result)}")
    if args.json:
        from runtime.files import write_json

        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
