from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from intended import metrics


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def scrape(client: Client | None = None, **headers: str):
    return (client or Client()).get("/metrics", headers=headers)


@pytest.mark.django_db
def test_it_counts_calls_by_agent_server_and_decision():
    before = samples(scrape().content.decode())
    metrics.observe_call("support-agent", "customer-ops", "allow", 0.0004, upstream_seconds=0.2, status="ok")
    metrics.observe_call("lookup-agent", "customer-ops", "deny", 0.0002)
    after = samples(scrape().content.decode())

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("intended_calls_total", agent="support-agent", server="customer-ops", decision="allow") == 1
    assert delta("intended_calls_total", agent="lookup-agent", server="customer-ops", decision="deny") == 1
    assert delta("intended_decision_seconds_count", server="customer-ops") == 2
    assert delta("intended_decision_seconds_bucket", server="customer-ops", le="0.0005") == 2
    assert delta("intended_upstream_seconds_count", server="customer-ops", status="ok") == 1


@pytest.mark.django_db
def test_it_counts_fail_closed_denials_by_cause():
    before = samples(scrape().content.decode()).get(("intended_fail_closed_total", (("cause", "audit_unavailable"),)), 0)
    metrics.fail_closed(metrics.CAUSE_AUDIT)
    after = samples(scrape().content.decode())[("intended_fail_closed_total", (("cause", "audit_unavailable"),))]
    assert after - before == 1


@pytest.mark.django_db
def test_it_reports_deployment_gauges_and_process_memory():
    text = scrape().content.decode()
    assert "process_resident_memory_bytes" in text
    assert "intended_approvals_held" in text


@pytest.mark.django_db
def test_it_serves_metrics_to_loopback_only_without_a_token(settings):
    settings.INTENDED_METRICS_TOKEN = ""
    assert scrape().status_code == 200
    assert Client(REMOTE_ADDR="198.51.100.7").get("/metrics").status_code == 403
    # a reverse proxy on this host connects over loopback for anyone: not good enough
    assert scrape(**{"X-Forwarded-For": "198.51.100.7"}).status_code == 403


@pytest.mark.django_db
def test_it_serves_metrics_with_the_bearer_token(settings):
    settings.INTENDED_METRICS_TOKEN = "m3trics-t0ken"
    settings.SECURE_SSL_REDIRECT = False
    remote = Client(REMOTE_ADDR="198.51.100.7")
    token = {"Authorization": "Bearer m3trics-t0ken"}
    assert remote.get("/metrics", headers=token, secure=True).status_code == 200
    refused = remote.get("/metrics", headers={"Authorization": "Bearer guess"}, secure=True)
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert remote.get("/metrics", secure=True).status_code == 401
    # a wrong token is wrong even from loopback
    assert scrape(Authorization="Bearer guess").status_code == 401


@pytest.mark.django_db
def test_it_refuses_the_token_over_plain_http_from_another_host(settings):
    settings.INTENDED_METRICS_TOKEN = "m3trics-t0ken"
    settings.INTENDED_REQUIRE_TLS = True
    remote = Client(REMOTE_ADDR="198.51.100.7")
    assert remote.get("/metrics", headers={"Authorization": "Bearer m3trics-t0ken"}).status_code == 403


@pytest.mark.django_db
def test_it_aggregates_worker_processes_with_a_multiprocess_dir(tmp_path):
    import subprocess
    import sys

    from tests.support.processes import ROOT

    code = (
        "from intended import metrics; metrics.observe_decision('a', 's', 'allow', 0.001)"
    )
    env = {"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT),
           "DJANGO_SETTINGS_MODULE": "intended.settings", "INTENDED_DATA_DIR": str(ROOT / "var")}
    for _ in range(2):  # two workers, one call each
        subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, timeout=60)
    read = ("from intended.metrics import process_source; from prometheus_client import generate_latest; "
            "print(generate_latest(process_source()).decode())")
    out = subprocess.run([sys.executable, "-c", read], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert samples(out)[("intended_calls_total", (("agent", "a"), ("decision", "allow"), ("server", "s")))] == 2


FAIL_CLOSED = [
    # decision, reason, rules, cause
    ("deny", "Denied: the gateway could not audit this call (OperationalError)", ["fail-closed"], "audit_unavailable"),
    ("deny", "Denied: velocity limits cannot be checked right now (the counter store is unreachable)", ["v1"],
     "velocity_unavailable"),
    ("deny", "Denied: the approval could not be completed (RuntimeError)", [], "approvals_unavailable"),
    ("deny", "Denied: the gateway could not decide this call (KeyError: 'x')", ["fail-closed"], "policy_error"),
    ("deny", "Denied: the condition of p3 could not be evaluated (no such key)", ["p3"], "policy_error"),
    ("deny", "Something new went wrong", ["fail-closed"], "internal_error"),
    ("deny", "Only support agents can process refunds", ["p2"], None),  # a policy said no
    ("deny", "Denied: no policy allows this call", [], None),
    ("allow", "", ["p1"], None),
]


@pytest.mark.parametrize("decision,reason,rules,cause", FAIL_CLOSED)
def test_it_tells_failing_closed_from_a_policy_denial(decision, reason, rules, cause):
    assert metrics.fail_closed_cause(decision, reason, rules) == cause


@pytest.mark.django_db
def test_it_records_a_call_in_metrics_and_one_log_line(caplog):
    from tests.ops.test_logging import a_call

    ctx = a_call()
    ctx.deny("Denied: the gateway could not audit this call (OperationalError)", rules=["fail-closed"])
    key = ("intended_fail_closed_total", (("cause", "audit_unavailable"),))
    before = samples(scrape().content.decode()).get(key, 0)
    with caplog.at_level("INFO", logger="intended.gateway.calls"):
        metrics.call_decided(ctx, 0.002)
        metrics.call_finished(ctx, "timeout", 3.0)
    after = samples(scrape().content.decode())
    assert after[key] - before == 1
    assert after[("intended_upstream_seconds_count", (("server", "customer-ops"), ("status", "timeout")))] >= 1
    decided, finished = caplog.records
    assert decided.call_id == ctx.call_id and decided.fail_closed == "audit_unavailable"
    assert finished.call_id == ctx.call_id and finished.status == "timeout" and finished.levelname == "WARNING"
