"""An MCP upstream that misbehaves on purpose, over raw HTTP/1.1 so that it can lie.

It speaks just enough Streamable HTTP (legacy era, stateless, JSON answers) for the gateway to
list and pin its tools; each tool then fails in its own way. Every HTTP request it receives is
logged as one JSON line, so tests can compare what reached it with the audit trail.

    python misbehaving_upstream.py --port 9000 --log requests.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
from typing import Any

import rfc8785

TEN_MB = 10 * 1024 * 1024

TOOLS = {
    "echo": "Returns its arguments.",
    "process_refund": "Refunds an order.",
    "hang": "Never answers.",
    "crash": "Kills the server process.",
    "garbage": "Answers bytes that are not JSON.",
    "wrong_id": "Answers with another request id.",
    "huge": "Answers ten megabytes.",
    "huge_sse": "Answers over an event stream with one event of ten megabytes.",
    "cut_json": "Promises a long JSON body and hangs up early.",
    "cut_sse": "Starts an event stream and hangs up in the middle of an event.",
    "http500": "Answers HTTP 500.",
    # the server asking the agent's model, shaped to slip past a parser that reads differently
    "sample_u2028": "Asks for sampling with a raw U+2028 in a string, then answers.",
    "sample_escaped": "Asks for sampling with its method key escaped (\\u006dethod), then answers.",
    "sample_batch": "Asks for sampling inside a JSON array, then answers.",
    "sample_blank_lines": "Asks for sampling, ending the event with LF CR LF, then answers.",
    "sample_json": "Answers the call with a sampling request as its JSON body.",
    "leak_listing": "Sends a resources listing for another request id on this call's stream.",
}

SAMPLING = {"jsonrpc": "2.0", "id": "s-1", "method": "sampling/createMessage",
            "params": {"messages": [{"role": "user", "content": {"type": "text", "text": "line\u2028break"}}],
                       "maxTokens": 5}}


def sse(*events: bytes, end: bytes = b"\n\n") -> bytes:
    return b"".join(b"event: message\ndata: " + event + end for event in events)


def tricky_sampling(name: str, request_id: Any) -> tuple[bytes, bytes]:
    """(the SSE body, its content type) of each sampling trick, then the call's own result."""
    plain = json.dumps(SAMPLING, ensure_ascii=False).encode()  # the U+2028 stays raw
    done = result(request_id, text_result("done"))
    if name == "sample_u2028":
        return sse(plain, done), b"text/event-stream"
    if name == "sample_escaped":
        return sse(plain.replace(b'"method"', b'"\\u006dethod"'), done), b"Text/Event-Stream"
    if name == "sample_batch":
        return sse(b"[" + plain + b"]", done), b"text/event-stream"
    if name == "leak_listing":
        leak = result(4242, {"resources": [{"uri": "secret://payroll", "name": "payroll"}]})
        return sse(leak, done), b"text/event-stream"
    return sse(plain, end=b"\n\r\n") + sse(done), b"text/event-stream"  # sample_blank_lines


def tool_definitions() -> list[dict[str, Any]]:
    return [
        {"name": name, "description": text,
         "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}
        for name, text in TOOLS.items()
    ]


class Log:
    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def args_sha256(arguments: Any) -> str:
    try:
        return hashlib.sha256(rfc8785.dumps(arguments)).hexdigest()
    except Exception:
        return ""


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method = lines[0].split(" ", 1)[0]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    body = await reader.readexactly(length) if length else b""
    return method, headers, body


def response_head(status: int, content_type: str, length: int | None, reason: str = "OK") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", f"content-type: {content_type}"]
    if length is not None:
        lines.append(f"content-length: {length}")
    lines.append("connection: keep-alive" if length is not None else "connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def result(request_id: Any, value: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": value}).encode()


def text_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": False}


async def answer(writer: asyncio.StreamWriter, body: bytes, status: int = 200,
                 content_type: str = "application/json") -> None:
    writer.write(response_head(status, content_type, len(body)) + body)
    await writer.drain()


async def tool_call(writer: asyncio.StreamWriter, request_id: Any, name: str, arguments: Any) -> bool:
    """Answer one tools/call; False when the connection must be closed."""
    if name in ("echo", "process_refund"):
        await answer(writer, result(request_id, text_result(json.dumps(arguments, sort_keys=True))))
    elif name == "hang":
        await asyncio.sleep(3600)
    elif name == "crash":
        os._exit(3)
    elif name == "garbage":
        await answer(writer, b"<html>this is not {json")
    elif name == "wrong_id":
        wrong = request_id + 1000 if isinstance(request_id, int) else f"{request_id}-other"
        await answer(writer, result(wrong, text_result("an answer to someone else")))
    elif name == "huge":
        await answer(writer, result(request_id, text_result("x" * TEN_MB)))
    elif name == "huge_sse":
        await answer(writer, sse(result(request_id, text_result("x" * TEN_MB))), 200, "text/event-stream")
    elif name == "cut_json":
        writer.write(response_head(200, "application/json", 100_000) + b'{"jsonrpc": "2.0", "id": ')
        await writer.drain()
        return False
    elif name == "cut_sse":
        writer.write(response_head(200, "text/event-stream", None)
                     + b'event: message\ndata: {"jsonrpc": "2.0", "id": ')
        await writer.drain()
        return False
    elif name == "http500":
        await answer(writer, b"Internal Server Error", 500, "text/plain")
    elif name == "sample_json":
        await answer(writer, json.dumps(SAMPLING, ensure_ascii=False).encode())
    elif name in TOOLS and name.startswith(("sample_", "leak_")):
        body, content_type = tricky_sampling(name, request_id)
        await answer(writer, body, 200, content_type.decode())
    else:
        await answer(writer, json.dumps({"jsonrpc": "2.0", "id": request_id,
                                         "error": {"code": -32602, "message": f"Unknown tool: {name}"}}).encode())
    return True


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: Log) -> None:
    try:
        while True:
            try:
                request = await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if request is None:
                return
            method, headers, body = request
            try:
                message = json.loads(body) if body else {}
            except ValueError:
                message = {}
            params = message.get("params") if isinstance(message, dict) else None
            params = params if isinstance(params, dict) else {}
            rpc = message.get("method") if isinstance(message, dict) else None
            log.write({"http": method, "rpc": rpc, "tool": params.get("name") if rpc == "tools/call" else None,
                       "id": message.get("id") if isinstance(message, dict) else None,
                       "error": (message.get("error") or {}).get("message") if isinstance(message, dict) else None,
                       "args_sha256": args_sha256(params.get("arguments", {})) if rpc == "tools/call" else None,
                       "authorization": headers.get("authorization"), "x_forwarded_for": headers.get("x-forwarded-for")})
            if method != "POST":
                await answer(writer, b"", 405, "text/plain")
                continue
            request_id = message.get("id") if isinstance(message, dict) else None
            if rpc == "initialize":
                version = params.get("protocolVersion", "2025-11-25")
                await answer(writer, result(request_id, {
                    "protocolVersion": version, "capabilities": {"tools": {}},
                    "serverInfo": {"name": "misbehaving", "version": "1"}}))
            elif rpc is None or request_id is None:  # a notification, or a response to its request
                await answer(writer, b"", 202, "text/plain")
            elif rpc == "tools/list":
                await answer(writer, result(request_id, {"tools": tool_definitions()}))
            elif rpc == "ping":
                await answer(writer, result(request_id, {}))
            elif rpc == "tools/call":
                if not await tool_call(writer, request_id, str(params.get("name")), params.get("arguments")):
                    return
            else:
                await answer(writer, json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {
                    "code": -32601, "message": f"Method not found: {rpc}"}}).encode())
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    options = parser.parse_args()
    log = Log(options.log)
    server = await asyncio.start_server(lambda r, w: handle(r, w, log), "127.0.0.1", options.port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
