"""Tool pinning in the database: the pins behind the snapshot, a call's pin when the snapshot
is behind, and recording what a tools/list shows (first sightings, changes, holds; audited).
The pure part (hashes, the poisoning scan, diffs) is `policies_app.core.pinning`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit_app import actions as audit
from policies_app import signals
from policies_app.core.context import AgentView, ServerView
from policies_app.core.pinning import (
    PinView,
    canonical_definition,
    definition_diff,
    definition_hash,
    has_control_character,
    pin_for,
    scan,
)
from policies_app.core.snapshot import Snapshot
from policies_app.models import ConfigStamp, ToolPin
from policies_app.snapshots import pin_view, snapshots

# A catalog served in several pages arrives as several tools/list calls; tools first seen this
# soon after a server's very first pin still belong to its first catalog.
FIRST_CATALOG_GRACE = timedelta(seconds=60)


def _pin_from_db(server: str, tool: str) -> PinView | None:
    if has_control_character(tool):
        # No tool is pinned under such a name, and PostgreSQL refuses NUL in text outright.
        return None
    pin = ToolPin.objects.filter(server=server, tool=tool).first()
    return pin_view(pin) if pin is not None else None


async def current_pin(snap: Snapshot, server: str, tool: str) -> PinView | None:
    """The pin from the snapshot when it admits the tool; otherwise from the database, in case
    this process has not reloaded yet (a tools/list answered or an approval given a moment ago
    on another replica). Only unknown and held tools pay for the query."""
    pin = pin_for(snap, server, tool)
    if pin is not None and pin.admitted:
        return pin
    return await database_sync_to_async(_pin_from_db)(server, tool)


# --- tools/list ----------------------------------------------------------------------------


async def filter_tools(snap: Snapshot, agent: AgentView, server: ServerView, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tools of one tools/list page that this agent may see: in its scope and admitted.
    Records first sightings, changes and holds (audited) when the page holds anything new."""
    pins = snap.pins
    named = Counter(t.get("name", "") for t in tools if isinstance(t, Mapping))
    # A name listed twice is withheld altogether: which definition a client keeps is not ours to
    # guess, and one of them could be a poisoned copy of a pinned tool.
    tools = [t for t in tools if isinstance(t, Mapping) and named[t.get("name", "")] == 1]
    hashes = {t.get("name", ""): definition_hash(t) for t in tools}
    admitted = {
        name for name, digest in hashes.items()
        if (pin := pins.get((server.name, name))) is not None and pin.admitted and pin.definition_hash == digest
    }
    # Anything else goes to the database, the truth: a first sight, a change, or a held tool an
    # admin may have approved a moment ago on another process.
    if len(admitted) < len(hashes):
        admitted = await database_sync_to_async(record_catalog)(server.name, server.new_tools, tools)
        snapshots.invalidate()
    return [
        t for t in tools
        if isinstance(t, Mapping) and t.get("name", "") in admitted and agent.may_use_tool(server.name, t.get("name", ""))
    ]


def record_catalog(server: str, new_tools: str, tools: list[dict[str, Any]]) -> set[str]:
    """Compare a catalog page with the pins; returns the names that are admitted."""
    for attempt in range(3):
        try:
            return _record_catalog(server, new_tools, tools)
        except IntegrityError:
            if attempt == 2:
                raise  # another replica keeps pinning the same tools: let the caller fail closed
    raise AssertionError("unreachable")


def _record_catalog(server: str, new_tools: str, tools: list[dict[str, Any]]) -> set[str]:
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
                # The first catalog is what the admin registered; a tool appearing later is news.
                alert = not first_catalog
                if findings:
                    reason = "poisoning scan: " + "; ".join(findings)
                    _hold_new(server, name, definition, digest, reason, alert=alert)
                elif new_tools == "hold" and alert:
                    reason = "new tool on a server that holds new tools"
                    _hold_new(server, name, definition, digest, reason, alert=alert)
                else:
                    reason = ""
                    ToolPin.objects.create(
                        server=server, tool=name, definition=definition, definition_hash=digest,
                        status=ToolPin.ADMITTED, new_tool_alert=alert,
                    )
                    _audit("tool.pinned", server, name, {"hash": digest})
                    admitted.add(name)
                if alert:
                    _announce_new_tool(server, name, admitted=not reason, reason=reason)
            elif pin.status == ToolPin.ADMITTED and pin.definition_hash == digest:
                admitted.add(name)
            elif pin.status in (ToolPin.HELD, ToolPin.REJECTED) and pin.definition_hash == digest:
                # the upstream went back to the approved definition: nothing left to approve
                pin.status, pin.pending_hash, pin.pending_definition, pin.held_reason = ToolPin.ADMITTED, "", {}, ""
                pin.changed_at = now
                pin.save()
                _audit("tool.reverted", server, name, {"hash": digest})
                admitted.add(name)
                changed = True
            elif pin.pending_hash != digest:
                reason = ("definition changed since it was pinned" if pin.definition_hash
                          else "definition changed since it was rejected" if pin.status == ToolPin.REJECTED
                          else pin.held_reason)
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


def _hold_new(server: str, name: str, definition: dict[str, Any], digest: str, reason: str, *, alert: bool) -> None:
    ToolPin.objects.create(
        server=server, tool=name, status=ToolPin.HELD, pending_definition=definition,
        pending_hash=digest, held_reason=reason, new_tool_alert=alert,
    )
    _audit("tool.held", server, name, {"reason": reason, "offered_hash": digest})


def _announce_new_tool(server: str, tool: str, *, admitted: bool, reason: str) -> None:
    """Tell the admins (e-mail and webhook, `tool.new`) once the pin is committed; the receivers
    live in the apps that send notifications (policies_app.signals). Robustly: a receiver that
    fails (a broker down) is logged and must not fail the agent's tools/list."""
    status = ToolPin.ADMITTED if admitted else ToolPin.HELD
    transaction.on_commit(lambda: signals.new_tool.send_robust(
        sender=ToolPin, server=server, tool=tool, status=status, reason=reason))


def _audit(action: str, server: str, tool: str, details: dict[str, Any], actor: str = "gateway") -> None:
    audit.record_tool_event(action, server=server, tool=tool, actor=actor, details=details)
