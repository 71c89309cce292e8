"""Load generator for MCP over Streamable HTTP: raw JSON-RPC with httpx on asyncio.

Each of the N workers has its own small httpx client and its own MCP session (initialize,
notifications/initialized), then loops on `tools/call` until the measured window ends. The
first `--warmup` seconds are not counted. Every answer is checked (the echoed text must come
back), so a gateway that denies or breaks calls shows up as errors, not as speed.

While it runs, it samples the named process trees (`--watch NAME=PID`) from /proc: CPU time
(utime + stime of /proc/PID/stat) at the start and end of the window, and VmRSS from
/proc/PID/status every second. It prints one JSON object on stdout.

    python bench/loadgen.py http://127.0.0.1:9100/mcp -c 32 -d 10 --watch gateway=1234
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

ACCEPT = "application/json, text/event-stream"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class CallError(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass
class Session:
    headers: dict[str, str]
    session_id: str | None = None
    protocol_version: str | None = None
    next_id: int = 1

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        if self.protocol_version:
            headers["MCP-Protocol-Version"] = self.protocol_version
        return headers

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.first_errors) < 5:
            self.first_errors.append(f"{kind}: {detail[:300]}")


# ----------------------------------------------------------------------------- /proc sampling


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return 0.0


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return 0.0


class ProcessWatch:
    """CPU seconds over the window and peak RSS (per process and whole tree) of named trees."""

    def __init__(self, specs: list[str]) -> None:
        self.roots = {name: int(pid) for name, _, pid in (s.rpartition("=") for s in specs)}
        self.roots["loadgen"] = os.getpid()
        self.cpu_start: dict[str, float] = {}
        self.cpu_end: dict[str, float] = {}
        self.rss_tree: dict[str, float] = {}
        self.rss_process: dict[str, float] = {}
        self.pids: dict[str, int] = {}

    def sample(self) -> dict[str, tuple[float, float, float, int]]:
        out = {}
        for name, root in self.roots.items():
            pids = process_tree(root)
            rss = [rss_mib(p) for p in pids]
            out[name] = (sum(cpu_seconds(p) for p in pids), sum(rss), max(rss, default=0.0), len(pids))
        return out

    async def run(self, start: float, end: float) -> None:
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        for name, (cpu, _, _, _) in self.sample().items():
            self.cpu_start[name] = cpu
        while True:
            left = end - time.perf_counter()
            if left <= 0:
                break
            await asyncio.sleep(min(1.0, left))
            self.record(self.sample())

    def record(self, sample: dict[str, tuple[float, float, float, int]]) -> None:
        for name, (cpu, tree, process, n) in sample.items():
            self.cpu_end[name] = cpu
            self.rss_tree[name] = max(self.rss_tree.get(name, 0.0), tree)
            self.rss_process[name] = max(self.rss_process.get(name, 0.0), process)
            self.pids[name] = n

    def report(self, ok_calls: int, elapsed: float) -> dict[str, Any]:
        report = {}
        for name in self.roots:
            if name not in self.cpu_end or name not in self.cpu_start:
                continue
            cpu = self.cpu_end[name] - self.cpu_start[name]
            report[name] = {
                "cpu_s": round(cpu, 3),
                "cpu_pct": round(100.0 * cpu / elapsed, 1),
                "cpu_ms_per_call": round(1000.0 * cpu / ok_calls, 3) if ok_calls else None,
                "rss_mib_peak": round(self.rss_tree.get(name, 0.0), 1),
                "rss_mib_peak_per_process": round(self.rss_process.get(name, 0.0), 1),
                "pids": self.pids.get(name, 0),
            }
        return report


# ----------------------------------------------------------------------------- JSON-RPC


def sse_response(text: str, want_id: Any) -> dict[str, Any] | None:
    for event in text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(
            line[5:].lstrip(" ") for line in event.split("\n") if line.startswith("data:")
        )
        if not data:
            continue
        try:
            message = json.loads(data)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("id") == want_id:
            return message
    return None


async def rpc(
    client: httpx.AsyncClient, url: str, session: Session, payload: dict[str, Any]
) -> tuple[dict[str, Any] | None, httpx.Response]:
    response = await client.post(url, content=json.dumps(payload), headers=session.request_headers())
    if response.status_code >= 400:
        raise CallError(f"http_{response.status_code}", response.text)
    if "id" not in payload:
        return None, response
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "text/event-stream":
        message = sse_response(response.text, payload["id"])
        if message is None:
            raise CallError("sse_no_response", response.text[:200])
        return message, response
    try:
        message = json.loads(response.content)
    except ValueError:
        raise CallError("bad_json", response.text[:200]) from None
    if not isinstance(message, dict):
        raise CallError("bad_json", str(message)[:200])
    return message, response


async def open_session(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], protocol: str
) -> Session:
    session = Session(headers=dict(headers))
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": protocol,
            "capabilities": {},
            "clientInfo": {"name": "intended-bench", "version": "1.0"},
        },
    }
    message, response = await rpc(client, url, session, initialize)
    assert message is not None
    if "error" in message:
        raise CallError("init_error", json.dumps(message["error"]))
    session.session_id = response.headers.get("mcp-session-id")
    session.protocol_version = message.get("result", {}).get("protocolVersion") or protocol
    await rpc(client, url, session, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    # as real clients do; a gateway pins the tool definitions it sees here (trust on first use)
    listing, _ = await rpc(client, url, session, {"jsonrpc": "2.0", "id": session.new_id(), "method": "tools/list"})
    if listing is None or "error" in listing:
        raise CallError("tools_list_error", json.dumps(listing))
    return session


def check_echo(message: dict[str, Any], expected: str) -> None:
    if "error" in message:
        raise CallError("rpc_error", json.dumps(message["error"]))
    result = message.get("result")
    if not isinstance(result, dict):
        raise CallError("no_result", json.dumps(message)[:200])
    if result.get("isError"):
        raise CallError("tool_error", json.dumps(result)[:300])
    content = result.get("content") or [{}]
    if content[0].get("text") != expected:
        raise CallError("wrong_result", f"expected {expected!r}: {json.dumps(result)[:200]}")


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-p * len(sorted_values) // 100))))
    return round(sorted_values[rank - 1] * 1000.0, 3)


# ----------------------------------------------------------------------------- the run


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Accept": ACCEPT, "Content-Type": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    # One small client per worker: one pool shared by 32 concurrent requests costs more client
    # CPU (httpcore's pool bookkeeping) than a fast server spends answering them.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(args.timeout), trust_env=False)
        for _ in range(args.concurrency)
    ]
    try:
        sessions = await asyncio.gather(
            *(open_session(c, args.url, headers, args.protocol_version) for c in clients)
        )
        tally = Tally()
        counter = iter(range(10**12))
        warm_end = time.perf_counter() + args.warmup
        end = warm_end + args.duration

        async def worker(w: int) -> None:
            client, session = clients[w], sessions[w]
            while (started := time.perf_counter()) < end:
                i = next(counter)
                text = f"hello-{i}"
                payload = {
                    "jsonrpc": "2.0",
                    "id": session.new_id(),
                    "method": "tools/call",
                    "params": {"name": args.tool, "arguments": {"text": text}},
                }
                error: tuple[str, str] | None = None
                try:
                    message, _ = await rpc(client, args.url, session, payload)
                    assert message is not None
                    check_echo(message, text)
                except CallError as exc:
                    error = (exc.kind, exc.detail)
                except (httpx.HTTPError, OSError) as exc:
                    error = (type(exc).__name__, str(exc))
                finished = time.perf_counter()
                # completions inside the window, whenever they started: a slow target's
                # calls in flight at either edge are not lost
                if warm_end <= finished <= end:
                    if error is None:
                        tally.latencies.append(finished - started)
                    else:
                        tally.error(*error)
                if error is not None:
                    await asyncio.sleep(0.01)  # do not spin on a failing target

        watch = ProcessWatch(args.watch or [])
        watcher = asyncio.create_task(watch.run(warm_end, end))
        await asyncio.gather(*(worker(w) for w in range(args.concurrency)))
        await watcher
    finally:
        for client in clients:
            await client.aclose()

    latencies = sorted(tally.latencies)
    ok = len(latencies)
    return {
        "label": args.label,
        "url": args.url,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "ok": ok,
        "errors": sum(tally.errors.values()),
        "error_kinds": tally.errors,
        "first_errors": tally.first_errors,
        "calls_per_s": round(ok / args.duration, 2),
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": round(sum(latencies) / ok * 1000.0, 3) if ok else None,
        "protocol_version": sessions[0].protocol_version,
        "session_id_seen": bool(sessions[0].session_id),
        "procs": watch.report(ok, args.duration),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of calls not counted")
    parser.add_argument("--token", default=os.environ.get("BENCH_TOKEN"))
    parser.add_argument("--tool", default="echo", help="the tool name as the target lists it")
    parser.add_argument("--protocol-version", default="2025-06-18")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--label", default="")
    parser.add_argument("--watch", action="append", metavar="NAME=PID")
    args = parser.parse_args()
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        try:
            result = runner.run(measure(args))
        except (CallError, httpx.HTTPError, OSError) as exc:
            print(f"[{args.label or args.url}] cannot open sessions: {exc}"[:600], file=sys.stderr)
            sys.exit(2)
    print(
        f"[{args.label or args.url}] c={args.concurrency} {result['calls_per_s']} calls/s "
        f"p50={result['p50_ms']} p99={result['p99_ms']} ms errors={result['errors']}",
        file=sys.stderr,
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
