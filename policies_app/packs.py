"""SKELETON: replaced by the decision-engine issue (domain packs, intents, risk)."""

from __future__ import annotations

from typing import Any

from gateway.context import CallContext, Risk, ServerView


def resolve_intent(server: ServerView, tool: str) -> str:
    return server.tool_intents.get(tool) or f"mcp.{server.name}.{tool}"


def derive_attributes(pack: str, intent: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {}


def score_risk(pack: str, ctx: CallContext) -> Risk:
    return Risk()
