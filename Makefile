# The README's two commands: `make demo` and `make test`. Both set up .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: demo test check lint typecheck peers bench clean

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
test: $(STAMP) peers
	$(PY) -m pytest $(PYTEST_ARGS)

peers:
	bash tests/peers/setup.sh

check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy intended gateway policies_app audit_app approvals_app dashboard bench
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) peers
	bash bench/run.sh

clean:
	rm -rf $(VENV) var
