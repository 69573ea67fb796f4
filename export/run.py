"""An export run: build each requested file, validate it, then name it final or rejected."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export import onnx as onnx_format
from export import tflite as tflite_format
from export.source import ExportSource, calibration_images
from export.validate import Check, Reference, keras_reference, validate
from runtime import bundle as names
from runtime.files import scratch_path, sha256, write_json
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
    atol: float = 1e-4
    max_drop: float = 1.0


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


def export_all(source: ExportSource, out: Path, options: ExportOptions) -> dict[str, Any]:
    """Build, validate and place every target; returns the report (also written to disk)."""
    out.mkdir(parents=True, exist_ok=True)
    plan = targets(options)
    calibration = None
    if any(p == "int8" for _, p in plan):
        calibration = calibration_images(source, options.calib_samples)
    log.info("Keras reference on %d check images …", len(source.check))
    reference = keras_reference(source.model, source.spec, source.check.images,
                                source.check.labels)
    from export.keras_graph import export_graph  # Keras is loaded by now

    graph = export_graph(source.model)  # the same function, converter-friendly
    checks: list[Check] = []
    float_onnx: Path | None = None
    for step, (fmt, precision) in enumerate(plan, start=1):
        final = out / names.EXPORT_NAMES[(fmt, precision)]
        started = time.perf_counter()
        log.info("[%d/%d] %s %s → %s", step, len(plan), fmt, precision, final.name)
        with scratch_path(final) as tmp:
            if fmt == "onnx" and precision == "float32":
                spec = onnx_format.export_float(graph, source.spec, tmp)
            elif fmt == "onnx":
                if float_onnx is None:
                    raise RuntimeError("the float32 ONNX file must be built before int8")
                spec = onnx_format.export_int8(float_onnx, source.spec, tmp, calibration,
                                               options.calib_method, options.onnx_activations)
            else:
                data, spec = tflite_format.convert(graph, source.spec, precision, calibration)
                tflite_format.save(data, tmp)
            check = validate(tmp, fmt, precision, reference, source.check.images,
                             atol=options.atol, max_drop=options.max_drop)
            placed = _place(tmp, final, check, spec)
        if fmt == "onnx" and precision == "float32":
            float_onnx = placed
        log.info("      %s %s (%.1f s)", "[✓]" if check.passed else "[x]", check.detail,
                 time.perf_counter() - started)
        checks.append(check)
    report = _report(source, options, reference, checks)
    write_json(out / names.EXPORT_REPORT, report)
    return report


def _place(tmp: Path, final: Path, check: Check, spec: Any) -> Path:
    """Passed: the final name, with a sidecar. Failed: ``<name>.rejected``, never loadable."""
    rejected = final.with_name(final.name + REJECTED_SUFFIX)
    target = final if check.passed else rejected
    check.file = target.name
    write_json(sidecar_path(target), {**spec.to_dict(), "validation": check.to_dict()})
    if check.passed:
        rejected.unlink(missing_ok=True)
        sidecar_path(rejected).unlink(missing_ok=True)
    elif final.exists():
        log.info("      kept the earlier %s; the new one is %s", final.name, target.name)
    os.replace(tmp, target)
    return target


def _report(source: ExportSource, options: ExportOptions, reference: Reference,
            checks: list[Check]) -> dict[str, Any]:
    return {
        "source_model": str(source.model_path),
        "source_sha256": sha256(source.model_path),
        "spec": source.spec.to_dict(),
        "check_images": len(source.check),
        "calibration_images": min(len(source.calibration), options.calib_samples),
        "options": vars(options),
        "reference": {"accuracy": reference.accuracy,
                      "size_bytes": source.model_path.stat().st_size},
        "files": [c.to_dict() for c in checks],
        "all_passed": all(c.passed for c in checks),
    }
