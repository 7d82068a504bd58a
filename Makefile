# The two commands a newcomer needs:
#   make demo   - start a local Kafka broker + worker, play a scripted relay fleet, show the locks
#   make test   - install everything, lint, type-check and run the whole test suite
# (`make install` alone sets up .venv; `make bench` prints the benchmark figures.)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v java >/dev/null || { echo "relayguard needs Java 17 for the local Kafka broker: apt-get install openjdk-17-jre-headless" >&2; exit 1; }
	@command -v mvn >/dev/null || { echo "relayguard needs Maven to fetch the Kafka broker jars: apt-get install maven" >&2; exit 1; }
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "relayguard needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/relayguard demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy relayguard tests bench

test: lint
	$(BIN)/pytest

# Every benchmark at small sizes (a few minutes in all); BENCHMARKS.md has the full-size commands.
# The comparison tools are fetched once into ~/.cache/relayguard by scripts/fetch-*.sh.
bench: install
	$(BIN)/pip install --quiet py-spy
	scripts/fetch-policyd-rate-limit.sh >/dev/null
	scripts/fetch-fail2ban.sh >/dev/null
	$(BIN)/python bench/core_bench.py --events 20000 --users 1000 --state-users 5000
	$(BIN)/python bench/state_codec_bench.py --users 500 --events 10000
	$(BIN)/python bench/signing_bench.py --records 2000
	$(BIN)/python bench/log_parser_bench.py --lines 50000 --repeat 1
	$(BIN)/python bench/policy_server_bench.py --connections 1,16,50 --requests 2000
	$(BIN)/python bench/worker_bench.py --events 5000 --users 500 --bursts 5
	$(BIN)/python bench/restart_bench.py --users 10000
	$(BIN)/python bench/kafka_security_bench.py --events 5000 --rounds 2

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
