"""The demo's customer-ops MCP server over Streamable HTTP, for the browser tests.

  python tests/dashboard/customer_ops_http.py --port 9000
"""

from __future__ import annotations

import argparse

import uvicorn

from gateway.demo.app import upstream_app
from gateway.demo.customer_ops import build_server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    uvicorn.run(upstream_app(build_server(), port), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
