"""Operator endpoints: /healthz (the process is alive), /readyz (it can serve) and /metrics.

/healthz touches nothing: a liveness probe must not restart replicas because the database
blinked. /readyz checks what a replica needs to decide and audit calls (database, Redis when
configured, the audit signing key) and reports upstream reachability. An unreachable upstream
makes the gateway "degraded", not unready: every replica sees the same upstream, so taking
replicas out of the load balancer would only add an outage for the other servers.

Details (server names, errors) and /metrics are for operators: loopback clients without
forwarding headers, or `Authorization: Bearer $INTENDED_METRICS_TOKEN`. Everyone else gets
the status alone.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from gateway.transport_security import is_loopback
from intended import metrics

CHECK_TIMEOUT = 3.0
UPSTREAM_TIMEOUT = 2.0
# Upstream probes are cached so that a flood of /readyz requests cannot be turned into a flood
# of requests to the upstream servers.
UPSTREAM_CACHE_SECONDS = 10.0

FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


@dataclass
class Check:
    ok: bool
    detail: str = ""
    ms: float = 0.0
    required: bool = True

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "ms": round(self.ms, 1)}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class Readiness:
    checks: dict[str, Check] = field(default_factory=dict)
    upstreams: dict[str, Check] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks.values() if c.required)

    @property
    def status(self) -> str:
        if not self.ready:
            return "unavailable"
        if not all(c.ok for c in self.upstreams.values()):
            return "degraded"
        return "ready"

    def as_dict(self, *, detailed: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if detailed:
            out["checks"] = {name: c.as_dict() for name, c in self.checks.items()}
            out["upstreams"] = {name: c.as_dict() for name, c in self.upstreams.items()}
        return out


def operator_access(request: HttpRequest) -> bool:
    """The metrics token, or a loopback client that did not come through a proxy (a reverse
    proxy on this host connects over loopback on behalf of anyone)."""
    token = settings.INTENDED_METRICS_TOKEN
    presented = request.META.get("HTTP_AUTHORIZATION", "")
    if token and presented.startswith("Bearer "):
        return hmac.compare_digest(presented[len("Bearer "):].encode(), token.encode())
    if any(request.META.get(h) for h in FORWARDING_HEADERS):
        return False
    return is_loopback(request.META.get("REMOTE_ADDR"))


async def timed(probe: Any, *, required: bool = True, timeout: float = CHECK_TIMEOUT) -> Check:
    started = time.monotonic()
    try:
        detail = await asyncio.wait_for(probe(), timeout)
        ok = True
    except TimeoutError:
        ok, detail = False, f"no answer within {timeout:g}s"
    except Exception as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}"[:300]
    return Check(ok=ok, detail=detail or "", ms=(time.monotonic() - started) * 1000, required=required)


# --- the probes --------------------------------------------------------------------------------


def _ping_database() -> str:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return connection.vendor
    finally:
        # Not thread-sensitive (a hung database must not block Django's sync thread), so this
        # worker thread's connection is closed here rather than left behind.
        connection.close()


async def database_probe() -> str:
    return await sync_to_async(_ping_database, thread_sensitive=False)()


async def redis_probe() -> str:
    import redis.asyncio as redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # The session store's timeout, and no retries (redis-py 8 retries 3 times with backoff by
    # default, which would turn a refused connection into CHECK_TIMEOUT's "no answer").
    timeout = settings.INTENDED_REDIS_TIMEOUT_SECONDS
    client = redis.from_url(settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout,
                            retry=Retry(NoBackoff(), 0))
    try:
        await client.ping()
    finally:
        await client.aclose()
    return ""


def signing_key_state() -> str:
    """Raises unless the audit trail can sign checkpoints: a signing key for our origin loads
    from INTENDED_SIGNING_KEY_DIR, or (before the first seal) the directory can hold one."""
    from datetime import UTC, datetime

    from audit_app import keys

    now = datetime.now(UTC)
    signing = [k for k in keys.all_keys() if k.signing(now) and k.signer.name == keys.origin()]
    if signing:
        return "signing with " + ", ".join(k.verifier.key_id.hex() for k in signing)
    directory = keys.key_dir()
    existing = directory if directory.exists() else directory.parent
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return "no key yet: the first seal creates one"
    raise PermissionError(f"no signing key for {keys.origin()} and {directory} is not writable")


async def signing_key_probe() -> str:
    return await sync_to_async(signing_key_state, thread_sensitive=False)()


async def http_upstream_probe(url: str) -> str:
    """Any HTTP answer means reachable; no credential is sent and redirects are not followed."""
    async with httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT, follow_redirects=False) as client:
        async with client.stream("GET", url, headers={"accept": "application/json"}) as response:
            return f"HTTP {response.status_code}"


async def stdio_upstream_probe(command: tuple[str, ...]) -> str:
    if not command or shutil.which(command[0]) is None:
        raise FileNotFoundError(f"command not found: {command[0] if command else '(empty)'}")
    return ""


_upstream_cache: dict[str, Any] = {"at": 0.0, "generation": None, "checks": {}}


async def upstream_checks() -> dict[str, Check]:
    from policies_app.snapshots import snapshots

    snap = await snapshots.get()
    now = time.monotonic()
    cached = _upstream_cache
    if cached["generation"] == snap.generation and now - cached["at"] < UPSTREAM_CACHE_SECONDS:
        return dict(cached["checks"])
    names = sorted(snap.servers)
    probes = []
    for name in names:
        server = snap.servers[name]
        if server.command:
            probes.append(timed(lambda s=server: stdio_upstream_probe(s.command), required=False))
        else:
            probes.append(
                timed(lambda s=server: http_upstream_probe(s.url), required=False,
                      timeout=UPSTREAM_TIMEOUT + 0.5)
            )
    checks = dict(zip(names, await asyncio.gather(*probes), strict=True))
    cached.update(at=time.monotonic(), generation=snap.generation, checks=checks)
    return dict(checks)


async def readiness() -> Readiness:
    probes: dict[str, Any] = {"database": timed(database_probe)}
    if settings.REDIS_URL:
        probes["redis"] = timed(redis_probe)
    probes["signing_key"] = timed(signing_key_probe)
    results = dict(zip(probes, await asyncio.gather(*probes.values()), strict=True))
    report = Readiness(checks=results)
    if results["database"].ok:
        try:
            report.upstreams = await asyncio.wait_for(upstream_checks(), CHECK_TIMEOUT + 1)
        except Exception as exc:
            report.checks["configuration"] = Check(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])
    return report


# --- the views ---------------------------------------------------------------------------------


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "alive"})


@never_cache
@require_GET
async def readyz(request: HttpRequest) -> JsonResponse:
    report = await readiness()
    return JsonResponse(
        report.as_dict(detailed=operator_access(request)), status=200 if report.ready else 503
    )


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not operator_access(request):
        response = HttpResponse(
            "Metrics are served to loopback clients or with the metrics bearer token.\n",
            status=403 if not settings.INTENDED_METRICS_TOKEN else 401,
            content_type="text/plain",
        )
        if settings.INTENDED_METRICS_TOKEN:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE)
