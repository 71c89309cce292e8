"""Connect to the demo gateway with the official Python SDK client, list the tools the agent may
see, and look a customer up.

  python -m gateway.demo.try_it http://127.0.0.1:8000/mcp/customer-ops <agent key> [--mode legacy]
"""

from __future__ import annotations

import argparse
import json

import anyio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url: str, key: str, mode: str) -> None:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:  # type: ignore[arg-type]
        print(f"connected: protocol {client.protocol_version}")
        tools = (await client.list_tools()).tools
        print("tools:", ", ".join(tool.name for tool in tools))
        result = await client.call_tool("get_customer", {"customer_id": "cus_1001"})
        print("get_customer cus_1001:", json.dumps(result.structured_content or result.model_dump(mode="json")))


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("--mode", default="auto", choices=["auto", "legacy"])
    args = parser.parse_args()
    try:
        anyio.run(main, args.url, args.key, args.mode)
    except BaseException as exc:  # the SDK wraps failures in exception groups; show the cause
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise SystemExit(f"failed: {type(exc).__name__}: {exc}") from None


if __name__ == "__main__":
    run()
