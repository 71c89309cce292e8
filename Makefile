# The README's two commands: `make demo` and `make test`. Both set up .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: demo test check lint typecheck system-packages peers bench bench-audit clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) manage.py demo

# Every test: unit, integration against real PostgreSQL/Redis when DATABASE_URL/REDIS_URL are
# set, the third-party MCP peers (installed by tests/peers/setup.sh) and the browser tests.
# On a fresh machine it installs what those need: the Debian packages (scripts/system-packages,
# apt-get as root), the npm peers (var/peers) and the venv.
test: $(STAMP) system-packages peers
	$(PY) -m pytest $(PYTEST_ARGS)

system-packages:
	bash scripts/system-packages

peers: system-packages
	bash tests/peers/setup.sh

# ruff, mypy and the import contracts ([tool.importlinter] in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy intended gateway policies_app audit_app approvals_app dashboard bench
	$(VENV)/bin/lint-imports

check: lint test

bench: $(STAMP) peers
	bash bench/run.sh

# The audit trail at a year's size (docs/PERFORMANCE.md): its own PostgreSQL database
# (intended_bench_audit on DATABASE_URL's server, default postgres@127.0.0.1), N=1,000,000
# unless AUDIT_BENCH_ARGS says otherwise (e.g. --entries 100000).
bench-audit: $(STAMP)
	$(PY) bench/audit_scale.py --write $(AUDIT_BENCH_ARGS)

clean:
	rm -rf $(VENV) var
