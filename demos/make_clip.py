"""``python -m demos.make_clip``: a sample camera clip, so the demo runs without a camera.

Held-out test digits (the bundle's ``eval.npz``, never trained on) are rendered as dark ink
on light paper into 640×480 frames, each held for several frames with varied position,
scale, tilt, lighting gradient and sensor noise, with a little hand shake between frames.
A ground-truth file ``<clip>.truth.json`` gives the true label of every frame.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.bundle import EVAL_SET, load_images, load_spec, require_bundle
from runtime.cli import Parser, run_cli, setup_logging
from runtime.errors import BundleError
from runtime.files import atomic_path, write_json
from runtime.framing import default_roi

log = logging.getLogger(__name__)
WIDTH, HEIGHT = 640, 480
FOURCC = "MJPG"  # writes and reads back everywhere OpenCV has its own codecs


@dataclass(frozen=True)
class Scene:
    """How one held digit looks: where, how big, how lit, how noisy."""

    centre: tuple[float, float]
    height: float        # digit field height in pixels (the 28-px MNIST field, scaled)
    angle: float         # degrees
    paper: float         # paper brightness 0-255
    gradient: tuple[float, float]  # brightness change across the frame (x, y)
    ink: float           # how dark the ink is, 0-1 of the paper's brightness
    noise: float         # sensor noise sigma


def random_scene(rng: np.random.Generator) -> Scene:
    roi_x, roi_y, side, _ = default_roi(HEIGHT, WIDTH)
    size = rng.uniform(0.45, 0.85) * side  # the digit fits inside the aim box
    margin = (side - size) / 2
    centre = (roi_x + side / 2 + rng.uniform(-margin, margin) * 0.8,
              roi_y + side / 2 + rng.uniform(-margin, margin) * 0.8)
    return Scene(centre=centre, height=size, angle=rng.uniform(-8, 8),
                 paper=rng.uniform(150, 235), gradient=tuple(rng.uniform(-40, 40, 2)),
                 ink=rng.uniform(0.55, 0.9), noise=rng.uniform(2, 7))


def render(digit: np.ndarray, scene: Scene, shake: tuple[float, float],
           rng: np.random.Generator) -> np.ndarray:
    """One 640×480 BGR frame: ``digit`` (28×28, white on black) as ink on lit paper."""
    scale = scene.height / digit.shape[0]
    cx, cy = scene.centre[0] + shake[0], scene.centre[1] + shake[1]
    matrix = cv2.getRotationMatrix2D((digit.shape[1] / 2, digit.shape[0] / 2), scene.angle, scale)
    matrix[:, 2] += (cx - digit.shape[1] / 2, cy - digit.shape[0] / 2)
    ink = cv2.warpAffine(digit.astype(np.float32) / 255.0, matrix, (WIDTH, HEIGHT),
                         flags=cv2.INTER_CUBIC, borderValue=0.0).clip(0, 1)
    xs = np.linspace(-0.5, 0.5, WIDTH, dtype=np.float32)[None, :]
    ys = np.linspace(-0.5, 0.5, HEIGHT, dtype=np.float32)[:, None]
    paper = scene.paper + scene.gradient[0] * xs + scene.gradient[1] * ys
    gray = paper * (1.0 - scene.ink * ink)
    tint = np.array([1.0, 0.98, 0.95], np.float32)  # slightly warm paper, as under room light
    frame = gray[:, :, None] * tint + rng.normal(0, scene.noise, (HEIGHT, WIDTH, 3))
    return np.clip(frame, 0, 255).astype(np.uint8)


def make_clip(images: np.ndarray, labels: np.ndarray, label_names: tuple[str, ...], out: Path,
              digits: int, hold: int, fps: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(images), size=min(digits, len(images)), replace=False)
    truth = []
    with atomic_path(out) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC), fps, (WIDTH, HEIGHT))
        if not writer.isOpened():
            raise BundleError(f"OpenCV cannot write {out.suffix} video here; use --out clip.avi")
        try:
            for n, index in enumerate(picks):
                digit = images[index].reshape(images.shape[1], images.shape[2])
                scene = random_scene(rng)
                for _ in range(hold):
                    shake = tuple(rng.normal(0, 2.0, 2))
                    writer.write(render(digit, scene, shake, rng))
                    truth.append(label_names[int(labels[index])])
                if (n + 1) % 20 == 0:
                    log.info("rendered %d/%d digits", n + 1, len(picks))
        finally:
            writer.release()
    record = {"video": out.name, "fps": fps, "frames": len(truth), "hold": hold,
              "source": "eval.npz (held-out test split)", "eval_indices": picks.tolist(),
              "labels": truth}
    write_json(truth_path(out), record)
    return record


def truth_path(video: Path) -> Path:
    return video.with_name(video.name + ".truth.json")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m demos.make_clip", description=__doc__,
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bundle", default="artifacts", help="bundle whose eval.npz supplies digits")
    p.add_argument("--out", default=None, help="video file (default: <bundle>/clip.avi)")
    p.add_argument("--digits", type=int, default=60, help="how many test digits to show")
    p.add_argument("--hold", type=int, default=8, help="frames each digit is held")
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> int:
        setup_logging("demos")
        bundle = require_bundle(args.bundle)
        spec = load_spec(bundle)
        if spec.framing != "digit":
            raise BundleError(f"{bundle} holds a {spec.dataset.get('name', '?')} model; the "
                              "sample clip shows handwritten digits, for digit models only")
        if args.digits < 1 or args.hold < 1 or args.fps <= 0:
            raise BundleError("--digits, --hold and --fps must be positive")
        images, labels = load_images(bundle / EVAL_SET)
        out = Path(args.out) if args.out else bundle / "clip.avi"
        record = make_clip(images, labels, spec.labels, out, args.digits, args.hold, args.fps,
                           args.seed)
        print(f"wrote {out} ({record['frames']} frames, {args.digits} digits) and "
              f"{truth_path(out).name}")
        return 0

    return run_cli("make_clip", go)


if __name__ == "__main__":
    sys.exit(main())
