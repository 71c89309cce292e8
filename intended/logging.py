"""Log formats: one JSON object per line (production), or readable text (embedded default).

LOG_FORMAT=json|text picks one (settings.LOGGING). Context passed with `extra=` (call_id,
agent, server, tool, intent, decision, ...) becomes fields of the JSON object, so a log line
can be joined to the audit trail by `call_id`:

    log.info("call decided", extra=call_fields(ctx))
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)

# Shown first, in this order, when present.
CONTEXT_FIELDS = ("call_id", "agent", "server", "tool", "intent", "decision", "session", "client")


def call_fields(ctx: Any, **more: Any) -> dict[str, Any]:
    """The `extra=` for a log line about one tool call (a policies_app.core.context.CallContext)."""
    fields = {
        "call_id": ctx.call_id,
        "agent": ctx.agent.name,
        "server": ctx.server.name,
        "tool": ctx.tool,
        "intent": ctx.intent,
    }
    if ctx.decision:
        fields["decision"] = ctx.decision
    if ctx.session_id:
        fields["session"] = ctx.session_id
    if ctx.client_addr:
        fields["client"] = ctx.client_addr
    return fields | more


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    extras = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
    ordered = {k: extras.pop(k) for k in CONTEXT_FIELDS if k in extras}
    return ordered | dict(sorted(extras.items()))


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the context fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: a log line must never fail because a field is not JSON.
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal, with the context fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = extra_fields(record)
        if not extras:
            return line
        context = " ".join(f"{k}={v}" for k, v in extras.items())
        first, newline, rest = line.partition("\n")
        return f"{first} [{context}]{newline}{rest}"
