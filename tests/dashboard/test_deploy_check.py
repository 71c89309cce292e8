"""`python manage.py check --deploy` passes with the production settings: DEBUG off, the
secret key from the environment, PostgreSQL and Redis, secure cookies and HSTS."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from tests.support.processes import ROOT

PRODUCTION = {
    "SECRET_KEY": secrets.token_urlsafe(60),
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "ALLOWED_HOSTS": "intended.example.com",
}


def check_deploy(**env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY") and not k.startswith("SECURE_")
            and not k.endswith("_COOKIE_SECURE")}
    full.update(env)
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=120)


def security_issues(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if "(security." in line]


def test_it_passes_the_deployment_checks_with_the_production_settings():
    result = check_deploy(**PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert security_issues(result) == []


def test_it_flags_debug_in_production():
    result = check_deploy(**PRODUCTION, DEBUG="true")
    assert any("security.W018" in line for line in security_issues(result))


def test_it_flags_insecure_cookies_in_production():
    result = check_deploy(**PRODUCTION, SESSION_COOKIE_SECURE="false")
    assert any("security.W012" in line for line in security_issues(result))
