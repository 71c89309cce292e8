"""The dashboard's view of the other apps: the one place that knows their function names.

Policies, pinning and the audit trail are owned by their apps (policies_app, audit_app); the
dashboard only calls them. While a part has not landed yet, its adapter raises
`NotAvailable` and the page says so instead of failing.
"""

from __future__ import annotations

import importlib
import re
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
    load = _find("policies_app.config", "load")
    error_type = _find("policies_app.config", "ConfigError")
    known_state = _find("policies_app.actions", "known_state")
    try:
        load(text, known_state())
    except error_type as exc:
        return problems_from(list(exc.errors))
    return []


def apply_config(text: str, *, acting_user: str) -> list[ConfigProblem]:
    """Apply a whole config; the problems when it was refused (then nothing changed)."""
    apply = _find("policies_app.actions", "apply_config")
    error_type = _find("policies_app.config", "ConfigError")
    try:
        apply(text, acting_user=acting_user)
    except error_type as exc:
        return problems_from(list(exc.errors))
    return []


def export_config() -> str:
    return _find("policies_app.actions", "export_config")()


def policy_versions() -> list[Any]:
    model = _find("policies_app.models", "PolicyVersion")
    return list(model.objects.order_by("-number")[:200])


def policy_version(number: int) -> Any:
    model = _find("policies_app.models", "PolicyVersion")
    return model.objects.filter(number=number).first()


def version_text(version: Any) -> str:
    import yaml

    return yaml.safe_dump(version.document, sort_keys=False, allow_unicode=True, width=100)


def rollback(version: Any, *, acting_user: str) -> int | None:
    """Store the old document as a new version (history is never rewritten)."""
    save = _find("policies_app.actions", "save_policy_document")
    return save(version.document, acting_user=acting_user, comment=f"rollback to v{version.number}")


def simulate(*, agent: str, server: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    simulate = _find("policies_app.simulation", "simulate")
    return simulate(agent, server, tool, arguments)


# --- tool catalog pins (policies_app) ------------------------------------------------------

def tool_pins(server: str) -> list[Any]:
    model = _find("policies_app.models", "ToolPin")
    return list(model.objects.filter(server=server).order_by("tool"))


def held_tools() -> list[Any]:
    return list(_find("policies_app.actions", "held_tools")())


def approve_tool(*, server: str, tool: str, acting_user: str) -> None:
    approve = _find("policies_app.actions", "approve_tool")
    approve(server=server, tool=tool, acting_user=acting_user)


# --- the audit trail (audit_app) -----------------------------------------------------------

def entry_record(entry: Any) -> dict[str, Any]:
    """The entry as recorded (the contract's fields first), decoded from its canonical bytes."""
    try:
        entry_json = _find("audit_app.queries", "entry_json")
    except NotAvailable:
        return {f.name: getattr(entry, f.name) for f in entry._meta.concrete_fields}
    return entry_json(entry)


def chain_status() -> dict[str, Any]:
    return _find("audit_app.queries", "chain_status")()


def checkpoints(limit: int = 50) -> list[Any]:
    model = _find("audit_app.models", "Checkpoint")
    return list(model.objects.order_by("-size")[:limit])


def inclusion_proof(seq: int) -> dict[str, Any] | None:
    return _find("audit_app.queries", "inclusion_proof")(seq)


def entry_filter(filters: dict[str, Any]) -> Any:
    entry_filter = _find("audit_app.queries", "EntryFilter")
    return entry_filter(start=filters.get("from"), end=filters.get("to"),
                        **{k: v for k, v in filters.items() if k not in ("from", "to")})


def search_entries(filters: dict[str, Any], *, limit: int = 100) -> list[Any]:
    """The newest entries matching the audit filters (from, to, agent, intent glob, decision,
    server, tool)."""
    search = _find("audit_app.queries", "search")
    return list(search(entry_filter(filters)).order_by("-seq")[:limit])


def export_chunks(fmt: str, filters: dict[str, Any]) -> Any:
    """Text chunks of one export; a bundle first seals, so that it covers the newest entries."""
    export = _find("audit_app.exports", "export")
    if fmt == "bundle":
        _find("audit_app.actions", "seal")()
    return export(fmt, entry_filter(filters))


def export_filename(fmt: str) -> str:
    extensions = _find("audit_app.exports", "EXTENSIONS")
    return f"intended-audit.{extensions[fmt]}"


def export_content_type(fmt: str) -> str:
    return _find("audit_app.exports", "CONTENT_TYPES")[fmt]
