"""The benchmark run: direct calls, the gateway and peer gateways, alternating, in one run.

    var/bench-peers/bench/venv/bin/python bench/runner.py          # what `make bench` runs
    BENCH_QUICK=1 ... bench/runner.py                               # a ~3 minute smoke run

It starts two upstreams (the SDK server in stateless JSON mode and a raw ASGI one), the gateway
against PostgreSQL (`intended_bench`, recreated) and Redis (db BENCH_REDIS_DB, default 7) with
the config in bench/gateway.yaml, served by uvicorn, by daphne and by uvicorn with 2 workers,
and the peers that bench/setup.sh installed (ContextForge, mcp-proxy). Then, for each
concurrency and repetition, it runs the load generator against a direct upstream and right
after against one target behind the same upstream, so drift hits both sides of each pair.
Results: bench/results/<stamp>.json (+ latest.json), a PNG plot, and docs/PERFORMANCE.md's
generated block (see bench/report.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEERS = Path(os.environ.get("BENCH_PEERS_DIR", ROOT / "var" / "bench-peers"))
WORK = ROOT / "var" / "bench-run"
PROJECT_PY = str(ROOT / ".venv" / "bin" / "python")
BENCH_PY = sys.executable

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
DURATION = float(os.environ.get("BENCH_DURATION", "4" if QUICK else "8"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "1.5" if QUICK else "2"))
REPS = int(os.environ.get("BENCH_REPS", "1" if QUICK else "2"))
CONCURRENCY = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1 32").split()]
PEER_NAMES = os.environ.get("BENCH_PEERS", "mcp-proxy contextforge").split()
DB_NAME = os.environ.get("BENCH_DB", "intended_bench")
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
REDIS_DB = os.environ.get("BENCH_REDIS_DB", "7")
ONLY = os.environ.get("BENCH_ONLY", "").split()  # restrict to these target names
# The gateway runs from a clean export of this commit (not the working tree, which other work
# in progress may have half-edited); BENCH_SOURCE=worktree measures the working tree instead.
SOURCE = os.environ.get("BENCH_SOURCE", "HEAD")
# An extra import path ahead of .venv: when set, a second uvicorn gateway ("intended-uvicorn-extra")
# runs with it, interleaved with the others, to A/B a package without touching .venv.
EXTRA_PATH = os.environ.get("BENCH_EXTRA_PYTHONPATH", "")
# Extra environment for that second gateway ("KEY=VALUE KEY=VALUE"), e.g. to see what the
# durable audit commit costs: BENCH_EXTRA_ENV="PGOPTIONS=-csynchronous_commit=off".
EXTRA_ENV = dict(item.split("=", 1) for item in os.environ.get("BENCH_EXTRA_ENV", "").split() if "=" in item)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port} after {seconds:.0f}s")


def gateway_source() -> tuple[Path, str]:
    """A directory holding the code under test and a description of it."""
    if SOURCE == "worktree":
        return ROOT, "working tree of " + git("rev-parse", "--short", "HEAD") + " (with uncommitted changes)"
    commit = git("rev-parse", SOURCE)
    target = WORK / "src" / commit[:12]
    if not (target / "manage.py").exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target, f"commit {commit[:12]} ({git('log', '-1', '--format=%s', commit)})"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Target:
    name: str  # e.g. intended-uvicorn
    upstream: str  # sdk | raw
    url: str
    tool: str = "echo"
    token: str = ""
    pid: int | None = None
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.name}@{self.upstream}"


@dataclass
class Bench:
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    upstream_urls: dict[str, str] = field(default_factory=dict)
    upstream_pids: dict[str, int] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    idle_rss: dict[str, float] = field(default_factory=dict)
    idle_cpu_pct: dict[str, float] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    source: Path = ROOT
    source_note: str = ""

    # ------------------------------------------------------------------ processes
    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        WORK.mkdir(parents=True, exist_ok=True)
        logfile = open(WORK / f"{name}.log", "wb")
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd or ROOT, stdout=logfile, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        self.commands[name] = " ".join(argv)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    # ------------------------------------------------------------------ upstreams
    def start_upstreams(self) -> None:
        for kind in ("sdk", "raw"):
            port = free_port()
            proc = self.spawn(f"upstream-{kind}", [BENCH_PY, str(BENCH / "upstream.py"), "--kind", kind, "--port", str(port)])
            wait_listening(port, proc, 30)
            self.upstream_urls[kind] = f"http://127.0.0.1:{port}/mcp"
            self.upstream_pids[kind] = proc.pid
            self.targets.append(Target("direct", kind, self.upstream_urls[kind]))
        log(f"upstreams: {self.upstream_urls}")

    # ------------------------------------------------------------------ the gateway
    def gateway_env(self, extra: bool = False) -> dict[str, str]:
        env = dict(os.environ)
        for key in ("VIRTUAL_ENV", "PYTHONHOME"):
            env.pop(key, None)
        env.update(
            DATABASE_URL=f"{PG}/{DB_NAME}",
            REDIS_URL=f"redis://127.0.0.1:6379/{REDIS_DB}",
            DJANGO_SETTINGS_MODULE="intended.settings",
            INTENDED_DATA_DIR=str(WORK / "data"),
            SECRET_KEY="bench-only-secret-key-not-for-production-0123456789",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            LOG_LEVEL="WARNING",
            PYTHONPATH=os.pathsep.join(p for p in (str(self.source), EXTRA_PATH if extra else "") if p),
            PATH=f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
        )
        if extra:
            env.update(EXTRA_ENV)
        return env

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [PROJECT_PY, "manage.py", *args], cwd=self.source, env=self.gateway_env(),
            capture_output=True, text=True, timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def prepare_gateway(self) -> str:
        """Recreate the bench database, migrate, apply the config; returns an agent key."""
        subprocess.run(["psql", PG + "/postgres", "-q", "-c", f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"], check=True, capture_output=True)
        subprocess.run(["psql", PG + "/postgres", "-q", "-c", f"CREATE DATABASE {DB_NAME}"], check=True, capture_output=True)
        self.manage("migrate", "--noinput")
        config = (BENCH / "gateway.yaml").read_text().format(sdk_url=self.upstream_urls["sdk"], raw_url=self.upstream_urls["raw"])
        path = WORK / "gateway.yaml"
        path.write_text(config)
        self.manage("apply", str(path))
        self.commands["config"] = f"python manage.py apply {path}"
        return self.manage("issue_key", "bench-agent").strip().splitlines()[-1].strip()

    def start_gateway(self, name: str, argv_for_port: list[str], token: str) -> None:
        port = free_port()
        argv = [a.replace("{port}", str(port)) for a in argv_for_port]
        proc = self.spawn(name, argv, env=self.gateway_env(extra=name.endswith("-extra")), cwd=self.source)
        try:
            wait_listening(port, proc, 60)
        except (RuntimeError, TimeoutError) as exc:
            self.skipped[name] = f"did not start: {exc} (see var/bench-run/{name}.log)"
            return
        for kind in ("sdk", "raw") if name == "intended-uvicorn" else ("raw",):
            self.targets.append(Target(name, kind, f"http://127.0.0.1:{port}/mcp/bench-{kind}", token=token, pid=proc.pid))

    # ------------------------------------------------------------------ peers
    def start_mcp_proxy(self) -> None:
        binary = PEERS / "mcp-proxy" / "venv" / "bin" / "mcp-proxy"
        if not binary.exists():
            self.skipped["mcp-proxy"] = "not installed (bash bench/setup.sh)"
            return
        for kind in ("sdk", "raw"):
            port = free_port()
            # mcp-proxy has no HTTP-to-HTTP mode: the outer one serves HTTP and spawns the inner
            # one as its stdio server, which is a Streamable HTTP client of the upstream.
            argv = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING", "--",
                    str(binary), "--log-level", "WARNING", "--transport", "streamablehttp", self.upstream_urls[kind]]
            proc = self.spawn(f"mcp-proxy-{kind}", argv)
            try:
                wait_listening(port, proc, 60)
            except (RuntimeError, TimeoutError) as exc:
                self.skipped[f"mcp-proxy@{kind}"] = str(exc)
                continue
            self.targets.append(Target("mcp-proxy", kind, f"http://127.0.0.1:{port}/mcp", pid=proc.pid, note="0.13.0, two processes chained over stdio"))

    def start_contextforge(self) -> None:
        venv = PEERS / "contextforge" / "venv"
        if not (venv / "bin" / "mcpgateway").exists():
            self.skipped["contextforge"] = "not installed (bash bench/setup.sh)"
            return
        for kind in ("sdk", "raw"):
            try:
                self.targets.append(self.contextforge(venv, kind))
            except Exception as exc:  # a peer that fails is reported, not fatal
                self.skipped[f"contextforge@{kind}"] = f"{type(exc).__name__}: {exc}"
                log(f"contextforge@{kind} skipped: {exc}")

    def contextforge(self, venv: Path, kind: str) -> Target:
        port = free_port()
        workdir = WORK / f"contextforge-{kind}"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        python = str(venv / "bin" / "python")
        subprocess.run([python, "-m", "mcpgateway.scripts.init_secrets", "--output", ".env.secrets", "--force"],
                       cwd=workdir, check=True, capture_output=True)
        secrets = dict(
            line.split("=", 1) for line in (workdir / ".env.secrets").read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        secrets = {k.strip(): v.strip().strip('"').strip("'") for k, v in secrets.items()}
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "VIRTUAL_ENV")}
        env.update(secrets)
        env.update(
            HOST="127.0.0.1", PORT=str(port), DATABASE_URL="sqlite:///./mcp.db", CACHE_TYPE="memory",
            MCPGATEWAY_UI_ENABLED="false", MCPGATEWAY_ADMIN_API_ENABLED="true",
            PLATFORM_ADMIN_EMAIL="admin@example.com", AUTH_REQUIRED="true", SSRF_ALLOW_LOCALHOST="true",
            # its default (100 req/min, then a 15 minute lockout) would end the run
            RATE_LIMITING_ENABLED="false", LOG_LEVEL="ERROR",
            # its faster mode: one upstream session per downstream session
            USE_STATEFUL_SESSIONS="true",
        )
        proc = self.spawn(f"contextforge-{kind}", [str(venv / "bin" / "mcpgateway"), "--host", "127.0.0.1", "--port", str(port), "--no-access-log"], env=env, cwd=workdir)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"exited {proc.returncode}; see var/bench-run/contextforge-{kind}.log")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("no /health after 120 s")
            time.sleep(0.5)
        # --secret=…: a generated secret may start with '-', which argparse takes for an option
        token = subprocess.run(
            [python, "-m", "mcpgateway.utils.create_jwt_token", "--username", "admin@example.com", "--exp", "1440",
             f"--secret={secrets['JWT_SECRET_KEY']}"],
            cwd=workdir, env=env, check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            client.post("/gateways", json={"name": f"bench_{kind}", "url": self.upstream_urls[kind], "transport": "STREAMABLEHTTP"}).raise_for_status()
            tools = client.get("/tools").json()
            tools = tools if isinstance(tools, list) else tools.get("items", [])
            tool = next(t for t in tools if t.get("originalName") == "echo")
            server = client.post("/servers", json={"server": {"name": f"bench_vs_{kind}", "associated_tools": [tool["id"]]}})
            server.raise_for_status()
        return Target("contextforge", kind, f"{base}/servers/{server.json()['id']}/mcp", tool=tool["name"], token=token, pid=proc.pid,
                      note="1.0.7.post20260921, USE_STATEFUL_SESSIONS=true, SQLite")

    # ------------------------------------------------------------------ measuring
    def loadgen(self, target: Target, concurrency: int, duration: float, warmup: float, **meta: Any) -> dict[str, Any]:
        argv = [BENCH_PY, str(BENCH / "loadgen.py"), target.url, "-c", str(concurrency), "-d", str(duration),
                "--warmup", str(warmup), "--tool", target.tool, "--label", target.label,
                "--watch", f"upstream={self.upstream_pids[target.upstream]}"]
        if target.pid:
            argv += ["--watch", f"gateway={target.pid}"]
        env = dict(os.environ, BENCH_TOKEN=target.token)
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=duration + warmup + 120)
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-2000:])
        run = json.loads(result.stdout.strip().splitlines()[-1])
        run.update(target=target.name, upstream=target.upstream, meta=meta)
        run.pop("url", None)
        return run

    def smoke(self) -> None:
        ok = []
        for target in self.targets:
            try:
                run = self.loadgen(target, 1, 1.0, 0.5)
            except Exception as exc:
                self.skipped[target.label] = f"smoke test failed: {exc}"[:500]
                continue
            if run["errors"] or not run["ok"]:
                self.skipped[target.label] = f"smoke test: {run['errors']} errors, first: {run['first_errors'][:2]}"
                continue
            ok.append(target)
        for label, reason in self.skipped.items():
            log(f"skipped {label}: {reason}")
        self.targets = ok

    def record_idle(self, seconds: float = 4.0) -> None:
        """RSS after start-up, and the CPU a target burns with no traffic at all (pollers,
        sealers, keep-alives): at low call rates that cost lands in "CPU ms per call"."""
        sys.path.insert(0, str(BENCH))
        from loadgen import cpu_seconds, process_tree, rss_mib

        watched = {t.name: t.pid for t in self.targets if t.pid}
        before = {name: sum(cpu_seconds(p) for p in process_tree(pid)) for name, pid in watched.items()}
        time.sleep(seconds)
        for name, pid in watched.items():
            pids = process_tree(pid)
            self.idle_rss[name] = round(max(rss_mib(p) for p in pids), 1)
            self.idle_cpu_pct[name] = round(100 * (sum(cpu_seconds(p) for p in pids) - before[name]) / seconds, 1)

    def measure(self) -> None:
        pair = 0
        for concurrency in CONCURRENCY:
            for rep in range(1, REPS + 1):
                for target in self.targets:
                    if target.name == "direct":
                        continue
                    direct = next(t for t in self.targets if t.name == "direct" and t.upstream == target.upstream)
                    pair += 1
                    for side in (direct, target):
                        run = self.loadgen(side, concurrency, DURATION, WARMUP, pair=pair, rep=rep, vs=target.label)
                        self.runs.append(run)
                        log(f"c={concurrency} rep={rep} {side.label}: {run['calls_per_s']} calls/s "
                            f"p50 {run['p50_ms']} p99 {run['p99_ms']} ms errors {run['errors']}"
                            + (f" gateway {run['procs']['gateway']['cpu_ms_per_call']} ms CPU/call" if 'gateway' in run['procs'] else ""))
                        time.sleep(0.5)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (target, upstream, concurrency): medians over repetitions, and the paired
    ratio / added latency against the direct run just before each target run."""
    by_pair: dict[int, dict[str, dict[str, Any]]] = {}
    for run in runs:
        side = "direct" if run["target"] == "direct" else "target"
        by_pair.setdefault(run["meta"]["pair"], {})[side] = run
    groups: dict[tuple[str, str, int], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for sides in by_pair.values():
        if "direct" in sides and "target" in sides:
            t = sides["target"]
            groups.setdefault((t["target"], t["upstream"], t["concurrency"]), []).append((sides["direct"], t))
            groups.setdefault(("direct", t["upstream"], t["concurrency"]), []).append((sides["direct"], sides["direct"]))

    def med(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return round(statistics.median(present), 3) if present else None

    rows = []
    for (name, upstream, concurrency), pairs in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0] != "direct", kv[0][0])):
        targets = [t for _, t in pairs]
        gateway = [t["procs"].get("gateway", {}) for t in targets]
        rows.append({
            "target": name, "upstream": upstream, "concurrency": concurrency, "runs": len(pairs),
            "calls_per_s": med([t["calls_per_s"] for t in targets]),
            "ratio_vs_direct": med([t["calls_per_s"] / d["calls_per_s"] if d["calls_per_s"] else None for d, t in pairs]),
            "p50_ms": med([t["p50_ms"] for t in targets]),
            "p90_ms": med([t["p90_ms"] for t in targets]),
            "p99_ms": med([t["p99_ms"] for t in targets]),
            "added_p50_ms": med([t["p50_ms"] - d["p50_ms"] if t["p50_ms"] and d["p50_ms"] else None for d, t in pairs]),
            "added_p99_ms": med([t["p99_ms"] - d["p99_ms"] if t["p99_ms"] and d["p99_ms"] else None for d, t in pairs]),
            "gateway_cpu_ms_per_call": med([g.get("cpu_ms_per_call") for g in gateway]),
            "gateway_cpu_pct": med([g.get("cpu_pct") for g in gateway]),
            "gateway_rss_mib_per_process": max((g.get("rss_mib_peak_per_process", 0) for g in gateway), default=None) or None,
            "gateway_rss_mib_tree": max((g.get("rss_mib_peak", 0) for g in gateway), default=None) or None,
            "upstream_cpu_ms_per_call": med([t["procs"].get("upstream", {}).get("cpu_ms_per_call") for t in targets]),
            "loadgen_cpu_ms_per_call": med([t["procs"].get("loadgen", {}).get("cpu_ms_per_call") for t in targets]),
            "errors": sum(t["errors"] for t in targets),
        })
    return rows


def versions() -> dict[str, str]:
    def freeze(python: Path, names: tuple[str, ...]) -> str:
        if not python.exists():
            return "not installed"
        out = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True).stdout
        return " ".join(line for line in out.splitlines() if line.split("==")[0].lower() in names)

    return {
        "intended": freeze(ROOT / ".venv" / "bin" / "python", ("django", "channels", "daphne", "uvicorn", "uvloop", "httptools", "httpx", "mcp", "psycopg", "redis")),
        "bench": freeze(PEERS / "bench" / "venv" / "bin" / "python", ("mcp", "httpx", "uvicorn", "matplotlib", "py-spy", "pyinstrument")),
        "contextforge": freeze(PEERS / "contextforge" / "venv" / "bin" / "python", ("mcp-contextforge-gateway", "mcp")),
        "mcp-proxy": freeze(PEERS / "mcp-proxy" / "venv" / "bin" / "python", ("mcp-proxy", "mcp")),
        "python": sys.version.split()[0],
        "cpus": str(os.cpu_count()),
        "kernel": os.uname().release,
    }


def main() -> int:
    bench = Bench()
    started = time.time()
    bench.source, bench.source_note = gateway_source()
    log(f"gateway under test: {bench.source_note}")
    try:
        bench.start_upstreams()
        token = bench.prepare_gateway()
        uvicorn = [PROJECT_PY, "-m", "uvicorn", "intended.asgi:application", "--host", "127.0.0.1", "--port", "{port}",
                   "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
        gateways = {
            "intended-uvicorn": uvicorn,
            "intended-daphne": [str(ROOT / ".venv" / "bin" / "daphne"), "-b", "127.0.0.1", "-p", "{port}", "-v", "0", "intended.asgi:application"],
            "intended-uvicorn-2proc": [*uvicorn, "--workers", "2"],
        }
        if EXTRA_PATH or EXTRA_ENV:
            gateways["intended-uvicorn-extra"] = uvicorn
        for name, argv in gateways.items():
            if not ONLY or name in ONLY:
                bench.start_gateway(name, argv, token)
        if "mcp-proxy" in PEER_NAMES and (not ONLY or "mcp-proxy" in ONLY):
            bench.start_mcp_proxy()
        if "contextforge" in PEER_NAMES and (not ONLY or "contextforge" in ONLY):
            bench.start_contextforge()
        if QUICK:  # the cheap upstream only: it is where the gateway's own cost shows
            bench.targets = [t for t in bench.targets if t.upstream == "raw"]
        bench.smoke()
        time.sleep(1)
        bench.record_idle()
        log(f"targets: {[t.label for t in bench.targets]}; idle RSS MiB {bench.idle_rss}; idle CPU % {bench.idle_cpu_pct}")
        bench.measure()
    finally:
        bench.stop_all()
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": round(time.time() - started, 1),
        "settings": {"quick": QUICK, "duration_s": DURATION, "warmup_s": WARMUP, "reps": REPS, "concurrency": CONCURRENCY},
        "gateway_source": bench.source_note,
        "versions": versions(),
        "commands": bench.commands,
        "skipped": bench.skipped,
        "idle_rss_mib": bench.idle_rss,
        "idle_cpu_pct": bench.idle_cpu_pct,
        "summary": summarize(bench.runs),
        "runs": bench.runs,
    }
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started)) + ("-quick" if QUICK else "")
    (out / f"{stamp}.json").write_text(json.dumps(result, indent=1))
    (out / "latest.json").write_text(json.dumps(result, indent=1))
    log(f"results: bench/results/{stamp}.json ({result['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
