"""An upstream that hands every client the same `Mcp-Session-Id` (a broken or hostile server):
the gateway must not let that move a session from the agent that holds it to another one.

    python tests/gateway/one_session_upstream.py --port 9000
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import uvicorn

SESSION = "one-session-for-everyone"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    request = json.loads(body) if body else {}
    result: dict[str, Any] = {}
    if request.get("method") == "initialize":
        result = {"protocolVersion": request["params"]["protocolVersion"], "capabilities": {},
                  "serverInfo": {"name": "one-session", "version": "1"}}
    answer = json.dumps({"jsonrpc": "2.0", "id": request.get("id"), "result": result}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"mcp-session-id", SESSION.encode()),
        (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
