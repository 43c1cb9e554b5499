# Two commands a user needs: `make demo` and `make test`.  Both create .venv on first use.
# `make lab` opens the notebooks in JupyterLab; `make notebooks` re-executes them and keeps their outputs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PRESET ?= quick

.PHONY: setup demo test test-fast figures slides compare bench doctor lab notebooks clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

# Trains the quick comparison on offline data (cached in runs/) and writes figures/.
demo: setup
	$(PY) -m mixviz figures --preset $(PRESET) --out figures --jobs 2

# A 16:9 PDF deck for a lecture (figures/slides.pdf) from the runs of `make demo` (trained once if missing).
slides: setup
	$(PY) -m mixviz slides --preset $(PRESET) --out figures/slides.pdf --jobs 2

# The whole suite, notebooks included; it runs `mixviz doctor --quick --device cpu` once
# (tests/test_doctor.py::test_quick_doctor_passes_on_this_cpu).
test: setup
	$(PY) -m pytest -q --durations=8

# Everything but the slow end-to-end tests.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

compare: setup
	$(PY) -m mixviz compare --preset $(PRESET) --out results/$(PRESET) --resume
	$(PY) scripts/calibration_table.py --results results/$(PRESET)/results.csv

bench: setup
	$(PY) -m mixviz bench --out benchmarks/results/methods.md
	$(PY) -m mixviz doctor --device cpu --out benchmarks/results/doctor.md

# Does this install work on this machine (GPU if there is one), and how fast? Exit code 1 names what failed.
doctor: setup
	$(PY) -m mixviz doctor

# JupyterLab on notebooks/, with the run store that `make demo` fills (runs/ at the repository root).
lab: setup
	MIXVIZ_RUNS="$(CURDIR)/runs" MIXVIZ_PRESET=$(PRESET) $(VENV)/bin/jupyter lab notebooks/

# Executes every notebook in place with the quick preset (training what runs/ lacks) and keeps the outputs;
# rewrites the notebook table of README.md with the measured times.
notebooks: setup
	$(PY) scripts/run_notebooks.py --preset $(PRESET) --runs "$(CURDIR)/runs"

clean:
	rm -rf runs .pytest_cache .hypothesis .benchmarks
