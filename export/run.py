"""An export run: build and validate every requested file, then place them all at once.

Files are built in a hidden scratch folder inside the output folder. Only when every file
has been built and validated are they moved to their final (or ``.rejected``) names, so an
export that stops with an error leaves the folder exactly as it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export import app_tflite
from export import onnx as onnx_format
from export import tflite as tflite_format
from export.describe import VERSION_DIGITS
from export.errors import ExportError
from export.repair import Int8Job, build_int8
from export.selfcheck import embed_reference
from export.source import ExportSource, calibration_images
from export.tflite_metadata import metadata_schema, with_classifier_metadata
from export.validate import FLOAT_ATOL, MAX_DROP_PP, Check, Reference, keras_reference, validate
from runtime import bundle as names
from runtime.errors import MissingPackageError
from runtime.files import read_json, sha256, size_bytes, write_json
from runtime.metadata import sidecar_path

log = logging.getLogger(__name__)
REJECTED_SUFFIX = ".rejected"


@dataclass
class ExportOptions:
    formats: list[str] = field(default_factory=lambda: ["onnx", "tflite"])
    precisions: list[str] = field(default_factory=lambda: ["float32"])
    calib_samples: int = 500
    calib_method: str = "minmax"
    onnx_activations: str = "uint8"
    atol: float = FLOAT_ATOL
    max_drop: float = MAX_DROP_PP
    repair: str = "auto"      # int8 files failing validation go up the repair ladder
    qat_epochs: int = 0       # > 0: quantization-aware training as the ladder's last step


@dataclass
class Built:
    """One validated file waiting in the scratch folder for its final name."""

    path: Path
    final: Path
    check: Check
    spec: Any
    quant: dict[str, Any] | None = None  # int8: diagnosis and what repair did


def targets(options: ExportOptions) -> list[tuple[str, str]]:
    """(format, precision) pairs in build order; float16/dynamic exist for TFLite only."""
    wanted = []
    for fmt in ("onnx", "tflite"):
        if fmt not in options.formats:
            continue
        for precision in ("float32", "float16", "dynamic", "int8"):
            if precision in options.precisions and (fmt, precision) in names.EXPORT_NAMES:
                wanted.append((fmt, precision))
    return wanted


def check_output_folder(out: Path, model_path: Path) -> None:
    """A foreign model never writes into a trained bundle or over another model's exports."""
    if not out.is_dir():
        return
    if (out / names.SPEC).is_file():
        raise ExportError(f"--bundle {out}/ holds a trained bundle; export a model that is not "
                          "from it into a new or empty folder")
    report = out / names.EXPORT_REPORT
    if report.is_file():
        previous = read_json(report).get("source_sha256")
        if previous and model_path.exists() and previous != sha256(model_path):
            raise ExportError(f"--bundle {out}/ holds the exports of another model; choose a "
                              "new or empty folder")


def export_all(source: ExportSource, out: Path, options: ExportOptions) -> dict[str, Any]:
    """Build, validate and place every target; returns the report (also written to disk).
    An export that stops with an error in a folder it made leaves no folder behind."""
    created = [folder for folder in (out, *out.parents) if not folder.exists()]
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _export_into(source, out, options)
    except BaseException:
        for folder in created:  # innermost first; each only while empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _export_into(source: ExportSource, out: Path, options: ExportOptions) -> dict[str, Any]:
    plan = targets(options)
    calibration = None
    if any(p == "int8" for _, p in plan):
        calibration = calibration_images(source, options.calib_samples)
    source.spec = source.spec.replace(version=sha256(source.model_path)[:VERSION_DIGITS])
    log.info("Keras reference on %d check images …", len(source.check))
    reference = keras_reference(source.model, source.spec, source.check.images,
                                source.check.labels)
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        built = _build_all(source, plan, scratch, out, calibration, reference, options)
        for item in built:
            _place(item)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    checks = [item.check for item in built]
    report = _report(source, options, reference, checks)
    report["quantization"] = {item.check.file: item.quant for item in built if item.quant}
    if report["quantization"]:
        from export.report import plot_layers

        plot_layers(report["quantization"], out / names.QUANT_PLOT)
    write_json(out / names.EXPORT_REPORT, report)
    return report


def _build_all(source: ExportSource, plan: list[tuple[str, str]], scratch: Path, out: Path,
               calibration: Any, reference: Reference, options: ExportOptions) -> list[Built]:
    from export.keras_graph import export_graph  # Keras is loaded by now

    graph = export_graph(source.model)  # the same function, converter-friendly
    built: list[Built] = []
    float_onnx: Built | None = None
    job = Int8Job(source, graph, reference, calibration, scratch, atol=options.atol,
                  max_drop=options.max_drop, method=options.calib_method,
                  activations=options.onnx_activations, repair=options.repair,
                  qat_epochs=options.qat_epochs)
    for step, (fmt, precision) in enumerate(plan, start=1):
        name = names.EXPORT_NAMES[(fmt, precision)]
        path = scratch / name
        started = time.perf_counter()
        log.info("[%d/%d] %s %s → %s", step, len(plan), fmt, precision, name)
        if fmt == "onnx" and precision == "int8" and (float_onnx is None
                                                      or not float_onnx.check.passed):
            check = Check.not_built(name, fmt, precision, "model.onnx, its float32 source, "
                                    "was not built or failed validation")
            built.append(Built(path, out / name, check, source.spec))
            log.info("      [x] %s", check.detail)
            continue
        quant = None
        if precision == "int8":  # quantize, diagnose and, when it fails, repair
            outcome = build_int8(job, fmt, name)
            os.replace(outcome.variant.path, path)
            check, spec, quant = outcome.variant.check, outcome.variant.spec, outcome.record
        else:
            if fmt == "onnx":
                spec = onnx_format.export_float(graph, source.spec, path)
            else:
                data, spec = tflite_format.convert(graph, source.spec, precision, calibration)
                tflite_format.save(data, path)
                job.float_tflite = data if precision == "float32" else job.float_tflite
            check = validate(path, fmt, precision, reference, source.check.images,
                             atol=options.atol, max_drop=options.max_drop)
        item = Built(path, out / name, check, spec, quant)
        if fmt == "onnx" and precision == "float32":
            float_onnx = item
            job.float_onnx = path
        built.append(item)
        log.info("      %s %s (%.1f s)", "[✓]" if check.passed else "[x]", check.detail,
                 time.perf_counter() - started)
    built.extend(_app_file(built, scratch, out, reference, source, options))
    _embed_self_checks(built, source)
    return built


def _app_file(built: list[Built], scratch: Path, out: Path, reference: Reference,
              source: ExportSource, options: ExportOptions) -> list[Built]:
    """The int8 TFLite file re-wired for app loaders (MediaPipe Tasks), validated the same
    way; nothing when there is no int8 TFLite file or no mediapipe to write its metadata."""
    int8 = next((b for b in built if b.final.name == names.EXPORT_NAMES[("tflite", "int8")]),
                None)
    if int8 is None:
        return []
    name = names.APP_TFLITE
    if not int8.check.passed:
        check = Check.not_built(name, "tflite", "int8", f"{int8.final.name}, its source, failed "
                                "validation")
        return [Built(scratch / name, out / name, check, int8.spec)]
    try:
        metadata_schema()
    except MissingPackageError as exc:
        log.warning("      [–] %s not written: %s", name, exc)
        return []
    started = time.perf_counter()
    log.info("[+] tflite int8 for apps → %s", name)
    data, spec = app_tflite.convert(int8.path.read_bytes(), int8.spec)
    data = with_classifier_metadata(data, spec, app_tflite.input_note(int8.spec))
    path = scratch / name
    tflite_format.save(data, path)
    check = validate(path, "tflite", "int8", reference, _check_inputs(source, name),
                     atol=options.atol, max_drop=options.max_drop)
    log.info("      %s %s (%.1f s)", "[✓]" if check.passed else "[x]", check.detail,
             time.perf_counter() - started)
    return [Built(path, out / name, check, spec)]


def _embed_self_checks(built: list[Built], source: ExportSource) -> None:
    """Every file that passed carries its proof to the device: a reference set of check
    inputs, as that file takes them (export.selfcheck). Done once all files are built, so the
    app file is made from the int8 file as validated, not with the int8 file's reference."""
    for item in built:
        if item.check.passed:
            log.info("[+] self-check → %s", item.final.name)
            embed_reference(item.path, _check_inputs(source, item.final.name))
            item.check.size_bytes = item.path.stat().st_size


def _check_inputs(source: ExportSource, name: str) -> np.ndarray:
    """The check images as the file ``name`` takes them: RGB for the app file."""
    images = source.check.images
    return app_tflite.app_pixels(images) if name == names.APP_TFLITE else images


def _place(item: Built) -> None:
    """Passed: the final name. Failed: ``<name>.rejected``, which no runtime will load."""
    rejected = item.final.with_name(item.final.name + REJECTED_SUFFIX)
    target = item.final if item.check.passed else rejected
    item.check.file = target.name
    if item.path.exists():
        os.replace(item.path, target)
        write_json(sidecar_path(target), {**item.spec.to_dict(),
                                          "validation": item.check.to_dict()})
    if item.check.passed:
        rejected.unlink(missing_ok=True)
        sidecar_path(rejected).unlink(missing_ok=True)
    elif item.final.exists():
        log.info("kept the earlier %s; the new one failed validation", item.final.name)


def _report(source: ExportSource, options: ExportOptions, reference: Reference,
            checks: list[Check]) -> dict[str, Any]:
    return {
        "source_model": str(source.model_path),
        "source_sha256": sha256(source.model_path),
        "spec": source.spec.to_dict(),
        "check_images": len(source.check),
        "calibration_images": min(len(source.calibration), options.calib_samples),
        "options": vars(options),
        "reference": {"file": source.model_path.name, "accuracy": reference.accuracy,
                      "size_bytes": size_bytes(source.model_path)},
        "files": [c.to_dict() for c in checks],
        "all_passed": all(c.passed for c in checks),
    }
