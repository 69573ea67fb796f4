"""``python -m demos.make_clip``: a sample camera clip, so the demo runs without a camera.

Held-out test digits (the bundle's ``eval.npz``, never trained on) are photographed as ink
on paper by the camera model (:mod:`scenes.camera`: tilt, blur, uneven light, shadows,
noise, JPEG, ink and paper colours) into 640×480 frames, each held for several frames with
a little hand shake between them. ``--printed`` mixes in digits printed in font families
the model was not trained on. A ground-truth file ``<clip>.truth.json`` gives the true
label of every frame.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from runtime.bundle import (
    EVAL_SET,
    METRICS,
    load_images,
    load_sources,
    load_spec,
    require_bundle,
)
from runtime.cli import Parser, run_cli, setup_logging
from runtime.errors import BundleError
from runtime.files import atomic_path, read_json, write_json

if TYPE_CHECKING:  # scenes needs OpenCV, imported where used: without it, one line names it
    from scenes import fonts

log = logging.getLogger(__name__)
# --camera: the camera model's full ranges, or kind conditions (the clip before the model)
SHOTS = {"rough": "random_shot", "plain": "plain_shot"}  # scenes.camera's functions
FOURCC = "MJPG"  # writes and reads back everywhere OpenCV has its own codecs


def make_clip(images: np.ndarray, labels: np.ndarray, label_names: tuple[str, ...], out: Path,
              digits: int, hold: int, fps: float, seed: int, printed: float = 0.0,
              printed_fonts: list[fonts.Font] | None = None,
              eval_index: np.ndarray | None = None, camera_kind: str = "rough") -> dict:
    """Write the clip and its ground truth; ``printed`` is the share of printed digits and
    ``eval_index`` maps ``images`` back to their rows of eval.npz (default: the same)."""
    import cv2

    from scenes import camera, fonts

    shoot = getattr(camera, SHOTS[camera_kind])
    rng = np.random.default_rng(seed)
    eval_index = np.arange(len(images)) if eval_index is None else eval_index
    n_printed = round(digits * printed) if printed_fonts else 0
    picks = rng.choice(len(images), size=min(digits - n_printed, len(images)), replace=False)
    # (kind, index into eval.npz or font, label index), shuffled so kinds interleave
    items = [("eval", int(i), int(labels[i])) for i in picks]
    items += [("font", int(rng.integers(len(printed_fonts))), int(rng.integers(10)))
              for _ in range(n_printed)] if printed_fonts else []
    order = rng.permutation(len(items))
    truth, shown = [], []
    with atomic_path(out) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC), fps,
                                 (camera.WIDTH, camera.HEIGHT))
        if not writer.isOpened():
            raise BundleError(f"OpenCV cannot write {out.suffix} video here; use --out clip.avi")
        try:
            for n, position in enumerate(order):
                kind, index, label = items[position]
                if kind == "eval":
                    coverage = camera.mnist_coverage(images[index])
                    shown.append({"source": "eval.npz", "index": int(eval_index[index])})
                else:
                    font = printed_fonts[index]  # type: ignore[index]
                    coverage = fonts.glyph(font, str(label))
                    shown.append({"source": "printed", "font": font.name})
                shot = shoot(rng)
                for _ in range(hold):
                    writer.write(camera.photograph(coverage, shot.shaken(rng), rng))
                    truth.append(label_names[label])
                if (n + 1) % 20 == 0:
                    log.info("rendered %d/%d digits", n + 1, len(items))
        finally:
            writer.release()
    record = {"video": out.name, "fps": fps, "frames": len(truth), "hold": hold,
              "camera": camera_kind,
              "source": "eval.npz (held-out test split)"
              + (" and printed digits in held-out font families" if n_printed else ""),
              "eval_indices": [d["index"] for d in shown if d["source"] == "eval.npz"],
              "digits": shown, "labels": truth,
              "printed_families": fonts.families(printed_fonts or []) if n_printed else []}
    write_json(truth_path(out), record)
    return record


def held_out_fonts(bundle: Path) -> tuple[list[fonts.Font], str]:
    """Installed fonts in families the bundle's model never trained on, and why those."""
    from scenes import fonts

    trained: set[str] = set()
    metrics = bundle / METRICS
    if metrics.is_file():
        printed = read_json(metrics).get("dataset", {}).get("sources", {}).get("printed", {})
        trained = set(printed.get("train_families", [])) | set(printed.get("val_families", []))
    candidates = fonts.require_fonts(fonts.installed_fonts())
    unseen = [f for f in candidates if f.family not in trained]
    if not unseen:
        raise BundleError(f"{bundle}: its model trained on every installed font family; "
                          "there is no held-out family to print digits in")
    why = ("families held out of training" if trained
           else "the model trained on no printed digits")
    return unseen, why


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
    p.add_argument("--camera", choices=list(SHOTS), default="rough", help="rough: tilt, "
                   "blur, uneven light, shadows, noise, JPEG, ink and paper colours; plain: "
                   "square, sharp, evenly lit black ink on white (to compare models on easy "
                   "frames)")
    p.add_argument("--printed", type=float, nargs="?", const=0.5, default=0.0,
                   metavar="SHARE", help="mix in digits printed in font families the model "
                   "never trained on (bare --printed: half of the digits)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> int:
        from scenes import fonts

        setup_logging("demos", "scenes")
        bundle = require_bundle(args.bundle)
        spec = load_spec(bundle)
        if spec.framing != "digit":
            raise BundleError(f"{bundle} holds a {spec.dataset.get('name', '?')} model; the "
                              "sample clip shows digits, for digit models only")
        if args.digits < 1 or args.hold < 1 or args.fps <= 0:
            raise BundleError("--digits, --hold and --fps must be positive")
        if not 0.0 <= args.printed <= 1.0:
            raise BundleError(f"--printed {args.printed}: give the share of printed digits, "
                              "from 0 to 1")
        printed_fonts = None
        if args.printed:
            if tuple(spec.labels) != tuple(fonts.DIGITS):
                raise BundleError(f"--printed needs a model whose labels are the digits 0-9; "
                                  f"{bundle} has {', '.join(spec.labels[:12])}")
            printed_fonts, why = held_out_fonts(bundle)
            log.info("printed digits in %s (%s)", ", ".join(fonts.families(printed_fonts)), why)
        images, labels = load_images(bundle / EVAL_SET)
        sources = load_sources(bundle / EVAL_SET)
        rows = np.arange(len(images))
        if sources is not None and (sources != "printed").any():
            # Printed test digits are photographs already: the clip shows the others
            # (handwriting) and prints its own digits in held-out families.
            rows = np.flatnonzero(sources != "printed")
        out = Path(args.out) if args.out else bundle / "clip.avi"
        record = make_clip(images[rows], labels[rows], spec.labels, out, args.digits, args.hold,
                           args.fps, args.seed, args.printed, printed_fonts, rows, args.camera)
        printed_note = (f", {sum(d['source'] == 'printed' for d in record['digits'])} printed"
                        if args.printed else "")
        print(f"wrote {out} ({record['frames']} frames, {args.digits} digits{printed_note}) "
              f"and {truth_path(out).name}")
        return 0

    return run_cli("make_clip", go)


if __name__ == "__main__":
    sys.exit(main())
