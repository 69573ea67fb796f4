"""Drawing the demo's overlay: ROI box, top-3 labels, FPS and per-stage times."""

from __future__ import annotations

import cv2
import numpy as np

from runtime.classifier import FrameResult

GREEN, GREY, WHITE, BLACK = (60, 200, 60), (150, 150, 150), (255, 255, 255), (0, 0, 0)
FONT = cv2.FONT_HERSHEY_SIMPLEX
MARGIN = 8     # pixels kept clear at the frame's right edge
ELLIPSIS = "..."  # Hershey fonts draw ASCII only


def draw(frame: np.ndarray, result: FrameResult, fps: float, wait_ms: float) -> np.ndarray:
    """Return a copy of ``frame`` with the demo's overlay."""
    canvas = frame.copy()
    x, y, w, h = result.roi
    cv2.rectangle(canvas, (x, y), (x + w, y + h), GREEN if result.ink_found else GREY, 2)
    if result.predictions:
        best = result.predictions[0]
        room = canvas.shape[1] - x - MARGIN  # long class names are cut to fit the frame
        _text(canvas, fit(best.label, f"  {best.probability * 100:.1f}%", 0.9, room),
              (x, max(30, y - 12)), 0.9)
        for row, p in enumerate(result.predictions[1:], start=1):
            _text(canvas, fit(p.label, f"  {p.probability * 100:.1f}%", 0.6, room),
                  (x, y + h + 24 * row), 0.6)
    else:
        _text(canvas, "no digit in the box", (x, max(30, y - 12)), 0.7)
    stats = (f"{fps:5.1f} FPS | wait {wait_ms:5.1f} ms | pre {result.preprocess_ms:5.2f} ms | "
             f"infer {result.inference_ms:5.2f} ms")
    _text(canvas, stats, (10, canvas.shape[0] - 12), 0.5)
    return canvas


def fit(label: str, suffix: str, scale: float, width: int) -> str:
    """``label + suffix``, the label cut (and marked) so that the text is at most ``width``
    pixels wide; the suffix (the probability) is never cut."""
    text = label + suffix
    if _width(text, scale) <= width:
        return text
    low, high = 0, len(label)  # the longest prefix that fits, by bisection
    while low < high:
        middle = (low + high + 1) // 2
        if _width(label[:middle] + ELLIPSIS + suffix, scale) <= width:
            low = middle
        else:
            high = middle - 1
    return label[:low] + ELLIPSIS + suffix


def _thickness(scale: float) -> int:
    return 2 if scale >= 0.8 else 1


def _width(text: str, scale: float) -> int:
    return cv2.getTextSize(text, FONT, scale, _thickness(scale))[0][0]


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    """White text on a dark band: readable on any paper or background."""
    thickness = _thickness(scale)
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = origin
    cv2.rectangle(canvas, (x - 4, y - height - 6), (x + width + 4, y + baseline + 2), BLACK, -1)
    cv2.putText(canvas, text, origin, FONT, scale, WHITE, thickness, cv2.LINE_AA)
