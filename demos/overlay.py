"""Drawing the demo's overlay: ROI box, top-3 labels, FPS and per-stage times."""

from __future__ import annotations

import cv2
import numpy as np

from runtime.classifier import FrameResult

GREEN, GREY, WHITE, BLACK = (60, 200, 60), (150, 150, 150), (255, 255, 255), (0, 0, 0)
AMBER = (0, 170, 255)  # BGR: the box when the model is not sure
FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw(frame: np.ndarray, result: FrameResult, fps: float, wait_ms: float,
         label: str | None = "") -> np.ndarray:
    """Return a copy of ``frame`` with the demo's overlay. ``label`` None with predictions
    means "not sure": "?" is shown above the top-3; "" shows the best prediction."""
    canvas = frame.copy()
    x, y, w, h = result.roi
    unsure = bool(result.predictions) and label is None
    color = AMBER if unsure else GREEN if result.ink_found else GREY
    cv2.rectangle(canvas, (x, y), (x + w, y + h), color, 2)
    if result.predictions:
        best = result.predictions[0]
        title = f"?  (not sure: {best.label} {best.probability * 100:.0f}%)" if unsure \
            else f"{best.label}  {best.probability * 100:.1f}%"
        _text(canvas, title, (x, max(30, y - 12)), 0.9)
        for row, p in enumerate(result.predictions[1:], start=1):
            _text(canvas, f"{p.label}  {p.probability * 100:.1f}%", (x, y + h + 24 * row), 0.6)
    else:
        _text(canvas, "no digit in the box", (x, max(30, y - 12)), 0.7)
    stats = (f"{fps:5.1f} FPS | wait {wait_ms:5.1f} ms | pre {result.preprocess_ms:5.2f} ms | "
             f"infer {result.inference_ms:5.2f} ms")
    _text(canvas, stats, (10, canvas.shape[0] - 12), 0.5)
    return canvas


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    """White text on a dark band: readable on any paper or background."""
    thickness = 2 if scale >= 0.8 else 1
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = origin
    cv2.rectangle(canvas, (x - 4, y - height - 6), (x + width + 4, y + baseline + 2), BLACK, -1)
    cv2.putText(canvas, text, origin, FONT, scale, WHITE, thickness, cv2.LINE_AA)
