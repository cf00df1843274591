# Two entry points on a fresh machine: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1

.PHONY: demo test test-fast bench reliability install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0 -e '.[test]'
	touch $@

demo: install
	$(VENV)/bin/relssl demo

# One test process per core (pytest-xdist), at most four: each holds its own torch (tests/conftest.py
# splits two torch threads among them).
test: install
	$(PY) -m pytest -n auto --maxprocesses 4

test-fast: install
	$(PY) -m pytest -n auto --maxprocesses 4 -m "not slow"

reliability: install  # the fault and bad-input suite's counts into docs/reliability.md
	$(PY) -m tests.faults docs/reliability.md

bench: install
	$(VENV)/bin/relssl bench --rows 100000,1000000

clean:
	rm -rf $(VENV) runs data *.egg-info
