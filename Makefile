# `make demo` and `make test` each bootstrap .venv on a fresh machine, then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench walkthrough clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres,service,load,broker]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/twin run scenarios/shift_change_burst.yaml --out reports/demo --check

test: $(STAMP)
	bash tests/prepare_services.sh
	$(PY) -m pytest -n 2 -q

walkthrough: $(STAMP)
	$(PY) examples/walkthrough.py

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/core_throughput.py
	$(PY) benchmarks/twin_throughput.py
	$(PY) benchmarks/load_driver.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
