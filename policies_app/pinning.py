"""Tool pinning (rug-pull defence) and the poisoning scan.

Trust on first use: the first time the gateway sees a tool, its canonical definition (name,
description, input and output schema, annotations; RFC 8785 JSON) is hashed and pinned,
unless the poisoning scan flags it or the server holds new tools. A definition that differs
from its pin is withheld from every agent until an admin approves it. The hot path reads pins
from the frozen snapshot; `filter_tools` writes only when it sees something new or changed.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import rfc8785

DEFINITION_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
# A catalog served in several pages arrives as several tools/list calls; tools first seen this
# soon after a server's very first pin still belong to its first catalog.
FIRST_CATALOG_GRACE = timedelta(seconds=60)

HIDDEN_BLOCK = re.compile(
    r"<\s*/?\s*(important|system|instructions?|hidden|secret|admin|assistant|user|context|note)\b[^>]*>",
    re.IGNORECASE,
)
INSTRUCTION_PHRASES = re.compile(
    r"ignore\s+(all\s+|any\s+)?(the\s+)?(previous|prior|above|earlier|other)\s+(instructions|prompts|rules)"
    r"|disregard\s+(all\s+|any\s+)?(the\s+)?(previous|prior|above|earlier)"
    r"|do\s+not\s+(tell|inform|mention|reveal|notify)\s+(this\s+to\s+)?the\s+user"
    r"|(don't|never)\s+(tell|inform|mention|reveal)\s+(this\s+to\s+)?the\s+user"
    r"|before\s+(using|calling)\s+(this|any)\s+tool,?\s+(you\s+must\s+)?(read|call|send|first)"
    r"|(~/\.ssh|id_rsa|\.env\b|mcp\.json|/etc/passwd)"
    r"|you\s+are\s+now\s+|new\s+instructions\s*:|system\s+prompt",
    re.IGNORECASE,
)
INVISIBLE = frozenset(
    [0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0xFEFF, 0x00AD]
    + list(range(0x202A, 0x202F))
    + list(range(0x2066, 0x206A))
)


@dataclass(frozen=True)
class PinView:
    server: str
    tool: str
    status: str
    definition_hash: str
    annotations: Mapping[str, Any] = field(default_factory=dict)
    pending_hash: str = ""  # what the upstream offered when it was held

    @property
    def admitted(self) -> bool:
        return self.status == "admitted"


# --- pure: canonical definitions and the scan ----------------------------------------------


def canonical_definition(tool: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tool[k] for k in DEFINITION_FIELDS if k in tool and tool[k] is not None}


def definition_hash(tool: Mapping[str, Any]) -> str:
    return hashlib.sha256(rfc8785.dumps(canonical_definition(tool))).hexdigest()


def _texts(value: Any) -> Iterable[str]:
    """Every string a model would read in a definition (descriptions nested in schemas too)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                yield key
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def scan(tool: Mapping[str, Any], other_tools: Iterable[str] = ()) -> list[str]:
    """Why this definition looks poisoned; empty when it looks clean."""
    findings: list[str] = []
    definition = canonical_definition(tool)
    texts = list(_texts({k: v for k, v in definition.items() if k != "name"}))
    prose = "\n".join(texts)
    if HIDDEN_BLOCK.search(prose):
        findings.append("hidden instruction block (" + HIDDEN_BLOCK.search(prose).group(0)[:40] + ")")  # type: ignore[union-attr]
    phrase = INSTRUCTION_PHRASES.search(prose)
    if phrase:
        findings.append(f"instruction to the model ({phrase.group(0)[:60]!r})")
    for char in prose:
        code = ord(char)
        if code in INVISIBLE or 0xE0000 <= code <= 0xE007F:
            findings.append(f"invisible character U+{code:04X}")
            break
        if unicodedata.category(char) == "Cc" and char not in "\n\r\t":
            findings.append(f"control character U+{code:04X}")
            break
    own = tool.get("name", "")
    description = str(definition.get("description", ""))
    for other in sorted(set(other_tools)):
        if other == own or len(other) < 4:
            continue
        if re.search(rf"(?<![\w-]){re.escape(other)}(?![\w-])", description):
            findings.append(f"refers to another tool ({other})")
            break
    return findings


def definition_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a definition that changed: {field: {"before": ..., "after": ...}}."""
    return {
        k: {"before": before.get(k), "after": after.get(k)}
        for k in DEFINITION_FIELDS
        if before.get(k) != after.get(k)
    }


# --- the snapshot's view of pins -----------------------------------------------------------


def load_pins() -> dict[tuple[str, str], PinView]:
    from policies_app.models import ToolPin

    return {
        (p.server, p.tool): PinView(
            server=p.server,
            tool=p.tool,
            status=p.status,
            definition_hash=p.definition_hash,
            annotations=(p.definition or {}).get("annotations") or {},
            pending_hash=p.pending_hash,
        )
        for p in ToolPin.objects.all()
    }


def _pins(snap: Any) -> Mapping[tuple[str, str], PinView]:
    return getattr(snap, "pins", None) or {}


def pin_for(snap: Any, server: str, tool: str) -> PinView | None:
    return _pins(snap).get((server, tool))


def admitted_hash(snap: Any, server: str, tool: str) -> str:
    pin = pin_for(snap, server, tool)
    return pin.definition_hash if pin is not None and pin.admitted else ""


def tool_annotations(snap: Any, server: str, tool: str) -> Mapping[str, Any]:
    pin = pin_for(snap, server, tool)
    return pin.annotations if pin is not None else {}


def _pin_from_db(server: str, tool: str) -> PinView | None:
    from policies_app.models import ToolPin

    if _has_control_character(tool):
        # No tool is pinned under such a name, and PostgreSQL refuses NUL in text outright.
        return None
    p = ToolPin.objects.filter(server=server, tool=tool).first()
    if p is None:
        return None
    return PinView(p.server, p.tool, p.status, p.definition_hash, (p.definition or {}).get("annotations") or {},
                   p.pending_hash)


def _has_control_character(name: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name)


async def current_pin(snap: Any, server: str, tool: str) -> PinView | None:
    """The pin from the snapshot when it admits the tool; otherwise from the database, in case
    this process has not reloaded yet (a tools/list answered or an approval given a moment ago
    on another replica). Only unknown and held tools pay for the query."""
    pin = pin_for(snap, server, tool)
    if pin is not None and pin.admitted:
        return pin
    from channels.db import database_sync_to_async

    return await database_sync_to_async(_pin_from_db)(server, tool)


# --- tools/list ----------------------------------------------------------------------------


async def filter_tools(snap: Any, agent: Any, server: Any, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tools of one tools/list page that this agent may see: in its scope and admitted.
    Records first sightings, changes and holds (audited) when the page holds anything new."""
    pins = _pins(snap)
    hashes = {t.get("name", ""): definition_hash(t) for t in tools if isinstance(t, Mapping)}
    admitted = {
        name for name, digest in hashes.items()
        if (pin := pins.get((server.name, name))) is not None and pin.admitted and pin.definition_hash == digest
    }
    # Anything else goes to the database, the truth: a first sight, a change, or a held tool an
    # admin may have approved a moment ago on another process.
    if len(admitted) < len(hashes):
        from channels.db import database_sync_to_async

        admitted = await database_sync_to_async(record_catalog)(server.name, server.new_tools, tools)
        from gateway.snapshot import snapshots

        snapshots.invalidate()
    return [
        t for t in tools
        if isinstance(t, Mapping) and t.get("name", "") in admitted and agent.may_use_tool(server.name, t.get("name", ""))
    ]


def record_catalog(server: str, new_tools: str, tools: list[dict[str, Any]]) -> set[str]:
    """Compare a catalog page with the pins; returns the names that are admitted."""
    from django.db import IntegrityError

    for attempt in range(3):
        try:
            return _record_catalog(server, new_tools, tools)
        except IntegrityError:
            if attempt == 2:
                raise  # another replica keeps pinning the same tools: let the caller fail closed
    raise AssertionError("unreachable")


def _record_catalog(server: str, new_tools: str, tools: list[dict[str, Any]]) -> set[str]:
    from django.db import transaction
    from django.utils import timezone

    from gateway.models import ConfigStamp
    from policies_app.models import ToolPin

    now = timezone.now()
    names = [t.get("name", "") for t in tools if isinstance(t, Mapping)]
    admitted: set[str] = set()
    with transaction.atomic():
        existing = {p.tool: p for p in ToolPin.objects.select_for_update().filter(server=server)}
        first_seen = min((p.first_seen_at for p in existing.values()), default=None)
        first_catalog = first_seen is None or now - first_seen < FIRST_CATALOG_GRACE
        changed = False
        for tool in tools:
            if not isinstance(tool, Mapping) or not tool.get("name"):
                continue
            name = tool["name"]
            definition = canonical_definition(tool)
            digest = definition_hash(tool)
            findings = scan(tool, names)
            pin = existing.get(name)
            if pin is None:
                changed = True
                if findings:
                    _hold_new(server, name, definition, digest, "poisoning scan: " + "; ".join(findings))
                elif new_tools == "hold" and not first_catalog:
                    _hold_new(server, name, definition, digest, "new tool on a server that holds new tools")
                else:
                    ToolPin.objects.create(
                        server=server, tool=name, definition=definition, definition_hash=digest,
                        status=ToolPin.ADMITTED,
                    )
                    _audit("tool.pinned", server, name, {"hash": digest})
                    admitted.add(name)
            elif pin.status == ToolPin.ADMITTED and pin.definition_hash == digest:
                admitted.add(name)
            elif pin.status == ToolPin.HELD and pin.definition_hash == digest:
                # the upstream went back to the approved definition: nothing left to approve
                pin.status, pin.pending_hash, pin.pending_definition, pin.held_reason = ToolPin.ADMITTED, "", {}, ""
                pin.changed_at = now
                pin.save()
                _audit("tool.reverted", server, name, {"hash": digest})
                admitted.add(name)
                changed = True
            elif pin.pending_hash != digest:
                reason = "definition changed since it was pinned" if pin.definition_hash else pin.held_reason
                if findings:
                    reason += "; poisoning scan: " + "; ".join(findings)
                _audit("tool.held", server, name, {
                    "reason": reason, "pinned_hash": pin.definition_hash, "offered_hash": digest,
                    "diff": definition_diff(pin.definition or {}, definition),
                })
                pin.status, pin.pending_hash, pin.pending_definition = ToolPin.HELD, digest, definition
                pin.held_reason, pin.changed_at = reason, now
                pin.save()
                changed = True
        if changed:
            ConfigStamp.bump()
    return admitted


def _hold_new(server: str, name: str, definition: dict[str, Any], digest: str, reason: str) -> None:
    from policies_app.models import ToolPin

    ToolPin.objects.create(
        server=server, tool=name, status=ToolPin.HELD, pending_definition=definition,
        pending_hash=digest, held_reason=reason,
    )
    _audit("tool.held", server, name, {"reason": reason, "offered_hash": digest})


def _audit(action: str, server: str, tool: str, details: dict[str, Any], actor: str = "gateway") -> None:
    from audit_app import actions as audit

    record_tool_event = getattr(audit, "record_tool_event", None)
    if record_tool_event is not None:
        record_tool_event(action, server=server, tool=tool, actor=actor, details=details)
    else:
        audit.record_admin(action, actor=actor, target=f"{server}/{tool}", details=details)
