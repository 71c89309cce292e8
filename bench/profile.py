"""Profile the gateway's hot path under load with py-spy (sampling, no code changes).

    var/bench-peers/bench/venv/bin/python bench/profile.py            # c=32, cheap upstream
    BENCH_PROFILE_CONCURRENCY=1 ... bench/profile.py

Starts the same stack as bench/runner.py (one uvicorn gateway process), drives it with the load
generator and records the gateway with `py-spy record --format raw` (collapsed stacks). Writes
bench/results/profile-c<N>.txt (collapsed stacks, for flame graph tools) and prints the
functions with the most samples, inclusive and self, and the share of each project module.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import runner

CONCURRENCY = int(os.environ.get("BENCH_PROFILE_CONCURRENCY", "32"))
SECONDS = int(os.environ.get("BENCH_PROFILE_SECONDS", "15"))
RATE = int(os.environ.get("BENCH_PROFILE_RATE", "250"))
# cpu: only the thread holding the GIL (where the CPU goes); wall: every thread, waits included
MODE = os.environ.get("BENCH_PROFILE_MODE", "cpu")
SPY = str(Path(sys.executable).parent / "py-spy")


def frame_name(frame: str) -> str:
    """`func (path/to/file.py:12)` -> `func (file.py)`; keeps module paths short."""
    func, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    path = path.split("/", 1)[1] if path.startswith(("bench-run/", "src/")) else path
    return f"{func} ({path})"


# Cost centres, first match wins, checked against the whole stack of each sample.
CENTRES = [
    ("failed `import sniffio` in httpcore (module search on every call)", ("httpcore/_synchronization.py", "_find_and_load")),
    ("upstream HTTP client (httpx, httpcore, anyio)", ("httpx/", "httpcore/")),
    ("velocity counters (redis client)", ("redis/",)),
    ("audit entries (group commit, ORM, psycopg)", ("audit_app/",)),
    ("decision stages (policies_app: intent, pin, risk, policy)", ("policies_app/",)),
    ("other database work (ORM, psycopg)", ("django/db/", "psycopg/")),
    ("sync-to-async thread hops (asgiref, executor)", ("asgiref/", "concurrent/futures")),
    ("gateway proxy itself (parsing, door, relay)", ("gateway/",)),
    ("ASGI server and routing (uvicorn/daphne, channels)", ("uvicorn/protocols", "daphne/", "twisted/", "channels/")),
]


def centre(stack: str) -> str:
    for name, needles in CENTRES:
        if all(n in stack for n in needles) if name.startswith("failed") else any(n in stack for n in needles):
            return name
    return "event loop and everything else"


def report(collapsed: Path, top: int = 40) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    modules: collections.Counter[str] = collections.Counter()
    centres: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        centres[centre(stack)] += n
        frames = [frame_name(f) for f in stack.split(";")[1:]]  # drop the thread frame
        for name in set(frames):
            inclusive[name] += n
        if frames:
            own[frames[-1]] += n
        seen = set()
        for name in frames:
            module = name.rsplit("(", 1)[-1].rstrip(")").split("/", 1)[0]
            if module.endswith(".py"):
                module = module[:-3]
            if module not in seen:
                modules[module] += n
                seen.add(module)
    lines = [f"{total} samples", "", "## cost centres (each sample counted once)"]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in centres.most_common()]
    lines += ["", "## inclusive (share of samples with the function on the stack)"]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "## self (the function itself was running)"]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "## packages and project apps on the stack"]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in modules.most_common(25)]
    return "\n".join(lines)


def main() -> int:
    bench = runner.Bench()
    bench.source, bench.source_note = runner.gateway_source()
    out = runner.BENCH / "results"
    out.mkdir(exist_ok=True)
    collapsed = out / f"profile-{MODE}-c{CONCURRENCY}.txt"
    try:
        bench.start_upstreams()
        token = bench.prepare_gateway()
        bench.start_gateway("intended-uvicorn", [
            runner.PROJECT_PY, "-m", "uvicorn", "intended.asgi:application", "--host", "127.0.0.1", "--port", "{port}",
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
        ], token)
        target = next(t for t in bench.targets if t.name == "intended-uvicorn" and t.upstream == "raw")
        load = threading.Thread(target=lambda: bench.runs.append(bench.loadgen(target, CONCURRENCY, SECONDS + 2, 3)))
        load.start()
        time.sleep(4)
        subprocess.run([SPY, "record", "--pid", str(target.pid), "--duration", str(SECONDS), "--rate", str(RATE),
                        "--format", "raw", "--output", str(collapsed), "--nonblocking",
                        "--gil" if MODE == "cpu" else "--idle"], check=True, capture_output=True)
        load.join()
    finally:
        bench.stop_all()
    run = bench.runs[0] if bench.runs else {}
    header = (f"# py-spy {MODE} profile of {bench.source_note}, c={CONCURRENCY}, cheap upstream: "
              f"{run.get('calls_per_s')} calls/s, gateway {run.get('procs', {}).get('gateway', {}).get('cpu_ms_per_call')} ms CPU/call")
    text = header + "\n" + report(collapsed)
    (out / f"profile-{MODE}-c{CONCURRENCY}-summary.txt").write_text(text + "\n")
    print(text)
    return 0


def summarize_only(path: str) -> None:
    print(report(Path(path)))


if __name__ == "__main__":
    if len(sys.argv) > 1:  # re-summarize a recorded profile
        summarize_only(sys.argv[1])
        sys.exit(0)
    sys.exit(main())
