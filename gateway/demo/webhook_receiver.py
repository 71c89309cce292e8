"""The demo's webhook receiver, mounted at /_demo/webhook: where a team's chat or paging tool
would be. It verifies each delivery as a Standard Webhooks receiver does (signature over
id, timestamp and body; a timestamp within five minutes) and appends the verified ones to a
JSON Lines file, one delivery a line, so that a person or a test can read what reviewers and
admins were told (docs/DEMO.md)."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from approvals_app import webhooks

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

WEBHOOK_PATH = "/_demo/webhook"
TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 1024 * 1024


def verified(keys: list[bytes], headers: dict[str, str], body: bytes, now: float) -> bool:
    """True when the delivery carries a valid v1 signature of one of the keys, made recently."""
    message_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not message_id or not stamp.isdigit() or abs(now - int(stamp)) > TOLERANCE_SECONDS:
        return False
    expected = {webhooks.signature(key, message_id, int(stamp), body) for key in keys}
    offered = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(o, e) for o in offered for e in expected)


class WebhookReceiver:
    def __init__(self, log_path: Path, secret: str) -> None:
        self.log_path = log_path
        self.keys = webhooks.signing_keys(secret)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "POST":
            await _answer(send, 405)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES:
                await _answer(send, 413)
                return
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        if not verified(self.keys, headers, body, time.time()):
            await _answer(send, 401)
            return
        try:
            payload = json.loads(body)
        except ValueError:
            await _answer(send, 400)
            return
        record = {"received_at": time.time(), "webhook_id": headers["webhook-id"],
                  "event": payload.get("event", "") if isinstance(payload, dict) else "", "payload": payload}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(record, sort_keys=True) + "\n")
        await _answer(send, 204)


async def _answer(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})
