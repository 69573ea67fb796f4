# Two commands do everything: `make demo` and `make test`. Both set up .venv first;
# set-up is skipped when pyproject.toml has not changed since the last install.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BUNDLE ?= artifacts

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[all,dev]"
	@touch $(STAMP)

demo: setup
	$(PY) -m train --out $(BUNDLE) --overwrite

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(BUNDLE) $(BUNDLE).work .pytest_cache .ruff_cache
