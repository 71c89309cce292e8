"""The whole-deployment gauges read at scrape time: each app registers its own with
`intended.metrics.register_gauge` (intended.metrics imports no app), and the audit-integrity
gauge follows the open chain alerts, so an alert on it can fire and clear."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from intended import metrics
from tests.ops.test_metrics import samples, scrape

APPS = ("gateway", "policies_app", "audit_app", "approvals_app", "dashboard")


def gauge(name: str) -> float | None:
    response = scrape()  # a loopback client without forwarding headers: no token needed
    assert response.status_code == 200
    return samples(response.content.decode()).get((name, ()))


@pytest.mark.django_db
def test_the_audit_integrity_gauge_counts_open_chain_alerts(settings):
    from audit_app.actions import raise_alert, resolve_alerts

    settings.INTENDED_METRICS_TOKEN = ""
    assert gauge("intended_audit_open_alerts") == 0
    raise_alert("leaf 3 does not hash to its stored value", 3)
    assert gauge("intended_audit_open_alerts") == 1
    raise_alert("leaf 3 does not hash to its stored value", 3)  # the same break is one alert
    assert gauge("intended_audit_open_alerts") == 1
    raise_alert("the database holds 5 sealed entries but a kept checkpoint has 9", 5)
    assert gauge("intended_audit_open_alerts") == 2
    assert resolve_alerts(actor="alice") == 2
    assert gauge("intended_audit_open_alerts") == 0


@pytest.mark.django_db
def test_each_app_registers_its_deployment_gauges(settings):
    settings.INTENDED_METRICS_TOKEN = ""
    assert {"intended_approvals_held", "intended_audit_unsealed_entries",
            "intended_audit_open_alerts"} <= set(metrics.deployment_gauges())
    assert gauge("intended_approvals_held") == 0
    assert gauge("intended_audit_unsealed_entries") is not None


@pytest.mark.django_db
def test_a_gauge_that_cannot_be_read_is_left_out_and_the_others_are_served(settings, monkeypatch):
    settings.INTENDED_METRICS_TOKEN = ""

    def broken() -> int:
        raise RuntimeError("the database is gone")

    monkeypatch.setattr(metrics, "_DEPLOYMENT_GAUGES", dict(metrics._DEPLOYMENT_GAUGES))
    metrics.register_gauge("intended_test_broken", "A source that fails.", broken)
    metrics.register_gauge("intended_test_absent", "A source with nothing to say.", lambda: None)
    metrics.register_gauge("intended_test_answer", "A source that answers.", lambda: 42)
    text = scrape().content.decode()
    assert "intended_test_broken" not in text and "intended_test_absent" not in text
    assert samples(text)[("intended_test_answer", ())] == 42
    assert ("intended_audit_open_alerts", ()) in samples(text)


def test_the_metrics_module_imports_no_app():
    source = Path(metrics.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert not {name for name in imported if name.split(".")[0] in APPS}
    assert "importlib" not in imported and "import_module" not in source
