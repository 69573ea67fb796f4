"""Opening the Keras model a user names: a ``.keras`` file, a legacy ``.h5`` or a SavedModel.

Keras 3 reads ``.keras`` and ``.h5`` itself. A TensorFlow SavedModel folder (``model.export``,
``tf.saved_model.save`` or Keras 2's ``model.save("folder")``) is wrapped as an inference-only
``TFSMLayer`` behind a ``keras.Input`` of its serving signature, which both converters take.

Every way a model fails to open is one line that names the file and the way out: a
``Lambda`` layer (Python code, refused unless ``--trust-model``), a custom class whose code is
not imported, a missing package, a truncated file.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

from export.errors import ExportError, UnsupportedModelError
from runtime.errors import first_line
from runtime.optional import require_installed

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
SAVED_MODEL_FILE = "saved_model.pb"
SERVING_ENDPOINTS = ("serve", "serving_default")  # Keras 3 model.export, then tf.saved_model
EXPORTED_SUFFIXES = (".onnx", ".tflite")
TRUST_FLAG = "--trust-model"


def model_format(path: Path) -> str:
    """``keras``, ``h5`` or ``savedmodel``, read from the file's bytes rather than its name."""
    if path.is_dir():
        if (path / SAVED_MODEL_FILE).is_file():
            return "savedmodel"
        raise ExportError(f"--model {path} is a folder but not a TensorFlow SavedModel (no "
                          f"{SAVED_MODEL_FILE} in it); pass a .keras or .h5 file or a SavedModel "
                          "folder")
    if not path.is_file():
        raise ExportError(f"no Keras model at {path}; train one with `python -m train` or pass "
                          "--model path/to/model.keras (or .h5, or a SavedModel folder)")
    if path.name == SAVED_MODEL_FILE:
        raise ExportError(f"--model {path}: pass the SavedModel's folder, {path.parent}, not the "
                          f"{SAVED_MODEL_FILE} inside it")
    if path.suffix.lower() in EXPORTED_SUFFIXES:
        raise ExportError(f"--model {path} is already an exported {path.suffix} file; export "
                          "starts from the Keras model it was made from")
    with open(path, "rb") as handle:
        head = handle.read(len(HDF5_SIGNATURE))
    if head == HDF5_SIGNATURE:
        return "h5"
    if zipfile.is_zipfile(path):
        return "keras"
    if path.suffix.lower() in (".h5", ".hdf5"):
        raise ExportError(f"{path} is not an HDF5 file (no HDF5 signature); it may be truncated "
                          "or corrupt")
    if path.suffix.lower() == ".keras":
        raise ExportError(f"{path} is not a .keras file (not a zip archive); it may be truncated "
                          "or corrupt")
    raise ExportError(f"{path} is not a .keras file (not a zip archive) nor a legacy .h5 (HDF5) "
                      "file; it may be truncated or corrupt")


def load_model(path: Path, trust: bool = False) -> Any:
    """The model at ``path`` as a ``keras.Model`` (not yet called), or a one-line error."""
    kind = model_format(path)
    from train.tf_env import import_tensorflow

    import_tensorflow()
    import keras

    if kind == "savedmodel":
        return _from_saved_model(path)
    if kind == "h5":
        require_installed("h5py", f"to read legacy .h5 models such as {path}")
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=not trust)
    except Exception as exc:  # Keras raises ValueError, TypeError, OSError, KeyError, …
        raise _load_error(path, kind, exc) from None
    from export.model_input import tf_safe_names

    return tf_safe_names(model, path)


def _load_error(path: Path, kind: str, exc: Exception) -> ExportError:
    text = _chain_text(exc)
    if "safe_mode" in text and "Lambda" in text:
        names = _lambda_layers(path, kind)
        which = (f"Lambda layer{'s' if len(names) > 1 else ''} "
                 f"{', '.join(repr(n) for n in names)}" if names else "a Lambda layer")
        return ExportError(f"{path} has {which}, whose Python code Keras will not run from a "
                           f"file by default; if you trust where the file came from, pass "
                           f"{TRUST_FLAG}")
    unknown = re.search(r"Could not locate class '([^']+)'|Unknown (?:layer|object)[^']*'([^']+)'",
                        text)
    if unknown:
        name = unknown.group(1) or unknown.group(2)
        return UnsupportedModelError(
            f"{path} uses the custom class '{name}', whose Python code is not in the file; "
            "export it from Python after importing the module that defines it (e.g. `import "
            "my_layers; from export.__main__ import main; main([...])`)")
    if isinstance(exc, OSError) and kind == "h5":
        return ExportError(f"cannot read {path} as HDF5 (truncated or corrupt?): "
                           f"{first_line(exc)}")
    return ExportError(f"cannot load Keras model {path}: {first_line(exc)}")


def _chain_text(exc: BaseException) -> str:
    """Keras wraps the cause (say, a class it cannot find) in a page of config: read them all."""
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(str(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return "\n".join(parts)


def _lambda_layers(path: Path, kind: str) -> list[str]:
    """Names of the Lambda layers in the file's saved config (nested models included)."""
    try:
        if kind == "keras":
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
        else:
            import h5py

            with h5py.File(path, "r") as handle:
                raw = handle.attrs.get("model_config")
                config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except Exception:  # the message then says "a Lambda layer" without its name
        return []
    names: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                names.append(str((node.get("config") or {}).get("name", "?")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return names


def _from_saved_model(path: Path) -> Any:
    """A SavedModel's serving signature as a one-input, one-output Keras model."""
    import keras
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise ExportError(f"cannot load SavedModel {path}: {first_line(exc)}") from None
    signatures = dict(loaded.signatures)
    endpoint = next((name for name in SERVING_ENDPOINTS if name in signatures),
                    next(iter(signatures), None))
    if endpoint is None:
        raise UnsupportedModelError(f"SavedModel {path} has no serving signature; save it with "
                                    "`model.export(folder)` or as a .keras file")
    args, kwargs = signatures[endpoint].structured_input_signature
    inputs = [*args, *kwargs.values()]
    if len(inputs) != 1:
        raise UnsupportedModelError(f"SavedModel {path} signature {endpoint!r} takes "
                                    f"{len(inputs)} inputs; export needs one image input")
    layer = keras.layers.TFSMLayer(str(path), call_endpoint=endpoint)
    image = keras.Input(tuple(inputs[0].shape[1:]), dtype=inputs[0].dtype.name)
    outputs = layer(image)
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise UnsupportedModelError(f"SavedModel {path} signature {endpoint!r} has "
                                        f"{len(outputs)} outputs ({', '.join(outputs)}); export "
                                        "needs one class output")
        outputs = next(iter(outputs.values()))
    return keras.Model(image, outputs, name=path.name)
