"""Domain packs: intents, default tool -> intent mappings, derived attributes, risk models and
redaction, shipped as data files in policies_app/packs/<name>.yaml.

Everything here is pure over a loaded pack; packs are read once per process.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from policies_app.core.arguments import describe
from policies_app.core.context import (
    CLIENT_REQUESTS,
    CallContext,
    Kind,
    Risk,
    ServerView,
    first_match,
)

PACK_DIR = Path(__file__).resolve().parent.parent / "packs"
DAILY_COUNT = "today"  # ctx.velocity key: the agent's admitted calls of this intent today (UTC)
REDACTED = "[REDACTED]"
RECIPIENT_SEPARATORS = re.compile(r"[,;\r\n]")


@dataclass(frozen=True)
class RiskFactor:
    name: str
    add: int
    says: str
    attribute: str = ""
    at_least: float | None = None
    calls_today_at_least: int | None = None
    off_hours: tuple[int, int] | None = None


@dataclass(frozen=True)
class RiskModel:
    base: int = 0
    factors: tuple[RiskFactor, ...] = ()

    @property
    def uses_daily_count(self) -> bool:
        return any(f.calls_today_at_least is not None for f in self.factors)


@dataclass(frozen=True)
class RecordSpec:
    """A record the gateway reads from the server when a call is held, for the reviewer: the
    resource URI (`{value}` is the field's value) and the keys of its JSON to show."""

    resource: str
    show: tuple[str, ...]


@dataclass(frozen=True)
class ReviewField:
    """One thing a reviewer needs to see about a held call, read from its arguments."""

    name: str
    label: str
    sources: tuple[str, ...]  # argument names; the first present one wins
    currency: tuple[str, ...] = ()  # argument names holding the currency of a number
    default_currency: str = ""
    record: RecordSpec | None = None


@dataclass(frozen=True)
class ReviewSpec:
    fields: tuple[ReviewField, ...] = ()
    recent: int = 0  # how many of the agent's latest calls of the intent to show


@dataclass(frozen=True)
class Pack:
    name: str
    description: str = ""
    intents: Mapping[str, str] = field(default_factory=dict)
    tools: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, str] = field(default_factory=dict)  # URI glob -> intent, first match wins
    prompts: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, Mapping[str, Mapping[str, list[str]]]] = field(default_factory=dict)
    risk: Mapping[str, RiskModel] = field(default_factory=dict)
    destructive_hint_add: int = 20
    redaction: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)
    review: Mapping[str, ReviewSpec] = field(default_factory=dict)

    def risk_model(self, intent: str) -> RiskModel:
        return self.risk.get(intent) or self.risk.get("default") or RiskModel()


NO_PACK = Pack(name="")


def available() -> list[str]:
    return sorted(p.stem for p in PACK_DIR.glob("*.yaml"))


@cache
def load(name: str) -> Pack:
    """The pack of that name; the empty name is the empty pack. Unknown names raise KeyError."""
    if not name:
        return NO_PACK
    path = PACK_DIR / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown domain pack {name!r} (available: {', '.join(available())})")
    return parse_pack(yaml.safe_load(path.read_text()))


def parse_pack(raw: Mapping[str, Any]) -> Pack:
    risk = {
        intent: RiskModel(
            base=int(model.get("base", 0)),
            factors=tuple(_risk_factor(f) for f in model.get("factors") or []),
        )
        for intent, model in (raw.get("risk") or {}).items()
    }
    redaction = {
        intent: {how: frozenset(fields) for how, fields in spec.items()}
        for intent, spec in (raw.get("redaction") or {}).items()
    }
    return Pack(
        name=raw["name"],
        description=raw.get("description", ""),
        intents={k: (v or {}).get("description", "") for k, v in (raw.get("intents") or {}).items()},
        tools=dict(raw.get("tools") or {}),
        resources=dict(raw.get("resources") or {}),
        prompts=dict(raw.get("prompts") or {}),
        attributes=raw.get("attributes") or {},
        risk=risk,
        destructive_hint_add=int(raw.get("destructive_hint_add", 20)),
        redaction=redaction,
        review={intent: _review_spec(spec) for intent, spec in (raw.get("review") or {}).items()},
    )


def _review_spec(raw: Mapping[str, Any]) -> ReviewSpec:
    fields = []
    for f in raw.get("fields") or []:
        record = f.get("record")
        fields.append(ReviewField(
            name=f["name"], label=f.get("label", f["name"]), sources=tuple(f["from"]),
            currency=tuple(f.get("currency") or ()), default_currency=f.get("default_currency", ""),
            record=RecordSpec(resource=record["resource"], show=tuple(record["show"])) if record else None,
        ))
    return ReviewSpec(fields=tuple(fields), recent=int(raw.get("recent", 0)))


def _risk_factor(raw: Mapping[str, Any]) -> RiskFactor:
    hours = raw.get("off_hours")
    return RiskFactor(
        name=raw["name"],
        add=int(raw["add"]),
        says=raw.get("says", raw["name"]),
        attribute=raw.get("attribute", ""),
        at_least=raw.get("at_least"),
        calls_today_at_least=raw.get("calls_today_at_least"),
        off_hours=(int(hours[0]), int(hours[1])) if hours else None,
    )


# --- intents -------------------------------------------------------------------------------


def resolve_intent(server: ServerView, tool: str) -> str:
    """A tool's intent: the server's own map first, then the pack's default, else mcp.<server>.<tool>."""
    return intent_for(server, "tool", tool)


def intent_for(server: ServerView, kind: Kind, subject: str, operation: str = "") -> str:
    """The intent of any governed subject: the server's map, then the pack's, then the default
    of its kind (docs/POLICIES.md, "Every operation is governed")."""
    pack = load(server.domain_pack)
    if kind == "tool":
        return server.tool_intents.get(subject) or pack.tools.get(subject) or f"mcp.{server.name}.{subject}"
    if kind == "resource":
        return first_match(server.resource_intents.items(), subject) \
            or first_match(pack.resources.items(), subject) or f"mcp.{server.name}.resource.read"
    if kind == "prompt":
        return server.prompt_intents.get(subject) or pack.prompts.get(subject) or f"mcp.{server.name}.prompt.get"
    return f"mcp.{server.name}.{CLIENT_REQUESTS[operation]}"


# --- derived attributes --------------------------------------------------------------------


class UnreadableArgument(ValueError):
    """A present argument the pack cannot read an attribute from: the call is denied (fail
    closed), never decided as if the argument were absent."""


def derive_attributes(pack: str, intent: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The pack's attributes of this intent, from the arguments as the tool reads them (coerced
    by its pinned schema first: core.arguments). Over-count, never under-count: every key that
    is present counts, and one that cannot be read raises UnreadableArgument."""
    specs = load(pack).attributes.get(intent) or {}
    derived: dict[str, Any] = {}
    for name, spec in specs.items():
        if "collect" in spec:
            found = _collect_recipients(arguments, spec["collect"], name)
            if found is not None:
                derived[name] = found
        elif "number" in spec:
            number = _largest_number(arguments, spec["number"], name)
            if number is not None:
                derived[name] = number
    return derived


def _collect_recipients(arguments: Mapping[str, Any], keys: list[str], name: str) -> list[str] | None:
    """Every recipient under every one of these keys that is present; None when none is."""
    present = [key for key in keys if key in arguments]
    if not present:
        return None
    return [r for key in present for r in _recipients(arguments[key], f"argument {key!r}", name)]


def _recipients(value: Any, where: str, name: str) -> list[str]:
    """Counted from the structure: each list item, each part of a string split on `,` `;` and
    line breaks, and within a part each whitespace-separated word holding an `@` when there are
    several (`Ann <a@x.com>` is one recipient, `a@x.com b@x.com` two)."""
    if value is None:
        return []
    if isinstance(value, str):
        found: list[str] = []
        for part in RECIPIENT_SEPARATORS.split(value):
            part = part.strip()
            if part:
                addressed = [word for word in part.split() if "@" in word]
                found.extend(addressed if len(addressed) > 1 else [part])
        return found
    if isinstance(value, list | tuple):
        return [r for i, item in enumerate(value) for r in _recipients(item, f"{where}[{i}]", name)]
    if isinstance(value, Mapping):
        inner = [value[key] for key in ("email", "address") if key in value]  # {"email": ..., "name": ...}
        if not inner:
            raise UnreadableArgument(f"the {name} cannot be read from {where}: an object with no email or address")
        return [r for item in inner for r in _recipients(item, where, name)]
    raise UnreadableArgument(f"the {name} cannot be read from {where}: {describe(value)}")


def _largest_number(arguments: Mapping[str, Any], keys: list[str], name: str) -> float | int | None:
    """The largest of the numbers under these keys (a tool may read any of them; an extra key
    must not lower what another says). Numbers only: a string is read by the tool's schema
    first (core.arguments), so one still here is not a number the pack may guess at."""
    found: list[float | int] = []
    for key in keys:
        if key not in arguments or arguments[key] is None:
            continue
        value = arguments[key]
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or (isinstance(value, float) and not math.isfinite(value)):
            raise UnreadableArgument(f"the {name} cannot be read from argument {key!r}: {describe(value)}, "
                                     "not a finite number")
        found.append(value)
    return max(found) if found else None


def measure(value: Any) -> float | None:
    """How a condition or risk factor sees a value: numbers as is, lists by length."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, list | tuple):
        return len(value)
    return None


# --- risk ----------------------------------------------------------------------------------


def uses_daily_count(pack: str, intent: str) -> bool:
    return load(pack).risk_model(intent).uses_daily_count


def score_risk(
    pack: str,
    ctx: CallContext,
    *,
    annotations: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Risk:
    loaded = load(pack)
    model = loaded.risk_model(ctx.intent)
    now = now or datetime.now(UTC)
    score = model.base
    factors: list[dict[str, Any]] = []
    if model.base:
        factors.append({"name": "base", "add": model.base, "says": f"base risk of {ctx.intent or 'this call'}"})
    values = {**ctx.arguments, **ctx.attributes}
    for factor in model.factors:
        if _factor_applies(factor, values, ctx.velocity, now):
            score += factor.add
            factors.append({"name": factor.name, "add": factor.add, "says": factor.says})
    if annotations and annotations.get("destructiveHint") is True:
        add = loaded.destructive_hint_add
        score += add
        factors.append({"name": "destructive_hint", "add": add, "says": "the tool declares itself destructive"})
    return Risk(score=max(0, min(100, score)), factors=factors)


def _factor_applies(factor: RiskFactor, values: Mapping[str, Any], velocity: Mapping[str, int], now: datetime) -> bool:
    if factor.attribute and factor.at_least is not None:
        measured = measure(values.get(factor.attribute))
        return measured is not None and measured >= factor.at_least
    if factor.calls_today_at_least is not None:
        if DAILY_COUNT not in velocity:
            return True  # the count could not be read: assume the worse
        return velocity[DAILY_COUNT] + 1 >= factor.calls_today_at_least
    if factor.off_hours is not None:
        start, end = factor.off_hours
        hour = now.astimezone(UTC).hour
        return (start <= hour or hour < end) if start > end else (start <= hour < end)
    return False


# --- redaction -----------------------------------------------------------------------------


def redact(pack: str, intent: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments as the audit trail may keep them."""
    loaded = load(pack) if pack else NO_PACK
    rules = [loaded.redaction.get("default") or {}, loaded.redaction.get(intent) or {}]
    hidden = frozenset().union(*(r.get("redact", frozenset()) for r in rules))
    hashed = frozenset().union(*(r.get("hash", frozenset()) for r in rules))
    return _redact_value(dict(arguments), hidden, hashed)


def _redact_value(value: Any, hidden: frozenset[str], hashed: frozenset[str]) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in hidden:
                out[key] = REDACTED
            elif key in hashed:
                out[key] = {"sha256": _digest(item)}
            else:
                out[key] = _redact_value(item, hidden, hashed)
        return out
    if isinstance(value, list):
        return [_redact_value(item, hidden, hashed) for item in value]
    return value


def _digest(value: Any) -> str:
    raw = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


# --- what a reviewer sees ------------------------------------------------------------------

CURRENCY = re.compile(r"^[A-Z]{3}$")
PLAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SHOWN_TEXT_LIMIT = 200
SHOWN_LIST_LIMIT = 10
# What a server's record may not put in front of a reviewer: control characters (NUL breaks a
# jsonb column), and bidirectional overrides that make text read differently than it is.
UNSHOWABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def review_spec(pack: str, intent: str) -> ReviewSpec:
    try:
        return load(pack).review.get(intent) or ReviewSpec()
    except KeyError:
        return ReviewSpec()


def review_fields(pack: str, intent: str, arguments: Mapping[str, Any],
                  attributes: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The pack's review fields for a call, as shown: [{name, label, value, text}] (and
    `conflict` when the call gives one field several different values), in the pack's order,
    for the fields the call gives. A field that is also a pack attribute shows the attribute,
    the value the policy and risk decided on (the largest amount, every recipient), not merely
    the first argument. `text` is what a person reads: an amount with its currency."""
    if attributes is None:
        try:
            attributes = derive_attributes(pack, intent, arguments)
        except (KeyError, UnreadableArgument):
            attributes = {}
    out = []
    for f in review_spec(pack, intent).fields:
        given = [arguments[k] for k in f.sources if arguments.get(k) not in (None, "")]
        distinct = list({json.dumps(v, sort_keys=True, default=str): v for v in given}.values())
        if f.name in attributes:
            value: Any = attributes[f.name]
        elif distinct:
            value = distinct[0]
        else:
            continue
        field_view = {"name": f.name, "label": f.label, "value": value, "text": _field_text(f, value, arguments)}
        if f.name not in attributes and len(distinct) > 1:  # e.g. customer_id and customer disagree
            field_view["conflict"] = True
            field_view["text"] = " / ".join(_field_text(f, v, arguments) for v in distinct) + \
                " (the call names more than one)"
        out.append(field_view)
    return out


def _field_text(f: ReviewField, value: Any, arguments: Mapping[str, Any]) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        shown = ", ".join(value[:SHOWN_LIST_LIMIT])
        return shown if len(value) <= SHOWN_LIST_LIMIT else f"{shown} and {len(value) - SHOWN_LIST_LIMIT} more ({len(value)} in all)"
    amount = _amount(value) if f.currency or f.default_currency else None
    if amount is None:
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    given = [arguments[k] for k in f.currency if arguments.get(k) not in (None, "")]
    if not given:
        return f"{amount} {f.default_currency}".strip()
    code = given[0].strip().upper() if isinstance(given[0], str) else ""
    # a currency the call gives but that is no ISO code is shown as given, never replaced
    return f"{amount} {code}" if CURRENCY.match(code) else f"{amount} (currency {json.dumps(given[0])[:40]})"


def _amount(value: Any) -> str | None:
    """An amount as people write it ("1,250.00", "0.004"), exactly: Decimal, never float."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, str) and not re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    return f"{number:,.2f}" if number == number.quantize(Decimal("0.01")) else f"{number:,f}"


def review_records(pack: str, intent: str, arguments: Mapping[str, Any],
                   attributes: Mapping[str, Any] | None = None) -> list[tuple[str, str, tuple[str, ...]]]:
    """The records to read for a held call: (field name, resource URI, keys to show). Only for
    a plain id (a value with URI syntax could make the gateway read something else) that the
    call gives once (two different customers: which one the tool acts on is not ours to guess)."""
    reads = []
    shown = {f["name"]: f for f in review_fields(pack, intent, arguments, attributes)}
    for f in review_spec(pack, intent).fields:
        field_view = shown.get(f.name)
        if f.record is None or field_view is None or field_view.get("conflict"):
            continue
        value = field_view["value"]
        if isinstance(value, str) and PLAIN_ID.match(value):
            reads.append((f.name, f.record.resource.replace("{value}", value), f.record.show))
    return reads


def record_view(contents: Any, uri: str, show: tuple[str, ...]) -> dict[str, Any] | None:
    """The keys to show from a resources/read result whose first content is the requested URI
    as a JSON object; None when it is not one. Values are cut to what a page can show safely:
    finite numbers, booleans, and strings without control characters, at most
    SHOWN_TEXT_LIMIT long."""
    if not isinstance(contents, Mapping):
        return None
    items = contents.get("contents")
    first = items[0] if isinstance(items, list) and items and isinstance(items[0], Mapping) else {}
    text = first.get("text")
    if first.get("uri") != uri or not isinstance(text, str):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, Mapping):
        return None
    view: dict[str, Any] = {}
    for key in show:
        value = data.get(key)
        if isinstance(value, bool) or (isinstance(value, int | float) and math.isfinite(value)):
            view[key] = value
        elif isinstance(value, str):
            view[key] = UNSHOWABLE.sub("", value)[:SHOWN_TEXT_LIMIT]
    return view
