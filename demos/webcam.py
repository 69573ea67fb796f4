"""``python -m demos.webcam``: classify camera (or video, folder, stream) frames live.

The window shows the ROI box, the top-3 labels, FPS and per-stage times; ``q`` quits.
``--headless`` prints a rolling status line instead. With a ground-truth file (made by
``python -m demos.make_clip``) it ends by printing the frame accuracy.

A frame whose best class is less probable than ``--min-confidence`` shows "?" and is
logged with ``"label": null``: an honest "not sure" instead of a confident wrong digit.
Blank paper still shows "no digit".

``--save`` and ``--jsonl`` are checked before the camera opens: an existing file is replaced
only with ``--overwrite``, and the source, the model or the other output never is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from runtime.cli import Parser, override_framing, run_cli, setup_logging
from runtime.errors import EdgeCNNError, SelfCheckFailed, SourceError
from runtime.files import check_outputs, place, scratch_path
from runtime.quiet import native_stderr_logged, opencv_log_level
from runtime.spec import FRAMINGS

if TYPE_CHECKING:  # they need OpenCV, which run() imports (see there)
    import numpy as np

    from demos.tally import Tally
    from runtime.camera import Frame
    from runtime.classifier import Classifier, FrameResult

WINDOW = "edgecnn"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m demos.webcam", description=__doc__,
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help=".onnx or .tflite file")
    p.add_argument("--source", default="0", help="camera index, video file, image folder or "
                   "rtsp/http URL")
    p.add_argument("--headless", action="store_true", help="no window: a status line instead")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--save", default=None, help="write the annotated video here (.mp4 or .avi)")
    p.add_argument("--jsonl", default=None, help="write one JSON record per frame here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --save or "
                   "--jsonl file (never the source, the model or the ground truth)")
    p.add_argument("--roi", default=None, help="region to classify, x,y,w,h in pixels "
                   "(default: a centred box for digit models, the whole frame otherwise)")
    p.add_argument("--threads", type=int, default=None, help="inference threads")
    p.add_argument("--framing", choices=FRAMINGS, default=None, help="override the model "
                   "file's spec for this run: 'digit' cuts and centres digits the way MNIST was "
                   "made, 'none' feeds the ROI as it is")
    p.add_argument("--truth", default=None, help="ground-truth labels (default: "
                   "<source>.truth.json when it exists)")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="below this top-1 probability a frame shows '?' (label null); 0 "
                   "always answers (default: the threshold the model file carries, chosen "
                   "on validation when it was trained; 0 if it carries none)")
    p.add_argument("--serve", default=None, metavar="[HOST:]PORT", help="serve a web page with "
                   "the live annotated stream (also /stream.mjpg, /predictions) on 127.0.0.1, "
                   "or on HOST; video files then play at their own frame rate")
    p.add_argument("--skip-self-check", action="store_true",
                   help="run even if the file fails its embedded self-check")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("webcam", lambda: run(args), failures=(SelfCheckFailed,))


def run(args: argparse.Namespace) -> int:
    import cv2  # here, under run_cli, so that a missing OpenCV is one line naming the package

    import runtime
    from demos.overlay import draw
    from demos.serve import serving
    from demos.tally import Tally
    from runtime.camera import open_source
    from runtime.framing import parse_roi
    from runtime.selfcheck import require_self_check

    setup_logging("demos")  # reopen attempts and other progress go to stdout; stderr: errors
    # OpenCV warns on stderr for each failed open; our own message names the source instead.
    opencv_log_level("error")
    if args.max_frames is not None and args.max_frames < 1:
        raise EdgeCNNError(f"--max-frames {args.max_frames} must be positive")
    if args.min_confidence is not None and not 0.0 <= args.min_confidence <= 1.0:
        raise EdgeCNNError(f"--min-confidence {args.min_confidence} must be a probability, "
                           "from 0 to 1")
    # Every output is checked before the camera opens or the model loads: a refused name
    # costs nothing, and a run is never thrown away at its end for want of a place to write.
    check_outputs({"--save": args.save, "--jsonl": args.jsonl}, _inputs(args), args.overwrite)
    roi = parse_roi(args.roi) if args.roi else None
    classifier = runtime.load(args.model, threads=args.threads)
    override_framing(classifier, args.framing)
    if not args.skip_self_check:  # refuse to show confident garbage
        print(require_self_check(classifier).summary())
    min_confidence = min_confidence_for(classifier, args.min_confidence)
    truth = _load_truth(args.truth, args.source)
    show = not args.headless and _window_available()
    tally = Tally()
    title = f"edgecnn · {classifier.path.name} · {args.source}"
    # FFmpeg's and OpenCV's own lines (a stream reconnecting) go to the log; stderr stays
    # for the one error line, which names the flag the source came from.
    with native_stderr_logged(), _flag_in_source_errors("--source"), \
            open_source(args.source) as source, _writers(args.save, args.jsonl) as (video, log), \
            serving(args.serve, title) as view:
        for frame in view.frames(source, args.source):
            result = classifier.classify_frame(frame.image, roi)
            label = answer(result, min_confidence)
            tally.add(frame, result, truth, label)
            annotated = None
            if show or video is not None or view.watched:
                annotated = draw(frame.image, result, tally.fps, frame.wait_ms, label)
            view.publish(annotated, {**_record(frame, result, label), "fps": round(tally.fps, 2)})
            if video is not None:
                video.write(annotated)
            if log is not None:
                log.write(json.dumps(_record(frame, result, label)) + "\n")
            if show:
                cv2.imshow(WINDOW, annotated)
                if cv2.waitKey(1) & 0xFF == ord("q"):
                    break
            else:
                _status(frame, result, tally, label)
            if args.max_frames and frame.index + 1 >= args.max_frames:
                break
        stats = source.stats
    if show:
        cv2.destroyAllWindows()
    _summary(tally, stats, classifier, args.source)
    return 0


def _inputs(args: argparse.Namespace) -> dict[str, str | None]:
    """The files the run reads, by flag: no output may replace them."""
    truth = args.truth or f"{args.source}.truth.json"
    return {"--source": args.source, "--model": args.model,
            "--truth": truth if args.truth or Path(truth).is_file() else None}


@contextlib.contextmanager
def _flag_in_source_errors(flag: str) -> Iterator[None]:
    """The runtime names the source it failed on; the user also needs the flag to change."""
    try:
        yield
    except SourceError as exc:
        raise SourceError(f"{flag}: {exc}") from None


def min_confidence_for(classifier: Classifier, asked: float | None) -> float:
    """``--min-confidence`` if given, else the model's own threshold (0 if it has none);
    printed, so that a "?" in the overlay can be traced to its cause."""
    chosen = classifier.spec.min_confidence
    if asked is not None:
        level, why = asked, "--min-confidence"
    elif chosen is not None:
        level, why = chosen, "chosen on validation when the model was trained"
    else:
        level, why = 0.0, "the model file carries no threshold: every digit is answered"
    print(f"not sure below {level:.2f} top-1 probability ({why})")
    return level


def answer(result: FrameResult, min_confidence: float) -> str | None:
    """The frame's label, or None for "no digit" and for "not sure" (best class below
    ``min_confidence``)."""
    if not result.predictions or result.predictions[0].probability < min_confidence:
        return None
    return result.predictions[0].label


def _record(frame: Frame, result: FrameResult, label: str | None) -> dict:
    best = result.predictions[0] if result.predictions else None
    return {"frame": frame.index, "label": label,
            "unsure": best is not None and label is None,
            "probability": round(best.probability, 5) if best else None,
            "top": [[p.label, round(p.probability, 5)] for p in result.predictions],
            "ms": {"wait": round(frame.wait_ms, 3), "preprocess": round(result.preprocess_ms, 3),
                   "inference": round(result.inference_ms, 3)}}


def _status(frame: Frame, result: FrameResult, tally: Tally, label: str | None) -> None:
    """A rolling line on a terminal; one line every 50 frames when logging to a file."""
    interactive = sys.stdout.isatty()
    if not interactive and frame.index % 50:
        return
    best = result.predictions[0] if result.predictions else None
    shown = f"{best.label} {best.probability * 100:5.1f}%" if best else "no digit  "
    if best and label is None:
        shown = f"? ({best.label} {best.probability * 100:4.1f}%)"
    line = (f"frame {frame.index:6d} | {shown} | {tally.fps:6.1f} FPS | wait "
            f"{frame.wait_ms:5.2f} ms | pre {result.preprocess_ms:5.2f} ms | infer "
            f"{result.inference_ms:5.2f} ms")
    print(f"\r{line}", end="", flush=True) if interactive else print(line)


def _summary(tally: Tally, stats: object, classifier: Classifier, source: str) -> None:
    if sys.stdout.isatty():
        print()
    frames = tally.frames
    if not frames:
        raise SourceError(f"--source {source} delivered no frames")
    median = {"wait": tally.wait_ms.median(), "preprocess": tally.preprocess_ms.median(),
              "inference": tally.inference_ms.median()}
    print(f"{frames} frames from {source} with {classifier.path.name} ({classifier.backend.name},"
          f" {classifier.spec.precision}); median ms: wait {median['wait']:.2f}, preprocess "
          f"{median['preprocess']:.2f}, inference {median['inference']:.3f}; dropped "
          f"{getattr(stats, 'dropped', 0)}")
    if tally.unsure:
        print(f"{tally.unsure} frames said '?' (best class below --min-confidence)")
    if tally.judged:
        print(f"frame accuracy {tally.correct / tally.judged * 100:.2f}% "
              f"({tally.correct}/{tally.judged} frames match the ground truth)")


def _load_truth(path: str | None, source: str) -> list[str] | None:
    candidate = Path(path) if path else Path(f"{source}.truth.json")
    if not candidate.is_file():
        if path:
            raise EdgeCNNError(f"--truth {path}: no such file")
        return None
    try:
        return [str(label) for label in json.loads(candidate.read_text())["labels"]]
    except (ValueError, KeyError, TypeError):
        raise EdgeCNNError(f"{candidate} is not a ground-truth file (a JSON object with "
                           "'labels'); make one with python -m demos.make_clip") from None


def _window_available() -> bool:
    """False on headless OpenCV builds or without a display: fall back to the status line.
    (Without a display, OpenCV's Qt builds abort the process instead of raising.)"""
    import cv2

    available = not sys.platform.startswith("linux") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if available:
        try:
            cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
        except cv2.error:
            available = False
    if not available:
        print("webcam: no window available (headless OpenCV or no display); showing a status "
              "line instead (--headless hides this note)")
    return available


@contextlib.contextmanager
def _writers(save: str | None, jsonl: str | None) -> Iterator[tuple[object, IO[str] | None]]:
    """Annotated video and JSON-lines log, each under its final name only when complete."""
    with contextlib.ExitStack() as stack:
        video = log = None
        if save:
            tmp_video = stack.enter_context(scratch_path(save))
            video = _VideoSink(tmp_video)
            stack.callback(video.release)  # on errors too; after finish() it does nothing
        if jsonl:
            tmp_log = stack.enter_context(scratch_path(jsonl))
            log = stack.enter_context(open(tmp_log, "w", encoding="utf-8"))
        yield video, log
        if video is not None:
            video.finish(Path(save))  # type: ignore[arg-type]
        if log is not None:
            log.close()
            place(tmp_log, jsonl)  # type: ignore[arg-type]


class _VideoSink:
    """A VideoWriter opened on the first frame, when the frame size is known."""

    def __init__(self, path: Path) -> None:
        self.path, self.writer = path, None

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:
            import cv2

            fourcc = "mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), 15.0,
                                          (frame.shape[1], frame.shape[0]))
            if not self.writer.isOpened():
                raise EdgeCNNError(f"cannot write video {self.path.suffix}: use .mp4 or .avi")
        self.writer.write(frame)

    def release(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None

    def finish(self, final: Path) -> None:
        if self.writer is not None:
            self.release()
            place(self.path, final)


if __name__ == "__main__":
    sys.exit(main())
