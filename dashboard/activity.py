"""What the overview shows: calls over time by decision, latency, top agents and tools.

`bucket_calls`, `percentile` and `bar_chart` are pure; `summary()` reads the audit trail
(decision and outcome entries) for the window.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

DECISIONS = ("allow", "escalate", "deny")


@dataclass(frozen=True)
class Bucket:
    start: datetime
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def bucket_calls(calls: Iterable[tuple[datetime, str]], *, end: datetime, hours: int) -> list[Bucket]:
    """Hourly buckets of (time, decision) pairs over the `hours` before `end`, oldest first."""
    top = end.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    starts = [top - timedelta(hours=hours - i) for i in range(hours)]
    counts: list[dict[str, int]] = [dict.fromkeys(DECISIONS, 0) for _ in starts]
    for when, decision in calls:
        index = math.floor((when - starts[0]).total_seconds() / 3600)
        if 0 <= index < hours and decision in DECISIONS:
            counts[index][decision] += 1
    return [Bucket(start, c) for start, c in zip(starts, counts, strict=True)]


def percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[rank]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    decision: str
    label: str


def bar_chart(buckets: Sequence[Bucket], *, width: float = 720, height: float = 160) -> list[Bar]:
    """Stacked bars (allow at the bottom) scaled to the busiest hour, as SVG rectangles."""
    if not buckets:
        return []
    peak = max((b.total for b in buckets), default=0) or 1
    slot = width / len(buckets)
    bars: list[Bar] = []
    for i, bucket in enumerate(buckets):
        base = height
        for decision in DECISIONS:
            count = bucket.counts.get(decision, 0)
            if not count:
                continue
            h = height * count / peak
            base -= h
            label = f"{bucket.start:%H:00} {decision}: {count}"
            bars.append(Bar(round(i * slot + 1, 2), round(base, 2), round(max(slot - 2, 1), 2),
                            round(h, 2), decision, label))
    return bars


@dataclass
class Summary:
    hours: int
    buckets: list[Bucket]
    bars: list[Bar]
    totals: dict[str, int]
    latency_p50: float | None
    latency_p95: float | None
    top_agents: list[tuple[str, int]]
    top_tools: list[tuple[str, int]]
    axis: list[tuple[float, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.totals.values())


MAX_OUTCOMES = 5000


def _decisions(since: datetime) -> list[dict[str, Any]]:
    from audit_app.models import AuditEntry

    return list(AuditEntry.objects.filter(kind="decision", time__gte=since)
                .values("time", "decision", "agent", "server", "tool"))


def _latencies(since: datetime) -> list[float]:
    from audit_app.models import AuditEntry
    from dashboard.backends import entry_record

    rows = AuditEntry.objects.filter(kind="outcome", time__gte=since).order_by("-seq")[:MAX_OUTCOMES]
    found = []
    for row in rows:
        outcome = entry_record(row).get("outcome")
        if isinstance(outcome, dict) and isinstance(outcome.get("latency_ms"), int | float):
            found.append(float(outcome["latency_ms"]))
    return found


def summary(*, hours: int = 24, now: datetime | None = None) -> Summary:
    now = now or timezone.now()
    since = now - timedelta(hours=hours)
    decisions = _decisions(since)
    latencies = _latencies(since)
    buckets = bucket_calls(((r["time"], r["decision"]) for r in decisions), end=now, hours=hours)
    totals = Counter(r["decision"] for r in decisions if r["decision"] in DECISIONS)
    width = 720
    axis = [(i * width / hours, f"{b.start:%H:00}") for i, b in enumerate(buckets) if i % 6 == 0]
    return Summary(
        hours=hours,
        buckets=buckets,
        bars=bar_chart(buckets, width=width),
        totals={d: totals.get(d, 0) for d in DECISIONS},
        latency_p50=percentile(latencies, 0.5),
        latency_p95=percentile(latencies, 0.95),
        top_agents=Counter(r["agent"] for r in decisions if r["agent"]).most_common(5),
        top_tools=Counter(f"{r['server']}/{r['tool']}" for r in decisions if r["tool"]).most_common(5),
        axis=axis,
    )
