"""The standard TFLite Model Metadata of an image classifier, written with its flatbuffer
schema directly.

``TFLITE_METADATA`` is the metadata entry MediaPipe Tasks, the TFLite Task Library and
Android Studio read: name, description, version, the input image's colour space and
normalization, and the output's labels as an associated ``TENSOR_AXIS_LABELS`` file packed
after the model. tflite-support's writers do not install with current TensorFlow and
mediapipe's own writers fail on import, but mediapipe's generated schema module is plain
Python over ``flatbuffers``; it is the one dependency here.
"""

from __future__ import annotations

from types import ModuleType

from export.describe import description, title
from runtime.metadata import with_associated_files, with_tflite_metadata
from runtime.optional import require
from runtime.spec import ModelSpec

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"  # every field written here is in schema 1.0.0
LABEL_FILE = "labels.txt"


def with_classifier_metadata(model: bytes, spec: ModelSpec, input_note: str) -> bytes:
    """``model`` with the Model Metadata of a uint8 RGB-in, probabilities-out classifier
    (``spec`` describes that file), and its label file packed after it."""
    model = with_tflite_metadata(model, classifier_metadata(spec, input_note), METADATA_NAME)
    return with_associated_files(model, {LABEL_FILE: label_file(spec)})


def classifier_metadata(spec: ModelSpec, input_note: str) -> bytes:
    """The ``TFLITE_METADATA`` flatbuffer for a file whose input takes raw 0-255 RGB pixels."""
    import flatbuffers

    schema = metadata_schema()
    image = schema.TensorMetadataT()
    image.name = "image"
    image.description = f"{input_note}."
    properties = schema.ImagePropertiesT()
    properties.colorSpace = schema.ColorSpaceType.RGB
    image.content = _content(schema, schema.ContentProperties.ImageProperties, properties)
    normalization = schema.ProcessUnitT()
    normalization.optionsType = schema.ProcessUnitOptions.NormalizationOptions
    normalization.options = schema.NormalizationOptionsT()
    normalization.options.mean, normalization.options.std = [0.0], [1.0]  # raw pixels go in
    image.processUnits = [normalization]
    image.stats = _stats(schema, 0.0, 255.0)

    labels = schema.AssociatedFileT()
    labels.name = LABEL_FILE
    labels.description = "Class names, one per line, in the order of the output."
    labels.type = schema.AssociatedFileType.TENSOR_AXIS_LABELS
    probability = schema.TensorMetadataT()
    probability.name = "probability"
    probability.description = f"Probabilities of the {spec.num_classes} classes."
    probability.content = _content(schema, schema.ContentProperties.FeatureProperties,
                                   schema.FeaturePropertiesT())
    probability.stats = _stats(schema, 0.0, 1.0)
    probability.associatedFiles = [labels]

    subgraph = schema.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image]
    subgraph.outputTensorMetadata = [probability]
    model = schema.ModelMetadataT()
    model.name = title(spec)
    model.description = description(spec, input_note)
    model.version = spec.version or None
    model.subgraphMetadata = [subgraph]
    model.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), METADATA_IDENTIFIER)
    return bytes(builder.Output())


def metadata_schema() -> ModuleType:
    """mediapipe's generated Model Metadata schema module, or a MissingPackageError."""
    return require("mediapipe.tasks.metadata.metadata_schema_py_generated",
                   "for the TFLite Model Metadata schema (the app-ready file's labels)")


def label_file(spec: ModelSpec) -> bytes:
    """One label per line; a line break inside a label would shift every later class."""
    lines = (" ".join(label.splitlines()) for label in spec.labels)
    return ("\n".join(lines) + "\n").encode()


def _content(schema: object, kind: int, properties: object) -> object:
    content = schema.ContentT()  # type: ignore[attr-defined]
    content.contentPropertiesType = kind
    content.contentProperties = properties
    return content


def _stats(schema: object, low: float, high: float) -> object:
    stats = schema.StatsT()  # type: ignore[attr-defined]
    stats.min, stats.max = [low], [high]
    return stats
