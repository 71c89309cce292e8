"""Agents: create, disable, keys (shown once), scope: tools from the live catalog, resource URI
globs and prompt names typed in."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from dashboard import catalog, roles
from dashboard.forms import AgentForm, KeyForm, line_list
from policies_app import actions
from policies_app.models import Agent, AgentKey, Server, ToolPin


def actor(request: HttpRequest) -> str:
    return request.user.get_username()


@roles.admin_required
def agent_list(request: HttpRequest) -> HttpResponse:
    form = AgentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        agent = actions.save_agent(acting_user=actor(request), name=form.cleaned_data["name"],
                                   **form.agent_fields())
        messages.success(request, f"Agent {agent.name} created. Scope its tools and issue a key.")
        return redirect("dashboard:agent", name=agent.name)
    agents = list(Agent.objects.annotate(
        active_keys=Count("keys", filter=Q(keys__revoked_at__isnull=True)),
        last_used=Max("keys__last_used_at"),
    ))
    for agent in agents:  # the servers it may reach: any tool, resource or prompt scope
        agent.server_count = len(scope_rows(agent))  # type: ignore[attr-defined]
    return render(request, "dashboard/agents.html", {"agents": agents, "form": form},
                  status=400 if form.errors else 200)


def scope_rows(agent: Agent) -> list[dict[str, Any]]:
    """One row per server the agent may reach: its tools, resource globs and prompts."""
    scopes = (agent.tool_scope or {}, agent.resource_scope or {}, agent.prompt_scope or {})
    servers = sorted(set().union(*scopes))
    return [{"server": server, "tools": scopes[0].get(server), "resources": scopes[1].get(server),
             "prompts": scopes[2].get(server)} for server in servers]


# Why a pinned tool is not shown to agents, in words (a badge is text, never colour alone).
WITHHELD = {ToolPin.HELD: "held for review", ToolPin.REJECTED: "rejected"}


def withheld_tools(servers: list[str]) -> dict[str, dict[str, str]]:
    """{server: {tool: why}}: the pinned tools that no agent sees (held or rejected)."""
    found: dict[str, dict[str, str]] = {}
    for pin in ToolPin.objects.filter(server__in=servers).exclude(status=ToolPin.ADMITTED):
        found.setdefault(pin.server, {})[pin.tool] = WITHHELD.get(pin.status, pin.status)
    return found


def scope_with_pins(agent: Agent) -> list[dict[str, Any]]:
    """scope_rows, with each server's tools split into those the agent sees and those its scope
    names but the gateway withholds (held or rejected), so the page never lists a held tool as
    one the agent sees."""
    rows = scope_rows(agent)
    withheld = withheld_tools([row["server"] for row in rows])
    for row in rows:
        hidden = withheld.get(row["server"], {})
        if row["tools"] == "*":
            row["withheld"] = sorted(hidden.items())
        elif row["tools"]:
            row["withheld"] = [(t, hidden[t]) for t in row["tools"] if t in hidden]
            row["tools"] = [t for t in row["tools"] if t not in hidden]
    return rows


def tool_badges(definition: dict[str, Any], pin: ToolPin | None) -> list[tuple[str, str]]:
    """(text, style) badges of a tool in the scope editor: destructive by its (untrusted)
    annotations, and held or rejected by its pin."""
    badges = []
    if ((definition or {}).get("annotations") or {}).get("destructiveHint") is True:
        badges.append(("destructive", "deny"))
    if pin is not None and pin.status in WITHHELD:
        badges.append((WITHHELD[pin.status], "held" if pin.status == ToolPin.HELD else "denied"))
    elif pin is not None and pin.new_tool_alert:
        badges.append(("new: not reviewed", "held"))
    return badges


def _agent_page(request: HttpRequest, agent: Agent, **extra: Any) -> HttpResponse:
    status = extra.pop("status", 200)
    context = {
        "agent": agent,
        "form": AgentForm(initial={"name": agent.name, "owner": agent.owner,
                                   "roles": ", ".join(agent.roles), "enabled": agent.enabled},
                          existing=agent),
        "key_form": KeyForm(),
        "keys": agent.keys.all(),
        "scope": scope_with_pins(agent),
    } | extra
    return render(request, "dashboard/agent.html", context, status=status)


# The session key under which a key just issued waits for the one page that shows it.
NEW_KEY = "agent-key-shown-once"


@roles.admin_required
def agent_detail(request: HttpRequest, name: str) -> HttpResponse:
    agent = get_object_or_404(Agent, name=name)
    if request.method == "POST":
        form = AgentForm(request.POST, existing=agent, initial={"name": agent.name})
        if form.is_valid():
            actions.save_agent(acting_user=actor(request), name=agent.name, **form.agent_fields())
            messages.success(request, f"Agent {agent.name} saved.")
            return redirect("dashboard:agent", name=agent.name)
        return _agent_page(request, agent, form=form, status=400)
    issued = request.session.get(NEW_KEY)
    if not issued or issued.get("agent") != agent.name:
        return _agent_page(request, agent)
    del request.session[NEW_KEY]  # shown once: a reload shows the key list, not the key
    response = _agent_page(request, agent, new_key=issued["key"],
                           new_key_row=AgentKey.objects.filter(agent=agent, prefix=issued["prefix"]).first())
    response["Cache-Control"] = "no-store"
    return response


@roles.admin_required
@require_POST
def agent_toggle(request: HttpRequest, name: str) -> HttpResponse:
    agent = get_object_or_404(Agent, name=name)
    actions.save_agent(acting_user=actor(request), name=agent.name, enabled=not agent.enabled)
    messages.success(request, f"Agent {agent.name} {'disabled' if agent.enabled else 'enabled'}.")
    return redirect("dashboard:agent", name=agent.name)


@roles.admin_required
@require_POST
def key_issue(request: HttpRequest, name: str) -> HttpResponse:
    agent = get_object_or_404(Agent, name=name)
    form = KeyForm(request.POST)
    if not form.is_valid():
        return _agent_page(request, agent, key_form=form, status=400)
    key, full_key = actions.issue_key(acting_user=actor(request), agent=agent,
                                      label=form.cleaned_data["label"])
    # Post/Redirect/Get: reloading the page that shows the key must not issue another. The key
    # waits in the session for the redirected page, which shows it once and drops it.
    request.session[NEW_KEY] = {"agent": agent.name, "key": full_key, "prefix": key.prefix}
    return redirect("dashboard:agent", name=agent.name)


@roles.admin_required
def key_revoke(request: HttpRequest, name: str, prefix: str) -> HttpResponse:
    """GET asks for confirmation, POST revokes (as for API tokens)."""
    key = get_object_or_404(AgentKey.objects.select_related("agent"), agent__name=name, prefix=prefix)
    if request.method != "POST":
        return render(request, "dashboard/agent_key_revoke.html", {"agent": key.agent, "key": key})
    if key.revoked_at is None:
        actions.revoke_key(acting_user=actor(request), key=key)
        messages.success(request, f"Key {key} of {name} revoked; it stops working within a second.")
    else:
        messages.info(request, f"Key {key} was already revoked by {key.revoked_by or 'someone'}.")
    return redirect("dashboard:agent", name=name)


def scope_from_post(post: Any, servers: list[str]) -> dict[str, Any]:
    """{server: "*" | [tools]} from the scope form; a server with nothing chosen is closed."""
    scope: dict[str, Any] = {}
    for server in servers:
        if post.get(f"all:{server}"):
            scope[server] = "*"
            continue
        tools = sorted({t for t in post.getlist(f"tools:{server}") if t})
        extra = post.get(f"extra:{server}", "")
        tools = sorted(set(tools) | {t.strip() for t in extra.split(",") if t.strip()})
        if tools:
            scope[server] = tools
    return scope


def resource_scope_from_post(post: Any, servers: list[str]) -> dict[str, list[str]]:
    """{server: [URI globs]}, one glob per line; a server with no glob admits no resource."""
    scope = {server: line_list(post.get(f"resources:{server}", "")) for server in servers}
    return {server: globs for server, globs in scope.items() if globs}


def prompt_scope_from_post(post: Any, servers: list[str]) -> dict[str, Any]:
    """{server: "*" | [prompt names]}, one name per line; a line "*" admits every prompt."""
    scope: dict[str, Any] = {}
    for server in servers:
        names = line_list(post.get(f"prompts:{server}", ""))
        if names:
            scope[server] = "*" if "*" in names else names
    return scope


@roles.admin_required
def agent_scope(request: HttpRequest, name: str) -> HttpResponse:
    agent = get_object_or_404(Agent, name=name)
    servers = list(Server.objects.all())
    if request.method == "POST":
        server_names = [s.name for s in servers]
        actions.save_agent(acting_user=actor(request), name=agent.name,
                           tool_scope=scope_from_post(request.POST, server_names),
                           resource_scope=resource_scope_from_post(request.POST, server_names),
                           prompt_scope=prompt_scope_from_post(request.POST, server_names))
        messages.success(request, f"Scope of {agent.name} saved.")
        return redirect("dashboard:agent", name=agent.name)
    rows = []
    for server in servers:
        allowed = agent.tool_scope.get(server.name)
        try:
            tools, error = catalog.fetch_tools(server), ""
        except catalog.CatalogUnavailable as exc:
            tools, error = [], str(exc)
        names = {t.name for t in tools}
        chosen = set(allowed) if isinstance(allowed, list) else set()
        prompts = (agent.prompt_scope or {}).get(server.name) or []
        pins = {pin.tool: pin for pin in ToolPin.objects.filter(server=server.name)}
        listed = [{"name": t.name, "description": t.description,
                   "badges": tool_badges(t.definition, pins.get(t.name))} for t in tools]
        rows.append({
            "server": server, "tools": listed, "error": error, "all": allowed == "*",
            "chosen": chosen, "unlisted": sorted(chosen - names),
            "resources": "\n".join((agent.resource_scope or {}).get(server.name) or []),
            "prompts": "*" if prompts == "*" else "\n".join(prompts),
        })
    return render(request, "dashboard/agent_scope.html", {"agent": agent, "rows": rows})
