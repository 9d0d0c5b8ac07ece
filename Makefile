# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv (python3 -m venv) if it is missing and installs the project.

VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.normpipe-installed
DEMO_OUT ?= out/demo

.PHONY: install demo lint test test-fast dist clean

$(STAMP): setup.py pyproject.toml normpipe/version.py
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# `normpipe run` on the taxi sample inside the package (normpipe/pipeline/demo.py).
demo: $(STAMP)
	$(VENV)/bin/normpipe demo --output-dir $(DEMO_OUT)

# The linter first ([tool.ruff] in pyproject.toml), then the whole suite.
lint: $(STAMP)
	$(VENV)/bin/ruff check normpipe tests benchmarks setup.py

test: lint
	$(PYTHON) -m pytest -q tests

test-fast: lint
	$(PYTHON) -m pytest -q -m "not slow" tests

# The sdist and the wheel, in dist/.
dist: $(STAMP)
	$(PYTHON) -m build --outdir dist

clean:
	rm -rf out .pytest_cache dist build
