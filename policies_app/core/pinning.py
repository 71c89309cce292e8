"""Tool pinning (rug-pull defence) and the poisoning scan: the pure part (canonical
definitions, hashes, the scan, diffs, the snapshot's view of pins). `policies_app.pinning`
records catalogs in the database.

Trust on first use: the first time the gateway sees a tool, its canonical definition (name,
description, input and output schema, annotations; RFC 8785 JSON) is hashed and pinned,
unless the poisoning scan flags it or the server holds new tools. A definition that differs
from its pin is withheld from every agent until an admin approves it. The hot path reads pins
from the frozen snapshot; `filter_tools` writes only when it sees something new or changed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from audit_app.chain import canonical_sha256

if TYPE_CHECKING:
    from policies_app.core.snapshot import Snapshot

DEFINITION_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")

HIDDEN_BLOCK = re.compile(
    r"<\s*/?\s*(important|system|instructions?|hidden|secret|admin|assistant|user|context|note)\b[^>]*>",
    re.IGNORECASE,
)
INSTRUCTION_PHRASES = re.compile(
    r"ignore\s+(all\s+|any\s+)?(the\s+)?(previous|prior|above|earlier|other)\s+(instructions|prompts|rules)"
    r"|disregard\s+(all\s+|any\s+)?(the\s+)?(previous|prior|above|earlier)"
    r"|do\s+not\s+(tell|inform|mention|reveal|notify)\s+(this\s+to\s+)?the\s+user"
    r"|(don't|never)\s+(tell|inform|mention|reveal)\s+(this\s+to\s+)?the\s+user"
    r"|before\s+(using|calling)\s+(this|any)\s+tool,?\s+(you\s+must\s+)?(read|call|send|first)"
    r"|(~/\.ssh|id_rsa|\.env\b|mcp\.json|/etc/passwd)"
    r"|you\s+are\s+now\s+|new\s+instructions\s*:|system\s+prompt",
    re.IGNORECASE,
)
INVISIBLE = frozenset(
    [0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0xFEFF, 0x00AD]
    + list(range(0x202A, 0x202F))
    + list(range(0x2066, 0x206A))
)


@dataclass(frozen=True)
class PinView:
    server: str
    tool: str
    status: str
    definition_hash: str
    annotations: Mapping[str, Any] = field(default_factory=dict)
    pending_hash: str = ""  # what the upstream offered when it was held
    input_schema: Mapping[str, Any] | None = None  # the pinned inputSchema: arguments are read by it

    @property
    def admitted(self) -> bool:
        return self.status == "admitted"


# --- pure: canonical definitions and the scan ----------------------------------------------


def canonical_definition(tool: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tool[k] for k in DEFINITION_FIELDS if k in tool and tool[k] is not None}


def definition_hash(tool: Mapping[str, Any]) -> str:
    return canonical_sha256(canonical_definition(tool))


def _texts(value: Any) -> Iterable[str]:
    """Every string a model would read in a definition (descriptions nested in schemas too)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                yield key
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def scan(tool: Mapping[str, Any], other_tools: Iterable[str] = ()) -> list[str]:
    """Why this definition looks poisoned; empty when it looks clean."""
    findings: list[str] = []
    definition = canonical_definition(tool)
    texts = list(_texts({k: v for k, v in definition.items() if k != "name"}))
    prose = "\n".join(texts)
    if HIDDEN_BLOCK.search(prose):
        findings.append("hidden instruction block (" + HIDDEN_BLOCK.search(prose).group(0)[:40] + ")")  # type: ignore[union-attr]
    phrase = INSTRUCTION_PHRASES.search(prose)
    if phrase:
        findings.append(f"instruction to the model ({phrase.group(0)[:60]!r})")
    for char in prose:
        code = ord(char)
        if code in INVISIBLE or 0xE0000 <= code <= 0xE007F:
            findings.append(f"invisible character U+{code:04X}")
            break
        if unicodedata.category(char) == "Cc" and char not in "\n\r\t":
            findings.append(f"control character U+{code:04X}")
            break
    own = tool.get("name", "")
    description = str(definition.get("description", ""))
    for other in sorted(set(other_tools)):
        if other == own or len(other) < 4:
            continue
        if re.search(rf"(?<![\w-]){re.escape(other)}(?![\w-])", description):
            findings.append(f"refers to another tool ({other})")
            break
    return findings


def definition_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a definition that changed: {field: {"before": ..., "after": ...}}."""
    return {
        k: {"before": before.get(k), "after": after.get(k)}
        for k in DEFINITION_FIELDS
        if before.get(k) != after.get(k)
    }


def pin_for(snap: Snapshot, server: str, tool: str) -> PinView | None:
    return snap.pins.get((server, tool))


def tool_annotations(snap: Snapshot, server: str, tool: str) -> Mapping[str, Any]:
    pin = pin_for(snap, server, tool)
    return pin.annotations if pin is not None else {}


def has_control_character(name: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name)
