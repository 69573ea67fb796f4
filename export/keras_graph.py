"""An export-only copy of a Keras model whose ``Flatten`` has a static feature size.

Keras's ``Flatten`` keeps the batch dynamic by reading it from the input's shape at run
time, so converters emit Shape → StridedSlice/Gather → Pack/Concat → Reshape. With the
feature count known, ``reshape(x, (-1, N))`` is the same function in one op, with nothing
dynamic left to split a delegate's partition or to cost a call per frame. The copy shares
the original's weights exactly; export validates it against the original like any file.

Imports Keras at module level: import this only once a model is being exported.
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np

log = logging.getLogger(__name__)


class StaticFlatten(keras.layers.Layer):
    """Flatten to (batch, features) with the feature count fixed at export."""

    def __init__(self, features: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.features = features

    def call(self, inputs: Any) -> Any:
        return keras.ops.reshape(inputs, (-1, self.features))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.features)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "features": self.features}


def export_graph(model: keras.Model) -> keras.Model:
    """``model`` with every static-size ``Flatten`` replaced, or ``model`` itself."""
    # channels_first Flattens transpose before flattening; only channels_last is a reshape.
    flattens = {id(layer) for layer in model.layers if isinstance(layer, keras.layers.Flatten)
                and getattr(layer, "data_format", "channels_last") == "channels_last"
                and None not in tuple(layer.input.shape[1:])}
    if not flattens:
        return model

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if id(layer) in flattens:
            return StaticFlatten(int(np.prod(layer.input.shape[1:])), name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    try:
        copy = keras.models.clone_model(model, clone_function=clone)
        copy.set_weights(model.get_weights())
        copy(np.zeros((1, *model.inputs[0].shape[1:]), np.float32))  # exporters need a call
    except Exception as exc:  # subclassed or exotic models: export them as they are
        log.debug("kept the original graph (%s)", exc)
        return model
    return copy
