"""``python -m benchmarks.soak``: does the webcam demo's memory stay flat on an endless stream?

An edge camera runs for days, so a few bytes kept per frame add up to a crash. The soak
serves rendered camera frames over a loopback HTTP MJPEG stream (an IP camera stand-in) in
an endless loop, runs ``python -m demos.webcam --headless`` on it in a child process for
``--frames`` frames, and samples the child's resident memory (RSS) each time the demo
reports a frame. It reports RSS at the end of the warm-up and at the end, the growth
between them, and the least-squares slope after warm-up in bytes per frame and per day at
the measured frame rate; then writes ``soak.json`` and ``soak.png`` (RSS over frames).

Exit code 1 when the growth after warm-up exceeds ``--budget-mb``, 0 otherwise.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.errors import BenchmarkError
from benchmarks.report import NO_PNG, pyplot
from runtime.cli import EXIT_FAILED, EXIT_OK, Parser, run_cli, setup_logging
from runtime.files import atomic_path

SCHEMA = "edgecnn.soak/1"
FRAMES = 20_000  # default run: ~6 minutes of a 57 fps camera, enough to see bytes per frame
WARMUP = 2_000  # frames before memory is expected to be flat: arenas, caches, first reopens
BUDGET_MB = 1.0  # growth allowed from the end of warm-up to the last frame
SERVED_FRAMES = 60  # distinct rendered frames the stream cycles through
FRAME_LINE = re.compile(r"^frame\s+(\d+)\s*\|")  # the demo's headless status line
SECONDS_PER_DAY = 86_400


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.soak", description=__doc__,
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = p.add_argument
    add("--bundle", default="artifacts", help="bundle whose eval images become the frames")
    add("--model", default=None, help="model file the demo runs (default: the bundle's "
        "model.int8.tflite)")
    add("--frames", type=int, default=FRAMES, help="frames the demo classifies")
    add("--warmup", type=int, default=WARMUP, help="frames before memory must stay flat")
    add("--fps", type=float, default=0.0, help="frame rate the loopback camera sends at (0: as "
        "fast as the demo reads)")
    add("--source", default=None, help="soak on this stream URL or camera instead of the "
        "loopback camera")
    add("--budget-mb", type=float, default=BUDGET_MB, help="RSS growth allowed after warm-up")
    add("--out", default=None, help="results JSON (default <bundle>/soak.json); the PNG goes "
        "beside it")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("soak", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    setup_logging("benchmarks")
    if args.frames < 1 or not 0 <= args.warmup < args.frames:
        raise BenchmarkError(f"--frames {args.frames} --warmup {args.warmup}: need 0 ≤ warmup < "
                             "frames")
    if args.budget_mb <= 0 or args.fps < 0:
        raise BenchmarkError("--budget-mb must be positive and --fps not negative")
    import runtime
    from benchmarks.mjpeg import MjpegServer
    from benchmarks.pipeline import render_frames
    from runtime.bundle import EVAL_SET, EXPORT_NAMES, load_images, require_bundle
    from runtime.files import write_json

    bundle = require_bundle(args.bundle)
    model = Path(args.model) if args.model else bundle / EXPORT_NAMES[("tflite", "int8")]
    spec = runtime.load(model).spec  # a bad model fails here, in one line, not in the child
    out = Path(args.out) if args.out else bundle / "soak.json"
    if args.source is not None:
        result = soak(model, args.source, args.frames, args.warmup)
    else:
        images, labels = load_images(bundle / EVAL_SET)
        jpegs, _ = render_frames(images, labels, spec, SERVED_FRAMES)
        with MjpegServer(jpegs, fps=args.fps) as camera:
            result = soak(model, camera.url, args.frames, args.warmup)
            result["reconnects"] = camera.connections - 1
    result["budget_mb"] = args.budget_mb
    result["passed"] = result["growth_mb"] < args.budget_mb
    write_json(out, result)
    png = plot(result, out.with_suffix(".png"))
    print(summary(result))
    print(f"wrote {out}" + (f", {png.name}" if png else f" ({NO_PNG})"))
    return EXIT_OK if result["passed"] else EXIT_FAILED


def soak(model: Path, source: str, frames: int, warmup: int) -> dict[str, Any]:
    """Run the demo on ``source`` for ``frames`` frames; sample its RSS at each status line."""
    from benchmarks.coldstart import child_env
    from benchmarks.stats import fit_line

    command = [sys.executable, "-m", "demos.webcam", "--model", str(model), "--source", source,
               "--headless", "--max-frames", str(frames)]
    started = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=child_env(PYTHONUNBUFFERED="1"))  # lines as they happen
    errors: list[str] = []
    drain = threading.Thread(target=lambda: errors.extend(child.stderr), daemon=True)  # type: ignore[arg-type]
    drain.start()
    samples: list[tuple[int, int]] = []  # (frame, RSS bytes): frames / 50 entries
    last_lines: list[str] = []
    for line in child.stdout:  # type: ignore[union-attr]
        match = FRAME_LINE.match(line)
        if match:
            rss = rss_bytes(child.pid)
            if rss is not None:
                samples.append((int(match.group(1)), rss))
        else:
            last_lines = [*last_lines[-4:], line.rstrip()]
    code = child.wait()
    drain.join(5.0)
    seconds = time.monotonic() - started
    if code != 0:
        why = next((e.strip() for e in reversed(errors) if e.strip()), f"exit code {code}")
        raise BenchmarkError(f"the demo stopped during the soak: {why}")
    settled = [(f, r) for f, r in samples if f >= warmup]
    if len(settled) < 2:
        raise BenchmarkError(f"only {len(settled)} memory samples after frame {warmup}: use more "
                             "--frames (the demo reports every 50th frame)")
    per_frame, intercept = fit_line([f for f, _ in settled], [r for _, r in settled])
    fps = frames / seconds
    return {
        "schema": SCHEMA, "model": str(model), "source": source, "frames": frames,
        "warmup": warmup, "seconds": seconds, "fps": fps,
        "rss_mb_at_warmup": settled[0][1] / 2**20, "frame_at_warmup": settled[0][0],
        "rss_mb_end": settled[-1][1] / 2**20, "frame_at_end": settled[-1][0],
        "growth_mb": (settled[-1][1] - settled[0][1]) / 2**20,
        "peak_mb_after_warmup": max(r for _, r in settled) / 2**20,
        "slope_bytes_per_frame": per_frame, "fit_intercept_bytes": intercept,
        "slope_mb_per_day": per_frame * fps * SECONDS_PER_DAY / 2**20,
        "stderr_lines": [e.rstrip() for e in errors if e.strip()][:20],
        "demo_summary": last_lines, "samples": samples,
    }


def rss_bytes(pid: int) -> int | None:
    """Resident memory of process ``pid`` now (Linux ``/proc``; ``ps`` elsewhere)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        done = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True,
                              text=True, timeout=5, check=False)
        return int(done.stdout.strip()) * 1024
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def summary(result: dict[str, Any]) -> str:
    r = result
    verdict = "within" if r["passed"] else "OVER"
    return (f"soak: {r['frames']} frames in {r['seconds']:.0f} s ({r['fps']:.0f} fps) from "
            f"{r['source']}; RSS {r['rss_mb_at_warmup']:.2f} MB at frame {r['frame_at_warmup']}, "
            f"{r['rss_mb_end']:.2f} MB at frame {r['frame_at_end']}: growth "
            f"{r['growth_mb'] * 1024:+.0f} KB ({verdict} the {r['budget_mb']:g} MB budget), slope "
            f"{r['slope_bytes_per_frame']:+.2f} bytes/frame ≈ {r['slope_mb_per_day']:+.1f} MB/day "
            f"at this frame rate; {len(r['stderr_lines'])} stderr lines")


def plot(result: dict[str, Any], path: Path) -> Path | None:
    """RSS over frames with the warm-up shaded; None when matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return None

    frames = [f for f, _ in result["samples"]]
    rss = [r / 2**20 for _, r in result["samples"]]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(frames, rss, lw=1.2, label="demo RSS")
    ax.axvspan(0, result["warmup"], color="0.85", label="warm-up")
    start, end = result["frame_at_warmup"], result["frame_at_end"]
    slope, intercept = result["slope_bytes_per_frame"], result["fit_intercept_bytes"]
    ax.plot([start, end], [(intercept + slope * f) / 2**20 for f in (start, end)], "--",
            color="C3", label=f"least-squares slope {slope:+.2f} B/frame")
    ax.set_xlabel("frame")
    ax.set_ylabel("resident memory (MB)")
    ax.set_title(f"{Path(result['model']).name}: growth after warm-up "
                 f"{result['growth_mb'] * 1024:+.0f} KB over {end - start} frames")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
