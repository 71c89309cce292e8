"""Prometheus metrics for the gateway, served at /metrics (see gateway/operations.py).

Counters and histograms are per process and updated on the hot path (a few dict lookups, no
I/O). Values that belong to the whole deployment rather than to one process (approvals held,
audit entries not sealed yet, open audit chain alerts) are read from the database when
/metrics is scraped, so every replica reports the same truth; the app that owns each one
registers it with `register_gauge` in its AppConfig.ready(). This module imports no app.

Several worker processes on one host (`uvicorn --workers N`, gunicorn) need
PROMETHEUS_MULTIPROC_DIR: an empty directory, cleared before the workers start, where each
process writes its values; /metrics then aggregates them. Separate replicas on separate hosts
are scraped one by one and need nothing. See docs/DEPLOY.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger("intended.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Why a call was denied because the gateway could not decide or audit it (fail closed).
# Free-form causes are accepted, but these are the ones the gateway uses; keep the set small,
# each one is a time series.
CAUSE_AUDIT = "audit_unavailable"
CAUSE_VELOCITY = "velocity_unavailable"
CAUSE_POLICY = "policy_error"
CAUSE_CONFIG = "config_unavailable"
CAUSE_APPROVALS = "approvals_unavailable"
CAUSE_INTERNAL = "internal_error"

DECISION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

CALLS = Counter(
    "intended_calls",
    "Tool calls decided by the gateway, by agent, server and decision.",
    ["agent", "server", "decision"],
)
DECISION_SECONDS = Histogram(
    "intended_decision_seconds",
    "Time to decide a tool call (pipeline and decision audit entry), without approval waits.",
    ["server"],
    buckets=DECISION_BUCKETS,
)
UPSTREAM_SECONDS = Histogram(
    "intended_upstream_seconds",
    "Time the upstream server took to answer a forwarded tool call, by outcome status.",
    ["server", "status"],
    buckets=UPSTREAM_BUCKETS,
)
FAIL_CLOSED = Counter(
    "intended_fail_closed",
    "Calls denied because the gateway could not decide or audit them, by cause.",
    ["cause"],
)
REFUSED = Counter(
    "intended_refused_requests",
    "Requests refused at the door before any decision (401, 403, 404, 4xx), by reason.",
    ["reason"],
)
AUDIT_BREAKS = Counter(
    "intended_audit_integrity_failures",
    "Integrity failures detected in the audit trail (chain or checkpoint inconsistency).",
)
AUDIT_OUTCOME_FAILURES = Counter(
    "intended_audit_outcome_write_failures",
    "Outcome entries whose background write failed: retried (kept, written later) or dropped.",
    ["result"],
)


def _label(value: str | None) -> str:
    return (value or "")[:128]


def observe_decision(agent: str, server: str, decision: str, seconds: float) -> None:
    CALLS.labels(_label(agent), _label(server), _label(decision)).inc()
    DECISION_SECONDS.labels(_label(server)).observe(max(seconds, 0.0))


def observe_upstream(server: str, status: str, seconds: float) -> None:
    """`status` is the audit outcome status: ok, error, timeout or cancelled."""
    UPSTREAM_SECONDS.labels(_label(server), _label(status)).observe(max(seconds, 0.0))


def observe_call(
    agent: str,
    server: str,
    decision: str,
    decision_seconds: float,
    upstream_seconds: float | None = None,
    status: str = "ok",
) -> None:
    """One tool call: its decision, and its upstream time when it was forwarded."""
    observe_decision(agent, server, decision, decision_seconds)
    if upstream_seconds is not None:
        observe_upstream(server, status, upstream_seconds)


def fail_closed(cause: str) -> None:
    FAIL_CLOSED.labels(_label(cause)).inc()


def refused(reason: str) -> None:
    REFUSED.labels(_label(reason)).inc()


def audit_integrity_failure() -> None:
    AUDIT_BREAKS.inc()


def audit_outcome_failed(result: str) -> None:
    AUDIT_OUTCOME_FAILURES.labels(_label(result)).inc()


# --- one call, as the proxy sees it --------------------------------------------------------------
# The proxy calls these three with its CallContext; each updates the metrics and writes one
# structured log line that carries the call_id of the audit trail.

FAIL_CLOSED_REASONS = (
    ("Denied: the gateway could not audit", CAUSE_AUDIT),
    ("Denied: velocity limits cannot be checked", CAUSE_VELOCITY),
    ("Denied: the approval could not be completed", CAUSE_APPROVALS),
    ("Denied: the approval ended without a decision", CAUSE_APPROVALS),
    ("Denied: the gateway could not decide", CAUSE_POLICY),
    ("Denied: the condition of", CAUSE_POLICY),
)


def fail_closed_cause(decision: str | None, reason: str, rules: list[str]) -> str | None:
    """Why a denial was the gateway failing closed rather than a policy saying no; None if not."""
    if decision != "deny":
        return None
    for prefix, cause in FAIL_CLOSED_REASONS:
        if reason.startswith(prefix):
            return cause
    if "fail-closed" in rules:
        return CAUSE_INTERNAL
    return None


def call_decided(ctx: Any, seconds: float) -> None:
    """After the decision entry was written (or failed to be): counts, latency, fail-closed."""
    from intended.logging import call_fields

    decision = ctx.decision or "deny"
    observe_decision(ctx.agent.name, ctx.server.name, decision, seconds)
    cause = fail_closed_cause(decision, ctx.reason, list(ctx.rules))
    if cause is not None:
        fail_closed(cause)
    call_log.info("call %s: %s", decision, ctx.reason or decision,
                  extra=call_fields(ctx, decision_ms=round(seconds * 1000, 3), fail_closed=cause))


def call_released(ctx: Any) -> None:
    """After a held call was decided by a reviewer, expired, or failed closed."""
    from intended.logging import call_fields

    cause = fail_closed_cause(ctx.decision, ctx.reason, list(ctx.rules))
    if cause is not None:
        fail_closed(cause)
    call_log.info("held call %s: %s", ctx.decision, ctx.reason, extra=call_fields(ctx, fail_closed=cause))


def call_finished(ctx: Any, status: str, seconds: float | None) -> None:
    """After the outcome entry: upstream latency by status (ok, error, timeout, cancelled)."""
    from intended.logging import call_fields

    if seconds is not None:
        observe_upstream(ctx.server.name, status, seconds)
    level = logging.INFO if status == "ok" else logging.WARNING
    call_log.log(level, "call finished: %s", status, extra=call_fields(
        ctx, status=status, upstream_ms=round(seconds * 1000, 3) if seconds is not None else None))


REFUSAL_REASONS = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "unknown_session",
                   405: "method_not_allowed", 408: "request_timeout", 413: "body_too_large",
                   431: "headers_too_large", 503: "unavailable"}


def door_refused(status: int) -> None:
    refused(REFUSAL_REASONS.get(status, str(status)))


call_log = logging.getLogger("intended.gateway.calls")


# --- values read at scrape time ---------------------------------------------------------------
# Each app registers the gauges it owns from its AppConfig.ready() (approvals_app, audit_app):
# this module imports no app, so the gateway's hot path never pulls the apps' models in here.

GaugeRead = Callable[[], int | float | None]

_DEPLOYMENT_GAUGES: dict[str, tuple[str, GaugeRead]] = {}


def register_gauge(name: str, documentation: str, read: GaugeRead) -> None:
    """A gauge of the whole deployment, read from the shared database when /metrics is scraped,
    so every replica reports the same truth. `read` returns the value, or None to leave the
    gauge out of this scrape. Registering a name again replaces it."""
    _DEPLOYMENT_GAUGES[name] = (documentation, read)


def deployment_gauges() -> list[str]:
    """The names registered so far (for tests and diagnostics)."""
    return sorted(_DEPLOYMENT_GAUGES)


class DeploymentCollector:
    """Gauges read from the shared database at scrape time. A source that fails is skipped
    (and logged) rather than failing the whole scrape: /metrics is how one sees the outage."""

    def collect(self) -> Iterator[Metric]:
        for name, (documentation, read) in sorted(_DEPLOYMENT_GAUGES.items()):
            try:
                value = read()
            except Exception:
                log.warning("metrics: could not read %s", name, exc_info=True)
                continue
            if value is None:
                continue
            gauge = GaugeMetricFamily(name, documentation)
            gauge.add_metric([], value)
            yield gauge


class _Sources:
    def __init__(self, sources: Iterable[Any]) -> None:
        self._sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source.collect()


def process_source() -> Any:
    """This process's metrics, or every worker's when PROMETHEUS_MULTIPROC_DIR is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


def exposition() -> bytes:
    """The text exposition format of every metric, for one scrape."""
    return generate_latest(_Sources([process_source(), DeploymentCollector()]))  # type: ignore[arg-type]
