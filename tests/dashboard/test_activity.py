from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboard.activity import bar_chart, bucket_calls, percentile

NOW = datetime(2026, 11, 24, 15, 20, tzinfo=UTC)


def test_it_buckets_calls_per_hour_by_decision_oldest_first():
    calls = [(NOW, "allow"), (NOW - timedelta(minutes=10), "deny"),
             (NOW - timedelta(hours=2), "escalate"), (NOW - timedelta(hours=30), "allow")]
    buckets = bucket_calls(calls, end=NOW, hours=3)
    assert [b.start.hour for b in buckets] == [13, 14, 15]
    assert buckets[2].counts == {"allow": 1, "escalate": 0, "deny": 1}
    assert buckets[0].counts["escalate"] == 1
    assert sum(b.total for b in buckets) == 3


def test_it_takes_the_nearest_rank_percentile():
    assert percentile([], 0.5) is None
    assert percentile([5, 1, 3, 2, 4], 0.5) == 3
    assert percentile(list(range(1, 101)), 0.95) == 95


def test_it_stacks_bars_scaled_to_the_busiest_hour():
    buckets = bucket_calls([(NOW, "allow"), (NOW, "deny"), (NOW - timedelta(hours=1), "allow")],
                           end=NOW, hours=2)
    bars = bar_chart(buckets, width=100, height=100)
    assert [(b.decision, b.height) for b in bars] == [("allow", 50.0), ("allow", 50.0), ("deny", 50.0)]
    assert bars[2].y == 0.0
