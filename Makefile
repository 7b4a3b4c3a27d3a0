# The two commands of the README: `make demo` (main job) and `make test` (the test suite).
# Each creates .venv, installs the CPU build of torch if the venv lacks torch, then the package.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.equilayers-installed
TORCH_SPEC ?= torch==2.13.0

.PHONY: test demo selfcheck lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[test,demo,triton,export]"
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check equilayers tests benchmarks examples

# pytest exits 5 when it collects no tests: that is a failure here, not a pass.
# TRITON_INTERPRET=1: the Triton kernel tests run on CPU through Triton's interpreter.
test: lint
	TRITON_INTERPRET=1 $(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

demo: $(STAMP)
	$(PY) -m equilayers demo $(ARGS)

selfcheck: $(STAMP)
	$(PY) -m equilayers selfcheck

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
