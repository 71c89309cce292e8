"""SKELETON: replaced by the decision-engine issue (tool pinning and poisoning scan)."""

from __future__ import annotations

from typing import Any


def admitted_hash(snap: Any, server: str, tool: str) -> str:
    return ""


async def filter_tools(snap: Any, agent: Any, server: Any, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tools of one tools/list page that this agent may see (scope and pinning)."""
    return [t for t in tools if agent.may_use_tool(server.name, t.get("name", ""))]
