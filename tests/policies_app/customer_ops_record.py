"""The demo's customer-ops MCP server (gateway/demo/customer_ops.py, the official Python SDK's
MCPServer) over Streamable HTTP, appending every email it sends and every refund it makes to a
JSON Lines file, with the values its tools executed: the upstream's own record.

  python tests/policies_app/customer_ops_record.py --port 9000 --log record.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import uvicorn

from gateway.demo.app import upstream_app
from gateway.demo.customer_ops import CustomerBook, build_server


class Record(list):
    def __init__(self, path: Path, kind: str) -> None:
        super().__init__()
        self.path = path
        self.kind = kind

    def append(self, item: Any) -> None:
        super().append(item)
        with self.path.open("a") as out:
            out.write(json.dumps({"kind": self.kind, **item}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    book = CustomerBook()
    book.outbox = Record(args.log, "email")
    book.refunds = Record(args.log, "refund")
    uvicorn.run(upstream_app(build_server(book), args.port), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
