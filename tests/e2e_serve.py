"""``make e2e``: the demo's --serve page in a real browser (headless Chromium), screenshotted.

Runs the webcam demo on a sample clip with ``--serve 127.0.0.1:0``, opens the page in
Debian's ``chromium`` with a fresh profile, saves a PNG, and checks that the page drew the
camera frame (not a blank or broken image) and the top-3 panel. Look at the PNG too. Not
part of ``make test``: it needs a browser. Without a bundle holding ``model.int8.tflite`` it
trains and exports a small one first (about a minute).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--window-size=1100,620", "--timeout=6000"]
PAGE_BACKGROUND = (17, 17, 17)  # the page's #111, BGR


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tests/e2e_serve.py", description=__doc__)
    p.add_argument("--bundle", default="artifacts")
    p.add_argument("--out", default="e2e_serve.png", help="screenshot PNG")
    args = p.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("e2e: no chromium on PATH; `apt-get install chromium` (make e2e does)",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="edgecnn-e2e-") as tmp:
        bundle = Path(args.bundle)
        if not (bundle / "model.int8.tflite").is_file():
            bundle = Path(tmp) / "bundle"
            print(f"e2e: no {args.bundle}/model.int8.tflite; training a small model in {bundle}")
            _module("train", "--out", str(bundle), "--epochs", "3")
            _module("export", "--bundle", str(bundle), "--int8", "--formats", "tflite")
        clip = Path(tmp) / "clip.avi"
        # each digit held 3 s: the frame and the top-3 panel (polled) show the same digit
        _module("demos.make_clip", "--bundle", str(bundle), "--out", str(clip), "--digits",
                "10", "--hold", "45")
        demo = subprocess.Popen([sys.executable, "-m", "demos.webcam", "--model",
                                 str(bundle / "model.int8.tflite"), "--source", str(clip),
                                 "--headless", "--serve", "127.0.0.1:0"], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True, env=_env())
        try:
            url = _served_url(demo)
            print(f"e2e: demo serving {url}; opening it in {browser}")
            shot = Path(args.out).resolve()
            subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile",
                            f"--screenshot={shot}", url], check=True, timeout=120,
                           capture_output=True)
        finally:
            demo.terminate()
            demo.wait(timeout=30)
    return _check(shot)


def _check(shot: Path) -> int:
    """The stream area shows a camera frame (light paper, dark ink: many grey levels), and
    the panel beside it has text. The eye decides the rest: open the PNG."""
    image = cv2.imread(str(shot))
    if image is None:
        print(f"e2e: no screenshot at {shot}", file=sys.stderr)
        return 1
    stream = image[60:540, 16:656]
    panel = image[60:300, 680:1080]
    distinct = len(np.unique(stream.reshape(-1, 3), axis=0))
    paper = float(np.median(stream))
    text = int((np.abs(panel.astype(int) - PAGE_BACKGROUND).sum(axis=2) > 60).sum())
    print(f"e2e: screenshot {shot} ({image.shape[1]}x{image.shape[0]}); stream area: "
          f"{distinct} colours, median {paper:.0f}; panel: {text} non-background pixels")
    if distinct < 50 or paper < 100 or text < 500:
        print("e2e: the page shows no camera frame or no top-3 panel", file=sys.stderr)
        return 1
    return 0


def _served_url(demo: subprocess.Popen) -> str:
    for line in demo.stdout:  # type: ignore[union-attr]
        if line.startswith("serving http://"):
            return line.split()[1]
    raise SystemExit(f"e2e: the demo stopped before serving (exit {demo.wait()})")


def _module(*args: str) -> None:
    subprocess.run([sys.executable, "-m", *args], cwd=ROOT, check=True, env=_env(),
                   stdout=subprocess.DEVNULL)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


if __name__ == "__main__":
    sys.exit(main())
