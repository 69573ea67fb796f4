"""The spec inside a model file: ONNX ``metadata_props`` and a TFLite flatbuffer metadata entry.

Reading needs only what the runtime already has: onnxruntime for ONNX, and for TFLite a
reader of the few flatbuffer fields involved, written against the standard library because
tflite-runtime (the only LiteRT wheel for 32-bit ARM) ships no schema module. So a lone
``.onnx`` or ``.tflite`` copied to a device is enough. A sidecar ``<file>.json`` is the
fallback for files made elsewhere.
"""

from __future__ import annotations

import io
import struct
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
        try:
            return ModelSpec.from_json(embedded)
        except SpecError as exc:
            raise SpecError(f"{model_path}: its embedded spec: {exc}") from None
    sidecar = sidecar_path(model_path)
    if sidecar.exists():
        try:
            return ModelSpec.from_json(sidecar.read_bytes())
        except SpecError as exc:
            raise SpecError(f"{sidecar}: {exc}") from None
        except OSError as exc:  # a folder, or no permission
            raise SpecError(f"cannot read the spec {sidecar}: {exc.strerror or exc}") from None
    raise SpecError(f"{model_path} carries no edgecnn spec and has no sidecar {sidecar.name}; "
                    "export it with `python -m export`, or write the sidecar by hand")


def tflite_metadata(model: bytes, key: str = METADATA_KEY) -> str | None:
    """Read one metadata entry of a TFLite flatbuffer without building an interpreter."""
    _check_tflite(model)
    try:
        value = _flatbuffer_metadata(memoryview(model), key.encode())
        return None if value is None else value.decode()
    except (struct.error, IndexError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise ModelFileError(f"corrupt TFLite model: cannot read its metadata ({exc})") from None


# Field numbers in the TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs).
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


def _flatbuffer_metadata(buf: memoryview, key: bytes) -> bytes | None:
    root = _Table(buf, _u32(buf, 0))
    for entry in root.tables(_MODEL_METADATA):
        if entry.data(_METADATA_NAME) != key:
            continue
        index = entry.scalar(_METADATA_BUFFER, "<I")
        buffers = root.tables(_MODEL_BUFFERS)
        if index >= len(buffers):
            raise ValueError(f"metadata {key.decode()!r} names buffer {index} of {len(buffers)}")
        buffer = buffers[index]
        data = buffer.data(_BUFFER_DATA)
        if data is None:  # files over 2 GB keep buffers after the flatbuffer: offset and size
            offset, size = buffer.scalar(_BUFFER_OFFSET, "<Q"), buffer.scalar(_BUFFER_SIZE, "<Q")
            if offset <= 1 or offset + size > len(buf):
                raise ValueError(f"metadata {key.decode()!r} points outside the file")
            data = bytes(buf[offset:offset + size])
        return data
    return None


class _Table:
    """One flatbuffer table: just the lookups metadata needs, every offset bounds-checked."""

    def __init__(self, buf: memoryview, pos: int) -> None:
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack("<i", _slice(buf, pos, 4))[0]

    def _field(self, number: int) -> int | None:
        entry = 4 + 2 * number
        if entry >= _u16(self.buf, self.vtable):
            return None
        offset = _u16(self.buf, self.vtable + entry)
        return self.pos + offset if offset else None

    def scalar(self, number: int, fmt: str) -> int:
        where = self._field(number)
        return 0 if where is None else struct.unpack(fmt, _slice(self.buf, where,
                                                                 struct.calcsize(fmt)))[0]

    def _vector(self, number: int) -> tuple[int, int] | None:
        where = self._field(number)
        if where is None:
            return None
        start = where + _u32(self.buf, where)
        return start + 4, _u32(self.buf, start)

    def tables(self, number: int) -> list[_Table]:
        vector = self._vector(number)
        if vector is None:
            return []
        start, length = vector
        _slice(self.buf, start, 4 * length)
        return [_Table(self.buf, start + 4 * i + _u32(self.buf, start + 4 * i))
                for i in range(length)]

    def data(self, number: int) -> bytes | None:
        """A string or a vector of bytes."""
        vector = self._vector(number)
        return None if vector is None else bytes(_slice(self.buf, *vector))


def _slice(buf: memoryview, pos: int, size: int) -> memoryview:
    if pos < 0 or size < 0 or pos + size > len(buf):
        raise IndexError(f"offset {pos} (+{size}) lies outside the {len(buf)}-byte file")
    return buf[pos:pos + size]


def _u32(buf: memoryview, pos: int) -> int:
    return struct.unpack("<I", _slice(buf, pos, 4))[0]


def _u16(buf: memoryview, pos: int) -> int:
    return struct.unpack("<H", _slice(buf, pos, 2))[0]


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
