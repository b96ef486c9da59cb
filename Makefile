# The two commands in the README are `make demo` and `make test`; everything
# else here is what they are built from. Only python3 (3.11+), Java 17 and
# Maven are assumed on the machine (and apt-get, for the browser tests' Chromium).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KAFKA := $(PYTHON) scripts/kafka-local
# the SASL_SSL broker of tests/integration/test_secure_broker.py (controller port+1, inter-broker port+2)
SECURE_KAFKA_PORT ?= 9192
export SEGMENTER_BOOTSTRAP_SERVERS ?= 127.0.0.1:9092

.PHONY: demo test unit integration lint typecheck check install warm chromium kafka-start kafka-start-plain kafka-stop kafka-status bench clean

## demo: set up, start Kafka, stream 30 simulated days of customers through producer and consumer, print a summary
demo: install kafka-start-plain
	$(PY) -m scripts.demo

## test: set up, start Kafka, run lint (ruff check and format --check), type checks and the whole test suite (unit + integration)
test: install chromium kafka-start
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

unit: install chromium
	$(VENV)/bin/pytest tests/unit

integration: install kafka-start
	$(VENV)/bin/pytest tests/integration

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(WARM)
	touch $@

# Warm-up of a fresh clone (pip install -e . compiles nothing): the packages' bytecode, which an environment with
# PYTHONDONTWRITEBYTECODE=1 (the Dockerfile's, CI sandboxes) would otherwise recompile in every process (~70 ms of
# each start-up), and the core's numba functions, cached in segmenter/**/__pycache__ beside the sources. Without it
# the first replay or consumer start compiles them all (measured on two cores: a 3,000-event replay took 45 s the
# first time, 1.5 s after; consumer.warmup's stream compiles the same set in about 35 s).
WARM_UP_CORE := from consumer.warmup import warm_up; from segmenter.config import default_config; \
  from segmenter.pipeline import Segmenter; print('numba cache warm (s):', round(warm_up(lambda: Segmenter(default_config()))))
WARM = $(PY) -m compileall -q segmenter consumer producer && $(PY) -c "$(WARM_UP_CORE)"

## warm: compile the bytecode and the numba cache again (after editing a compiled module; the first install does it)
warm: install
	$(WARM)

# the segment explorer's tests render the page in headless Chromium (Debian's package `chromium`)
chromium:
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium for the explorer's browser tests"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq chromium; }

## kafka-start: the plain broker (9092) and the secure one (SASL_SSL, $(SECURE_KAFKA_PORT)); both idempotent
kafka-start: kafka-start-plain
	$(KAFKA) start --secure --port $(SECURE_KAFKA_PORT)

kafka-start-plain:
	$(KAFKA) start

kafka-stop:
	$(KAFKA) stop
	$(KAFKA) stop --port $(SECURE_KAFKA_PORT)

kafka-status:
	$(KAFKA) status
	$(KAFKA) status --port $(SECURE_KAFKA_PORT)

## bench: the benchmarks and the quality report (bench/RESULTS.md and plots); at most 45 minutes.
## BENCH_ARGS=--quick runs every step at tiny sizes to check the pipeline (not a measurement)
BENCH_ARGS ?=
bench: install kafka-start-plain
	$(PY) -m bench.run_all $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
