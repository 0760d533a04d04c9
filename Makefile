# Every target creates or reuses the project's virtualenv (.venv) from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test fast lint typecheck docs bench venv tools bqemu promtool chromium observatory-ref compat clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## The main job: six services shaped like the platform's through the rollout stages 0-4 (README: The demo).
demo: venv
	$(BIN)/python -m examples.demo

## Lint, type-check, the whole test suite (real servers on loopback), then compat.
test: lint typecheck docs tools
	$(BIN)/python -m pytest
	$(MAKE) compat

## The instrumented libraries' own test suites (pinned sdists from PyPI), without Bastion,
## in observe and in enforce, compared test by test (compat/run.py). Their test
## dependencies live in their own virtualenv, next to an editable install of Bastion.
COMPAT_VENV  := .compat-venv
COMPAT_STAMP := $(COMPAT_VENV)/.installed

$(COMPAT_STAMP): pyproject.toml compat/requirements.txt compat/constraints.txt
	test -x $(COMPAT_VENV)/bin/python || $(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install -q --upgrade pip
	$(COMPAT_VENV)/bin/python -m pip install -q -c compat/constraints.txt -e '.[bigquery,http]' \
		-r compat/requirements.txt
	touch $(COMPAT_STAMP)

compat: $(COMPAT_STAMP)
	$(COMPAT_VENV)/bin/python compat/run.py

## The fast tier: every test not marked `slow` (no servers, emulators, subprocesses, load
## or deliberate waits of a second or more), in under a minute. `make test` runs both tiers.
fast: venv
	$(BIN)/python -m pytest -m "not slow" -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pylint --disable=all --enable=duplicate-code --min-similarity-lines=6 \
		--ignore-imports=yes middleware instrumentation

typecheck: venv
	$(BIN)/mypy

## The documentation site (docs/, mkdocs.yml) into site/; --strict fails on any broken
## link, anchor or API name that does not resolve. The `docs` extra is in `dev`.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

## Tools the tests use beyond Python packages (idempotent).
tools: venv bqemu promtool chromium observatory-ref

## promtool (Debian's `prometheus` package) checks deploy/prometheus/ in the tests.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq --no-install-recommends prometheus; \
		else \
			echo "promtool missing: sudo apt-get install prometheus" >&2; exit 1; \
		fi; }

## Chromium (Debian's `chromium`) for the real-browser tests (tests/test_browser.py),
## driven headless over the DevTools protocol: no chromedriver needed.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq --no-install-recommends chromium; \
		else \
			echo "chromium missing: sudo apt-get install chromium" >&2; exit 1; \
		fi; }

## bqemulator (a DuckDB-backed BigQuery emulator the tests compare against) in its own
## virtualenv: it pins sqlglot<30.12, which the project cannot share. Its DuckDB
## `spatial` extension is imported from a wheel into a venv-local HOME, because
## bqemulator would otherwise download it (`INSTALL spatial`) at every start.
BQEMU_VENV  := .bqemu-venv
BQEMU_HOME  := $(BQEMU_VENV)/home
BQEMU_STAMP := $(BQEMU_VENV)/.installed

$(BQEMU_STAMP):
	test -x $(BQEMU_VENV)/bin/python || $(PYTHON) -m venv $(BQEMU_VENV)
	$(BQEMU_VENV)/bin/python -m pip install -q --upgrade pip
	$(BQEMU_VENV)/bin/python -m pip install -q bqemulator==1.4.0 numpy duckdb==1.5.5 \
		duckdb-extension-spatial==1.5.5 duckdb-extensions==1.5.5
	mkdir -p $(BQEMU_HOME)
	HOME=$(abspath $(BQEMU_HOME)) $(BQEMU_VENV)/bin/python -c "import duckdb; \
		from duckdb_extensions import import_extension; \
		import_extension('spatial', con=duckdb.connect())"
	touch $(BQEMU_STAMP)

bqemu: $(BQEMU_STAMP)

## The MDN HTTP Observatory release `bastion scan` follows (tests/observatory_ref/package.json
## pins it, package-lock.json pins the rest), for the differential test against the port.
## Node and npm from Debian when missing. --ignore-scripts: its postinstall downloads the
## HSTS preload and TLD lists; the port has no preload list, so it gets an empty one.
OBSREF       := tests/observatory_ref
OBSREF_STAMP := $(OBSREF)/node_modules/.installed

$(OBSREF_STAMP): $(OBSREF)/package.json $(OBSREF)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq --no-install-recommends nodejs npm; \
		else \
			echo "node/npm missing: sudo apt-get install nodejs npm" >&2; exit 1; \
		fi; }
	cd $(OBSREF) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	echo '{}' > $(OBSREF)/node_modules/@mdn/mdn-http-observatory/conf/hsts-preload.json
	touch $(OBSREF_STAMP)

observatory-ref: $(OBSREF_STAMP)

bench: venv
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(BQEMU_VENV) $(OBSREF)/node_modules $(COMPAT_VENV) .compat \
		.pytest_cache .mypy_cache .ruff_cache site
