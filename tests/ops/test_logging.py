from __future__ import annotations

import json
import logging
import sys

from intended.logging import JsonFormatter, TextFormatter, call_fields
from policies_app.core.context import AgentView, CallContext, ServerView


def record(message: str = "call decided", *args, extra: dict | None = None, exc_info=None) -> logging.LogRecord:
    logger = logging.getLogger("intended.gateway")
    return logger.makeRecord(logger.name, logging.INFO, __file__, 1, message, args, exc_info, extra=extra)


def a_call() -> CallContext:
    agent = AgentView(id=1, name="support-agent", owner="alice", roles=frozenset(), tool_scope={})
    server = ServerView(id=1, name="customer-ops", url="http://127.0.0.1:9/mcp", command=(),
                        credential_header="", credential="", domain_pack="", tool_intents={},
                        new_tools="pin", timeout=30, connect_timeout=5)
    ctx = CallContext(agent=agent, server=server, subject="process_refund", arguments={"amount": 5},
                      args_sha256="ab" * 32, intent="financial.refund.process")
    ctx.deny("Only support agents can process refunds")
    return ctx


def test_it_writes_one_json_object_per_line_with_the_call_id():
    ctx = a_call()
    line = JsonFormatter().format(record("call %s", "decided", extra=call_fields(ctx, latency_ms=1.5)))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "call decided"
    assert entry["level"] == "INFO" and entry["logger"] == "intended.gateway"
    assert entry["time"].endswith("Z")
    assert entry["call_id"] == ctx.call_id
    assert entry["agent"] == "support-agent" and entry["server"] == "customer-ops"
    assert entry["decision"] == "deny" and entry["latency_ms"] == 1.5
    assert "arguments" not in entry  # arguments belong to the (redacted) audit trail, not logs


def test_it_keeps_a_multiline_exception_on_one_line():
    try:
        raise RuntimeError("upstream\nfell over")
    except RuntimeError:
        line = JsonFormatter().format(record("boom", exc_info=sys.exc_info()))
    assert "\n" not in line
    assert "RuntimeError: upstream\nfell over" in json.loads(line)["exception"]


def test_it_never_fails_on_a_field_that_is_not_json():
    entry = json.loads(JsonFormatter().format(record(extra={"call_id": "c1", "when": object()})))
    assert entry["call_id"] == "c1" and entry["when"].startswith("<object")


def test_it_writes_readable_text_with_the_context():
    line = TextFormatter().format(record(extra={"call_id": "c1", "agent": "a"}))
    assert line.endswith("call decided [call_id=c1 agent=a]")


FORGED = "2026-01-01 00:00:00,000 INFO intended.gateway: call decided [agent=admin decision=allow]"


def test_it_escapes_control_characters_so_that_a_comment_cannot_forge_lines():
    comment = f"looks fine\n{FORGED}\r\x1b[2K\u2028\x00 tab\there"
    line = TextFormatter().format(record("held call %s: %s", "deny", f"Denied by reviewer: {comment}",
                                         extra={"call_id": "c1", "comment": comment}))
    assert len(line.splitlines()) == 1
    assert not any(ch in line for ch in "\r\x1b\x00\t\u2028")
    assert "Denied by reviewer: looks fine\\n2026-01-01 00:00:00,000 INFO" in line
    assert line.endswith("\\r\\x1b[2K\\u2028\\x00 tab\\there\"]")
    assert "comment=\"looks fine\\n2026" in line  # a value with spaces is quoted: no field forged either


def test_it_keeps_a_backslash_readable_and_unambiguous():
    line = TextFormatter().format(record("path %s", "C:\\temp\\n", extra={"call_id": "c\\1"}))
    assert line.endswith("path C:\\\\temp\\\\n [call_id=c\\\\1]")


def test_it_indents_the_lines_of_an_exception_under_its_record():
    try:
        raise RuntimeError(f"upstream fell over\n{FORGED}")
    except RuntimeError:
        text = TextFormatter().format(record("boom", exc_info=sys.exc_info(), extra={"call_id": "c1"}))
    first, *rest = text.split("\n")
    assert first.endswith("boom [call_id=c1]")
    assert rest and all(line.startswith("  ") for line in rest)
    assert f"  {FORGED}" in rest


def test_it_picks_the_format_from_the_environment():
    import subprocess

    from tests.support.processes import ROOT

    code = ("import django, logging; django.setup(); "
            "logging.getLogger('intended.test').warning('hello', extra={'call_id': 'c9'})")
    env = {"PATH": "/usr/bin:/bin", "LOG_FORMAT": "json", "DJANGO_SETTINGS_MODULE": "intended.settings",
           "PYTHONPATH": str(ROOT), "INTENDED_DATA_DIR": str(ROOT / "var")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    entry = json.loads(out.stderr.strip().splitlines()[-1])
    assert entry["message"] == "hello" and entry["call_id"] == "c9"
    env["LOG_FORMAT"] = "yaml"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "LOG_FORMAT" in out.stderr
