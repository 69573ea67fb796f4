# Two commands do everything: `make demo` and `make test`. Both set up .venv first;
# set-up is skipped when pyproject.toml has not changed since the last install.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BUNDLE ?= artifacts

.PHONY: setup demo test test-fast test-aarch64 lint clean e2e

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# --no-compile, then compileall on every core: pip compiles the ~12,000 modules one at a
	@# time. Packages' own test folders (a quarter of the files, some of which do not even
	@# compile) are left out.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile -e ".[all,dev]"
	@# mediapipe (dev) pulls opencv-contrib-python: a GUI build of the same cv2 module, which
	@# aborts without a display. Put back the headless build that the runtime extra installs.
	@if $(PY) -m pip show --quiet opencv-contrib-python 2>/dev/null; then \
	  $(PY) -m pip uninstall --quiet --yes opencv-contrib-python && \
	  $(PY) -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
	    "opencv-python-headless==$$($(PY) -m pip show opencv-python-headless | sed -n 's/^Version: //p')"; fi
	@$(PY) -m compileall -q -j 0 -x '/tests?/' $$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") > /dev/null 2>&1 || true
	@touch $(STAMP)

# train → export (validated) → a sample camera clip → the webcam demo on it → benchmarks
demo: setup
	$(PY) -m train --out $(BUNDLE) --overwrite
	$(PY) -m export --bundle $(BUNDLE) --int8 --fp16 --dynamic
	$(PY) -m demos.make_clip --bundle $(BUNDLE)
	$(PY) -m demos.webcam --model $(BUNDLE)/model.int8.tflite --source $(BUNDLE)/clip.avi --headless
	$(PY) -m benchmarks --bundle $(BUNDLE) --quick

# Two pytest-xdist workers share the session's trained and exported bundles (tests/conftest.py,
# built_once). Tests are handed out two at a time, in the order tests/conftest.py's run_order
# sets: while one worker builds the bundles, the other runs tests that need none, and the
# short tests come last to even out the two ends. WORKERS=1 runs them one by one.
WORKERS ?= 2
test: setup
	$(PY) -m pytest -n $(WORKERS) --maxschedchunk 2 --durations 15

# Every test that needs no training, export or TensorFlow (tests/conftest.py): under a minute.
# They share nothing, so two workers (pytest-xdist) run them side by side on the two cores.
test-fast: setup
	$(PY) -m pytest -m "not slow" -n $(WORKERS)

# Not part of `make test`: the --serve page in headless Chromium (Debian's package, installed
# when missing), screenshotted to e2e_serve.png. Uses $(BUNDLE) if exported, else trains a
# small model first.
e2e: setup
	@command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)
	$(PY) tests/e2e_serve.py --bundle $(BUNDLE) --out e2e_serve.png

# Not part of `make test`: the runtime tests under emulated Debian 12 arm64 with the runtime
# extra's aarch64 wheels (needs root for apt-get and debootstrap; set-up cached in ~/.cache).
test-aarch64: setup
	$(PY) -m tests.device.emulate --bundle $(BUNDLE)

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(BUNDLE) $(BUNDLE).work .pytest_cache .ruff_cache
