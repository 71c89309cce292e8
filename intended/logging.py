"""Log formats: one JSON object per line (production), or readable text (embedded default).

LOG_FORMAT=json|text picks one (settings.LOGGING). Context passed with `extra=` (call_id,
agent, server, tool, intent, decision, ...) becomes fields of the JSON object, so a log line
can be joined to the audit trail by `call_id`:

    log.info("call decided", extra=call_fields(ctx))
"""

from __future__ import annotations

import json
import logging
import re
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


# C0 and C1 controls, DEL, and what else a reader or terminal takes for a line break.
_CONTROL = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_QUOTES = re.compile(r'[\s="\[\]]')


def escape(text: str) -> str:
    """Control characters as Python escapes (and the backslash doubled, so that an escape in
    the log is never mistaken for what someone typed)."""

    def one(match: re.Match[str]) -> str:
        char = match.group()
        return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")

    return _CONTROL.sub(one, text)


def text_value(value: Any) -> str:
    """A field's value as logfmt writes it: escaped, and quoted when it holds a space, an equals
    sign, a quote or a bracket (so that a value cannot pass for another field)."""
    text = escape(str(value))
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace('"', '\\"') + '"'


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal, with the context fields appended as key=value.

    What a record carries from outside (a reviewer's comment, an argument in a reason, an
    upstream's error text) must not forge lines: the message and the fields have their control
    characters escaped, and the lines of an exception or a stack are indented under their
    record, so a line that starts at the margin always starts a record."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        line = f"{self.formatTime(record)} {record.levelname} {record.name}: {escape(record.message)}"
        extras = extra_fields(record)
        if extras:
            line += " [" + " ".join(f"{escape(str(k))}={text_value(v)}" for k, v in extras.items()) + "]"
        # Not cached on the record (as logging.Formatter does): another handler's formatter
        # must not get this indented text.
        if record.exc_info:
            line += "\n" + _indented(self.formatException(record.exc_info))
        elif record.exc_text:
            line += "\n" + _indented(record.exc_text)
        if record.stack_info:
            line += "\n" + _indented(self.formatStack(record.stack_info))
        return line


def _indented(text: str) -> str:
    return "\n".join("  " + escape(line) for line in text.split("\n"))
