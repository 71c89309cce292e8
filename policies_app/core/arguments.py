"""A tool call's arguments as the upstream will read them, so the gateway decides on the same
values the tool executes (docs/SECURITY.md, "Decide on the values the upstream will use").

The official Python SDK's servers validate arguments against the tool's signature, leniently:
a string given for a parameter that is not declared as a plain string is first decoded as JSON
when that gives a list, an object or null (`pre_parse_json`), and then numeric and boolean
strings become numbers and booleans (`"5e3"` is 5000.0 for a number). `coerce` does the same by
the tool's pinned `inputSchema`. What it cannot read unambiguously it refuses with
`InvalidArguments` rather than guess: a string where an array is wanted that is not a JSON
array, a non-finite number (`NaN`, `Infinity`, `1e400`), duplicate keys inside a JSON string,
a value of the wrong type, a union two of whose branches read the value differently. It may
refuse a few spellings the SDK would accept (`"1_000"`, a boolean for a number); it never
accepts one with a different value.

Pure: no Django, no I/O.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from typing import Any

from intended import strict_json

# Plain decimal numbers only: ASCII digits, an optional fraction and exponent. Python's float()
# and pydantic read these alike; anything more exotic is refused rather than guessed.
NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
INTEGER_TEXT = re.compile(r"([+-]?[0-9]+)(?:\.0+)?")
ASCII_SPACE = " \t\n\r"
TRUE_TEXT = frozenset({"true", "1", "yes", "on", "t", "y"})  # pydantic's lax booleans
FALSE_TEXT = frozenset({"false", "0", "no", "off", "f", "n"})
NON_FINITE_TEXT = frozenset({"inf", "infinity", "nan"})
INT64 = 2**63


class InvalidArguments(ValueError):
    """The arguments cannot be read unambiguously by the tool's pinned input schema: refused
    before any decision (-32602 `Invalid params: <reason>`), never forwarded."""


def coerce(arguments: Mapping[str, Any], schema: Any) -> dict[str, Any]:
    """The arguments as the tool will read them by its `inputSchema`: declared arguments coerced,
    absent ones with a declared default filled in, undeclared ones kept as sent (a server may
    still read them). Without a readable schema, the arguments as sent."""
    if not isinstance(schema, Mapping):
        for key, value in arguments.items():
            _require_finite(value, _quote(key))
        return dict(arguments)
    return _Reader(schema).arguments(arguments)


class _Reader:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def arguments(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        schema = self.resolve(self.root)
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        out: dict[str, Any] = {}
        for key, value in arguments.items():
            declared = properties.get(key)
            path = _quote(key)
            if not isinstance(declared, Mapping):
                _require_finite(value, path)
                out[key] = value
                continue
            if isinstance(value, str) and not self.plain_string(declared):
                value = _pre_parse(value, path)
            out[key] = self.value(value, declared, path)
        _fill_defaults(out, properties)
        return out

    # --- the schema -------------------------------------------------------------------------

    def resolve(self, schema: Mapping[str, Any], seen: frozenset[str] = frozenset()) -> Mapping[str, Any]:
        """Follow a local `$ref` (`#/$defs/...`, `#/definitions/...`); siblings of the `$ref` win."""
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return schema
        if ref in seen or not ref.startswith("#/"):
            raise InvalidArguments(f"the tool's input schema has a reference that cannot be followed ({ref})")
        target: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, Mapping) else None
        if not isinstance(target, Mapping):
            raise InvalidArguments(f"the tool's input schema has a reference that cannot be followed ({ref})")
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        return {**self.resolve(target, seen | {ref}), **siblings}

    def plain_string(self, schema: Mapping[str, Any]) -> bool:
        """Declared as a string and nothing else: the one case the SDK leaves a string alone."""
        resolved = self.resolve(schema)
        return resolved.get("type") == "string" and not any(k in resolved for k in ("anyOf", "oneOf", "allOf"))

    # --- values -----------------------------------------------------------------------------

    def value(self, value: Any, schema: Mapping[str, Any], path: str) -> Any:
        schema = self.resolve(schema)
        for part in schema.get("allOf") or ():
            if isinstance(part, Mapping):
                value = self.value(value, part, path)
        branches = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(branches, list) and branches:
            value = self.union(value, [b for b in branches if isinstance(b, Mapping)], path)
        declared = schema.get("type")
        if isinstance(declared, list):
            value = self.union(value, [{**schema, "type": t} for t in declared], path)
        elif isinstance(declared, str):
            value = self.typed(value, declared, schema, path)
        elif isinstance(schema.get("properties"), Mapping) and isinstance(value, Mapping):
            value = self.object(value, schema, path)
        else:
            _require_finite(value, path)
        if "enum" in schema or "const" in schema:
            allowed = schema["enum"] if "enum" in schema else [schema["const"]]
            if not isinstance(allowed, list) or not any(_same(value, a) for a in allowed):
                raise InvalidArguments(f"{path}: {describe(value)} is not one of the values the tool allows")
        return value

    def union(self, value: Any, branches: list[Mapping[str, Any]], path: str) -> Any:
        """The value as the one branch it already fits exactly (pydantic's smart unions prefer
        that), else as every branch that can read it reads it alike; refused otherwise."""
        readings: list[Any] = []
        first_error: InvalidArguments | None = None
        for branch in branches:
            try:
                reading = self.value(value, branch, path)
            except InvalidArguments as exc:
                first_error = first_error or exc
                continue
            if _same(reading, value):
                return reading
            readings.append(reading)
        if not readings:
            raise first_error or InvalidArguments(f"{path}: no type the tool declares accepts {describe(value)}")
        if any(not _same(r, readings[0]) for r in readings[1:]):
            raise InvalidArguments(f"{path}: ambiguous, the tool's declared types read {describe(value)} differently")
        return readings[0]

    def typed(self, value: Any, declared: str, schema: Mapping[str, Any], path: str) -> Any:
        if declared == "string":
            if isinstance(value, str):
                return value
        elif declared == "number":
            return _number(value, path)
        elif declared == "integer":
            return _integer(value, path)
        elif declared == "boolean":
            return _boolean(value, path)
        elif declared == "null":
            if value is None:
                return None
        elif declared == "array":
            if isinstance(value, list):
                return self.array(value, schema, path)
            if isinstance(value, str):
                raise InvalidArguments(f"{path}: expected an array, got a string that is not a JSON array")
        elif declared == "object":
            if isinstance(value, Mapping):
                return self.object(value, schema, path)
        else:
            return value  # a type this reader does not know: as sent
        raise InvalidArguments(f"{path}: expected {_article(declared)}, got {describe(value)}")

    def array(self, value: list[Any], schema: Mapping[str, Any], path: str) -> list[Any]:
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        items = schema.get("items")
        out: list[Any] = []
        for index, item in enumerate(value):
            item_schema = prefix[index] if index < len(prefix) else items
            if isinstance(item_schema, Mapping):
                out.append(self.value(item, item_schema, f"{path}[{index}]"))
            else:
                _require_finite(item, f"{path}[{index}]")
                out.append(item)
        return out

    def object(self, value: Mapping[str, Any], schema: Mapping[str, Any], path: str) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        extra = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for key, item in value.items():
            declared = properties.get(key)
            item_schema = declared if isinstance(declared, Mapping) else extra
            if isinstance(item_schema, Mapping):
                out[key] = self.value(item, item_schema, f"{path}.{key}")
            else:
                _require_finite(item, f"{path}.{key}")
                out[key] = item
        _fill_defaults(out, properties)
        return out


# --- scalars -----------------------------------------------------------------------------------


def _number(value: Any, path: str) -> int | float:
    if isinstance(value, bool):
        raise InvalidArguments(f"{path}: expected a number, got a boolean")
    if isinstance(value, int):
        try:
            as_float = float(value)
        except OverflowError:
            raise InvalidArguments(f"{path}: {value} is too large a number") from None
        return value if as_float == value else as_float  # what the SDK's float field holds
    if isinstance(value, float):
        return _finite(value, path)
    if isinstance(value, str):
        text = value.strip(ASCII_SPACE)
        if NUMBER_TEXT.fullmatch(text):
            return _finite(float(text), path)
        if text.lstrip("+-").lower() in NON_FINITE_TEXT:
            raise InvalidArguments(f"{path}: the number is not finite")
        raise InvalidArguments(f"{path}: expected a number, got a string that is not a plain number")
    raise InvalidArguments(f"{path}: expected a number, got {describe(value)}")


def _integer(value: Any, path: str) -> int:
    if isinstance(value, bool):
        raise InvalidArguments(f"{path}: expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < INT64:
            return int(value)
        raise InvalidArguments(f"{path}: expected an integer, got {value}")
    if isinstance(value, str):
        matched = INTEGER_TEXT.fullmatch(value.strip(ASCII_SPACE))
        if matched:
            try:
                return int(matched.group(1))
            except ValueError:  # more digits than Python converts
                raise InvalidArguments(f"{path}: the integer is too long") from None
        raise InvalidArguments(f"{path}: expected an integer, got a string that is not a plain integer")
    raise InvalidArguments(f"{path}: expected an integer, got {describe(value)}")


def _boolean(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        if value.lower() in TRUE_TEXT:
            return True
        if value.lower() in FALSE_TEXT:
            return False
        raise InvalidArguments(f"{path}: expected a boolean, got a string that is not one")
    raise InvalidArguments(f"{path}: expected a boolean, got {describe(value)}")


def _finite(value: float, path: str) -> float:
    if not math.isfinite(value):
        raise InvalidArguments(f"{path}: the number is not finite")
    return value


def _require_finite(value: Any, path: str) -> None:
    """A value no schema describes is kept as sent, but never with a NaN or an infinity in it."""
    if isinstance(value, float):
        _finite(value, path)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _require_finite(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _require_finite(item, f"{path}[{index}]")


# --- the SDK's pre-parse ------------------------------------------------------------------------


def _pre_parse(text: str, path: str) -> Any:
    """The SDK's `pre_parse_json` on one argument: a string holding a JSON array, object or
    null becomes that value; anything else (not JSON, or a JSON string or number) stays the
    string. Duplicate keys are refused: JSON parsers disagree on which one wins."""
    try:
        decoded = strict_json.loads(text)
    except strict_json.DuplicateKey as dup:
        raise InvalidArguments(f"{path}: the JSON in this string repeats the key {str(dup)!r}") from None
    except (ValueError, RecursionError):
        return text
    if isinstance(decoded, str | int | float):
        return text
    _require_finite(decoded, path)
    return decoded


def _fill_defaults(out: dict[str, Any], properties: Mapping[str, Any]) -> None:
    """An argument left out is the default the tool declares: that is the value it runs with."""
    for key, declared in properties.items():
        if key not in out and isinstance(declared, Mapping) and "default" in declared:
            out[key] = copy.deepcopy(declared["default"])


# --- comparisons and words -----------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    """The same JSON value with the same Python types (True is not 1, 1 is not 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def describe(value: Any) -> str:
    """What a value is, in the words of an error message (`a string`, `an array`, `inf`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _article(declared: str) -> str:
    return f"an {declared}" if declared[0] in "aeiou" else f"a {declared}"


def _quote(key: str) -> str:
    return f"argument {key!r}"
