"""The Keras model as the reference row: loaded with TensorFlow, called the fastest honest way.

Imported only when TensorFlow is installed; on a device with just the runtime extra the
benchmark runs without this row. The model is loaded, and its probabilities computed, by
export's own code (``export.source.load_keras``, ``export.validate.keras_reference``).
The reference pays what a Keras user pays per image: uint8 pixels → float values → the
model → a numpy array.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from runtime.optional import installed
from runtime.preprocess import to_model_values
from runtime.spec import ModelSpec

TRIAL_CALLS = 30  # per call style when choosing between eager and tf.function


def tensorflow_available() -> bool:
    return installed("tensorflow") and installed("keras")


class KerasReference:
    """``model(x, training=False)`` eager or as a ``tf.function``; :meth:`choose` picks one."""

    def __init__(self, model: Any, spec: ModelSpec) -> None:
        import tensorflow as tf

        self.model, self.spec = model, spec
        # autograph off: the call has no Python control flow, and it warns on lambdas
        graph = tf.function(lambda v: model(v, training=False), reduce_retracing=True,
                            autograph=False)
        self.calls: dict[str, Callable[[np.ndarray], Any]] = {
            "eager": lambda v: model(v, training=False), "tf.function": graph}
        self.call_name = "tf.function"
        self.trial_us: dict[str, float] = {}

    def choose(self, pixels: np.ndarray) -> str:
        """Time both call styles on one prepared image; keep the faster for every row."""
        values = self.engine_input(pixels)
        for name, call in self.calls.items():
            for _ in range(3):  # the first calls trace the graph or build the layers
                call(values)
            times = []
            for _ in range(TRIAL_CALLS):
                start = time.perf_counter_ns()
                np.asarray(call(values))
                times.append(time.perf_counter_ns() - start)
            self.trial_us[name] = float(np.median(times)) / 1e3
        self.call_name = min(self.trial_us, key=self.trial_us.__getitem__)
        return self.call_name

    def engine_input(self, pixels: np.ndarray) -> np.ndarray:
        return to_model_values(pixels, self.spec)

    def engine(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(self.calls[self.call_name](values))

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Export's reference path: the probabilities every exported file was checked against."""
        from export.validate import keras_reference

        return keras_reference(self.model, self.spec, pixels, None).probs
