"""schemathesis against the OpenAPI schema the live gateway serves at /api/schema/, as an admin
with an API token: no operation answers with a 5xx, whatever it is sent. Bounded (examples per
operation, 20 s in all) so it stays under half a minute; the JUnit report is kept in
test-artifacts/schemathesis/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.approvals_app.conftest import call
from tests.policies_app.test_acceptance import customer_ops, set_up
from tests.support.processes import ROOT, live_gateway

ARTIFACTS = ROOT / "test-artifacts" / "schemathesis"
ST = Path(sys.executable).with_name("st")

pytestmark = [
    pytest.mark.skipif(not ST.exists() and not shutil.which("st"), reason="schemathesis is not installed (pip install -e '.[test]')"),
    pytest.mark.django_db(transaction=True),
]


def test_it_answers_every_operation_of_its_openapi_schema_without_a_server_error(tmp_path: Path, settings: Any) -> None:
    from approvals_app.actions import request_approval
    from dashboard import actions

    settings.INTENDED_ALLOW_PRIVATE_UPSTREAMS = True
    with customer_ops(tmp_path) as upstream:
        set_up(upstream)  # servers, agents, reviewers, policies: objects for the operations to find
        for amount in (120, 250, 900):  # pending approvals for the {id} operations to find
            request_approval(call(arguments={"customer_id": "c-42", "amount": amount}))
        actions.create_user(acting_user="tests", username="root", roles=["admin"])
        token = actions.issue_api_token(acting_user="tests", username="root")
        with live_gateway(INTENDED_ALLOW_PRIVATE_UPSTREAMS="true") as base:
            schema = httpx.get(f"{base}/api/schema/", headers={"Authorization": f"Token {token}"}, timeout=30)
            assert schema.status_code == 200, schema.text[:500]
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            argv = [str(ST if ST.exists() else shutil.which("st")), "run", f"{base}/api/schema/",
                    "--header", f"Authorization: Token {token}",
                    "--checks", "not_a_server_error",
                    "--phases", "examples,coverage,fuzzing",
                    "--max-examples", "10", "--max-time", "20", "--workers", "1", "--seed", "8",
                    "--request-timeout", "30", "--generation-database", "none",
                    "--report", "junit", "--report-junit-path", str(ARTIFACTS / "junit.xml"),
                    "--no-color", "--output-truncate", "true"]
            run = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    (ARTIFACTS / "output.txt").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
