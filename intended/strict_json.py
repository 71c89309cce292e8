"""JSON that refuses duplicate keys at any depth: two parsers can disagree on which of two equal
keys wins, so the gateway never decides on such a document (an agent's request body, a JSON
string inside an argument)."""

from __future__ import annotations

import json
from typing import Any


class DuplicateKey(ValueError):
    """The key that was repeated."""


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKey(key)
        obj[key] = value
    return obj


def loads(raw: str | bytes) -> Any:
    return json.loads(raw, object_pairs_hook=_reject_duplicates)
