# The two commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run demo test install lint schemas bench soak stop-check docs-check clean test-pgbouncer fault-scale fault-events-away

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	  || { echo "make: videoworker needs Python 3.11 or newer; $(if $(PYTHON),$(PYTHON) is $$($(PYTHON) -V 2>&1),no python3 was found): install python3.11 (e.g. apt-get install python3.11) or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

## Start the worker and beat; with no service URLs set, on the embedded stack.
run: $(STAMP)
	$(BIN)/videoworker run

## Load the demo world (malls, pins, videos, real files) into the configured stack.
demo: $(STAMP)
	$(BIN)/videoworker demo $(DEMO_ARGS)

## The whole suite; embedded services unless TEST_DATABASE_URL/TEST_REDIS_URL/TEST_S3_ENDPOINT_URL are set.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

schemas: $(STAMP)
	$(BIN)/videoworker schemas

## Every bench, then search and totals at 10M rows (kept in .videoworker/bench-search for the next run).
BENCH_SCALE_VIDEOS ?= 10000000
bench: $(STAMP)
	$(BIN)/python -m bench
	$(BIN)/python -m bench search totals --videos $(BENCH_SCALE_VIDEOS) --samples 10 --keep

## 100,000 mixed requests on the embedded stack; every store sampled, each must end flat.
SOAK_REQUESTS ?= 100000
soak: $(STAMP)
	$(BIN)/python -m bench soak --requests $(SOAK_REQUESTS)

## Render every Mermaid picture of the README and docs/ (needs mmdc: npm install @mermaid-js/mermaid-cli).
docs-check: $(STAMP)
	$(BIN)/python -m tests.render_mermaid

## Ctrl-C on `videoworker run`, ten rounds in a row (`make test` runs three): each must
## stop worker and beat, then the servers, in at most five quiet lines.
stop-check: $(STAMP)
	RUN_STOP_ROUNDS=10 $(BIN)/python -m pytest tests/e2e/test_run_stops_quietly.py

## The events fault test with its subscriber away 10 minutes after the last change.
fault-events-away: $(STAMP)
	EVENTS_FAULT_AWAY_SECONDS=600 $(BIN)/python -m pytest -q tests/faults/test_events_relay.py

clean:
	rm -rf $(VENV) .videoworker .pytest_cache

## The e2e suite with its database behind PgBouncer in transaction mode (DB_POOLER=transaction, the relay direct).
PGBOUNCER_DIRECT_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/videoworker_pgbouncer
test-pgbouncer: $(STAMP)
	$(BIN)/python -m worker.dev.cluster through-pgbouncer $(PGBOUNCER_DIRECT_URL) -- $(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

## The scale topology's fault tests: three RabbitMQ nodes (5681-5683), two worker nodes, two beats (SCALE_BEAT_MINUTES).
SCALE_BEAT_MINUTES ?= 10
fault-scale: $(STAMP)
	VIDEOWORKER_SCALE_TESTS=1 SCALE_BEAT_MINUTES=$(SCALE_BEAT_MINUTES) $(BIN)/python -m pytest -s tests/faults/test_scale.py tests/faults/test_two_sweeps.py $(PYTEST_ARGS)
