"""PostgreSQL goes away under a running gateway (a cluster of the test's own, never the shared
one): calls are refused with a reason and none reaches the upstream; readiness says so; when
the database is back, service resumes by itself and the audit trail shows only allowed calls
reaching the upstream."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adversarial.conftest import (
    SERVER,
    Upstream,
    call,
    eventually,
    headers_for,
    misbehaving_upstream,
)
from tests.support.processes import ROOT, child_env, free_port, live_gateway

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class OwnPostgres:
    """A throw-away cluster owned by the postgres user, started and stopped with pg_ctl."""

    def __init__(self) -> None:
        self.port = free_port()
        self.home = Path(tempfile.mkdtemp(prefix="intended-pg-"))
        shutil.chown(self.home, "postgres", "postgres")
        self.data = self.home / "data"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/intended"

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, timeout=60)

    def create(self) -> None:
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        self._as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "intended")

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.home} -c fsync=off"
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                          str(self.home / "log"), "-w", "start")

    def stop(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.home, ignore_errors=True)

    def audit(self) -> list[dict[str, Any]]:
        import psycopg

        with psycopg.connect(self.url.replace("postgres://", "postgresql://")) as conn:
            rows = conn.execute("SELECT canonical FROM audit_app_auditentry ORDER BY seq").fetchall()
        return [json.loads(bytes(row[0])) for row in rows]


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("needs the PostgreSQL server binaries")
    cluster = OwnPostgres()
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.destroy()


def seed(cluster: OwnPostgres, upstream: Upstream) -> str:
    env = child_env(DATABASE_URL=cluster.url)
    env.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)
    seeded = subprocess.run([sys.executable, str(ROOT / "tests" / "adversarial" / "seed_world.py"), upstream.url],
                            cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=120)
    return seeded.stdout.strip().splitlines()[-1]


def send(base: str, key: str, message: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{base}/mcp/{SERVER}", content=json.dumps(message), headers=headers_for(key), timeout=30)


def allowed(base: str, key: str, text: str) -> bool:
    answer = send(base, key, call(1, "echo", text=text))
    return answer.status_code == 200 and answer.json().get("result", {}).get("isError") is False


def test_it_refuses_calls_while_the_database_is_down_and_recovers(own_postgres: OwnPostgres, tmp_path: Path):
    with misbehaving_upstream(tmp_path) as upstream:
        key = seed(own_postgres, upstream)
        with live_gateway(DATABASE_URL=own_postgres.url, REDIS_URL="") as base:
            listing = {"jsonrpc": "2.0", "id": 0, "method": "tools/list"}
            eventually(lambda: "result" in send(base, key, listing).json())
            assert allowed(base, key, "before")
            reached = len(upstream.tool_calls())

            own_postgres.stop()
            for attempt in range(5):
                refused = send(base, key, call(2, "echo", text=f"during {attempt}"))
                assert refused.status_code in (200, 503)
                answer = refused.json()
                reason = answer["error"]["message"] if "error" in answer else answer["result"]["content"][0]["text"]
                assert answer.get("result", {}).get("isError", True) is True
                assert "configuration" in reason or "could not" in reason, reason
            assert len(upstream.tool_calls()) == reached
            ready = httpx.get(base + "/readyz", timeout=15)
            assert ready.status_code == 503 and ready.json()["checks"]["database"]["ok"] is False

            own_postgres.start()
            eventually(lambda: allowed(base, key, "after"), seconds=30)
            assert httpx.get(base + "/readyz", timeout=15).status_code == 200

    allows = Counter((d["tool"], d["args_sha256"]) for d in own_postgres.audit()
                     if d["kind"] == "decision" and d["decision"] == "allow")
    arrived = Counter((c["tool"], c["args_sha256"]) for c in upstream.tool_calls())
    assert all(allows[k] >= n for k, n in arrived.items()), (arrived, allows)
