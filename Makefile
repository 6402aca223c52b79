# keras_efficient — every target creates and uses the project virtualenv at .venv/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

MODEL ?= demo
RECIPE ?=
WEIGHTS ?=
REPRESENTATIVE ?=
# make bench BEFORE=<keras_efficient checkout> REFERENCE=<folder of the reference's .tflite>
BEFORE ?=
REFERENCE ?=

.PHONY: install demo test test-slow test-notebooks lint bench export-tflite clean

$(STAMP): setup.cfg pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[cpu,coco,export,dev]"
	# Task Library metadata schema only: tflite-support's own pins (protobuf<4) clash with
	# TF 2.21, so it is installed without dependencies (see README, "Android metadata").
	$(PY) -m pip install --quiet --no-deps "tflite-support==0.4.4"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the package (CPU TensorFlow) with dev tools

demo: $(STAMP) ## the main job on built-in data, offline
	$(PY) -m keras_efficient.cli demo

test: $(STAMP) ## the default (fast) test tier
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-cpu: $(STAMP) ## the default tier with the CPU seconds per test and per file (CI budget)
	$(PY) -m pytest -q -p tests.cpu_report $(PYTEST_ARGS)

test-slow: $(STAMP) ## the slow tier: every variant, parity for all of B0–B7
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

test-notebooks: $(STAMP) ## execute every notebook in notebooks/ top to bottom
	$(PY) -m pytest -q -m notebooks $(PYTEST_ARGS)

lint: $(STAMP) ## ruff, mypy and the import-direction contract
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(STAMP) ## latency of our models vs keras.applications, side by side
	$(PY) benchmarks/latency.py
	$(PY) benchmarks/detection_latency.py
	$(PY) benchmarks/keras_network_latency.py --rounds 2 --profile $(if $(BEFORE),--baseline $(BEFORE))
	$(PY) benchmarks/training_throughput.py
	$(PY) benchmarks/first_step.py $(if $(BEFORE),--baseline $(BEFORE))
	$(PY) benchmarks/export_latency.py
	$(PY) benchmarks/tflite_vs_reference.py --profile --compiled-model \
		$(if $(BEFORE),--before $(BEFORE)) $(if $(REFERENCE),--reference $(REFERENCE))

export-tflite: $(STAMP) ## export with a recipe (MODEL=demo|name WEIGHTS=path RECIPE=name REPRESENTATIVE=dir|json)
	$(PY) -m keras_efficient.cli export --model $(MODEL) $(if $(RECIPE),--recipe $(RECIPE)) \
		$(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(REPRESENTATIVE),--representative $(REPRESENTATIVE))

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
