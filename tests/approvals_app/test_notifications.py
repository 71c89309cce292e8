"""Reviewers are told once per escalation, by email and by a signed webhook, and reminded once
before expiry: in process, and (with REDIS_URL) by a real Celery worker over Redis."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from approvals_app import actions, notifications, tasks
from approvals_app.models import Approval, Notification
from tests.approvals_app.conftest import approval_entries, call
from tests.support.processes import ROOT, child_env, free_port, running

SECRET = "shared-webhook-secret"


class Receiver:
    """A real HTTP endpoint on loopback that records what it is sent; it answers the statuses
    it is told to, then 200."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"body": body, "headers": dict(self.headers)})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    hook = Receiver()
    settings.INTENDED_WEBHOOK_URL = hook.url
    settings.INTENDED_WEBHOOK_SECRET = SECRET
    settings.INTENDED_WEBHOOK_BACKOFF_SECONDS = 0.01
    yield hook
    hook.close()


@pytest.fixture
def quiet(monkeypatch):
    """Create approvals without the automatic notification, to send it by hand."""
    monkeypatch.setattr(actions, "notify_requested", lambda approval_id: None)


pytestmark = pytest.mark.django_db


def test_it_emails_the_reviewers_once_but_not_the_owner(people, receiver, quiet):
    approval, _ = actions.request_approval(call())
    tasks.notify_requested.apply(args=[approval.pk])
    tasks.notify_requested.apply(args=[approval.pk])
    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == ["carol@example.com", "dave@example.com"]
    assert "support-agent" in mail.outbox[0].subject and f"/approvals/{approval.pk}/" in mail.outbox[0].body
    notified = [e for e in approval_entries(approval.pk) if e["event"] == "notified"]
    assert sorted(e["channel"] for e in notified) == ["email", "webhook"]


def test_it_posts_a_signed_webhook_once(people, receiver, quiet):
    approval, _ = actions.request_approval(call())
    tasks.notify_requested.apply(args=[approval.pk])
    tasks.notify_requested.apply(args=[approval.pk])
    assert len(receiver.requests) == 1
    sent = receiver.requests[0]
    assert notifications.verify(sent["body"], SECRET, sent["headers"]["X-Intended-Signature"])
    assert not notifications.verify(sent["body"], "another secret", sent["headers"]["X-Intended-Signature"])
    payload = json.loads(sent["body"])
    assert payload["event"] == "approval.requested" and payload["approval"]["id"] == approval.pk
    assert payload["approval"]["args_sha256"] == approval.args_sha256


def test_it_retries_a_failing_webhook_with_backoff(people, receiver, quiet):
    receiver.statuses = [500, 503]
    approval, _ = actions.request_approval(call())
    waits: list[float] = []
    assert notifications.deliver_webhook(approval, "requested", sleep=waits.append)
    assert len(receiver.requests) == 3
    assert waits == [0.01, 0.02]
    assert Notification.objects.get(approval=approval, channel="webhook").attempts == 3


def test_it_gives_up_after_the_last_attempt_and_says_so(people, receiver, quiet, settings):
    settings.INTENDED_WEBHOOK_ATTEMPTS = 2
    receiver.statuses = [500, 500, 500]
    approval, _ = actions.request_approval(call())
    assert not notifications.deliver_webhook(approval, "requested", sleep=lambda s: None)
    assert len(receiver.requests) == 2
    assert [e["event"] for e in approval_entries(approval.pk)][-1] == "notify_failed"


def test_it_speaks_slack_when_asked(people, receiver, quiet, settings):
    settings.INTENDED_WEBHOOK_FORMAT = "slack"
    approval, _ = actions.request_approval(call())
    tasks.notify_requested.apply(args=[approval.pk])
    payload = json.loads(receiver.requests[0]["body"])
    assert "support-agent" in payload["text"] and payload["blocks"][0]["type"] == "section"


def test_it_reminds_once_before_expiry(people, receiver, quiet):
    approval, _ = actions.request_approval(call())
    assert tasks.remind_due.apply().get() == 0
    Approval.objects.filter(pk=approval.pk).update(requested_at=timezone.now() - timedelta(seconds=290),
                                                   expires_at=timezone.now() + timedelta(seconds=10))
    assert tasks.remind_due.apply().get() == 1
    assert tasks.remind_due.apply().get() == 0
    assert len(mail.outbox) == 1 and mail.outbox[0].subject.startswith("Reminder")
    assert json.loads(receiver.requests[0]["body"])["event"] == "approval.reminder"


def test_it_tells_nobody_about_a_decided_approval(people, receiver, quiet):
    approval, _ = actions.request_approval(call())
    actions.decide(approval.pk, acting_user=people["carol"], approve=True)
    tasks.notify_requested.apply(args=[approval.pk])
    assert mail.outbox == [] and receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_it_notifies_in_process_on_the_embedded_default(people, receiver, settings):
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        pytest.skip("the embedded default runs tasks in process; this run uses a Celery broker")
    approval, _ = actions.request_approval(call())
    for _ in range(200):
        if receiver.requests and mail.outbox:
            break
        time.sleep(0.05)
    assert len(receiver.requests) == 1 and len(mail.outbox) == 1
    assert json.loads(receiver.requests[0]["body"])["approval"]["id"] == approval.pk


@pytest.mark.django_db(transaction=True)
def test_it_notifies_once_through_a_celery_worker_on_redis(people, receiver, tmp_path: Path, quiet):
    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs REDIS_URL (a real Celery broker)")
    queue = f"approvals-test-{free_port()}"
    mail_dir = tmp_path / "mail"
    env = child_env(INTENDED_WEBHOOK_URL=receiver.url, INTENDED_WEBHOOK_SECRET=SECRET,
                    EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend", EMAIL_FILE_PATH=str(mail_dir))
    argv = [sys.executable, "-m", "celery", "-A", "intended", "worker", "--pool", "solo", "-Q", queue,
            "--loglevel", "WARNING"]
    first, _ = actions.request_approval(call())
    second, _ = actions.request_approval(call(arguments={"amount": 1}))
    worker = _start_worker(argv, env, tmp_path / "worker.log")
    try:
        for approval_id in (first.pk, first.pk, second.pk):  # a duplicate, then a sentinel behind it
            tasks.notify_requested.apply_async(args=[approval_id], queue=queue)
        deadline = time.monotonic() + 60
        while len(receiver.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(20)
    ids = [json.loads(r["body"])["approval"]["id"] for r in receiver.requests]
    assert ids == [first.pk, second.pk]
    for sent in receiver.requests:
        assert notifications.verify(sent["body"], SECRET, sent["headers"]["X-Intended-Signature"])
    assert len(list(mail_dir.iterdir())) == 2


def _start_worker(argv: list[str], env: dict[str, str], log: Path):
    import subprocess

    out = open(log, "wb")
    return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


_ = running  # the worker listens on no port, so it is started directly
