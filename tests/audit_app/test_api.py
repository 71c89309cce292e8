from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.test import Client

from audit_app import actions, chain, keys, verify
from audit_app.models import AuditEntry
from dashboard import actions as people
from tests.audit_app.conftest import write_scenario

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(name: str, roles: list[str]) -> Client:
    people.create_user(acting_user="test", username=name, roles=roles)
    token = people.issue_api_token(acting_user="test", username=name)
    return Client(HTTP_AUTHORIZATION=f"Token {token}")


@pytest.fixture
def auditor() -> Client:
    return client_for("ivy", ["auditor"])


def events(client: Client, **params: Any) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    url: str | None = "/api/audit/events/"
    query: dict[str, Any] | None = params
    while url:
        response = client.get(url, query)
        assert response.status_code == 200, response.content
        page = response.json()
        results += page["results"]
        url, query = page["next"], None
    return results


def test_it_filters_by_intent_glob_with_dots_as_boundaries(auditor: Client) -> None:
    write_scenario()
    found = events(auditor, intent="financial.refund.*")
    assert found and {e["intent"] for e in found} == {"financial.refund.process"}
    assert "financial.refunds" in {e["intent"] for e in events(auditor, intent="financial.*")}
    assert {e["intent"] for e in events(auditor, intent="financial.refund*")} == {
        "financial.refund.process", "financial.refunds"}


def test_it_filters_by_agent_decision_server_tool_and_time(auditor: Client) -> None:
    write_scenario()
    denied = events(auditor, decision="deny")
    assert [(e["agent"], e["tool"], e["decision"]) for e in denied] == [("lookup-agent", "process_refund", "deny")]
    assert denied[0]["reason"] == "Denied by policy: Only support agents can process refunds"
    support = events(auditor, agent="support-agent")
    assert {e["kind"] for e in support} == {"decision", "outcome"}
    assert all(e["agent"] == "support-agent" for e in support)
    story = [e for e in support if e["tool"] == "get_customer"]
    assert [e["kind"] for e in story] == ["decision", "outcome"]
    assert story[0]["call_id"] == story[1]["call_id"] and story[1]["outcome"]["status"] == "ok"
    assert {e["tool"] for e in events(auditor, server="customer-ops", tool="send_email")} == {"send_email"}
    assert events(auditor, server="other") == []
    first = AuditEntry.objects.order_by("seq").first()
    assert first is not None
    assert len(events(auditor, **{"from": first.time.isoformat()})) == AuditEntry.objects.count()
    assert events(auditor, to="2000-01-01") == []
    assert auditor.get("/api/audit/events/", {"from": "yesterday"}).status_code == 400
    assert auditor.get("/api/audit/events/", {"decision": "maybe"}).status_code == 400


@pytest.mark.parametrize("path, params", [
    ("/api/audit/events/", {"agnet": "lookup-agent"}),  # a misspelt filter
    ("/api/audit/events/", {"decision": "deny", "status": "error"}),
    ("/api/audit/export/", {"format": "jsonl", "intents": "financial.*"}),
    ("/api/audit/checkpoints/latest", {"size": "3"}),
    ("/api/audit/verify/", {"from": "2026-01-01"}),
])
def test_it_refuses_a_query_parameter_it_does_not_know(auditor: Client, path: str, params: dict[str, str]) -> None:
    write_scenario()
    actions.seal()
    response = auditor.get(path, params)
    assert response.status_code == 400, response.content
    unknown = next(k for k in params if k not in ("decision", "format"))
    assert response.json()["detail"].startswith(f"unknown query parameter: {unknown}")


def test_it_refuses_a_filter_given_twice(auditor: Client) -> None:
    write_scenario()
    response = auditor.get("/api/audit/events/?agent=lookup-agent&agent=support-agent")
    assert response.status_code == 400
    assert response.json()["detail"] == "agent is given more than once"


def test_it_accepts_the_pagination_and_format_parameters_it_uses(auditor: Client) -> None:
    write_scenario(rounds=2)
    first = auditor.get("/api/audit/events/", {"page_size": 2, "format": "json", "agent": "support-agent"})
    assert first.status_code == 200
    assert auditor.get(first.json()["next"]).status_code == 200  # ?cursor=…&page_size=2&agent=…


def test_it_paginates_with_a_cursor(auditor: Client) -> None:
    write_scenario(rounds=3)
    response = auditor.get("/api/audit/events/", {"page_size": 5})
    page = response.json()
    assert len(page["results"]) == 5 and "cursor=" in page["next"]
    seqs = [e["seq"] for e in events(auditor, page_size=5)]
    assert seqs == list(range(AuditEntry.objects.count()))


def test_it_shows_the_contract_fields_and_the_leaf_hash(auditor: Client) -> None:
    write_scenario()
    entry = events(auditor, kind="decision")[0]
    for name in ("seq", "time", "kind", "agent", "server", "tool", "intent", "decision", "reason", "rules", "risk",
                 "args", "args_sha256", "approval", "outcome", "call_id", "leaf_hash"):
        assert name in entry
    stored = AuditEntry.objects.get(seq=entry["seq"])
    assert entry["leaf_hash"] == chain.leaf_hash(bytes(stored.canonical)).hex()
    assert entry["risk"]["score"] == 40


def test_it_is_for_admins_and_auditors_only() -> None:
    write_scenario()
    assert Client().get("/api/audit/events/").status_code in (401, 403)
    assert client_for("rita", ["support-lead"]).get("/api/audit/events/").status_code == 403
    assert client_for("ada", ["admin"]).get("/api/audit/events/").status_code == 200
    assert client_for("rita", ["support-lead"]).get("/api/audit/export/?format=jsonl").status_code == 403


def test_it_exports_jsonl_csv_and_ocsf(auditor: Client) -> None:
    write_scenario()
    jsonl = auditor.get("/api/audit/export/", {"format": "jsonl", "agent": "lookup-agent"})
    assert jsonl.status_code == 200 and jsonl["Content-Type"] == "application/x-ndjson"
    rows = [json.loads(line) for line in b"".join(jsonl.streaming_content).decode().splitlines()]
    assert [r["agent"] for r in rows] == ["lookup-agent"]
    table = auditor.get("/api/audit/export/", {"format": "csv", "intent": "financial.refund.*"})
    parsed = list(csv.DictReader(io.StringIO(b"".join(table.streaming_content).decode())))
    assert parsed and {r["intent"] for r in parsed} == {"financial.refund.process"}
    assert parsed[0]["risk_score"] == "40" and parsed[0]["risk_factors"] == "amount"
    ocsf = auditor.get("/api/audit/export/", {"format": "ocsf", "decision": "deny"})
    event = json.loads(b"".join(ocsf.streaming_content).decode().splitlines()[0])
    assert (event["class_uid"], event["category_uid"], event["type_uid"]) == (6003, 6, 600399)
    assert event["status"] == "Failure" and event["action"] == "Denied"
    assert event["actor"]["user"]["name"] == "lookup-agent"
    assert event["api"]["operation"] == "process_refund"
    assert auditor.get("/api/audit/export/", {"format": "xml"}).status_code == 400


def test_it_exports_a_bundle_that_verifies(auditor: Client, tmp_path: Any) -> None:
    write_scenario()
    response = auditor.get("/api/audit/export/", {"format": "bundle"})
    assert response.status_code == 200
    path = tmp_path / "bundle.json"
    path.write_bytes(b"".join(response.streaming_content))
    published = Client().get("/.well-known/intended/audit-keys.json")
    assert published.status_code == 200
    trusted = tmp_path / "keys.json"
    trusted.write_bytes(published.content)
    assert verify.main([str(path), "--trusted-keys", str(trusted)]) == 0


def test_it_reports_chain_status_and_the_latest_checkpoint(auditor: Client) -> None:
    assert auditor.get("/api/audit/checkpoints/latest").status_code == 404
    write_scenario()
    sealed = actions.seal()
    latest = auditor.get("/api/audit/checkpoints/latest")
    assert latest.status_code == 200
    assert latest.json()["size"] == sealed.size and latest.json()["note"] == sealed.note
    assert auditor.get("/api/audit/checkpoints/latest", {"format": "note"}).content.decode() == sealed.note
    ok = auditor.get("/api/audit/verify/").json()
    assert ok["valid"] is True and ok["size"] == sealed.size and ok["status"]["ok"] is True
    entry = AuditEntry.objects.get(seq=2)
    entry.canonical = bytes(entry.canonical).replace(b"customer-ops", b"customer-opz")
    entry.save()
    broken = auditor.get("/api/audit/verify/").json()
    assert broken["valid"] is False and broken["first_bad_seq"] == 2
    assert broken["status"]["ok"] is False and broken["status"]["alerts"][0]["first_bad_seq"] == 2


def test_it_publishes_every_key_and_cosigns_during_a_rotation() -> None:
    write_scenario()
    first = actions.seal()
    old = keys.published()["keys"]
    assert [k["status"] for k in old] == ["active"]
    from datetime import timedelta

    keys.rotate(timedelta(hours=1))
    published = Client().get("/.well-known/intended/audit-keys.json").json()
    assert [k["status"] for k in published["keys"]] == ["retiring", "active"]
    write_scenario()
    second = actions.seal()
    assert second.note.count("\u2014 ") == 2  # both keys sign during the overlap
    from audit_app import signing

    for key in published["keys"]:
        verifier = signing.parse_vkey(key["vkey"])
        signing.open_checkpoint(second.note, [verifier], origin=published["origin"])
    signing.open_checkpoint(first.note, [signing.parse_vkey(old[0]["vkey"])], origin=published["origin"])
    keys.rotate(timedelta(seconds=0))  # the second key retires at once; the first still overlaps
    third = actions.seal()
    statuses = [k["status"] for k in keys.published()["keys"]]
    assert statuses == ["retiring", "retired", "active"]
    assert third.note.count("\u2014 ") == 2
    mode = oct(next(keys.key_dir().glob("key-*.json")).stat().st_mode & 0o777)
    assert mode == "0o600"


def test_it_gives_the_dashboard_an_inclusion_proof(auditor: Client) -> None:
    from audit_app import queries

    write_scenario()
    assert queries.inclusion_proof(3) is None  # not sealed yet
    actions.seal()
    entry = AuditEntry.objects.get(seq=3)
    proof = queries.inclusion_proof(entry)
    assert proof is not None and proof["seq"] == 3 and proof["checkpoint"].startswith(keys.origin())
    from audit_app import signing

    chain.verify_inclusion(3, proof["tree_size"], bytes.fromhex(proof["leaf_hash"]),
                           [signing.unb64(p) for p in proof["inclusion"]], bytes.fromhex(proof["root_hash"]))


def test_it_gives_ocsf_the_client_address_without_its_port() -> None:
    from audit_app.exports import client_ip

    assert [client_ip(a) for a in ("127.0.0.1:5000", "[::1]:5000", "::1", "10.0.0.1")] == [
        "127.0.0.1", "::1", "::1", "10.0.0.1"]
