"""``make test-aarch64``: the runtime tests under emulated Debian 12 arm64, Python 3.11, with
the runtime extra's real aarch64 wheels, on every file ``make demo`` exports
(``--suite trixie``: Debian 13, Python 3.13). ``--arch armhf``: 32-bit Raspberry Pi OS's
path, Debian's own numpy and OpenCV with the armv7l ``tflite-runtime`` 2.14 wheel.

How, and why this way (each measured on a Debian 12 x86-64 host):
- ``qemu-user-static`` runs the arm64 Python directly (``-L ROOTFS``: absolute paths are
  looked up in the root filesystem first). binfmt_misc may not register in a container, so
  nothing relies on it, and nothing under emulation starts a subprocess.
- ``debootstrap --foreign`` downloads Debian's arm64 packages; its second stage needs binfmt,
  so the .debs are unpacked with ``dpkg-deb --fsys-tarfile | tar``.
- ``import onnxruntime`` segfaults when it parses the host's x86 ``/proc/cpuinfo``: the root
  filesystem gets its own ARM one, written for each emulated CPU.
- The host's pip downloads the aarch64 wheels (benchmarks/install_size.py); the emulated pip
  installs them into a folder on ``PYTHONPATH``.
- ``-cpu cortex-a72`` (Pi 4) and ``cortex-a76`` (Pi 5) run the tests (armhf:
  ``cortex-a7``). ``-cpu max`` turns on
  SME, under which XNNPACK's int8 kernels give garbage: the int8 TFLite self-check must
  catch that, failing or passing only on LiteRT's other kernels, and saying so.
Set-up is cached (``--cache``); emulated timings rank nothing but files on one emulated CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.install_size import download, requirements
from runtime.bundle import EXPORT_NAMES, SPEC
from runtime.cli import EXIT_FAILED, EXIT_OK, Parser, run_cli
from runtime.errors import EdgeCNNError
from runtime.files import write_json
from runtime.selfcheck import SELFCHECK_KEY

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgecnn" / "emulated"
# Debian release → its Python and glibc minor version, as on Raspberry Pi OS of the same name
SUITES = {"bookworm": ("3.11", 36), "trixie": ("3.13", 41)}
MIRROR = "http://deb.debian.org/debian"
TEST_TOOLS = ["pytest>=8", "pytest-timeout>=2.2"]  # pure Python, beside what the device needs
SME_CPU = "max"
INT8_TFLITE = EXPORT_NAMES[("tflite", "int8")]


@dataclass(frozen=True)
class Target:
    """One kind of emulated device: what Debian provides and what pip adds."""

    arch: str                  # Debian's name
    machine: str               # pip's platform name
    qemu: str
    apt: tuple[str, ...]       # Debian packages in the root filesystem
    pip: tuple[str, ...]       # wheels the emulated pip installs
    pip_deps: bool             # False: their dependencies come from apt
    cpus: tuple[str, ...]      # where the tests run
    files: tuple[str, ...]     # the exported files this device can run


TARGETS = {
    "arm64": Target("arm64", "aarch64", "qemu-aarch64-static", ("python3", "python3-pip"),
                    ("runtime",), True, ("cortex-a72", "cortex-a76"),
                    tuple(sorted(EXPORT_NAMES.values()))),
    # 32-bit Raspberry Pi OS: only tflite-runtime has armv7l wheels; no ONNX, and TF 2.21's
    # dynamic-range op versions are newer than 2.14 (tests/test_tflite_runtime.py)
    "armhf": Target("armhf", "armv7l", "qemu-arm-static",
                    ("python3", "python3-pip", "python3-numpy", "python3-opencv"),
                    ("tflite-runtime==2.14.*",), False, ("cortex-a7",),
                    ("model.fp16.tflite", "model.int8.tflite", "model.tflite")),
}
# What /proc/cpuinfo says on each emulated CPU: architecture, ARM's part number and the
# kernel's feature names for that core (the engines take the features from the ELF auxv).
CPUINFO = {
    "cortex-a72": ("8", "0xd08", "fp asimd evtstrm crc32 cpuid"),
    "cortex-a76": ("8", "0xd0b", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp "
                   "cpuid asimdrdm lrcpc dcpop asimddp"),
    "cortex-a7": ("7", "0xc07", "half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt "
                  "vfpd32 lpae evtstrm"),
    "max": ("8", "0x000", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
            "asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit "
            "uscat ilrcpc flagm ssbs sb paca pacg dcpodp sve2 sveaes svepmull svebitperm "
            "svesha3 svesm4 flagm2 frint svei8mm svebf16 i8mm bf16 dgh rng bti mte sme"),
}



class EmulationFailed(RuntimeError):
    """A set-up step or a test failed under emulation (exit 1)."""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m tests.device.emulate", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="artifacts", help="bundle whose exported files to test "
                   "(made with train and export first when missing or from before self-checks)")
    p.add_argument("--cache", default=str(CACHE), help="root filesystem and wheels live here")
    p.add_argument("--arch", choices=sorted(TARGETS), default="arm64",
                   help="arm64: 64-bit Raspberry Pi OS; armhf: the 32-bit one (bookworm only)")
    p.add_argument("--cpus", nargs="+", default=None, help="CPUs to run the tests on "
                   "(default: cortex-a72 and cortex-a76; armhf: cortex-a7)")
    p.add_argument("--mirror", default=MIRROR, help="Debian mirror for debootstrap")
    p.add_argument("--suite", choices=sorted(SUITES), default="bookworm",
                   help="Debian 12 (Python 3.11) or 13 (Python 3.13)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("emulate", lambda: _run_reporting_failures(args), failures=(EmulationFailed,))


def _run_reporting_failures(args: argparse.Namespace) -> int:
    try:
        return run(args)
    except subprocess.CalledProcessError as exc:  # its own output is above, on the terminal
        raise EmulationFailed(f"{Path(exc.cmd[0]).name} {' '.join(map(str, exc.cmd[1:6]))} … "
                        f"exited {exc.returncode}") from None


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def step(name: str, action: Callable[..., Any], *a: Any) -> Any:
        t = time.perf_counter()
        print(f"== {name}", flush=True)
        result = action(*a)
        timings[name] = round(time.perf_counter() - t, 1)
        print(f"   {name}: {timings[name]:.1f} s", flush=True)
        return result

    target = TARGETS[args.arch]
    if target.arch == "armhf" and args.suite != "bookworm":
        raise EdgeCNNError("--arch armhf: tflite-runtime 2.14 has wheels up to Python 3.11, "
                           "so bookworm only")
    cache = Path(args.cache)
    bundle = Path(args.bundle).resolve()
    qemu = step("tools", ensure_tools, target)
    rootfs = step("root filesystem", ensure_rootfs, cache, target, args.suite, args.mirror,
                  qemu)
    site = step("wheels", ensure_site, cache, target, args.suite, rootfs, qemu)
    step("bundle", ensure_bundle, bundle)
    runs: dict[str, object] = {}
    failures = []
    for cpu in args.cpus or target.cpus:
        code, measured = step(f"tests on {cpu}", run_tests, qemu, rootfs, site, cpu, bundle,
                              target.files)
        runs[cpu] = {"pytest_exit": code, "files": measured}
        if code:
            failures.append(f"the tests failed on {cpu}")
    if target.arch == "arm64":
        sme = step(f"self-check on {SME_CPU} (SME)", run_sme, qemu, rootfs, site, bundle)
        runs[SME_CPU] = sme
        failures += sme["failures"]
    total = round(time.perf_counter() - started, 1)
    report = {"arch": target.arch, "debian": args.suite, "python": SUITES[args.suite][0],
              "timings_s": timings, "total_s": total, "runs": runs, "passed": not failures}
    out = bundle / f"emulated-{target.arch}-{args.suite}.json"
    write_json(out, report)
    print(summary(report))
    print(f"report: {out}")
    if failures:
        raise EmulationFailed("; ".join(failures))
    return EXIT_OK


def ensure_tools(target: Target) -> str:
    """qemu-user-static and debootstrap, from Debian's packages when missing (needs root)."""
    missing = [tool for tool in (target.qemu, "debootstrap", "dpkg-deb")
               if shutil.which(tool) is None]
    if missing:
        if os.geteuid() != 0:
            raise EdgeCNNError(f"{', '.join(missing)} missing: run as root, or `sudo apt-get "
                               "install qemu-user-static debootstrap` first")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "qemu-user-static", "debootstrap"],
                       check=True, env=env)
    return shutil.which(target.qemu) or target.qemu


def ensure_rootfs(cache: Path, target: Target, suite: str, mirror: str, qemu: str) -> Path:
    rootfs = cache / f"rootfs-{target.arch}-{suite}"
    if (rootfs / ".complete").is_file():
        return rootfs
    if os.geteuid() != 0:
        raise EdgeCNNError("building the arm64 root filesystem needs root (debootstrap)")
    cache.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".rootfs-", dir=cache))
    try:
        subprocess.run(["debootstrap", "--foreign", f"--arch={target.arch}", "--variant=minbase",
                        f"--include={','.join(target.apt)}", suite, str(building), mirror],
                       check=True, stdout=subprocess.DEVNULL)
        debs = sorted((building / "var/cache/apt/archives").glob("*.deb"))
        for deb in debs:  # the second stage, without binfmt: unpack every package
            unpack = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                                      stdout=subprocess.PIPE)
            subprocess.run(["tar", "--keep-directory-symlink", "-x", "-C", str(building)],
                           stdin=unpack.stdout, check=True)
            if unpack.wait():
                raise EmulationFailed(f"dpkg-deb could not read {deb.name}")
        proc = building / "proc"  # debootstrap leaves a symlink to the host's /proc here
        if proc.is_symlink() or not proc.is_dir():
            proc.unlink(missing_ok=True)
            proc.mkdir()
        link_alternatives(building)
        write_cpuinfo(building, target.cpus[0])
        version = emulated(qemu, target.cpus[0], building, None, "-c",
                           "import sys; print(sys.version.split()[0])", capture=True)
        print(f"   Debian {suite} {target.arch}: {len(debs)} packages, "
              f"Python {version.stdout.strip()}")
        (building / ".complete").touch()
        shutil.rmtree(rootfs, ignore_errors=True)
        building.rename(rootfs)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return rootfs


def link_alternatives(rootfs: Path) -> None:
    """Without the second stage no postinst ran, so update-alternatives never linked the
    BLAS and LAPACK that Debian's numpy loads: link them as it would."""
    for library in rootfs.glob("usr/lib/*/*/lib*.so.3"):
        if library.parent.name in ("blas", "lapack"):
            link = library.parent.parent / library.name
            if not link.exists():
                link.symlink_to(f"{library.parent.name}/{library.name}")


def ensure_site(cache: Path, target: Target, suite: str, rootfs: Path, qemu: str) -> Path:
    """The device's wheels (plus pytest) installed by the emulated pip, from wheels the host's
    pip downloaded for that platform."""
    python, glibc_minor = SUITES[suite]
    device = [r for extra in target.pip
              for r in (requirements(extra) if extra == "runtime" else [extra])]
    key = hashlib.sha256(json.dumps([device, TEST_TOOLS, suite]).encode()).hexdigest()[:12]
    site = cache / f"site-{target.arch}-{suite}-{key}"
    if (site / ".complete").is_file():
        return site
    wheels = download(device, target.machine, python, cache / f"wheels-{key}" / "device",
                      glibc_minor, deps=target.pip_deps)
    wheels += [w for w in download(TEST_TOOLS, target.machine, python,
                                   cache / f"wheels-{key}" / "tests", glibc_minor)
               if w.name not in {d.name for d in wheels}]  # packaging: needed by both
    print(f"   {len(wheels)} {target.machine} wheels: "
          f"{', '.join(w.name.split('-')[0] for w in wheels)}")
    shutil.rmtree(site, ignore_errors=True)
    emulated(qemu, target.cpus[0], rootfs, None, "-m", "pip", "install", "--quiet", "--no-index",
             "--no-deps", "--target", str(site), "--no-compile", *map(str, wheels), check=True)
    (site / ".complete").touch()
    return site


def ensure_bundle(bundle: Path) -> None:
    """Every exported file, each carrying a reference set; made here (x86-64) when not."""
    host = [sys.executable, "-m"]
    if not (bundle / SPEC).is_file():
        subprocess.run([*host, "train", "--out", str(bundle)], check=True, cwd=ROOT)
    import runtime

    def has_reference(name: str) -> bool:
        path = bundle / name
        return path.is_file() and runtime.load(path).backend.metadata(SELFCHECK_KEY) is not None

    stale = [name for name in EXPORT_NAMES.values() if not has_reference(name)]
    if stale:
        print(f"   exporting again (no file or no self-check): {', '.join(stale)}")
        subprocess.run([*host, "export", "--bundle", str(bundle), "--int8", "--fp16",
                        "--dynamic"], check=True, cwd=ROOT)


def run_tests(qemu: str, rootfs: Path, site: Path, cpu: str, bundle: Path,
              files: tuple[str, ...]) -> tuple[int, list]:
    write_cpuinfo(rootfs, cpu)
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.jsonl"
        code = emulated(qemu, cpu, rootfs, site, "-m", "pytest", "tests/device", "-q",
                        "-p", "no:cacheprovider", "--basetemp", str(Path(tmp) / "pytest"),
                        env={"EDGECNN_DEVICE_BUNDLE": str(bundle),
                             "EDGECNN_DEVICE_FILES": ",".join(files),
                             "EDGECNN_DEVICE_RESULTS": str(results)}).returncode
        measured = [json.loads(line) for line in results.read_text().splitlines()] \
            if results.is_file() else []
    return code, measured


def run_sme(qemu: str, rootfs: Path, site: Path, bundle: Path) -> dict:
    """Under ``max`` (SME): every file measured; the int8 TFLite check must catch it."""
    write_cpuinfo(rootfs, SME_CPU)
    probe = emulated(qemu, SME_CPU, rootfs, site, "-m", "tests.device.probe", "--bundle",
                     str(bundle), capture=True)
    files = [json.loads(line) for line in probe.stdout.splitlines() if line.startswith("{")]
    model = str(bundle / INT8_TFLITE)
    strict = emulated(qemu, SME_CPU, rootfs, site, "-m", "runtime", "check", "--model", model,
                      "--no-fallback", capture=True)
    default = emulated(qemu, SME_CPU, rootfs, site, "-m", "runtime", "check", "--model", model,
                       capture=True)
    for result in (strict, default):
        print(f"   exit {result.returncode}: {result.stdout.strip()}")
    failures = []
    if probe.returncode or len(files) != len(EXPORT_NAMES):
        failures.append(f"the probe failed on {SME_CPU}: {probe.stderr.strip()[-300:]}")
    if strict.returncode != EXIT_FAILED or "FAILED" not in strict.stdout:
        failures.append(f"{INT8_TFLITE}'s self-check did not catch XNNPACK under SME")
    caught = default.returncode == EXIT_FAILED or (
        default.returncode == EXIT_OK and "XNNPACK failed it" in default.stdout)
    if not caught:
        failures.append(f"{INT8_TFLITE} passed on {SME_CPU} without falling back")
    return {"files": files, "cli": [{"command": "check --no-fallback", "exit": strict.returncode,
                                     "output": strict.stdout.strip()},
                                    {"command": "check", "exit": default.returncode,
                                     "output": default.stdout.strip()}],
            "failures": failures}


def write_cpuinfo(rootfs: Path, cpu: str) -> None:
    architecture, part, features = CPUINFO[cpu]
    core = (f"BogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
            f"CPU architecture: {architecture}\nCPU variant\t: 0x0\nCPU part\t: {part}\n"
            "CPU revision\t: 3\n")
    text = "".join(f"processor\t: {i}\n{core}\n" for i in range(4))
    (rootfs / "proc/cpuinfo").write_text(text + f"Model\t\t: qemu-user {cpu} (edgecnn)\n")


def emulated(qemu: str, cpu: str, rootfs: Path, site: Path | None, *args: str,
             env: dict[str, str] | None = None, capture: bool = False,
             check: bool = False) -> subprocess.CompletedProcess:
    """The arm64 Python under qemu-user, with a clean environment, from the repository root."""
    paths = [str(site)] if site else []
    full_env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "LANG": "C.UTF-8",
                "PYTHONPATH": os.pathsep.join([*paths, str(ROOT)]),
                "PYTHONDONTWRITEBYTECODE": "1", "PIP_CONFIG_FILE": os.devnull,
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore",
                **(env or {})}
    command = [qemu, "-cpu", cpu, "-L", str(rootfs), str(rootfs / "usr/bin/python3"), *args]
    return subprocess.run(command, cwd=ROOT, env=full_env, capture_output=capture, text=True,
                          check=check)


def summary(report: dict) -> str:
    rows = ["", f"{'CPU':<11} {'file':<21} {'engine':<21} {'accuracy':>9} {'self-check':<11} "
            f"{'kernels':<9} {'ms':>7}", "-" * 94]
    for cpu, run in report["runs"].items():
        for f in run["files"]:  # type: ignore[index]
            check = f["self_check"]
            accuracy = next(iter(f["accuracy"].values())) * 100
            status = check["status"]
            if f.get("accuracy_settled") is not None:
                status += f" → {f['settled']['status']}"
                accuracy_text = f"{accuracy:5.1f}→{f['accuracy_settled'] * 100:.1f}%"
            else:
                accuracy_text = f"{accuracy:.2f}%"
            rows.append(f"{cpu:<11} {f['file']:<21} {f['engine']:<21} {accuracy_text:>9} "
                        f"{status:<11} {f['kernels'] or '-':<9} {check['ms']:7.1f}")
    times = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in report["timings_s"].items())
    rows.append(f"\ntimes: {times}; total {report['total_s']:.0f} s")
    rows.append("passed" if report["passed"] else "FAILED")
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
