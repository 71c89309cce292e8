"""The demo's customer-ops MCP server over Streamable HTTP, writing every refund it makes to a
JSON Lines file, so a test can prove a refund reached it exactly once (or never).

  python tests/approvals_app/refund_upstream.py --port 9000 --log refunds.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import uvicorn

from gateway.demo.app import upstream_app
from gateway.demo.customer_ops import CustomerBook, build_server


class RefundLog(list):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def append(self, refund: Any) -> None:
        super().append(refund)
        with self.path.open("a") as out:
            out.write(json.dumps(refund) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    book = CustomerBook()
    book.refunds = RefundLog(args.log)
    uvicorn.run(upstream_app(build_server(book), args.port), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
