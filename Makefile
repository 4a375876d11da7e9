# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# what they need (torch is pinned to the CPU build that pip finds locally on these machines).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH ?= torch==2.13.0

.PHONY: install demo test test-fast bench lint clean

$(STAMP): setup.cfg pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; run 'make PYTHON=python3 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Fetch the datasets and the embedded model into $$RPP_GYM_HOME (default ~/.cache/rpp-gym).
fetch: $(STAMP)
	$(PY) -m rpp_gym data fetch movielens-1m movielens-100k smollm2-135m-instruct-q4_1

demo: fetch
	$(PY) -m rpp_gym demo

test: fetch
	$(PY) -m pytest -n 2 --dist loadfile -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not llm and not network"

bench: $(STAMP)
	$(PY) benchmarks/bench_env.py

lint: $(STAMP)
	$(VENV)/bin/ruff check rpp_gym tests benchmarks examples

clean:
	rm -rf $(VENV) build dist *.egg-info
