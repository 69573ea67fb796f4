"""The spec inside a model file: ONNX ``metadata_props`` and a TFLite flatbuffer metadata entry.

Reading needs only what the runtime already has (onnxruntime, and the flatbuffer schema that
ships with ai-edge-litert), so a lone ``.onnx`` or ``.tflite`` copied to a device is enough.
A sidecar ``<file>.json`` is the fallback for files made elsewhere.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np

from runtime.errors import ModelFileError, SpecError
from runtime.optional import require
from runtime.spec import METADATA_KEY, ModelSpec

TFLITE_IDENTIFIER = b"TFL3"


def sidecar_path(model_path: str | Path) -> Path:
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def read_spec(model_path: str | Path, embedded: str | None) -> ModelSpec:
    """The embedded spec if present, else the sidecar, else a clear error."""
    if embedded:
        return ModelSpec.from_json(embedded)
    sidecar = sidecar_path(model_path)
    if sidecar.is_file():
        return ModelSpec.from_json(sidecar.read_bytes())
    raise SpecError(f"{model_path} carries no edgecnn spec and has no sidecar {sidecar.name}; "
                    "export it with `python -m export`, or write the sidecar by hand")


def tflite_metadata(model: bytes, key: str = METADATA_KEY) -> str | None:
    """Read one metadata entry of a TFLite flatbuffer without building an interpreter."""
    schema = tflite_schema()
    _check_tflite(model)
    try:
        root = schema.Model.GetRootAs(model, 0)
        for i in range(root.MetadataLength()):
            entry = root.Metadata(i)
            if entry.Name() == key.encode():
                return root.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode()
    except Exception as exc:  # a corrupt flatbuffer raises anything from IndexError to struct.error
        raise ModelFileError(f"corrupt TFLite model: cannot read its metadata ({exc})") from None
    return None


def with_tflite_metadata(model: bytes, value: str | bytes, key: str = METADATA_KEY) -> bytes:
    """Return ``model`` with ``key`` set to ``value`` (replacing an earlier entry).

    Files packed after the flatbuffer (see :func:`associated_files`) are packed again after
    the new one, so adding an entry never loses a label file.
    """
    flatbuffers = require("flatbuffers", "to write metadata into .tflite files")
    schema = tflite_schema()
    _check_tflite(model)
    packed = associated_files(model)
    tree = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    tree.metadata = [m for m in (tree.metadata or []) if m.name != key.encode()]
    data = value.encode() if isinstance(value, str) else bytes(value)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, np.uint8)
    tree.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = key
    entry.buffer = len(tree.buffers) - 1
    tree.metadata.append(entry)
    builder = flatbuffers.Builder(len(model) + len(data) + 1024)
    builder.Finish(tree.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return with_associated_files(bytes(builder.Output()), packed)


def associated_files(model: bytes) -> dict[str, bytes]:
    """Files packed after a TFLite flatbuffer as a zip archive, the TFLite Model Metadata
    convention for label files; empty when there are none."""
    stream = io.BytesIO(model)
    if not zipfile.is_zipfile(stream):
        return {}
    try:
        with zipfile.ZipFile(stream) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"corrupt TFLite model: its packed files are unreadable ({exc})") \
            from None


def with_associated_files(model: bytes, files: dict[str, bytes]) -> bytes:
    """``model`` with ``files`` packed after it, as the metadata populators do: a stored
    (uncompressed) zip appended to the flatbuffer, which interpreters ignore."""
    if not files:
        return model
    stream = io.BytesIO(model)
    stream.seek(0, io.SEEK_END)
    with zipfile.ZipFile(stream, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return stream.getvalue()


def tflite_schema() -> ModuleType:
    """LiteRT's generated flatbuffer schema: read and write ``.tflite`` files, no interpreter."""
    return require("ai_edge_litert.schema_py_generated", "to read .tflite files")


def _check_tflite(model: bytes) -> None:
    if len(model) < 8 or model[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError("not a TFLite model (no TFL3 identifier): the file is corrupt or of "
                             "another kind")


def onnx_metadata(session: object, key: str = METADATA_KEY) -> str | None:
    """Read the embedded spec from an onnxruntime session (no ``onnx`` package needed)."""
    meta = session.get_modelmeta().custom_metadata_map  # type: ignore[attr-defined]
    return meta.get(key)
