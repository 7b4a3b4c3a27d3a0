# The two commands of the README: `make demo` (main job) and `make test` (the test suite).
# Each creates .venv, installs torch (TORCH_SPEC) if the venv lacks it, then the package.
# PyPI's Linux torch wheel carries CUDA: for the CPU build, pre-install torch from
# https://download.pytorch.org/whl/cpu into .venv, or set TORCH_SPEC.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.equilayers-installed
TORCH_SPEC ?= torch==2.13.0

XDIST ?= -n auto --dist loadgroup
# the escnn comparisons by file: escnn builds its bases once per process, and a file's tests
# share them
PEERS_XDIST ?= -n auto --dist loadfile

PEERS ?= .venv-peers
PEERS_PY := $(PEERS)/bin/python
PEERS_STAMP := $(PEERS)/.equilayers-peers-installed

.PHONY: test test-peers test-wheel demo docs selfcheck lint bench-accuracy bench-segmentation clean

$(STAMP): pyproject.toml
	@echo "make: creating $(VENV) with torch ($(TORCH_SPEC), if not there) and equilayers' test, demo, triton \
	(about 1 GB: its interpreter runs the GPU kernels' tests on the CPU), export and docs extras \
	(the tests build the documentation site with mkdocs --strict)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[test,demo,triton,export,docs]"
	touch $(STAMP)

# escnn (an optional peer, compared against in tests) needs gfortran and numpy<2, so it gets its
# own venv; escnn goes in its own pip step (see shared NOTES: lie_learn backtracking).
$(PEERS_STAMP):
	test -x $(PEERS_PY) || $(PYTHON) -m venv $(PEERS)
	$(PEERS_PY) -c "import torch" 2>/dev/null || $(PEERS_PY) -m pip install "$(TORCH_SPEC)"
	@command -v gfortran >/dev/null || echo "make test: escnn's dependency py3nj needs a Fortran \
	compiler; installing Debian's gfortran system-wide with apt-get (needs root)"
	command -v gfortran >/dev/null || apt-get install -y gfortran \
	  || (apt-get update && apt-get install -y gfortran)
	$(PEERS_PY) -m pip install escnn
	$(PEERS_PY) -m pip install pytest pytest-xdist hypothesis scikit-image "numpy<2" kornia==0.9.0 \
	  antialiased-cnns==0.3
	touch $@

# The escnn, kornia and antialiased-cnns comparison tests (every test file that skips with
# _peers.ESCNN_MISSING, KORNIA_MISSING or ANTIALIASED_CNNS_MISSING, directly or through a
# tests/_*.py helper such as _interop_common.py, and the docs' escnn porting blocks;
# tests/test_package.py checks the list) in the peers venv. Where escnn cannot be installed
# (no gfortran, no root for apt-get), they are skipped with this message.
test-peers: lint
	@if $(MAKE) --no-print-directory $(PEERS_STAMP); then \
	  $(PEERS_PY) -c "import xdist" 2>/dev/null || $(PEERS_PY) -m pip install -q pytest-xdist; \
	  $(PEERS_PY) -m pytest -q -p no:cacheprovider $(PEERS_XDIST) tests/test_escnn_compat.py \
	    tests/test_interop_2d.py tests/test_interop_2d_off_grid.py tests/test_interop_3d.py \
	    tests/test_interop_so3.py tests/test_interop_checks.py \
	    tests/test_escnn_harmonic.py tests/test_escnn_nonlinearities.py tests/test_escnn_so3.py \
	    tests/test_escnn_so2.py tests/test_escnn_so2_models.py tests/test_escnn_so2_refusals.py \
	    tests/test_escnn_models.py tests/test_escnn_migration.py tests/test_docs.py \
	    tests/test_bench_segmentation3d.py tests/test_edge_aware.py tests/test_peer_mappings.py \
	    tests/test_escnn_pools3d.py tests/test_escnn_iid_batch_norm.py \
	    tests/test_escnn_sphere.py tests/test_escnn_ico.py tests/test_escnn_axial.py \
	    tests/test_escnn_steerable_transpose3d.py tests/test_escnn_tensor_product.py \
	    tests/test_escnn_linear.py tests/test_escnn_aliasing.py tests/test_escnn_read_back.py \
	  || exit 1; \
	else echo "make test: escnn could not be installed here; its comparison tests are skipped"; fi

lint: $(STAMP)
	$(PY) -m ruff check equilayers tests benchmarks examples
	$(PY) -m mypy equilayers

# `pip install equilayers` as a user gets it: a wheel built from this tree (not an editable
# install), installed with no extras into a fresh venv in a temp dir beside the CPU build of
# torch, then tests/_wheel_smoke.py run from outside the checkout (imports, a group-conv
# forward, antialias, the selfcheck CLI, the demo's missing-extra hint). About a minute here,
# most of it installing torch.
test-wheel:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && start=$$(date +%s) && \
	$(PYTHON) -m pip wheel -q --no-deps -w "$$tmp/dist" . && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/python" -m pip install -q "$(TORCH_SPEC)" && \
	"$$tmp/venv/bin/python" -m pip install -q "$$tmp"/dist/equilayers-*.whl && \
	cd "$$tmp" && "$$tmp/venv/bin/python" -W "ignore:Failed to initialize NumPy:UserWarning" \
	  "$(CURDIR)/tests/_wheel_smoke.py" "$$tmp"/dist/equilayers-*.whl && \
	echo "make test-wheel: finished in $$(( $$(date +%s) - start )) s"

# pytest exits 5 when it collects no tests: that is a failure here, not a pass.
# TRITON_INTERPRET=1: the Triton kernel tests run on CPU through Triton's interpreter.
# XDIST: the tests spread over the machine's cores (pytest-xdist; each worker's torch gets its
# share of the cores, tests/conftest.py); XDIST= (and PEERS_XDIST=) run them in one process.
test: lint test-peers test-wheel
	TRITON_INTERPRET=1 $(PY) -m pytest $(XDIST); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

demo: $(STAMP)
	$(PY) -m equilayers demo $(ARGS)

# The accuracy family with its peer rows: e2cnn (and escnn) models trained beside ours, in the
# peers venv (e2cnn needs numpy<2.3; it runs from the source tree). About an hour on 2 cores.
bench-accuracy: $(PEERS_STAMP)
	$(PEERS_PY) -m pip install e2cnn mlxtend tqdm "numpy<2"
	$(PEERS_PY) -m benchmarks --family accuracy $(ARGS)

# The segmentation family with its escnn rows (the p4m and SO(2) U-Nets built with escnn), in
# the peers venv; mlxtend ships the digits (installed with "numpy<2" in one command: alone it
# upgrades numpy past escnn's lie-learn). About an hour on 2 cores; ARGS='--filter "SO(2)"'.
bench-segmentation: $(PEERS_STAMP)
	$(PEERS_PY) -m pip install mlxtend tqdm "numpy<2"
	$(PEERS_PY) -m benchmarks --family segmentation $(ARGS)

# The documentation site (docs/, mkdocs.yml) built into site/ with warnings as errors; the docs
# extra (mkdocs-material, mkdocstrings, matplotlib for the figures) goes into the same venv.
DOCS_STAMP := $(VENV)/.equilayers-docs-installed

$(DOCS_STAMP): pyproject.toml
	@echo "make docs: installing equilayers' docs extra (mkdocs-material, mkdocstrings, matplotlib)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	@$(PY) -c "import sys; sys.exit(sys.version_info < (3, 11))" || { echo "make docs: the \
	site's tools (mkdocs-material, mkdocstrings) need Python >= 3.11; $(PY) is $$($(PY) -V)"; \
	exit 2; }
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

selfcheck: $(STAMP)
	$(PY) -m equilayers selfcheck

clean:
	rm -rf $(VENV) $(PEERS) .pytest_cache .ruff_cache .hypothesis site
