from __future__ import annotations

import os
import subprocess
import sys

from tests.support.processes import ROOT


def run_check(**env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    full.update(env)
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=60)


def test_it_starts_on_the_embedded_default_with_no_variables():
    assert run_check().returncode == 0


def test_it_refuses_a_bad_database_url_and_names_it():
    result = run_check(DATABASE_URL="mysql://nope")
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_it_refuses_a_bad_redis_url_and_names_it():
    result = run_check(REDIS_URL="http://127.0.0.1:6379")
    assert result.returncode != 0
    assert "REDIS_URL" in result.stderr


def test_it_refuses_a_bad_body_cap_and_names_it():
    result = run_check(INTENDED_MAX_BODY_BYTES="lots")
    assert result.returncode != 0
    assert "INTENDED_MAX_BODY_BYTES" in result.stderr
