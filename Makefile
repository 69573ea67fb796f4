# Two commands do everything: `make demo` and `make test`. Both set up .venv first;
# set-up is skipped when pyproject.toml has not changed since the last install.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BUNDLE ?= artifacts

.PHONY: setup demo test test-fast test-aarch64 lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[all,dev]"
	@touch $(STAMP)

# train → export (validated) → a sample camera clip → the webcam demo on it → benchmarks
demo: setup
	$(PY) -m train --out $(BUNDLE) --overwrite
	$(PY) -m export --bundle $(BUNDLE) --int8 --fp16 --dynamic
	$(PY) -m demos.make_clip --bundle $(BUNDLE)
	$(PY) -m demos.webcam --model $(BUNDLE)/model.int8.tflite --source $(BUNDLE)/clip.avi --headless
	$(PY) -m benchmarks --bundle $(BUNDLE) --quick

test: setup
	$(PY) -m pytest

# Every test that needs no training, export or TensorFlow (tests/conftest.py): under a minute.
test-fast: setup
	$(PY) -m pytest -m "not slow"

# Not part of `make test`: the runtime tests under emulated Debian 12 arm64 with the runtime
# extra's aarch64 wheels (needs root for apt-get and debootstrap; set-up cached in ~/.cache).
test-aarch64: setup
	$(PY) -m tests.device.emulate --bundle $(BUNDLE)

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(BUNDLE) $(BUNDLE).work .pytest_cache .ruff_cache
