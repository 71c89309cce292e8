"""The dashboard's view of the other apps: the one place that knows their function names.

Policies, pinning and the audit trail are owned by their apps (policies_app, audit_app); the
dashboard only calls them. While a part has not landed yet, its adapter raises
`NotAvailable` and the page says so instead of failing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


class NotAvailable(Exception):
    """That part of the product is not installed yet; the message says which."""


def _find(module: str, *names: str) -> Any:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise NotAvailable(f"{module} is not available yet") from None
    for name in names:
        found = getattr(mod, name, None)
        if found is not None:
            return found
    raise NotAvailable(f"{module}.{names[0]} is not available yet")


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


def validate_config(text: str) -> list[ConfigProblem]:
    """Every problem of a config text, each naming its line; empty when it may be applied."""
    syntax = yaml_syntax_problems(text)
    if syntax:
        return syntax
    validate = _find("policies_app.config", "validate", "validate_config")
    return _problems(validate(text))


def apply_config(text: str, *, acting_user: str) -> Any:
    apply = _find("policies_app.actions", "apply_config", "apply_text", "apply")
    return apply(text, acting_user=acting_user)


def export_config() -> str:
    return _find("policies_app.config", "export_text", "export_config", "export")()


def policy_versions() -> list[Any]:
    model = _find("policies_app.models", "PolicyVersion")
    return list(model.objects.order_by("-pk")[:100])


def policy_version(number: int) -> Any:
    model = _find("policies_app.models", "PolicyVersion")
    return model.objects.filter(pk=number).first()


def version_text(version: Any) -> str:
    for name in ("text", "source", "yaml", "config_text"):
        value = getattr(version, name, None)
        if isinstance(value, str):
            return value
    return ""


def rollback(version: Any, *, acting_user: str) -> Any:
    rollback = _find("policies_app.actions", "rollback", "rollback_to")
    return rollback(version, acting_user=acting_user)


def simulate(*, agent: str, server: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    simulate = _find("policies_app.simulate", "simulate")
    result = simulate(agent=agent, server=server, tool=tool, arguments=arguments)
    return result if isinstance(result, dict) else dict(vars(result))


# --- tool catalog pins (policies_app.pinning) ----------------------------------------------

def tool_pins(server: str) -> list[Any]:
    model = _find("policies_app.models", "ToolPin")
    return list(model.objects.filter(server=server).order_by("tool"))


def approve_tool(*, server: str, tool: str, acting_user: str) -> Any:
    approve = _find("policies_app.actions", "approve_tool")
    return approve(server=server, tool=tool, acting_user=acting_user)


# --- the audit trail (audit_app) -----------------------------------------------------------

def chain_status() -> dict[str, Any]:
    status = _find("audit_app.queries", "chain_status")
    result = status()
    return result if isinstance(result, dict) else dict(vars(result))


def checkpoints(limit: int = 50) -> list[Any]:
    model = _find("audit_app.models", "Checkpoint")
    return list(model.objects.order_by("-pk")[:limit])


def inclusion_proof(entry: Any) -> dict[str, Any]:
    proof = _find("audit_app.queries", "inclusion_proof")
    result = proof(entry)
    return result if isinstance(result, dict) else dict(vars(result))


def search_entries(filters: dict[str, Any], *, limit: int = 100) -> list[Any]:
    try:
        search = _find("audit_app.queries", "search", "filter_entries")
    except NotAvailable:
        return _plain_search(filters, limit=limit)
    return list(search(**filters)[:limit])


def _plain_search(filters: dict[str, Any], *, limit: int) -> list[Any]:
    import fnmatch

    from audit_app.models import AuditEntry

    rows = AuditEntry.objects.order_by("-pk")
    if filters.get("from"):
        rows = rows.filter(time__gte=filters["from"])
    if filters.get("to"):
        rows = rows.filter(time__lte=filters["to"])
    for name in ("agent", "decision", "server", "tool"):
        if filters.get(name):
            rows = rows.filter(**{name: filters[name]})
    glob = filters.get("intent")
    result = [r for r in rows[: limit * 10] if not glob or fnmatch.fnmatchcase(r.intent, glob)]
    return result[:limit]
