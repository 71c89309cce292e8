"""Reviewers are told once per escalation, by email and by a webhook signed as Standard Webhooks
says, and reminded once before expiry: in process, and (with REDIS_URL) by a real Celery worker
over Redis. The receiver is a real HTTP server that verifies each delivery with the Standard
Webhooks reference library and refuses replays, as a receiver should."""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from approvals_app import actions, notifications, tasks, webhooks
from approvals_app.apps import check_webhook_secret
from approvals_app.models import Approval, Notification
from tests.approvals_app.conftest import approval_entries, call
from tests.support.processes import ROOT, child_env, free_port, running

SECRET = "whsec_" + base64.b64encode(b"a webhook secret of 32 bytes....").decode()


class Receiver:
    """A real HTTP endpoint on loopback, verifying with the Standard Webhooks reference library
    (signature, and a timestamp within five minutes) and not processing again a message id it
    has already processed (a replay). It first answers the failure statuses it is told to, without
    processing, then 200. Every request is kept, with the answer it got."""

    def __init__(self, secret: str = SECRET, statuses: list[int] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        self.processed: dict[str, Any] = {}  # message id -> payload
        receiver, verifier = self, Webhook(secret)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, why = receiver.answer(verifier, body, headers)
                receiver.requests.append({"body": body, "headers": headers, "status": status, "why": why})
                self.send_response(status)
                self.end_headers()
                self.wfile.write(why.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, verifier: Webhook, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        try:
            payload = verifier.verify(body, headers)
        except WebhookVerificationError as exc:
            return 401, str(exc)
        if self.statuses:
            return self.statuses.pop(0), "failing on purpose"
        if headers["webhook-id"] in self.processed:  # 2xx: a retry whose answer was lost looks the same
            return 200, "duplicate: not processed again"
        self.processed[headers["webhook-id"]] = payload
        return 200, "ok"

    def wait_for(self, n: int, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    hook = Receiver()
    settings.INTENDED_WEBHOOK_URL = hook.url
    settings.INTENDED_WEBHOOK_SECRET = SECRET
    settings.INTENDED_WEBHOOK_BACKOFF_SECONDS = 0.02
    yield hook
    hook.close()


@pytest.fixture
def quiet(monkeypatch):
    """Create approvals without the automatic notification, to send it by hand."""
    monkeypatch.setattr(actions, "notify_requested", lambda approval_id: None)


@pytest.fixture
def in_process(settings):
    """The embedded default's way of running tasks (one in-process worker thread), whatever
    this run's broker: the worker thread reads what the test committed, so such tests are
    transactional."""
    settings.CELERY_TASK_ALWAYS_EAGER = True


pytestmark = pytest.mark.django_db


def delivered(receiver: Receiver) -> Receiver:
    actions.drain_in_process_worker()
    return receiver


# --- signing (pure) ------------------------------------------------------------------------------


def test_its_signature_is_the_reference_librarys():
    body = b'{"event": "approval.requested"}'
    keys = webhooks.signing_keys(SECRET)
    headers = webhooks.signed_headers(keys, "msg_1", 1_700_000_000, body)
    expected = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(1_700_000_000, tz=UTC), body)
    assert headers == {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": expected}


def test_it_signs_with_every_key_while_a_secret_is_rotated():
    new = "whsec_" + base64.b64encode(b"the next secret, also 32 bytes!!").decode()
    body = b"{}"
    headers = webhooks.signed_headers(webhooks.signing_keys(f"{SECRET} {new}"), "msg_2", int(time.time()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(body, headers)  # a receiver on the old secret, and one on the new
    Webhook(new).verify(body, headers)


@pytest.mark.parametrize("secret, error", [
    ("whsec_not base64!", "is not whsec_ followed by base64"),
    ("whsec_" + base64.b64encode(b"short").decode(), "at least 24 bytes"),
    (f"{SECRET} plain-secret", "every secret of a list must start with whsec_"),
])
def test_it_refuses_at_start_up_a_secret_it_cannot_sign_with(secret, error):
    with pytest.raises(ImproperlyConfigured, match=error):
        check_webhook_secret(secret)


def test_an_old_format_secret_still_signs_and_receivers_verify_it_in_whsec_form(caplog):
    legacy = "shared-webhook-secret"
    check_webhook_secret(legacy)
    assert "not in the whsec_<base64> form" in caplog.text
    assert webhooks.signing_keys(legacy) == [legacy.encode()]  # the same HMAC key as before
    headers = webhooks.signed_headers(webhooks.signing_keys(legacy), "msg_3", int(time.time()), b"{}")
    Webhook(webhooks.legacy_secret_as_whsec(legacy)).verify(b"{}", headers)


def test_its_backoff_doubles_with_jitter_and_a_cap():
    assert [webhooks.retry_delay(n, 2.0, rand=lambda: 1.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert webhooks.retry_delay(3, 2.0, rand=lambda: 0.0) == 4.0  # never less than half
    assert webhooks.retry_delay(30, 2.0, cap=300.0, rand=lambda: 1.0) == 300.0


# --- sending ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_emails_the_reviewers_once_but_not_the_owner(people, receiver, quiet, in_process):
    approval, _ = actions.request_approval(call())
    tasks.notify_requested.apply(args=[approval.pk])
    tasks.notify_requested.apply(args=[approval.pk])
    delivered(receiver)
    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == ["carol@example.com", "dave@example.com"]
    assert "support-agent" in mail.outbox[0].subject and f"/approvals/{approval.pk}/" in mail.outbox[0].body
    notified = [e for e in approval_entries(approval.pk) if e["event"] == "notified"]
    assert sorted(e["channel"] for e in notified) == ["email", "webhook"]


@pytest.mark.django_db(transaction=True)
def test_it_posts_a_webhook_that_the_reference_library_verifies_once(people, receiver, quiet, in_process):
    approval, _ = actions.request_approval(call())
    tasks.notify_requested.apply(args=[approval.pk])
    tasks.notify_requested.apply(args=[approval.pk])
    assert [r["status"] for r in delivered(receiver).requests] == [200]
    sent = receiver.requests[0]
    assert sent["headers"]["webhook-id"].startswith("msg_")
    assert abs(int(sent["headers"]["webhook-timestamp"]) - time.time()) < 60
    payload = json.loads(sent["body"])
    assert payload["event"] == "approval.requested" and payload["approval"]["id"] == approval.pk
    assert payload["approval"]["args_sha256"] == approval.args_sha256
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"somebody else's secret, 32 bytes").decode()).verify(
            sent["body"], sent["headers"])
    notified = [e for e in approval_entries(approval.pk) if e["event"] == "notified" and e["channel"] == "webhook"]
    assert notified[0]["webhook_id"] == sent["headers"]["webhook-id"]


@pytest.mark.django_db(transaction=True)
def test_a_receiver_refuses_a_captured_delivery_sent_again(people, receiver, quiet, in_process):
    approval, _ = actions.request_approval(call())
    tasks.notify_requested.apply(args=[approval.pk])
    captured = delivered(receiver).requests[0]
    headers = {**captured["headers"], "content-type": "application/json"}

    # at once: the same id again
    again = httpx.post(receiver.url, content=captured["body"], headers=headers)
    assert (again.status_code, again.text) == (200, "duplicate: not processed again")
    # later, with the timestamp moved on: the signature no longer matches
    moved = httpx.post(receiver.url, content=captured["body"],
                       headers={**headers, "webhook-timestamp": str(int(time.time()) + 5)})
    assert (moved.status_code, moved.text) == (401, "No matching signature found")
    # a delivery signed ten minutes ago, sent now (the id unseen): too old
    old = webhooks.signed_headers(webhooks.signing_keys(SECRET), "msg_unseen", int(time.time()) - 600,
                                  captured["body"])
    late = httpx.post(receiver.url, content=captured["body"], headers={**headers, **old})
    assert (late.status_code, late.text) == (401, "Message timestamp too old")
    assert len(receiver.processed) == 1


@pytest.mark.django_db(transaction=True)
def test_it_retries_a_failing_receiver_with_the_same_message_id(people, receiver, quiet, in_process):
    receiver.statuses = [500, 503]
    approval, _ = actions.request_approval(call())
    tasks.notify_requested.apply(args=[approval.pk])
    delivered(receiver).wait_for(3)
    assert [r["status"] for r in receiver.requests] == [500, 503, 200]
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1
    assert len({r["body"] for r in receiver.requests}) == 1
    assert Notification.objects.get(approval=approval, channel="webhook").attempts == 3


@pytest.mark.django_db(transaction=True)
def test_a_webhook_waiting_to_retry_holds_up_no_other_notification(people, receiver, quiet, in_process, settings):
    """On the embedded default one thread sends every notification: a retry waits on a timer,
    not in that thread, so the next approval is told while the first waits for its retry."""
    settings.INTENDED_WEBHOOK_BACKOFF_SECONDS = 2.0
    receiver.statuses = [500]
    first, _ = actions.request_approval(call())
    second, _ = actions.request_approval(call(arguments={"amount": 1}))
    tasks.notify_requested.apply(args=[first.pk])
    receiver.wait_for(1)
    tasks.notify_requested.apply(args=[second.pk])
    delivered(receiver)
    order = [(json.loads(r["body"])["approval"]["id"], r["status"]) for r in receiver.requests]
    assert order == [(first.pk, 500), (second.pk, 200), (first.pk, 200)]


def test_it_gives_up_after_the_last_attempt_and_says_so(people, receiver, quiet, settings, caplog):
    settings.INTENDED_WEBHOOK_ATTEMPTS = 2
    receiver.statuses = [500, 502, 500]
    approval, _ = actions.request_approval(call())
    note = notifications._claim(approval, Notification.WEBHOOK, Notification.REQUESTED)
    assert note is not None
    body = json.dumps({"event": "approval.requested"})
    assert notifications.deliver_webhook(note.pk, "msg_given_up", body, attempt=1) is not None
    assert notifications.deliver_webhook(note.pk, "msg_given_up", body, attempt=2) is None
    assert len(receiver.requests) == 2
    last = approval_entries(approval.pk)[-1]
    assert (last["event"], last["error"], last["attempts"], last["webhook_id"]) == (
        "notify_failed", "HTTP 502", 2, "msg_given_up")
    assert "webhook failed after 2 attempts: HTTP 502" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_it_speaks_slack_when_asked(people, receiver, quiet, settings, in_process):
    settings.INTENDED_WEBHOOK_FORMAT = "slack"
    approval, _ = actions.request_approval(call())
    tasks.notify_requested.apply(args=[approval.pk])
    payload = json.loads(delivered(receiver).requests[0]["body"])
    assert "support-agent" in payload["text"] and payload["blocks"][0]["type"] == "section"


def test_it_tells_the_admins_of_a_new_held_tool_by_email_and_webhook(people, receiver, settings, in_process):
    settings.INTENDED_PUBLIC_URL = "https://gateway.example.com"
    tasks.notify_new_tool.apply(args=["customer-ops", "wipe", "held", "new tool on a server that holds new tools"])
    [message] = mail.outbox
    assert message.to == ["root@example.com"]  # the admins, not the reviewers
    assert message.subject == "New tool customer-ops/wipe held for review: new tool on a server that holds new tools"
    assert "https://gateway.example.com/servers/customer-ops/tools/wipe/" in message.body
    [request] = delivered(receiver).requests
    assert request["status"] == 200  # signed: the reference library verified it
    assert json.loads(request["body"]) == {
        "event": "tool.new", "url": "https://gateway.example.com/servers/customer-ops/tools/wipe/",
        "tool": {"server": "customer-ops", "name": "wipe", "status": "held",
                 "reason": "new tool on a server that holds new tools"}}


def test_it_retries_a_new_tool_webhook_with_the_same_message_id(people, receiver, settings, in_process):
    receiver.statuses = [503]
    tasks.notify_new_tool.apply(args=["customer-ops", "export_all", "admitted", ""])
    receiver.wait_for(2)
    statuses = [r["status"] for r in delivered(receiver).requests]
    assert statuses == [503, 200]
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1


@pytest.mark.django_db(transaction=True)
def test_it_reminds_once_before_expiry(people, receiver, quiet, in_process):
    approval, _ = actions.request_approval(call())
    assert tasks.remind_due.apply().get() == 0
    Approval.objects.filter(pk=approval.pk).update(requested_at=timezone.now() - timedelta(seconds=290),
                                                   expires_at=timezone.now() + timedelta(seconds=10))
    assert tasks.remind_due.apply().get() == 1
    assert tasks.remind_due.apply().get() == 0
    assert len(mail.outbox) == 1 and mail.outbox[0].subject.startswith("Reminder")
    assert json.loads(delivered(receiver).requests[0]["body"])["event"] == "approval.reminder"


def test_it_tells_nobody_about_a_decided_approval(people, receiver, quiet):
    approval, _ = actions.request_approval(call())
    actions.decide(approval.pk, acting_user=people["carol"], approve=True)
    tasks.notify_requested.apply(args=[approval.pk])
    assert mail.outbox == [] and delivered(receiver).requests == []


@pytest.mark.django_db(transaction=True)
def test_it_notifies_in_process_on_the_embedded_default(people, receiver, in_process):
    approval, _ = actions.request_approval(call())
    for _ in range(200):
        if receiver.requests and mail.outbox:
            break
        time.sleep(0.05)
    assert len(delivered(receiver).processed) == 1 and len(mail.outbox) == 1
    assert json.loads(receiver.requests[0]["body"])["approval"]["id"] == approval.pk


def _celery_worker(receiver: Receiver, tmp_path: Path, **extra: str) -> tuple[list[str], dict[str, str], str]:
    """A worker of its own queue (its tasks' follow-ups, such as a webhook delivery and its
    retries, go to that queue too), over the tests' Redis."""
    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs REDIS_URL (a real Celery broker)")
    queue = f"approvals-test-{free_port()}"
    env = child_env(INTENDED_WEBHOOK_URL=receiver.url, INTENDED_WEBHOOK_SECRET=SECRET,
                    INTENDED_CELERY_QUEUE=queue, **extra)
    argv = [sys.executable, "-m", "celery", "-A", "intended", "worker", "--pool", "solo", "-Q", queue,
            "--loglevel", "WARNING"]
    return argv, env, queue


@pytest.mark.django_db(transaction=True)
def test_it_notifies_once_through_a_celery_worker_on_redis(people, receiver, tmp_path: Path, quiet):
    mail_dir = tmp_path / "mail"
    argv, env, queue = _celery_worker(receiver, tmp_path, EMAIL_FILE_PATH=str(mail_dir),
                                      EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend")
    first, _ = actions.request_approval(call())
    second, _ = actions.request_approval(call(arguments={"amount": 1}))
    worker = _start_worker(argv, env, tmp_path / "worker.log")
    try:
        for approval_id in (first.pk, first.pk, second.pk):  # a duplicate, then a sentinel behind it
            tasks.notify_requested.apply_async(args=[approval_id], queue=queue)
        receiver.wait_for(2, seconds=60)
    finally:
        worker.terminate()
        worker.wait(20)
    ids = [json.loads(r["body"])["approval"]["id"] for r in receiver.requests]
    assert ids == [first.pk, second.pk], (tmp_path / "worker.log").read_text()
    assert [r["status"] for r in receiver.requests] == [200, 200]  # verified by the reference library
    assert len(list(mail_dir.iterdir())) == 2


@pytest.mark.django_db(transaction=True)
def test_a_worker_retries_a_failing_receiver_with_celery_and_the_same_message_id(
        people, receiver, tmp_path: Path, quiet):
    receiver.statuses = [500, 503]
    argv, env, queue = _celery_worker(receiver, tmp_path, INTENDED_WEBHOOK_BACKOFF_SECONDS="0.2")
    approval, _ = actions.request_approval(call())
    worker = _start_worker(argv, env, tmp_path / "worker.log")
    try:
        tasks.notify_requested.apply_async(args=[approval.pk], queue=queue)
        receiver.wait_for(3, seconds=60)
        deadline = time.monotonic() + 10  # the worker records the delivery after the answer
        while not Notification.objects.filter(approval=approval, channel="webhook", sent_at__isnull=False).exists() \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.terminate()
        worker.wait(20)
    assert [r["status"] for r in receiver.requests] == [500, 503, 200], (tmp_path / "worker.log").read_text()
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1
    stamps = [int(r["headers"]["webhook-timestamp"]) for r in receiver.requests]
    assert stamps == sorted(stamps)  # each attempt is signed when it is sent
    assert Notification.objects.get(approval=approval, channel="webhook").attempts == 3
    notified = [e for e in approval_entries(approval.pk) if e["event"] == "notified"]
    assert [(e["channel"], e["attempts"]) for e in notified if e["channel"] == "webhook"] == [("webhook", 3)]


def _start_worker(argv: list[str], env: dict[str, str], log: Path):
    import subprocess

    out = open(log, "wb")
    return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


_ = running  # the worker listens on no port, so it is started directly
