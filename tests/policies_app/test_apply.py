"""Configuration as code against the database: plan, apply, idempotency, export round trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command

from policies_app import actions
from policies_app.config import ConfigError
from policies_app.core.rules import rule_names
from policies_app.models import Agent, ConfigStamp, PolicyVersion, Server
from policies_app.snapshots import build_snapshot

pytestmark = pytest.mark.django_db

SEED = (Path(__file__).parent / "seed.yaml").read_text()
ENV = {"CUSTOMER_OPS_TOKEN": "s3cret"}


def live_version() -> PolicyVersion:
    version = PolicyVersion.active()
    assert version is not None
    return version


def apply(text: str, **kwargs):
    return actions.apply_config(text, acting_user="tester", environ=ENV, **kwargs)


def test_it_applies_the_seed_config():
    plan = apply(SEED)
    assert plan.applied
    assert "+ server customer-ops (http://127.0.0.1:9000/mcp)" in str(plan)
    assert re.search(r"^\+ policy deny:financial\.refund\.process#[0-9a-f]{6}$", str(plan), re.MULTILINE)
    server = Server.objects.get(name="customer-ops")
    assert server.credential() == "s3cret"
    assert "s3cret" not in server.credential_encrypted
    assert server.credential_env == "CUSTOMER_OPS_TOKEN"
    assert Agent.objects.get(name="analytics-agent").tool_scope == {"customer-ops": "*"}
    assert sorted(User.objects.filter(groups__name="support-lead").values_list("username", flat=True)) == ["carol", "dave"]
    assert not User.objects.get(username="carol").has_usable_password()
    version = live_version()
    assert (version.number, version.author) == (1, "tester")
    snap = build_snapshot()
    assert snap.policy.version == 1
    assert [r.id for r in snap.policy.rules] == rule_names("policy", version.document["policies"])
    assert all(re.fullmatch(r"(allow|deny|escalate):[a-z.]+#[0-9a-f]{6}", r.id) for r in snap.policy.rules)


def test_it_changes_nothing_the_second_time():
    apply(SEED)
    generation = ConfigStamp.current()
    plan = apply(SEED)
    assert str(plan) == "no changes"
    assert not plan.applied
    assert ConfigStamp.current() == generation
    assert PolicyVersion.objects.count() == 1


def test_it_changes_nothing_when_applying_its_own_export():
    apply(SEED)
    exported = actions.export_config()
    assert str(apply(exported)) == "no changes"
    assert "value_env: CUSTOMER_OPS_TOKEN" in exported
    assert "s3cret" not in exported


def test_it_only_prints_the_plan_on_a_dry_run():
    plan = apply(SEED, dry_run=True)
    assert not plan.applied and not plan.empty
    assert not Server.objects.exists()
    assert not PolicyVersion.objects.exists()


def test_it_applies_nothing_from_an_invalid_file():
    apply(SEED)
    broken = SEED.replace("decision: deny", "decision: nope").replace("support-lead, users: [carol, dave]", "support-lead, users: [erin]")
    with pytest.raises(ConfigError) as caught:
        apply(broken)
    assert caught.value.errors == ["line 31: policies[1].decision must be allow, deny or escalate, got 'nope'"]
    assert PolicyVersion.objects.count() == 1
    assert not User.objects.filter(username="erin").exists()


def test_it_plans_and_applies_changes_and_removals():
    apply(SEED)
    changed = (
        SEED.replace("  - name: lookup-agent\n    owner: bob\n    roles: [lookup]\n    tools: {customer-ops: [get_customer, search_customers, send_email]}\n", "")
        .replace("lookup-agent, analytics-agent", "analytics-agent")
        .replace("users: [carol, dave]", "users: [carol, erin]")
        .replace("process_refund: financial.refund.process", "process_refund: financial.refund.issue")
        .replace("max_calls: 100", "max_calls: 120")
    )
    plan = apply(changed)
    text = str(plan)
    assert "- agent lookup-agent" in text
    assert "~ reviewers support-lead (+erin -dave)" in text
    assert "~ tool_intent customer-ops/process_refund (financial.refund.process -> financial.refund.issue)" in text
    assert re.search(r"^\+ velocity_rule velocity:data\.customer\.read#[0-9a-f]{6} -> 120/60s$", text, re.MULTILINE)
    assert not Agent.objects.filter(name="lookup-agent").exists()
    assert sorted(Group.objects.get(name="support-lead").user_set.values_list("username", flat=True)) == ["carol", "erin"]
    assert live_version().number == 2
    assert str(apply(changed)) == "no changes"


def test_it_notices_a_rotated_credential():
    apply(SEED)
    plan = actions.apply_config(SEED, acting_user="tester", environ={"CUSTOMER_OPS_TOKEN": "rotated"})
    assert str(plan).splitlines()[0] == "~ server customer-ops (credential)"
    assert Server.objects.get(name="customer-ops").credential() == "rotated"


def test_it_leaves_sections_the_file_does_not_mention():
    apply(SEED)
    plan = apply("policies:\n  - {intent: '*', decision: deny, reason: lockdown}\n")
    assert Agent.objects.count() == 3
    assert live_version().document["velocity_rules"][0]["max_calls"] == 100
    assert re.search(r"^- policy allow:data\.customer\.read#[0-9a-f]{6}$", str(plan), re.MULTILINE)


def test_it_audits_the_apply():
    from audit_app.models import AuditEntry

    before = AuditEntry.objects.count()
    apply(SEED)
    assert AuditEntry.objects.count() > before


def test_it_prints_the_plan_from_the_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUSTOMER_OPS_TOKEN", "s3cret")
    path = tmp_path / "config.yaml"
    path.write_text(SEED)
    call_command("apply", str(path), "--dry-run")
    assert "dry run: nothing was applied" in capsys.readouterr().out
    call_command("apply", str(path))
    assert capsys.readouterr().out.strip().endswith("applied (policy version 1)")
    call_command("apply", str(path))
    assert capsys.readouterr().out.strip() == "no changes"
    call_command("export", "--out", str(tmp_path / "export.yaml"))
    call_command("apply", str(tmp_path / "export.yaml"))
    assert capsys.readouterr().out.strip() == "no changes"


def test_it_keeps_the_commands_message_with_the_version(tmp_path, monkeypatch):
    monkeypatch.setenv("CUSTOMER_OPS_TOKEN", "s3cret")
    path = tmp_path / "config.yaml"
    path.write_text(SEED)
    call_command("apply", str(path))
    assert live_version().description == "apply"  # what every version said before --message
    path.write_text(SEED.replace("window: 60s", "window: 120s"))
    call_command("apply", str(path), "-m", "Slower enumeration alarm (OPS-9)")
    assert (live_version().number, live_version().description) == (2, "Slower enumeration alarm (OPS-9)")


def test_it_refuses_an_invalid_file_from_the_command(tmp_path, monkeypatch):
    from django.core.management.base import CommandError

    monkeypatch.setenv("CUSTOMER_OPS_TOKEN", "s3cret")
    path = tmp_path / "config.yaml"
    path.write_text(SEED.replace("window: 60s", "window: soon"))
    with pytest.raises(CommandError, match="nothing was applied"):
        call_command("apply", str(path))
    assert not Server.objects.exists()


def test_it_saves_and_rolls_back_policy_versions():
    apply(SEED)
    number = actions.save_policy_document({"policies": [{"intent": "*", "decision": "deny"}]}, acting_user="admin1")
    assert number == 2
    assert actions.save_policy_document({"policies": [{"intent": "*", "decision": "deny"}]}, acting_user="admin1") is None
    assert actions.rollback(PolicyVersion.objects.get(number=1), acting_user="admin1") == 3
    assert live_version().document == PolicyVersion.objects.get(number=1).document
