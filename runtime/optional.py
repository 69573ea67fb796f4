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
import platform
from types import ModuleType

from runtime.errors import MissingPackageError, first_line

# What each edgecnn extra (pyproject.toml) brings, by import name; a test checks this against
# pyproject. Packages no extra brings are installed by name.
EXTRAS: dict[str, tuple[str, ...]] = {
    "runtime": ("cv2", "onnxruntime", "ai_edge_litert", "flatbuffers"),
    "train": ("tensorflow", "keras", "sklearn", "mlxtend", "matplotlib"),
    "export": ("onnx", "tf2onnx", "sympy"),
}
NO_EXTRA = ("mediapipe",)
X86 = platform.machine().lower() in ("x86_64", "amd64")  # pyproject's tensorflow-cpu marker
PIP_NAMES = {"cv2": "opencv-python-headless", "sklearn": "scikit-learn",  # else _ becomes -
             "tensorflow": "tensorflow-cpu" if X86 else "tensorflow"}
OPTIONAL = frozenset((*NO_EXTRA, *(name for names in EXTRAS.values() for name in names)))


def provider(module: str) -> tuple[str, str | None]:
    """(pip package, edgecnn extra or None) that installs ``module``."""
    top = module.split(".")[0]
    extra = next((extra for extra, names in EXTRAS.items() if top in names), None)
    return PIP_NAMES.get(top, top.replace("_", "-")), extra


def require(module: str, needed_for: str) -> ModuleType:
    """Import ``module`` (e.g. ``"ai_edge_litert.interpreter"``), or raise a one-line
    MissingPackageError that names the package, what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingPackageError(missing_message(module, needed_for, exc)) from None


def installed(module: str) -> bool:
    """Whether ``module``'s package is installed, without importing it (TensorFlow takes
    seconds and talks on start-up)."""
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):  # a blocked or half-removed package
        return False


def require_installed(module: str, needed_for: str) -> None:
    """Fail early, before any work, when ``module`` is not installed at all."""
    if not installed(module):
        raise MissingPackageError(missing_message(module, needed_for))


def missing_message(module: str, needed_for: str, exc: ImportError | None = None) -> str:
    """"X is not installed (needed …): pip install …", or, when X is installed but its own
    import fails (a missing or mismatched dependency), that, with the error's first line."""
    top = module.split(".")[0]
    pip, extra = provider(top)
    absent = exc is None or (isinstance(exc, ModuleNotFoundError)
                             and (exc.name or top).split(".")[0] == top)
    if not absent:
        return (f"{pip} is installed but cannot be imported ({first_line(exc, 120)}); it is "
                f"needed {needed_for}: reinstall it with pip install --force-reinstall {pip}")
    how = f'pip install "edgecnn[{extra}]" (or just pip install {pip})' if extra else \
        f"pip install {pip}"
    return f"{pip} is not installed; it is needed {needed_for}: {how}"


def missing_package(exc: BaseException) -> str | None:
    """The top-level name of an OPTIONAL package whose absence ``exc`` reports."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        return top if top in OPTIONAL else None
    return None


def install_hint(module: str) -> str:
    """The pip command that brings ``module``, for notes about optional output (a PNG)."""
    pip, extra = provider(module)
    return f'pip install "edgecnn[{extra}]"' if extra else f"pip install {pip}"
