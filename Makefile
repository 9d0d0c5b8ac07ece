# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv (python3 -m venv) if it is missing and installs the project.

VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.normpipe-installed
DEMO_OUT ?= out/demo

.PHONY: install demo test test-fast clean

$(STAMP): setup.py
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/normpipe run --input data/chicago_taxi_15k.csv --output-dir $(DEMO_OUT) --label fare --model-name taxi_fare --overwrite

test: $(STAMP)
	$(PYTHON) -m pytest -q tests

test-fast: $(STAMP)
	$(PYTHON) -m pytest -q -m "not slow" tests

clean:
	rm -rf out .pytest_cache
