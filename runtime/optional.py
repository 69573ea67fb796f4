"""Optional packages: import one where it is needed, or say it is missing and how to install it.

edgecnn's extras split the install (``pyproject.toml``): a Raspberry Pi needs only
``edgecnn[runtime]``, training needs ``edgecnn[train]``. A missing package is reported as
missing, never as a corrupt file, with the pip command that brings it::

    ort = require("onnxruntime", "to run .onnx models")

raises :class:`~runtime.errors.MissingPackageError` (one line, exit code 2 from any
``python -m``) when onnxruntime is absent. :func:`runtime.cli.run_cli` turns any other
``ModuleNotFoundError`` for a package listed here into the same line.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from runtime.errors import MissingPackageError, first_line

# import name: (pip package, the edgecnn extra that installs it, or None when none does).
# tests/test_missing_packages.py checks every entry against pyproject.toml.
PROVIDERS: dict[str, tuple[str, str | None]] = {
    "cv2": ("opencv-python-headless", "runtime"),
    "onnxruntime": ("onnxruntime", "runtime"),
    "ai_edge_litert": ("ai-edge-litert", "runtime"),
    "flatbuffers": ("flatbuffers", "runtime"),
    "tensorflow": ("tensorflow-cpu", "train"),
    "keras": ("keras", "train"),
    "sklearn": ("scikit-learn", "train"),
    "mlxtend": ("mlxtend", "train"),
    "matplotlib": ("matplotlib", "train"),
    "onnx": ("onnx", "export"),
    "tf2onnx": ("tf2onnx", "export"),
    "sympy": ("sympy", "export"),
    "mediapipe": ("mediapipe", None),
}


def require(module: str, needed_for: str) -> ModuleType:
    """Import ``module`` (e.g. ``"ai_edge_litert.interpreter"``), or raise a one-line
    MissingPackageError that names the package, what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingPackageError(missing_message(module, needed_for, exc)) from None


def require_installed(module: str, needed_for: str) -> None:
    """Fail early, without importing ``module`` (TensorFlow takes seconds and talks on start-up),
    when it is not installed at all."""
    top = module.split(".")[0]
    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):  # a blocked or half-removed package
        found = False
    if not found:
        raise MissingPackageError(missing_message(module, needed_for))


def missing_message(module: str, needed_for: str, exc: ImportError | None = None) -> str:
    """"X is not installed (needed …): pip install …", or, when X is installed but its own
    import fails (a missing or mismatched dependency), that, with the error's first line."""
    top = module.split(".")[0]
    pip, extra = PROVIDERS.get(top, (top.replace("_", "-"), None))
    absent = exc is None or (isinstance(exc, ModuleNotFoundError)
                             and (exc.name or top).split(".")[0] == top)
    if not absent:
        return (f"{pip} is installed but cannot be imported ({first_line(exc, 120)}); it is "
                f"needed {needed_for}: reinstall it with pip install --force-reinstall {pip}")
    how = f'pip install "edgecnn[{extra}]" (or just pip install {pip})' if extra else \
        f"pip install {pip}"
    return f"{pip} is not installed; it is needed {needed_for}: {how}"


def missing_package(exc: BaseException) -> str | None:
    """The top-level name of a package listed in PROVIDERS whose absence ``exc`` reports."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        return top if top in PROVIDERS else None
    return None


def install_hint(module: str) -> str:
    """The pip command that brings ``module``, for notes about optional output (a PNG)."""
    pip, extra = PROVIDERS.get(module, (module, None))
    return f'pip install "edgecnn[{extra}]"' if extra else f"pip install {pip}"
