"""Keras layer names as the converters spell them inside ONNX node and TFLite tensor names.

Both converters trace the model under TensorFlow name scopes, ``<model>_1/<layer>_1/<op>``:
every scope gets one ``_<n>`` uniquifier, so ``conv2d_1_2`` is layer ``conv2d_1``. Reports
and float fallback speak in these layer names, the ones users gave their model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_UNIQUIFIER = re.compile(r"_\d+$")
_OWN_NODE_NAME = re.compile(r"(.+?)/[A-Z][A-Za-z]*_\d+(?:/.*)?")  # see onnx_graph.compact_names


def layer_of(name: str, known: Iterable[str] | None = None) -> str | None:
    """The Keras layer a converted tensor or node came from, or None when it cannot tell.

    A fused TFLite tensor lists several scopes separated by ``;``: the first is the op's own.
    With ``known`` layer names, only a name among them is returned.
    """
    known_set = set(known) if known is not None else None
    for part in name.split(";"):
        segments = part.split("/")
        if len(segments) < 2:
            continue
        for segment in segments[1:-1] or segments[1:]:
            candidate = _UNIQUIFIER.sub("", segment)
            if known_set is None or candidate in known_set:
                return candidate
            if segment in known_set:
                return segment
    return None


def node_layer(node_name: str) -> str | None:
    """The layer in an ONNX node name: ours (``conv1/Conv_3``, and what onnxruntime's
    fusions append to it) or the converter's scopes."""
    own = _OWN_NODE_NAME.fullmatch(node_name)
    return own.group(1) if own else layer_of(node_name)
