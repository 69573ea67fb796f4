"""A missing engine or optional package is named as missing, with the pip command that
installs it: one line, exit code 2, no traceback; never "corrupt file"."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import ROOT, assert_clean_failure, run_module

from runtime.errors import MissingPackageError
from runtime.optional import OPTIONAL, install_hint, missing_message, provider, require


def test_a_missing_onnxruntime_is_named_not_called_a_corrupt_file(tiny_digit_model: Path,
                                                                   tmp_path: Path) -> None:
    line = assert_clean_failure(run_module("runtime", "predict", "--model",
                                           str(tiny_digit_model), "x.png",
                                           hide=("onnxruntime",)),
                                "onnxruntime is not installed", "to run .onnx models",
                                'pip install "edgecnn[runtime]"')
    assert "corrupt" not in line


def test_a_missing_opencv_is_named(tiny_digit_model: Path) -> None:
    """OpenCV comes with the runtime extra; without it ``python -m runtime`` still starts,
    to say so (the package imports its classifier, and OpenCV, on first use)."""
    assert_clean_failure(run_module("runtime", "predict", "--model", str(tiny_digit_model),
                                    "x.png", hide=("cv2",)),
                         "opencv-python-headless is not installed", "edgecnn[runtime]")


def test_a_missing_litert_is_named(tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    assert_clean_failure(run_module("runtime", "predict", "--model", str(model), "x.png",
                                    hide=("ai_edge_litert",)),
                         "ai-edge-litert is not installed", 'pip install "edgecnn[runtime]"')


@pytest.mark.parametrize(("hidden", "formats", "needle"), [
    ("onnx", "onnx", 'onnx is not installed; it is needed for ONNX export'),
    ("tf2onnx", "onnx", "tf2onnx is not installed"),
    ("tensorflow", "tflite", "tensorflow-cpu is not installed; it is needed to load the Keras"),
])
def test_export_names_a_missing_converter_before_any_work(hidden: str, formats: str,
                                                          needle: str, tmp_path: Path) -> None:
    line = assert_clean_failure(run_module("export", "--bundle", str(tmp_path / "none"),
                                           "--formats", formats, hide=(hidden,)), needle)
    assert 'pip install "edgecnn[' in line


def test_train_without_tensorflow_names_it(tmp_path: Path) -> None:
    assert_clean_failure(run_module("train", "--data", "digits", "--out", str(tmp_path / "b"),
                                    hide=("tensorflow",)),
                         "tensorflow-cpu is not installed", 'pip install "edgecnn[train]"')
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("package", ["matplotlib", "mediapipe", "onnx", "tf2onnx"])
def test_any_entry_point_names_a_missing_optional_package(package: str, tmp_path: Path) -> None:
    """run_cli's net: an optional package imported deep inside a command is still named."""
    (tmp_path / "tool.py").write_text(
        "import sys\nfrom runtime.cli import run_cli\n"
        f"sys.exit(run_cli('tool', lambda: __import__({package!r}) and 0))\n")
    done = run_module("tool", hide=(package,), env={"PYTHONPATH": f"{tmp_path}:{ROOT}"})
    pip, extra = provider(package)
    line = assert_clean_failure(done, f"tool: error: {pip} is not installed", "needed by tool")
    assert (f'pip install "edgecnn[{extra}]"' if extra else f"pip install {pip}") in line


@pytest.mark.parametrize("package", ["onnxruntime", "ai_edge_litert", "onnx", "tf2onnx",
                                     "tensorflow", "matplotlib", "mediapipe"])
def test_require_names_the_package_and_the_command(package: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # import → ModuleNotFoundError
    with pytest.raises(MissingPackageError) as error:
        require(package, "for this test")
    message = str(error.value)
    pip, extra = provider(package)
    assert message.startswith(f"{pip} is not installed; it is needed for this test: ")
    assert message.endswith(f"pip install {pip}" + (")" if extra else ""))
    assert "\n" not in message


def test_an_installed_package_whose_import_fails_is_not_called_missing() -> None:
    broken = ModuleNotFoundError("No module named 'coloredlogs'", name="coloredlogs")
    message = missing_message("onnxruntime", "to run .onnx models", broken)
    assert message.startswith("onnxruntime is installed but cannot be imported")
    assert "coloredlogs" in message and "--force-reinstall onnxruntime" in message
    abi = ImportError("numpy.core.multiarray failed to import")
    assert "installed but cannot be imported" in missing_message("ai_edge_litert", "x", abi)


def test_every_provider_is_in_the_extra_it_names() -> None:
    """The install commands printed above must install what they promise."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for module in OPTIONAL:
        pip, extra = provider(module)
        if extra is None:
            continue
        requirements = " ".join(_closure(extras, extra)).lower()
        assert pip.lower() in requirements, (module, pip, extra)
    assert install_hint("matplotlib") == 'pip install "edgecnn[train]"'


def _closure(extras: dict[str, list[str]], extra: str) -> list[str]:
    """An extra's requirements, following ``edgecnn[other]`` references."""
    found = []
    for requirement in extras[extra]:
        if requirement.startswith("edgecnn["):
            for name in requirement[len("edgecnn["):].split("]")[0].split(","):
                found += _closure(extras, name.strip())
        else:
            found.append(requirement)
    return found
