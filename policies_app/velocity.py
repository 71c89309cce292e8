"""SKELETON: replaced by the decision-engine issue (sliding windows in Redis or in process)."""

from __future__ import annotations

from typing import Any


async def read(policy: Any, ctx: Any) -> dict[str, int]:
    return {}


async def enforce(policy: Any, ctx: Any) -> None:
    return None
