"""Every change the policies app makes: applying a configuration file, saving a policy
version, approving a held tool. Each runs in one transaction that writes its audit entries and
bumps the configuration stamp, so every gateway process picks the change up within a second."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.db import transaction
from django.utils import timezone

from audit_app.actions import record_admin
from policies_app import config
from policies_app.config import ConfigError, Desired, Known
from policies_app.core.rules import rule_names
from policies_app.models import (
    KEY_PREFIX,
    Agent,
    AgentKey,
    ConfigStamp,
    PolicyVersion,
    Server,
    ToolPin,
    hash_secret,
)

SERVER_FIELDS = ("url", "command", "credential_header", "credential_env", "domain_pack", "new_tools",
                 "timeout_seconds", "connect_timeout_seconds")
AGENT_FIELDS = ("owner", "roles", "tool_scope", "resource_scope", "prompt_scope", "oauth_client", "enabled")
# A server's subject -> intent maps, each planned entry by entry: (field, change kind, config key).
INTENT_MAPS = (("tool_intents", "tool_intent", "tools"), ("resource_intents", "resource_intent", "resources"),
               ("prompt_intents", "prompt_intent", "prompts"))
UNLISTED_ROLES = ("admin", "auditor")  # managed with create_user, never by the config file


@dataclass(frozen=True)
class Change:
    kind: str  # server, agent, reviewers, policy, velocity_rule, tool_intent, resource_intent, prompt_intent
    name: str
    action: str  # added, changed, removed
    details: str = ""

    def __str__(self) -> str:
        sign = {"added": "+", "changed": "~", "removed": "-"}[self.action]
        tail = f" ({self.details})" if self.details else ""
        return f"{sign} {self.kind} {self.name}{tail}"


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    applied: bool = False
    policy_version: int | None = None

    @property
    def empty(self) -> bool:
        return not self.changes

    def __str__(self) -> str:
        if self.empty:
            return "no changes"
        counts: dict[str, int] = {}
        for change in self.changes:
            counts[change.action] = counts.get(change.action, 0) + 1
        summary = ", ".join(f"{counts.get(a, 0)} {a}" for a in ("added", "changed", "removed"))
        return "\n".join([*(str(c) for c in self.changes), f"plan: {summary}"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "changes": [c.__dict__ for c in self.changes],
            "applied": self.applied,
            "policy_version": self.policy_version,
        }


# --- the live state, normalized like a Desired ---------------------------------------------


def _policy_document() -> dict[str, list[dict[str, Any]]]:

    active = PolicyVersion.active()
    doc = active.document if active else {}
    return {"policies": list(doc.get("policies") or []), "velocity_rules": list(doc.get("velocity_rules") or [])}


def _scope(raw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for server, tools in (raw or {}).items():
        out[server] = "*" if tools in ("*", ["*"]) else sorted(set(tools))
    return dict(sorted(out.items()))


def _globs(raw: Any) -> dict[str, list[str]]:
    """A resource scope: {server: sorted URI globs}; "*" is a glob here, not a keyword."""
    out: dict[str, list[str]] = {}
    for server, globs in (raw or {}).items():
        out[server] = sorted({globs} if isinstance(globs, str) else set(globs))
    return dict(sorted(out.items()))


def current_state() -> Desired:
    from django.contrib.auth.models import Group


    servers = {
        s.name: {
            "url": s.url, "command": list(s.command or []), "credential_header": s.credential_header,
            "credential_env": s.credential_env, "domain_pack": s.domain_pack,
            "tool_intents": dict(sorted((s.tool_intents or {}).items())),
            "resource_intents": dict(sorted((s.resource_intents or {}).items())),
            "prompt_intents": dict(sorted((s.prompt_intents or {}).items())), "new_tools": s.new_tools,
            "timeout_seconds": float(s.timeout_seconds), "connect_timeout_seconds": float(s.connect_timeout_seconds),
        }
        for s in Server.objects.all()
    }
    agents = {
        a.name: {"owner": a.owner, "roles": sorted(set(a.roles or [])), "tool_scope": _scope(a.tool_scope),
                 "resource_scope": _globs(a.resource_scope), "prompt_scope": _scope(a.prompt_scope), "oauth_client": a.oauth_client,
                 "enabled": a.enabled}
        for a in Agent.objects.all()
    }
    reviewers = {
        g.name: sorted(u.username for u in g.user_set.all())
        for g in Group.objects.exclude(name__in=UNLISTED_ROLES).prefetch_related("user_set").order_by("name")
    }
    return Desired(servers=servers, agents=agents, reviewers=reviewers, policies=_policy_document())


def known_state() -> Known:
    from django.contrib.auth.models import Group, User


    return Known(
        servers=set(Server.objects.values_list("name", flat=True)),
        agents={a.name: set(a.roles or []) for a in Agent.objects.all()},
        roles=set(Group.objects.values_list("name", flat=True)),
        users=set(User.objects.values_list("username", flat=True)),
        policies=_policy_document(),
    )


# --- plans ---------------------------------------------------------------------------------


def _stored_secret(name: str) -> str:

    server = Server.objects.filter(name=name).first()
    return server.credential() if server else ""


def _differing(before: Mapping[str, Any], after: Mapping[str, Any], fields: tuple[str, ...]) -> list[str]:
    return [f for f in fields if before.get(f) != after.get(f)]


def _rule_label(name: str, rule: Mapping[str, Any]) -> str:
    """A rule in a plan: a derived name already says the decision and intent."""
    what = rule.get("decision") or f"{rule.get('max_calls')}/{rule.get('window')}"
    if rule.get("name"):
        return f"{name} {rule.get('intent')} -> {what}"
    return name if rule.get("decision") else f"{name} -> {what}"


def _plan_intents(add: Callable[[Change], None], kind: str, server: str, old: Mapping[str, str], new: Mapping[str, str]) -> None:
    """One change per subject (tool, URI glob, prompt) whose intent is added, changed or removed."""
    for subject, intent in new.items():
        if subject not in old:
            add(Change(kind, f"{server}/{subject}", "added", intent))
        elif old[subject] != intent:
            add(Change(kind, f"{server}/{subject}", "changed", f"{old[subject]} -> {intent}"))
    for subject in old:
        if subject not in new:
            add(Change(kind, f"{server}/{subject}", "removed", old[subject]))


def make_plan(desired: Desired, current: Desired) -> Plan:
    plan = Plan()
    add = plan.changes.append
    if desired.servers is not None:
        before = current.servers or {}
        for name, spec in desired.servers.items():
            if name not in before:
                add(Change("server", name, "added", spec["url"] or " ".join(spec["command"])))
            else:
                diff = _differing(before[name], spec, SERVER_FIELDS)
                if name in desired.secrets and desired.secrets[name] != _stored_secret(name):
                    diff.append("credential")
                elif not spec["credential_header"] and before[name]["credential_header"]:
                    diff.append("credential")
                if diff:
                    add(Change("server", name, "changed", ", ".join(diff)))
            for field_name, kind, _ in INTENT_MAPS:
                _plan_intents(add, kind, name, before.get(name, {}).get(field_name, {}), spec[field_name])
        for name in before:
            if name not in desired.servers:
                add(Change("server", name, "removed"))
    if desired.agents is not None:
        before = current.agents or {}
        for name, spec in desired.agents.items():
            if name not in before:
                add(Change("agent", name, "added", f"roles: {', '.join(spec['roles']) or '-'}"))
            elif diff := _differing(before[name], spec, AGENT_FIELDS):
                add(Change("agent", name, "changed", ", ".join(diff)))
        for name in before:
            if name not in desired.agents:
                add(Change("agent", name, "removed"))
    if desired.reviewers is not None:
        before_roles = current.reviewers or {}
        for role, users in desired.reviewers.items():
            old = set(before_roles.get(role, []))
            joined, left = sorted(set(users) - old), sorted(old - set(users))
            if role not in before_roles:
                add(Change("reviewers", role, "added", f"users: {', '.join(users) or '-'}"))
            elif joined or left:
                parts = ([f"+{', +'.join(joined)}"] if joined else []) + ([f"-{', -'.join(left)}"] if left else [])
                add(Change("reviewers", role, "changed", " ".join(parts)))
    if desired.policies is not None:
        before_doc = current.policies or {"policies": [], "velocity_rules": []}
        for section, kind, label in (("policies", "policy", "policy"), ("velocity_rules", "velocity_rule", "velocity")):
            old_rules = [json.dumps(r, sort_keys=True) for r in before_doc.get(section, [])]
            new_rules = [json.dumps(r, sort_keys=True) for r in desired.policies[section]]
            new_names = rule_names(label, desired.policies[section])
            old_names = rule_names(label, before_doc.get(section, []))
            for i, rule in enumerate(desired.policies[section]):
                if new_rules[i] not in old_rules:
                    add(Change(kind, _rule_label(new_names[i], rule), "added"))
            for i, rule in enumerate(before_doc.get(section, [])):
                if old_rules[i] not in new_rules:
                    add(Change(kind, _rule_label(old_names[i], rule), "removed"))
            if old_rules != new_rules and sorted(old_rules) == sorted(new_rules):
                add(Change(kind, "order", "changed", "same rules in a different order"))
    return plan


# --- apply and export ----------------------------------------------------------------------


def apply_config(text: str, *, acting_user: str, dry_run: bool = False, environ: Mapping[str, str] | None = None,
                 description: str = "apply") -> Plan:
    """Validate a whole configuration file and apply it atomically; raises ConfigError (and
    changes nothing) when the file is invalid. Applying the same file twice changes nothing.
    `description` says what changed and why; a new policy version and the audit entry keep it."""
    with transaction.atomic(durable=not dry_run and not transaction.get_connection().in_atomic_block):
        if not dry_run:
            _serialize_config_changes()
        desired = config.load(text, known_state(), environ=environ)
        plan = make_plan(desired, current_state())
        if dry_run or plan.empty:
            return plan
        _apply(desired, current_state(), plan, acting_user=acting_user, description=description)
        plan.applied = True
        return plan


def _serialize_config_changes() -> None:
    """Two concurrent applies would plan against the same state: the second waits here."""

    ConfigStamp.objects.select_for_update().get_or_create(id=1)


def _apply(desired: Desired, current: Desired, plan: Plan, *, acting_user: str, description: str) -> None:

    changed = {(c.kind, c.name.split("/")[0]) for c in plan.changes}
    if desired.servers is not None:
        for name, spec in desired.servers.items():
            if not any((kind, name) in changed for kind in ("server", *(k for _, k, _ in INTENT_MAPS))):
                continue
            fields = {k: spec[k] for k in (*SERVER_FIELDS, *(f for f, _, _ in INTENT_MAPS))}
            credential = desired.secrets.get(name)
            if credential is None and not spec["credential_header"]:
                credential = ""  # no credential declared: clear the stored one
            write_server(acting_user=acting_user, name=name, credential=credential, **fields)
    if desired.agents is not None:
        for name, spec in desired.agents.items():
            if ("agent", name) in changed:
                write_agent(acting_user=acting_user, name=name, **spec)
        for name in current.agents or {}:
            if name not in desired.agents:
                remove_agent(acting_user=acting_user, name=name)
    if desired.servers is not None:
        for name in current.servers or {}:
            if name not in desired.servers:
                remove_server(acting_user=acting_user, name=name)
    if desired.reviewers is not None:
        for role, users in desired.reviewers.items():
            if ("reviewers", role) in changed:
                _set_role_members(role, users, acting_user=acting_user)
    if desired.policies is not None and any(c.kind in ("policy", "velocity_rule") for c in plan.changes):
        plan.policy_version = _new_policy_version(desired.policies, acting_user=acting_user, description=description)
    record_admin("config.applied", actor=acting_user, target="config",
                 details={"changes": [str(c) for c in plan.changes], "description": _description(description)})
    ConfigStamp.bump()


def _set_role_members(role: str, users: list[str], *, acting_user: str) -> None:
    from django.contrib.auth.models import Group, User

    group, _ = Group.objects.get_or_create(name=role)
    members = []
    for username in users:
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save()
            record_admin("user.created", actor=acting_user, target=username, details={"roles": [role], "password_set": False})
        members.append(user)
    before = sorted(group.user_set.values_list("username", flat=True))
    group.user_set.set(members)
    record_admin("role.members_set", actor=acting_user, target=role, details={"before": before, "after": sorted(users)})


def _description(text: str) -> str:
    return " ".join(text.split())[:PolicyVersion.DESCRIPTION_MAX]


def _new_policy_version(document: Mapping[str, Any], *, acting_user: str, description: str) -> int:

    number = PolicyVersion.next_number()
    description = _description(description)
    PolicyVersion.objects.create(number=number, document=dict(document), author=acting_user, description=description)
    record_admin("policy.version_created", actor=acting_user, target=f"v{number}", details={
        "policies": len(document.get("policies") or []), "velocity_rules": len(document.get("velocity_rules") or []),
        "description": description,
    })
    return number


@transaction.atomic(durable=True)
def save_policy_document(document: Any, *, acting_user: str, description: str = "") -> int | None:
    """Validate and store a new policy version (dashboard, API); None when nothing changed."""

    _serialize_config_changes()
    normalized = config.validate_policy_document(document, known_state())
    if normalized == _policy_document():
        return None
    number = _new_policy_version(normalized, acting_user=acting_user, description=description)
    ConfigStamp.bump()
    return number


@transaction.atomic(durable=True)
def add_policy_rule(rule: Mapping[str, Any], *, acting_user: str, description: str) -> int | None:
    """Append one rule to the live policies, as a new version through the same validation and
    audit as a whole document; reading the live document under the lock means two admins adding
    rules at once both keep theirs. None when an identical rule is already live."""

    _serialize_config_changes()
    live = _policy_document()
    document = {**live, "policies": [*live["policies"], dict(rule)]}
    normalized = config.validate_policy_document(document, known_state())
    if normalized["policies"][-1] in live["policies"]:
        return None
    number = _new_policy_version(normalized, acting_user=acting_user, description=description)
    ConfigStamp.bump()
    return number


def export_config() -> str:
    """The live state in the configuration format; applying it changes nothing."""
    state = current_state()
    out: dict[str, Any] = {"servers": [], "agents": [], "reviewers": [], "policies": [], "velocity_rules": []}
    for name, s in (state.servers or {}).items():
        item: dict[str, Any] = {"name": name}
        if s["url"]:
            item["url"] = s["url"]
        if s["command"]:
            item["command"] = s["command"]
        if s["credential_header"]:
            item["credential"] = {"header": s["credential_header"]}
            if s["credential_env"]:
                item["credential"]["value_env"] = s["credential_env"]
        if s["domain_pack"]:
            item["domain_pack"] = s["domain_pack"]
        for field_name, _, key in INTENT_MAPS:
            if s[field_name]:
                item[key] = s[field_name]
        if s["new_tools"] != "pin":
            item["new_tools"] = s["new_tools"]
        if s["timeout_seconds"] != config.DEFAULT_TIMEOUT:
            item["timeout"] = _seconds_text(s["timeout_seconds"])
        if s["connect_timeout_seconds"] != config.DEFAULT_CONNECT_TIMEOUT:
            item["connect_timeout"] = _seconds_text(s["connect_timeout_seconds"])
        out["servers"].append(item)
    for name, a in (state.agents or {}).items():
        item = {"name": name}
        if a["owner"]:
            item["owner"] = a["owner"]
        item["roles"] = a["roles"]
        item["tools"] = a["tool_scope"]
        if a["resource_scope"]:
            item["resources"] = a["resource_scope"]
        if a["prompt_scope"]:
            item["prompts"] = a["prompt_scope"]
        if a["oauth_client"]:
            item["oauth_client"] = a["oauth_client"]
        if not a["enabled"]:
            item["enabled"] = False
        out["agents"].append(item)
    out["reviewers"] = [{"role": role, "users": users} for role, users in (state.reviewers or {}).items()]
    assert state.policies is not None
    out["policies"] = state.policies["policies"]
    out["velocity_rules"] = state.policies["velocity_rules"]
    header = f"# Exported by intended at {timezone.now().isoformat(timespec='seconds')}\n"
    return header + yaml.safe_dump(out, sort_keys=False, allow_unicode=True, width=100)


def _seconds_text(value: float) -> str:
    return f"{int(value)}s" if float(value).is_integer() else f"{value}s"


# --- tool pins -----------------------------------------------------------------------------


class NotHeld(Exception):
    """The tool is not waiting for approval."""


def _pin_under_review(server: str, tool: str) -> ToolPin:
    pin = ToolPin.objects.select_for_update().filter(server=server, tool=tool).first()
    if pin is None:
        raise NotHeld(f"{server}/{tool} is not pinned")
    return pin


@transaction.atomic(durable=True)
def approve_tool(*, acting_user: str, server: str, tool: str, comment: str = "") -> None:
    """Admit a held or rejected tool's offered definition: it becomes the new pin. A new tool
    that was admitted on first sight is kept as it is. Either way its new-tool alert closes."""
    from policies_app.pinning import _audit as tool_event
    from policies_app.pinning import definition_diff

    pin = _pin_under_review(server, tool)
    if pin.status == ToolPin.ADMITTED:
        if not pin.new_tool_alert:
            raise NotHeld(f"{server}/{tool} is not held")
        action, details = "tool.reviewed", {"hash": pin.definition_hash, "kept": True}
    else:
        action, details = "tool.approved", {
            "from_hash": pin.definition_hash, "to_hash": pin.pending_hash, "reason_held": pin.held_reason,
            "diff": definition_diff(pin.definition or {}, pin.pending_definition or {}),
        }
        pin.definition, pin.definition_hash = pin.pending_definition, pin.pending_hash
        pin.pending_definition, pin.pending_hash, pin.held_reason = {}, "", ""
    if comment:
        details["comment"] = comment
    record_admin(action, actor=acting_user, target=f"{server}/{tool}", details=details)
    tool_event(action, server, tool, details, actor=acting_user)
    pin.status, pin.approved_by, pin.approved_at = ToolPin.ADMITTED, acting_user, timezone.now()
    pin.review_comment, pin.new_tool_alert = comment, False
    pin.changed_at = timezone.now()
    pin.save()
    ConfigStamp.bump()


@transaction.atomic(durable=True)
def reject_tool(*, acting_user: str, server: str, tool: str, comment: str) -> None:
    """Refuse the tool's offered definition: it stays hidden from every agent (as a held tool
    is) until the server offers another definition, which is held for review again, or an
    admin approves this one after all. A rejection says why: the comment is required."""
    from policies_app.pinning import _audit as tool_event

    comment = comment.strip()
    if not comment:
        raise ValueError("Say why the tool is rejected: the comment is required")
    pin = _pin_under_review(server, tool)
    if pin.status == ToolPin.REJECTED:
        raise NotHeld(f"{server}/{tool} is rejected already")
    if pin.status == ToolPin.ADMITTED:  # the admitted definition itself is refused: nothing stays approved
        pin.pending_definition, pin.pending_hash = pin.definition, pin.definition_hash
        pin.definition, pin.definition_hash = {}, ""
    details = {"hash": pin.pending_hash, "pinned_hash": pin.definition_hash, "reason_held": pin.held_reason,
               "comment": comment}
    record_admin("tool.rejected", actor=acting_user, target=f"{server}/{tool}", details=details)
    tool_event("tool.rejected", server, tool, details, actor=acting_user)
    pin.status, pin.rejected_by, pin.rejected_at = ToolPin.REJECTED, acting_user, timezone.now()
    pin.review_comment, pin.new_tool_alert = comment, False
    pin.changed_at = timezone.now()
    pin.save()
    ConfigStamp.bump()


def new_tool_alerts() -> list[ToolPin]:
    """Tools that appeared after their server's first catalog and no admin has reviewed yet."""
    return list(ToolPin.objects.filter(new_tool_alert=True).order_by("first_seen_at"))


@transaction.atomic(durable=True)
def rollback(version: Any, *, acting_user: str) -> int | None:
    """Make an earlier version's document live again, as a new version."""

    if version.document == _policy_document():
        return None
    number = _new_policy_version(version.document, acting_user=acting_user, description=f"rollback to v{version.number}")
    ConfigStamp.bump()
    return number


def held_tools() -> list[Any]:

    return list(ToolPin.objects.filter(status=ToolPin.HELD))


__all__ = ["ConfigError", "Plan", "Change", "apply_config", "export_config", "approve_tool", "reject_tool",
           "new_tool_alerts",
           "save_policy_document", "add_policy_rule", "rollback", "held_tools", "NotHeld", "current_state", "make_plan"]


# --- servers, agents and their keys ---------------------------------------------------------


def _changed() -> None:
    ConfigStamp.bump()


@transaction.atomic(durable=True)
def save_server(*, acting_user: str, name: str, credential: str | None = None, **fields: Any) -> Server:
    return write_server(acting_user=acting_user, name=name, credential=credential, **fields)


def write_server(*, acting_user: str, name: str, credential: str | None = None, **fields: Any) -> Server:
    """save_server inside the caller's transaction (bulk changes such as `apply`)."""
    server, created = Server.objects.get_or_create(name=name, defaults=fields)
    if not created:
        for key, value in fields.items():
            setattr(server, key, value)
    if credential is not None:
        server.set_credential(credential)
    server.full_clean()
    server.save()
    record_admin(
        "server.created" if created else "server.updated",
        actor=acting_user,
        target=name,
        details={k: v for k, v in fields.items()} | {"credential_set": bool(credential)},
    )
    _changed()
    return server


@transaction.atomic(durable=True)
def delete_server(*, acting_user: str, name: str) -> None:
    remove_server(acting_user=acting_user, name=name)


def remove_server(*, acting_user: str, name: str) -> None:
    """delete_server inside the caller's transaction."""
    Server.objects.filter(name=name).delete()
    record_admin("server.deleted", actor=acting_user, target=name)
    _changed()


@transaction.atomic(durable=True)
def save_agent(*, acting_user: str, name: str, **fields: Any) -> Agent:
    return write_agent(acting_user=acting_user, name=name, **fields)


def write_agent(*, acting_user: str, name: str, **fields: Any) -> Agent:
    """save_agent inside the caller's transaction."""
    agent, created = Agent.objects.get_or_create(name=name, defaults=fields)
    if not created:
        for key, value in fields.items():
            setattr(agent, key, value)
    agent.full_clean()
    agent.save()
    record_admin(
        "agent.created" if created else "agent.updated", actor=acting_user, target=name, details=fields
    )
    _changed()
    return agent


@transaction.atomic(durable=True)
def delete_agent(*, acting_user: str, name: str) -> None:
    remove_agent(acting_user=acting_user, name=name)


def remove_agent(*, acting_user: str, name: str) -> None:
    """delete_agent inside the caller's transaction."""
    Agent.objects.filter(name=name).delete()
    record_admin("agent.deleted", actor=acting_user, target=name)
    _changed()


def new_key_material() -> tuple[str, str, str]:
    """(full key shown once, lookup prefix, secret)."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{KEY_PREFIX}{prefix}_{secret}", prefix, secret


def split_key(full_key: str) -> tuple[str, str] | None:
    """(prefix, secret) of a presented key, or None when it is not shaped like one of ours."""
    if not full_key.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = full_key[len(KEY_PREFIX):].partition("_")
    if not sep or not prefix or not secret:
        return None
    return prefix, secret


@transaction.atomic(durable=True)
def issue_key(*, acting_user: str, agent: Agent, label: str = "") -> tuple[AgentKey, str]:
    full_key, prefix, secret = new_key_material()
    key = AgentKey.objects.create(agent=agent, prefix=prefix, secret_hash=hash_secret(secret), label=label)
    record_admin("key.issued", actor=acting_user, target=agent.name, details={"prefix": prefix})
    _changed()
    return key, full_key


@transaction.atomic(durable=True)
def revoke_key(*, acting_user: str, key: AgentKey) -> None:
    write_key_revocation(acting_user=acting_user, key=key)


def write_key_revocation(*, acting_user: str, key: AgentKey) -> None:
    """revoke_key inside the caller's transaction (the Django admin's change form)."""
    key.revoked_at, key.revoked_by = timezone.now(), acting_user
    key.save(update_fields=["revoked_at", "revoked_by"])
    record_admin("key.revoked", actor=acting_user, target=key.agent.name, details={"prefix": key.prefix})
    _changed()


def mark_key_used(key_id: int) -> None:
    """Bookkeeping, not an admin change: no audit entry and no configuration bump."""
    AgentKey.objects.filter(id=key_id).update(last_used_at=timezone.now())
