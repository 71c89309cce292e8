"""Benchmark upstreams: one tool, `echo(text) -> text`, over Streamable HTTP on 127.0.0.1.

    python bench/upstream.py --kind sdk --port 9100    # the Python SDK's MCPServer, stateless, JSON answers
    python bench/upstream.py --kind raw --port 9101    # a bare ASGI app with fixed JSON-RPC answers

`raw` costs the upstream a few tens of microseconds per call, so that what a gateway in front
of it spends shows instead of drowning in the SDK server's own ~1 ms per call.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

import uvicorn

PROTOCOL = "2025-06-18"
SERVER_INFO = {"name": "bench-raw-upstream", "version": "1.0.0"}
ECHO_TOOL = {
    "name": "echo",
    "description": "Return the given text unchanged.",
    "inputSchema": {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    },
}


def sdk_app(path: str, host: str) -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(name="bench-upstream", version="1.0.0", log_level="WARNING")

    # async: a sync tool would run on a worker thread, a cost unrelated to the gateway
    @server.tool(description="Return the given text unchanged.")
    async def echo(text: str) -> str:
        return text

    return server.streamable_http_app(
        streamable_http_path=path, json_response=True, stateless_http=True, host=host
    )


def answer(message: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON-RPC answer of the raw upstream; None for a notification."""
    if "id" not in message:
        return None
    method = message.get("method")
    params = message.get("params") or {}
    if method == "initialize":
        result: dict[str, Any] = {
            "protocolVersion": params.get("protocolVersion", PROTOCOL),
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": SERVER_INFO,
        }
    elif method == "tools/list":
        result = {"tools": [ECHO_TOOL]}
    elif method == "tools/call":
        text = str((params.get("arguments") or {}).get("text", ""))
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": "Method not found"}}
    return {"jsonrpc": "2.0", "id": message["id"], "result": result}


def raw_app(path: str) -> Any:
    json_headers = [(b"content-type", b"application/json")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] != path or scope["method"] != "POST":
            await send({"type": "http.response.start", "status": 405, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        reply = answer(json.loads(body))
        if reply is None:
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": json_headers})
        await send({"type": "http.response.body", "body": json.dumps(reply).encode()})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["sdk", "raw"], default="sdk")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--path", default="/mcp")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    app = sdk_app(args.path, args.host) if args.kind == "sdk" else raw_app(args.path)
    print(f"upstream {args.kind}: http://{args.host}:{args.port}{args.path}", flush=True)
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="warning", access_log=False,
        loop="uvloop", http="httptools", lifespan="on" if args.kind == "sdk" else "off",
    )


if __name__ == "__main__":
    main()
