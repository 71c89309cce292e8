"""Servers: register (SSRF-checked), test the connection, catalog with intents and pins,
approve a changed tool from its diff, rotate the credential."""

from __future__ import annotations

import difflib
import json
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from dashboard import backends, catalog, roles
from dashboard.forms import CredentialForm, ServerForm, ToolReviewForm
from dashboard.views.agents import actor
from policies_app import actions
from policies_app.models import Server


@roles.admin_required
def server_list(request: HttpRequest) -> HttpResponse:
    form = ServerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        server = actions.save_server(acting_user=actor(request), name=form.cleaned_data["name"],
                                     credential=form.cleaned_data["credential"] or None,
                                     **form.server_fields())
        messages.success(request, f"Server {server.name} registered. Agents connect to /mcp/{server.name}.")
        return redirect("dashboard:server", name=server.name)
    return render(request, "dashboard/servers.html", {"servers": Server.objects.all(), "form": form},
                  status=400 if form.errors else 200)


def pin_rows(server: Server, tools: list[catalog.CatalogTool]) -> list[dict[str, Any]]:
    """One row per tool: the live definition, its intent and what the pin store says of it."""
    pins = {getattr(p, "tool", ""): p for p in backends.tool_pins(server.name)}
    rows = []
    for tool in tools:
        pin = pins.pop(tool.name, None)
        rows.append({"name": tool.name, "description": tool.description,
                     "intent": intent_of(server, tool.name), "pin": pin,
                     "status": pin_status(pin)})
    for name, pin in sorted(pins.items()):
        rows.append({"name": name, "description": "", "intent": intent_of(server, name), "pin": pin,
                     "status": "gone upstream"})
    return rows


def pin_status(pin: Any) -> str:
    if pin is None:
        return "not pinned yet"
    if pin.status == "held":
        return "changed, held" if pin.definition_hash else "new, held"
    if pin.status == "rejected":
        return "rejected"
    return "new, admitted: review" if pin.new_tool_alert else "pinned"


def intent_of(server: Server, tool: str) -> str:
    if server.tool_intents.get(tool):
        return server.tool_intents[tool]
    from policies_app.core.packs import resolve_intent
    from policies_app.snapshots import server_view

    return resolve_intent(server_view(server), tool)


@roles.admin_required
def server_detail(request: HttpRequest, name: str) -> HttpResponse:
    server = get_object_or_404(Server, name=name)
    try:
        tools, error = catalog.fetch_tools(server), ""
    except catalog.CatalogUnavailable as exc:
        tools, error = [], str(exc)
    return render(request, "dashboard/server.html", {
        "server": server, "rows": pin_rows(server, tools), "catalog_error": error,
        "credential_form": CredentialForm(initial={"credential_header": server.credential_header or "Authorization"}),
    })


@roles.admin_required
@require_POST
def server_test(request: HttpRequest, name: str) -> HttpResponse:
    server = get_object_or_404(Server, name=name)
    try:
        tools = catalog.fetch_tools(server)
    except catalog.CatalogUnavailable as exc:
        result = {"ok": False, "message": str(exc)}
    else:
        result = {"ok": True, "message": f"Connected: {len(tools)} tool{'s' if len(tools) != 1 else ''} listed."}
    template = "dashboard/_connection.html"
    if not request.headers.get("HX-Request"):
        (messages.success if result["ok"] else messages.error)(request, result["message"])
        return redirect("dashboard:server", name=name)
    return render(request, template, result)


@roles.admin_required
@require_POST
def server_credential(request: HttpRequest, name: str) -> HttpResponse:
    server = get_object_or_404(Server, name=name)
    form = CredentialForm(request.POST)
    if form.is_valid():
        actions.save_server(acting_user=actor(request), name=server.name,
                            credential_header=form.cleaned_data["credential_header"],
                            credential=form.cleaned_data["credential"])
        messages.success(request, f"Credential of {server.name} rotated.")
    else:
        messages.error(request, "Enter the new credential.")
    return redirect("dashboard:server", name=name)


def definition_lines(definition: Any) -> list[str]:
    if not definition:
        return []
    if isinstance(definition, str):
        try:
            definition = json.loads(definition)
        except ValueError:
            return definition.splitlines()
    return json.dumps(definition, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def side_by_side(old: list[str], new: list[str]) -> list[tuple[str, str, str]]:
    """(kind, left, right) rows: kind is same, changed, removed or added."""
    rows: list[tuple[str, str, str]] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op == "equal":
            rows += [("same", old[a1 + i], new[b1 + i]) for i in range(a2 - a1)]
        elif op == "replace":
            for i in range(max(a2 - a1, b2 - b1)):
                left = old[a1 + i] if a1 + i < a2 else ""
                right = new[b1 + i] if b1 + i < b2 else ""
                rows.append(("changed", left, right))
        elif op == "delete":
            rows += [("removed", line, "") for line in old[a1:a2]]
        else:
            rows += [("added", "", line) for line in new[b1:b2]]
    return rows


@roles.admin_required
def tool_review(request: HttpRequest, name: str, tool: str) -> HttpResponse:
    server = get_object_or_404(Server, name=name)
    pin = next((p for p in backends.tool_pins(server.name) if p.tool == tool), None)
    form = ToolReviewForm(request.POST or None)
    if request.method == "POST" and pin is not None and form.is_valid():
        decide(request, server.name, tool, form.cleaned_data["decision"], form.cleaned_data["comment"])
        return redirect("dashboard:server", name=name)
    offered = pin if pin is not None and pin.status in ("held", "rejected") else None
    candidate = offered.pending_definition if offered is not None else live_definition(request, server, tool)
    return render(request, "dashboard/tool_review.html", {
        "server": server, "tool": tool, "pin": pin, "status": pin_status(pin), "held": pin is not None and pin.status == "held",
        "rows": side_by_side(definition_lines(pin.definition if pin else None), definition_lines(candidate)),
        "held_reason": offered.held_reason if offered is not None else "",
        "form": form, "approve_label": approve_label(pin),
    }, status=400 if form.errors else 200)


def approve_label(pin: Any) -> str:
    """What Approve does to this pin; empty when there is nothing to approve."""
    if pin is None:
        return ""
    if pin.status in ("held", "rejected"):
        return "Approve this definition"
    return "Keep this tool" if pin.new_tool_alert else ""


def decide(request: HttpRequest, server: str, tool: str, decision: str, comment: str) -> None:
    try:
        if decision == ToolReviewForm.REJECT:
            backends.reject_tool(server=server, tool=tool, acting_user=actor(request), comment=comment)
        else:
            backends.approve_tool(server=server, tool=tool, acting_user=actor(request), comment=comment)
    except actions.NotHeld as exc:  # another admin decided meanwhile
        messages.info(request, str(exc))
    else:
        messages.success(request, f"{tool} rejected: no agent sees it." if decision == ToolReviewForm.REJECT
                         else f"{tool} approved: agents in scope see it.")


def live_definition(request: HttpRequest, server: Server, tool: str) -> dict[str, Any] | None:
    try:
        tools = catalog.fetch_tools(server)
    except catalog.CatalogUnavailable as exc:
        messages.error(request, str(exc))
        return None
    return next((t.definition for t in tools if t.name == tool), None)
