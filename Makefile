# Two commands for a newcomer (see README):  make demo  and  make test.
# Everything installs into a local virtual environment, .venv, on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Two stamps: the demo needs the core and the progress bar (.[cli]: numpy, threadpoolctl, tqdm);
# the tests need everything (torch, MPI, matplotlib, numba, pytest, hypothesis).
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test
# The venv's bin first, so tests find its mpiexec and bptt entry point.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo test bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[cli]"
	touch $(DEMO_STAMP)

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[test,all,onnx,interop]" "torch==2.13.0"
	touch $(TEST_STAMP)

install: $(TEST_STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/bptt train --out runs/demo --overwrite --time 60 --hidden 256 --eval-every 100
	$(VENV)/bin/bptt sample runs/demo --length 600 --temperature 0.8

# The whole suite runs on the numba kernels when numba is installed (it is, with .[all]); the
# gradient checks against finite differences and torch then run once more on each other compute
# path: the tuned numpy loops (BPTT_KERNELS=numpy) and the layers' readable reference loops
# (BPTT_KERNELS=reference), which every fast path is compared with.
EXACTNESS_TESTS = tests/test_core_gradcheck.py tests/test_core_torch_parity.py tests/test_torch_parity_gated.py \
	tests/test_lstm.py tests/test_gru.py tests/test_diagnostics.py tests/test_sequences_torch.py tests/test_min_cells.py
test: $(TEST_STAMP)
	$(PY) -m pytest
	BPTT_KERNELS=numpy $(PY) -m pytest -q $(EXACTNESS_TESTS)
	BPTT_KERNELS=reference $(PY) -m pytest -q $(EXACTNESS_TESTS)

bench: $(TEST_STAMP)
	$(VENV)/bin/bptt bench --cells rnn lstm gru --clean-blas-env --json bench/results/latest.json

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
