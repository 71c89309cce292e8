"""A/B: the velocity script's Redis client, hand-written (policies_app/redis_scripts.py) against
redis-py's asyncio client, on the gateway's own Lua script.

    .venv/bin/python bench/redis_client_ab.py [--reps 15] [--out bench/results/NAME.json]

What runs: the velocity check as the gateway runs it for one governed call (CHECK_LUA of
policies_app/velocity.py by EVALSHA: one window and the day key, a new member per call), on a
redis-server of the bench's own (loopback, nothing on disk), from one uvloop event loop per
run, at concurrency 1 and 32. The clients:

- `hand-written`: one pipelined connection per event loop, replies parsed by hiredis;
- `redis-py-1conn`: redis-py 8 asyncio, `single_connection_client=True` (one connection per
  event loop, as the gateway keeps it), `register_script` (EVALSHA, EVAL on NOSCRIPT);
- `redis-py-pool`: the same with redis-py's default connection pool (a connection per call in
  flight: at c=32, 32 connections).

Each call is bounded by `asyncio.timeout(2)`, as the gateway bounds it. The runs alternate:
each repetition runs every client once at each concurrency, in an order rotated by one per
repetition, so that the load of other work on the box (it is shared) falls on each alike.
Measured per run, after a warm-up: process CPU per call (`time.process_time`, the client's
side only: Redis's own CPU is another process) and each call's latency. The figures are
medians over the repetitions; docs/PERFORMANCE.md compares them with the gateway's whole CPU
per call.

The hand-written client is taken from the working tree; if it is ever removed, the bench loads it
from a git revision (`--hand-written-from`) so that the comparison can still be run again.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import redis.asyncio  # noqa: E402
import uvloop  # noqa: E402

from policies_app.core.velocity import DAY_TTL_MS, new_member  # noqa: E402
from policies_app.velocity import CHECK_LUA  # noqa: E402

HAND_WRITTEN_PATH = "policies_app/redis_scripts.py"
HAND_WRITTEN_FROM = "HEAD"
CONCURRENCIES = (1, 32)
CALLS = {1: 4_000, 32: 16_000}
WARMUP = 400
TIMEOUT = 2.0
# The gateway's whole CPU per allowed call (docs/PERFORMANCE.md, the load bench at e3f5ad0).
GATEWAY_CPU_US = {1: 2000.0, 32: 650.0}
THRESHOLD = 0.05  # a client difference under 5 % of the gateway's CPU per call does not matter

Call = Callable[[list[str], list[Any]], Awaitable[Any]]


def load_hand_written(rev: str) -> Any:
    """The hand-written client module: from the working tree if it is there, else from git."""
    path = ROOT / HAND_WRITTEN_PATH
    if not path.exists():
        source = subprocess.run(["git", "show", f"{rev}:{HAND_WRITTEN_PATH}"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
        path = Path(tempfile.mkdtemp()) / "redis_scripts_hand_written.py"
        path.write_text(source)
    spec = importlib.util.spec_from_file_location("redis_scripts_hand_written", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def hand_written(url: str, hw: Any) -> tuple[Call, Callable[[], Awaitable[None]]]:
    client = hw.ScriptClient(url, timeout=TIMEOUT)
    script = hw.Script(CHECK_LUA)

    async def call(keys: list[str], args: list[Any]) -> Any:
        return await client.run(script, keys, args)

    async def close() -> None:
        if client.conn is not None and client.conn.transport is not None:
            client.conn.transport.close()

    return call, close


def redis_py(single: bool) -> Callable[[str, Any], Awaitable[tuple[Call, Callable[[], Awaitable[None]]]]]:
    async def make(url: str, _hw: Any) -> tuple[Call, Callable[[], Awaitable[None]]]:
        client = redis.asyncio.Redis.from_url(url, single_connection_client=single,
                                              socket_connect_timeout=TIMEOUT)
        script = client.register_script(CHECK_LUA)

        async def call(keys: list[str], args: list[Any]) -> Any:
            async with asyncio.timeout(TIMEOUT):
                return await script(keys=keys, args=args)

        async def close() -> None:
            await client.aclose()

        return call, close

    return make


CLIENTS = {"hand-written": hand_written, "redis-py-1conn": redis_py(True), "redis-py-pool": redis_py(False)}


async def one_run(make: Any, hw: Any, url: str, concurrency: int, calls: int, tag: str) -> dict[str, Any]:
    call, close = await make(url, hw)
    keys = [f"intended:bench:{tag}:w", f"intended:bench:{tag}:d"]

    async def velocity_check() -> float:
        now_ms = int(time.time() * 1000)
        started = time.perf_counter()
        await call(keys, [now_ms, new_member(now_ms), DAY_TTL_MS, 60_000, 100_000_000])
        return time.perf_counter() - started

    async def worker(n: int, out: list[float]) -> None:
        for _ in range(n):
            out.append(await velocity_check())

    async def phase(total: int) -> list[float]:
        out: list[float] = []
        share = [total // concurrency + (1 if i < total % concurrency else 0) for i in range(concurrency)]
        await asyncio.gather(*(worker(n, out) for n in share))
        return out

    await phase(WARMUP)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    latencies = await phase(calls)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await close()
    latencies.sort()
    return {
        "calls": calls,
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "cpu_us_per_call": round(cpu / calls * 1e6, 2),
        "calls_per_s": round(calls / wall, 1),
        "p50_us": round(latencies[len(latencies) // 2] * 1e6, 1),
        "p99_us": round(latencies[int(len(latencies) * 0.99)] * 1e6, 1),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(directory)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port).ping():
                return proc, port
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for c in CONCURRENCIES:
        per_client = {}
        for name in CLIENTS:
            mine = [r for r in runs if r["client"] == name and r["concurrency"] == c]
            per_client[name] = {
                "runs": len(mine),
                "cpu_us_per_call_median": round(statistics.median(r["cpu_us_per_call"] for r in mine), 2),
                "cpu_us_per_call_min": min(r["cpu_us_per_call"] for r in mine),
                "cpu_us_per_call_max": max(r["cpu_us_per_call"] for r in mine),
                "p50_us_median": round(statistics.median(r["p50_us"] for r in mine), 1),
                "p99_us_median": round(statistics.median(r["p99_us"] for r in mine), 1),
                "calls_per_s_median": round(statistics.median(r["calls_per_s"] for r in mine), 1),
            }
        base = per_client["hand-written"]["cpu_us_per_call_median"]
        for row in per_client.values():
            extra = row["cpu_us_per_call_median"] - base
            row["cpu_us_more_than_hand_written"] = round(extra, 2)
            row["share_of_gateway_cpu_per_call"] = round(extra / GATEWAY_CPU_US[c], 4)
        summary[f"c={c}"] = per_client
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--hand-written-from", default=HAND_WRITTEN_FROM)
    parser.add_argument("--out", type=Path)
    opts = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("needs redis-server")
    hw = load_hand_written(opts.hand_written_from)
    runs: list[dict[str, Any]] = []
    names = list(CLIENTS)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as directory:
        proc, port = start_redis(Path(directory))
        url = f"redis://127.0.0.1:{port}/0"
        try:
            for rep in range(opts.reps):
                order = names[rep % len(names):] + names[:rep % len(names)]
                for c in CONCURRENCIES:
                    for name in order:
                        tag = f"{name}:{c}:{rep}"
                        result = uvloop.run(one_run(CLIENTS[name], hw, url, c, CALLS[c], tag))
                        runs.append({"rep": rep, "client": name, "concurrency": c, **result})
                        redis.Redis(port=port).delete(f"intended:bench:{tag}:w", f"intended:bench:{tag}:d")
                        print(f"rep {rep:2d} c={c:2d} {name:15s} {result['cpu_us_per_call']:7.1f} µs CPU/call"
                              f"  p50 {result['p50_us']:7.1f} µs  p99 {result['p99_us']:7.1f} µs", file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(10)
    report = {
        "what": "velocity CHECK script by EVALSHA: hand-written client vs redis-py asyncio (bench/redis_client_ab.py)",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),
        "hand_written_from": opts.hand_written_from,
        "box": {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
                "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                "shared": "yes: other sessions' tests ran on the same 2 cores; runs alternate A/B"},
        "versions": {"redis": redis.__version__, "hiredis": _version("hiredis"), "uvloop": uvloop.__version__},
        "config": {"calls": CALLS, "warmup": WARMUP, "reps": opts.reps, "timeout_s": TIMEOUT,
                   "gateway_cpu_us_per_call": GATEWAY_CPU_US, "threshold": THRESHOLD},
        "summary": summarize(runs),
        "runs": runs,
    }
    text = json.dumps(report, indent=2)
    if opts.out:
        opts.out.write_text(text + "\n")
    print(json.dumps(report["summary"], indent=2))


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
