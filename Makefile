# Two commands for a newcomer (see README):  make demo  and  make test.
# Everything installs into a local virtual environment, .venv, on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The venv's bin first, so tests find its mpiexec and bptt entry point.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,all]" "torch==2.13.0"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bptt train --out runs/demo --overwrite --time 60 --hidden 256 --eval-every 100
	$(VENV)/bin/bptt sample runs/demo --length 600 --temperature 0.8

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(VENV)/bin/bptt bench --cells rnn lstm gru --clean-blas-env --json bench/results/latest.json

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
