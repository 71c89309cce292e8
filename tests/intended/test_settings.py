"""A bad value in the environment stops start-up with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.processes import ROOT


@pytest.mark.parametrize(("env", "says"), [
    ({"INTENDED_BODY_TIMEOUT_SECONDS": "soon"}, "INTENDED_BODY_TIMEOUT_SECONDS must be a number of seconds, got 'soon'"),
    ({"INTENDED_REDIS_TIMEOUT_SECONDS": "0"}, "INTENDED_REDIS_TIMEOUT_SECONDS must be a positive number of seconds"),
    ({"INTENDED_OAUTH_ISSUER": "http://idp.example.com", "INTENDED_PUBLIC_URL": "https://gw.example.com"},
     "INTENDED_OAUTH_ISSUER must be an https:// URL (http only on loopback)"),
])
def test_it_refuses_to_start_with_a_bad_value(env, says, tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INTENDED_")}
    environment.update(env, INTENDED_DATA_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert says in result.stderr


def test_it_takes_a_decimal_number_of_seconds(tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INTENDED_")}
    environment.update(INTENDED_DATA_DIR=str(tmp_path), INTENDED_BODY_TIMEOUT_SECONDS="2.5")
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c",
                             "from django.conf import settings; print(settings.INTENDED_BODY_TIMEOUT_SECONDS)"],
                            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "2.5"
