"""JSON-RPC and SSE framing for the gateway: pure functions, no I/O.

The gateway parses each message to decide, but forwards the original bytes; only the messages
it answers itself (refusals, denials, errors) and filtered tools/list results are serialized
here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from intended import strict_json
from intended.strict_json import DuplicateKey

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Gateway-originated errors, in the implementation-defined -32000..-32099 range.
UPSTREAM_UNREACHABLE = -32000
UPSTREAM_TIMEOUT = -32001
UNAUTHORIZED = -32010
FORBIDDEN = -32011
SESSION_NOT_FOUND = -32012
# A policy denied an operation that has no isError result to carry it (anything but tools/call).
DENIED = -32013
# MCP's code for a resource that does not exist (or that this agent may not read).
RESOURCE_NOT_FOUND = -32002
# The 2026-07-28 spec's code for routing headers that disagree with the body.
HEADER_MISMATCH = -32020

PROTOCOL_VERSION_META_KEY = "io.modelcontextprotocol/protocolVersion"
MODERN_VERSIONS = frozenset({"2026-07-28"})
FIRST_MODERN_VERSION = "2026-07-28"

# Methods whose name-bearing parameter the modern client mirrors into `Mcp-Name`.
NAME_PARAMS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


class InvalidMessage(Exception):
    """The body is not one JSON-RPC message we accept; `code` is the JSON-RPC error code."""

    def __init__(self, code: int, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


loads_strict = strict_json.loads  # the agent's body: duplicate keys refused at any depth


@dataclass(frozen=True)
class Message:
    """One parsed JSON-RPC message. `kind` is request, notification or response."""

    kind: str
    body: dict[str, Any]

    @property
    def id(self) -> Any:
        return self.body.get("id")

    @property
    def method(self) -> str:
        return self.body.get("method", "") if self.kind != "response" else ""

    @property
    def params(self) -> dict[str, Any]:
        params = self.body.get("params")
        return params if isinstance(params, dict) else {}


def parse_message(raw: bytes) -> Message:
    """Parse the body of a POST into a single JSON-RPC message, or raise InvalidMessage."""
    try:
        body = loads_strict(raw)
    except DuplicateKey as dup:
        raise InvalidMessage(PARSE_ERROR, f"Parse error: duplicate key {str(dup)!r} in JSON body") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessage(PARSE_ERROR, f"Parse error: {exc}") from None
    except RecursionError:
        raise InvalidMessage(PARSE_ERROR, "Parse error: the JSON body is nested too deeply") from None
    if isinstance(body, list):
        raise InvalidMessage(INVALID_REQUEST, "Invalid Request: batches are not accepted")
    if not isinstance(body, dict):
        raise InvalidMessage(INVALID_REQUEST, "Invalid Request: the body must be a JSON-RPC object")
    request_id = body.get("id")
    if body.get("jsonrpc") != "2.0":
        raise InvalidMessage(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"', _safe_id(request_id))
    has_id = "id" in body
    if has_id and (isinstance(request_id, bool) or not isinstance(request_id, str | int)):
        raise InvalidMessage(INVALID_REQUEST, 'Invalid Request: "id" must be a string or an integer')
    if "method" in body:
        if not isinstance(body["method"], str) or not body["method"]:
            raise InvalidMessage(INVALID_REQUEST, 'Invalid Request: "method" must be a string', request_id)
        if "params" in body and not isinstance(body["params"], dict):
            raise InvalidMessage(INVALID_REQUEST, 'Invalid Request: "params" must be an object', request_id)
        return Message("request" if has_id else "notification", body)
    if has_id and (("result" in body) != ("error" in body)):
        return Message("response", body)
    raise InvalidMessage(INVALID_REQUEST, "Invalid Request: neither a request, a notification nor a response",
                         request_id if has_id else None)


def _safe_id(value: Any) -> Any:
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def error_body(request_id: Any, code: int, message: str, data: Any = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return dumps({"jsonrpc": "2.0", "id": request_id, "error": error})


def id_key(request_id: Any) -> str:
    """A dict key for a JSON-RPC id that keeps 1 and "1" apart (pending requests by id)."""
    return json.dumps(request_id, sort_keys=True)


def result_body(request_id: Any, result: dict[str, Any]) -> bytes:
    return dumps({"jsonrpc": "2.0", "id": request_id, "result": result})


# --- eras -------------------------------------------------------------------------------


def is_modern_version(version: str | None) -> bool:
    # Revisions are dates; anything from 2026-07-28 on is the stateless era.
    return bool(version) and (version in MODERN_VERSIONS or str(version) >= FIRST_MODERN_VERSION)


def is_modern_message(body: Any) -> bool:
    """Does the message's `_meta` name a 2026-07-28-era protocol version?"""
    params = body.get("params") if isinstance(body, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and is_modern_version(meta.get(PROTOCOL_VERSION_META_KEY))


def era_of(message: Message, version_header: str | None, session_id: str | None) -> str:
    """`modern` for a 2026-07-28 request (its `_meta` or its MCP-Protocol-Version header says
    so, and it carries no session), else `legacy`."""
    if session_id:
        return "legacy"
    if is_modern_message(message.body):
        return "modern"
    if is_modern_version(version_header) or message.method == "server/discover":
        return "modern"
    return "legacy"


def header_mismatch(message: Message, headers: dict[str, str], era: str) -> str | None:
    """The name of the first routing header that disagrees with the body, else None.

    In the modern era `Mcp-Method` (and `Mcp-Name` for name-bearing methods) are required; in
    the legacy era they are optional but, when present, must agree too."""
    if message.kind != "request":
        return None
    method_header = headers.get("mcp-method")
    if method_header is None:
        if era == "modern":
            return "Mcp-Method"
    elif method_header != message.method:
        return "Mcp-Method"
    meta = message.params.get("_meta")
    body_version = meta.get(PROTOCOL_VERSION_META_KEY) if isinstance(meta, dict) else None
    if era == "modern" and body_version is not None and headers.get("mcp-protocol-version") != body_version:
        return "MCP-Protocol-Version"
    name_key = NAME_PARAMS.get(message.method)
    if name_key is not None:
        body_name = message.params.get(name_key)
        name_header = headers.get("mcp-name")
        if name_header is None:
            if era == "modern" and body_name is not None:
                return "Mcp-Name"
        elif decode_header_value(name_header) != body_name:
            return "Mcp-Name"
    return None


def encode_header_value(value: str) -> str:
    """The inverse of decode_header_value: plain printable ASCII as is, anything else (or a value
    that would read as an encoded one) as `=?base64?<b64 of UTF-8>?=`."""
    plain = value.isascii() and value.isprintable() and value == value.strip() and not value.startswith("=?")
    return value if plain else f"=?base64?{base64.b64encode(value.encode()).decode()}?="


def decode_header_value(value: str | None) -> str | None:
    """A header value as the client meant it: `=?base64?<b64 of UTF-8>?=` is how a modern
    client sends a value that is not plain printable ASCII. A malformed one decodes to None."""
    if value is None or not (value.startswith("=?base64?") and value.endswith("?=")):
        return value
    payload = value[len("=?base64?"):-2]
    try:
        decoded = base64.b64decode(payload, validate=True)
        if base64.b64encode(decoded).decode("ascii") != payload:
            return None
        return decoded.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


# --- SSE ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SseEvent:
    raw: bytes  # the exact bytes, terminating blank line included
    event: str
    data: str
    id: str | None

    @property
    def is_message(self) -> bool:
        return self.event in ("", "message") and bool(self.data)


# SSE lines end at CRLF, LF or CR only (not at U+2028 and the other breaks str.splitlines knows:
# a client would read such a line whole, so the gateway must too).
SSE_LINE_END = re.compile(r"\r\n|\r|\n")
SSE_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r|\n)")  # a line end, then an empty line
MAX_SSE_EVENT_BYTES = 16 * 1024 * 1024


class SseEventTooLarge(ValueError):
    pass


def parse_sse_event(raw: bytes) -> SseEvent:
    event, data_lines, event_id = "", [], None
    # A BOM opening the stream is not part of the first field name, for a client; one opening
    # a later event is skipped too (reading more than a client does is the safe side).
    for line in SSE_LINE_END.split(raw.decode("utf-8", errors="replace").removeprefix("\ufeff")):
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data_lines.append(value)
        elif field == "id":
            event_id = value
    return SseEvent(raw=raw, event=event, data="\n".join(data_lines), id=event_id)


class SseSplitter:
    """Cuts a byte stream into whole SSE events (each with its exact bytes), where a client
    would: an event ends at any blank line (CRLF, LF or CR in any mix). An event larger than
    `limit` bytes (MAX_SSE_EVENT_BYTES by default) is refused (SseEventTooLarge) rather than
    buffered without end, whether it arrives in pieces or whole."""

    def __init__(self, limit: int = MAX_SSE_EVENT_BYTES) -> None:
        self._buffer = b""
        self.limit = limit

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        self._buffer += chunk
        while True:
            end = _event_end(self._buffer)
            if end < 0:
                if len(self._buffer) > self.limit:
                    raise SseEventTooLarge(f"an SSE event over {self.limit} bytes")
                return
            raw, self._buffer = self._buffer[:end], self._buffer[end:]
            if len(raw) > self.limit:
                raise SseEventTooLarge(f"an SSE event over {self.limit} bytes")
            yield raw

    def rest(self) -> bytes:
        raw, self._buffer = self._buffer, b""
        return raw


def _event_end(buffer: bytes) -> int:
    found = SSE_EVENT_END.search(buffer)
    return found.end() if found is not None else -1


def sse_message(payload: bytes) -> bytes:
    return b"event: message\ndata: " + payload + b"\n\n"


SSE_KEEPALIVE = b": keep-alive\n\n"
