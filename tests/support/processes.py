"""Real processes for tests that cross a process boundary: the gateway (uvicorn or daphne
serving intended.asgi against the test database) and MCP upstream servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
PEERS_DIR = Path(os.environ.get("PEERS_DIR", ROOT / "var" / "peers"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_database_url() -> str:
    """The URL of the test database pytest-django created, for child processes."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s.get("USER") or ""
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    return f"postgres://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = test_database_url()
    env.setdefault("INTENDED_CONFIG_POLL_SECONDS", "0.1")
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def wait_until_listening(port: int, proc: subprocess.Popen, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port} after {seconds}s")


def redis_server_argv(port: int, directory: Path, *extra: str) -> list[str]:
    """A Redis of a test's own on 127.0.0.1:`port` (never the shared one), keeping nothing on disk."""
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(directory), *extra]


@contextmanager
def started(argv: Sequence[str], env: dict[str, str] | None = None, log: Path | None = None,
            stop_seconds: float = 10.0) -> Iterator[subprocess.Popen]:
    """Start argv from the project root without waiting for it; on leaving, terminate it and
    kill it if it has not exited after stop_seconds."""
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(list(argv), env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=stop_seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


@contextmanager
def running(argv: Sequence[str], port: int, env: dict[str, str] | None = None, log: Path | None = None,
            seconds: float = 20.0, stop_seconds: float = 10.0) -> Iterator[subprocess.Popen]:
    """Like started, but waits (up to seconds) until something listens on port."""
    with started(argv, env, log, stop_seconds) as proc:
        wait_until_listening(port, proc, seconds)
        yield proc


@contextmanager
def live_gateway(server: str = "uvicorn", port: int | None = None, **env: str) -> Iterator[str]:
    """Start the gateway on a free port (or `port`, when its URL must be known before it starts,
    e.g. for INTENDED_PUBLIC_URL) against the test database; yields its base URL."""
    port = port or free_port()
    logs = ROOT / "var" / "test-logs"
    logs.mkdir(parents=True, exist_ok=True)
    if server == "daphne":
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "intended.asgi:application"]
    elif server == "serve":  # what production runs: uvicorn with the gateway's header deadline
        argv = [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port),
                "--in-process-worker", "off"]
    else:
        # --no-proxy-headers as in production (docs/DEPLOY.md): the app reads X-Forwarded-For
        # from TRUSTED_PROXIES only, uvicorn would believe it from loopback.
        argv = [sys.executable, "-m", "uvicorn", "intended.asgi:application", "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning", "--no-access-log", "--no-proxy-headers"]
    with running(argv, port, child_env(**env), logs / f"gateway-{port}.log"):
        base = f"http://127.0.0.1:{port}"
        httpx.get(base + "/admin/login/", timeout=10)
        yield base
