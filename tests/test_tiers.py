"""The fast tier's own rules: which tests conftest marks slow, and the guard for the rest."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import OUR_PACKAGES, ROOT, TESTS

SAMPLE = '''
import pytest


@pytest.fixture
def via_another_fixture(exported_bundle):
    return exported_bundle


def test_uses_the_bundle_through_a_fixture(via_another_fixture):
    pass


def test_builds_a_keras_model():
    import keras  # noqa: F401


def _tiny_keras_model():
    from keras import layers  # noqa: F401


def test_calls_a_helper_that_builds_one():
    _tiny_keras_model()


def test_imports_one_of_our_modules_that_imports_tensorflow():
    from train import pipeline  # noqa: F401


def test_imports_a_light_module_of_ours():
    from train.split import stratified_split  # noqa: F401


def test_only_the_parser_of_train():
    from train.__main__ import build_parser  # noqa: F401


def test_asks_for_the_bundle_at_run_time(request):
    request.getfixturevalue("trained_bundle")


@pytest.mark.slow
def test_marked_by_hand():
    pass


class TestGroup:
    pytestmark = pytest.mark.slow

    def test_in_a_marked_class(self):
        pass


def test_plain():
    pass
'''


def test_fast_tier_keeps_what_needs_no_training(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(TESTS / "conftest.py", tests / "conftest.py")
    (tests / "test_sample.py").write_text(SAMPLE)
    for package in OUR_PACKAGES:  # the conftest follows imports through our sources
        (tmp_path / package).symlink_to(ROOT / package)
    done = subprocess.run([sys.executable, "-m", "pytest", "-m", "not slow", "-q", "-rf",
                           "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tests)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    out = done.stdout
    assert "3 passed" in out and "1 failed" in out and "6 deselected" in out, out
    assert "FAILED tests/test_sample.py::test_asks_for_the_bundle_at_run_time" in out
    assert "needs trained_bundle but is not marked slow" in out
    assert "Traceback" not in out  # refused before any training started
