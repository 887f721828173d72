# The two set-up commands of the README. Both create .venv and install on their own.
#   make run                      run BTC/USDT through the whole lifecycle on embedded defaults
#   make run SYMBOL=ETH/USDT ARGS="--scenario uptrend --approval always"
#   make test                     the whole test suite (needs PostgreSQL at 127.0.0.1:5432 for its Postgres half)
SYMBOL ?= BTC/USDT
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test bench setup

setup:
	@bash .ci/bootstrap

run: setup
	@.venv/bin/aitrader run $(SYMBOL) $(ARGS)

test:
	@bash .ci/bootstrap --with-browser
	@.venv/bin/python -m pytest -q $(PYTEST_ARGS)

bench: setup
	@.venv/bin/python bench/lifecycle_runs.py $(BENCH_ARGS)
