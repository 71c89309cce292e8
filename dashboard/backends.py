"""The dashboard's view of the other apps: the one place that knows their function names.

Policies, pinning and the audit trail are owned by their apps (policies_app, audit_app); the
dashboard only calls them, through these adapters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from audit_app import actions as audit_actions
from audit_app import exports, queries
from audit_app import models as audit_models
from audit_app.verify import IntegrityFailure
from policies_app import actions as policy_actions
from policies_app import agent_policy as agent_policy_rules
from policies_app import config, simulation
from policies_app import models as policy_models

# --- configuration as code and policies (policies_app) -----------------------------------

@dataclass(frozen=True)
class ConfigProblem:
    line: int | None
    message: str


def _problems(raw: Any) -> list[ConfigProblem]:
    problems = []
    for item in raw or []:
        if isinstance(item, ConfigProblem):
            problems.append(item)
        elif isinstance(item, dict):
            problems.append(ConfigProblem(item.get("line"), str(item.get("message", item))))
        else:
            problems.append(ConfigProblem(getattr(item, "line", None), str(getattr(item, "message", item))))
    return problems


def yaml_syntax_problems(text: str) -> list[ConfigProblem]:
    import yaml

    try:
        yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return [ConfigProblem(mark.line + 1 if mark else None, str(exc.problem or exc))]
    except yaml.YAMLError as exc:
        return [ConfigProblem(None, str(exc))]
    return []


LINE_PREFIX = re.compile(r"^line (\d+): ")


def problems_from(errors: list[str]) -> list[ConfigProblem]:
    """ConfigError's "line N: message" strings as (line, message)."""
    problems = []
    for error in errors:
        match = LINE_PREFIX.match(error)
        if match:
            problems.append(ConfigProblem(int(match.group(1)), error[match.end():]))
        else:
            problems.append(ConfigProblem(None, error))
    return problems


def validate_config(text: str) -> list[ConfigProblem]:
    """Every problem of a config text, each naming its line; empty when it may be applied."""
    load = config.load
    error_type = config.ConfigError
    known_state = policy_actions.known_state
    try:
        load(text, known_state())
    except error_type as exc:
        return problems_from(list(exc.errors))
    return []


def apply_config(text: str, *, acting_user: str, description: str) -> list[ConfigProblem]:
    """Apply a whole config; the problems when it was refused (then nothing changed)."""
    apply = policy_actions.apply_config
    error_type = config.ConfigError
    try:
        apply(text, acting_user=acting_user, description=description)
    except error_type as exc:
        return problems_from(list(exc.errors))
    return []


def export_config() -> str:
    return policy_actions.export_config()


def policy_versions() -> list[Any]:
    model = policy_models.PolicyVersion
    return list(model.objects.order_by("-number")[:200])


def policy_version(number: int) -> Any:
    model = policy_models.PolicyVersion
    return model.objects.filter(number=number).first()


def version_text(version: Any) -> str:
    import yaml

    return yaml.safe_dump(version.document, sort_keys=False, allow_unicode=True, width=100)


def rollback(version: Any, *, acting_user: str) -> int | None:
    """Store the old document as a new version (history is never rewritten)."""
    save = policy_actions.save_policy_document
    return save(version.document, acting_user=acting_user, description=f"rollback to v{version.number}")


def simulate(*, agent: str, server: str, tool: str, arguments: dict[str, Any],
             operation: str = "tools/call") -> dict[str, Any]:
    return simulation.simulate(agent, server, tool, arguments, operation=operation)


def simulator_tools() -> list[tuple[str, str]]:
    """(tool, label) for the simulator's pick-list: each server's pinned catalog and the tools
    its intent map names, so an admin picks a name the server really has."""
    seen: dict[tuple[str, str], str] = {}
    for pin in policy_models.ToolPin.objects.order_by("server", "tool"):
        seen[(pin.tool, pin.server)] = pin.status
    for server in policy_models.Server.objects.order_by("name"):
        for tool in server.tool_intents or {}:
            seen.setdefault((tool, server.name), "not seen yet")
    return sorted((tool, f"{server} ({status})") for (tool, server), status in seen.items())


def policy_intents() -> list[str]:
    """The intents an admin may write a rule for: the servers' maps, their domain packs' intents
    and the intents the live rules already name."""
    from policies_app.core import packs

    intents: set[str] = set()
    for server in policy_models.Server.objects.all():
        for mapping in (server.tool_intents, server.resource_intents, server.prompt_intents):
            intents.update((mapping or {}).values())
        if server.domain_pack:
            pack = packs.load(server.domain_pack)
            intents.update(pack.intents, pack.tools.values())
    active = policy_models.PolicyVersion.active()
    for rule in (active.document.get("policies") or []) if active else []:
        intents.add(str(rule.get("intent")))
    return sorted(intents)


def reviewer_roles() -> list[str]:
    """The roles an escalation may name (auditors read the trail; they decide nothing)."""
    from django.contrib.auth.models import Group

    return sorted({"admin", *Group.objects.exclude(name="auditor").values_list("name", flat=True)})


def agent_names() -> list[str]:
    return list(policy_models.Agent.objects.order_by("name").values_list("name", flat=True))


def agent_policy(name: str) -> tuple[Any, list[tuple[str, list[Any]]]]:
    """The agent and the live rules that apply to it, grouped by intent; (None, []) when there
    is no such agent."""
    agent = policy_models.Agent.objects.filter(name=name).first()
    if agent is None:
        return None, []
    active = policy_models.PolicyVersion.active()
    document = active.document if active else {}
    return agent, agent_policy_rules.rules_for_agent(document, agent.name, agent.roles or [])


def add_agent_rule(*, acting_user: str, why: str, **spec: Any) -> tuple[int | None, list[str]]:
    """Add a common rule for one agent as a new policy version: (version or None when the
    same rule is already live, the validator's problems when it was refused)."""
    rule = agent_policy_rules.common_rule(**spec)
    description = agent_policy_rules.describe(rule) + (f". Why: {why}" if why else "")
    try:
        return policy_actions.add_policy_rule(rule, acting_user=acting_user, description=description), []
    except config.ConfigError as exc:
        return None, list(exc.errors)


# --- tool catalog pins (policies_app) ------------------------------------------------------

def tool_pins(server: str) -> list[Any]:
    model = policy_models.ToolPin
    return list(model.objects.filter(server=server).order_by("tool"))


def held_tools() -> list[Any]:
    return list(policy_actions.held_tools())


def approve_tool(*, server: str, tool: str, acting_user: str, comment: str = "") -> None:
    approve = policy_actions.approve_tool
    approve(server=server, tool=tool, acting_user=acting_user, comment=comment)


def reject_tool(*, server: str, tool: str, acting_user: str, comment: str) -> None:
    policy_actions.reject_tool(server=server, tool=tool, acting_user=acting_user, comment=comment)


def new_tool_alerts() -> list[Any]:
    return policy_actions.new_tool_alerts()


# --- the audit trail (audit_app) -----------------------------------------------------------

def entry_record(entry: Any) -> dict[str, Any]:
    """The entry as recorded (the contract's fields first), decoded from its canonical bytes."""
    return queries.entry_json(entry)


def chain_status() -> dict[str, Any]:
    return queries.chain_status()


def checkpoints(limit: int = 50) -> list[Any]:
    model = audit_models.Checkpoint
    return list(model.objects.order_by("-size")[:limit])


@dataclass(frozen=True)
class EntryProof:
    """The entry page's proof, or why there is none: not sealed yet (all empty), the stored
    trail does not give one that checks out (`failure`: what the auditor must be told, not a
    server error), or the sealer is still storing the tiles proofs read (`pending`)."""

    proof: dict[str, Any] | None = None
    failure: str = ""
    pending: str = ""


def inclusion_proof(seq: int) -> EntryProof:
    try:
        return EntryProof(proof=queries.inclusion_proof(seq))
    except IntegrityFailure as failure:
        return EntryProof(failure=str(failure))
    except queries.ProofsNotReady as not_ready:
        return EntryProof(pending=str(not_ready))


def verify_entry(seq: int) -> queries.EntryCheck:
    return queries.verify_entry(seq)


def entry_bytes(entry: Any) -> bytes:
    """The entry's canonical bytes: what its leaf hash is the hash of."""
    return bytes(entry.canonical)


CALL_TIMELINE_LIMIT = 100


def call_entries(call_id: str) -> list[Any]:
    """The entries of one call (decision, approval, outcome, retries), oldest first."""
    if not call_id:
        return []
    model = audit_models.AuditEntry
    return list(model.objects.filter(call_id=call_id).order_by("seq")[:CALL_TIMELINE_LIMIT])


def approval_for_call(call_id: str, user: Any) -> tuple[int | None, bool]:
    """The id of the approval a call was held for, also while it is still pending (its audit
    entry is written only once it is decided), and whether this user may open its page (the
    reviewers it names, the agent's owner, the requester and admins: approvals_app.actions)."""
    from approvals_app.actions import may_see
    from approvals_app.models import Approval

    approval = Approval.objects.filter(call_id=call_id).order_by("-id").first() if call_id else None
    if approval is None:
        return None, False
    return approval.pk, may_see(user, approval)


def entry_filter(filters: dict[str, Any]) -> Any:
    """The audit app's filter from the search form's values (from and to as the API takes them)."""
    return queries.EntryFilter.from_params(filters)


def audit_time_problem(value: str, label: str) -> str:
    """Why a From/To value is not a date or time the audit search takes, or "" when it is."""
    try:
        queries.parse_moment(value, label)
    except queries.FilterError as exc:
        return str(exc)
    return ""


@dataclass(frozen=True)
class EntryPage:
    """One page of the audit search, newest first, and whether there is more either side."""

    entries: list[Any]
    older: bool
    newer: bool


def search_entries(filters: dict[str, Any], *, before: int | None = None, after: int | None = None,
                   limit: int = 100) -> EntryPage:
    """A page of the entries matching the audit filters, newest first: the newest ones, those
    just older than seq `before`, or those just newer than seq `after`. Paging by seq keeps a
    page where it is while new entries arrive (a page number would shift)."""
    found = queries.search(entry_filter(filters))
    if after is not None:
        rows = list(found.filter(seq__gt=after).order_by("seq")[:limit + 1])
        if rows:  # else nothing newer is left: the newest page
            newer, rows = len(rows) > limit, rows[:limit][::-1]
            return EntryPage(rows, found.filter(seq__lt=rows[-1].seq).exists(), newer)
    if before is None:
        rows = list(found.order_by("-seq")[:limit + 1])
        return EntryPage(rows[:limit], len(rows) > limit, False)
    rows = list(found.filter(seq__lt=before).order_by("-seq")[:limit + 1])
    return EntryPage(rows[:limit], len(rows) > limit, found.filter(seq__gte=before).exists())


def export_chunks(fmt: str, filters: dict[str, Any]) -> Any:
    """Text chunks of one export; a bundle first seals, so that it covers the newest entries."""
    export = exports.export
    if fmt == "bundle":
        audit_actions.seal()
    return export(fmt, entry_filter(filters))


def export_filename(fmt: str) -> str:
    extensions = exports.EXTENSIONS
    return f"intended-audit.{extensions[fmt]}"


def export_content_type(fmt: str) -> str:
    return exports.CONTENT_TYPES[fmt]
