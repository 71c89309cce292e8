"""The customer-operations MCP server the demo puts behind the gateway: six tools, the resource
template `customers://{customer_id}` (a customer record as JSON) and the prompts
`refund_letter(customer_id, amount)` and `refund_review(customer_id)`.

In-memory data, so every process (or stdio child) starts from the same few customers. Run it
over stdio with `python -m gateway.demo.customer_ops`, or mount `http_app()` in an ASGI app
(`python manage.py demo` serves it at /_demo/customer-ops/mcp).
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, ToolAnnotations

SEED_CUSTOMERS: dict[str, dict[str, Any]] = {
    "cus_1001": {
        "id": "cus_1001",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": "+44 20 7946 0001",
        "plan": "enterprise",
        "balance": 1250.00,
        "status": "active",
    },
    "cus_1002": {
        "id": "cus_1002",
        "name": "Grace Hopper",
        "email": "grace@example.com",
        "phone": "+1 202 555 0102",
        "plan": "pro",
        "balance": 89.90,
        "status": "active",
    },
    "cus_1003": {
        "id": "cus_1003",
        "name": "Alan Turing",
        "email": "alan@example.com",
        "phone": "+44 161 496 0003",
        "plan": "starter",
        "balance": 0.0,
        "status": "past_due",
    },
}

UPDATABLE_FIELDS = ("name", "email", "phone", "plan", "status")


class CustomerBook:
    """The server's state: customers, refunds and sent mail, kept in memory."""

    def __init__(self) -> None:
        self.customers = copy.deepcopy(SEED_CUSTOMERS)
        self.refunds: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def customer(self, customer_id: str) -> dict[str, Any]:
        try:
            return self.customers[customer_id]
        except KeyError:
            raise ToolError(f"No customer {customer_id!r}") from None

    def next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):04d}"


def build_server(book: CustomerBook | None = None) -> MCPServer:
    book = book or CustomerBook()
    server = MCPServer(
        "customer-ops",
        version="1.0.0",
        instructions="Customer operations for a SaaS business: look up and update customers, "
        "refund payments and email customers.",
    )

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def search_customers(query: str) -> list[dict[str, Any]]:
        """Find customers whose name or email contains the query (case-insensitive)."""
        needle = query.lower()
        return [
            {"id": c["id"], "name": c["name"], "email": c["email"]}
            for c in book.customers.values()
            if needle in c["name"].lower() or needle in c["email"].lower()
        ]

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def get_customer(customer_id: str) -> dict[str, Any]:
        """Get a customer's account: contact details, plan, balance and status."""
        return dict(book.customer(customer_id))

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    def update_customer(
        customer_id: str,
        name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        plan: str | None = None,
        status: str | None = None,
    ) -> dict[str, Any]:
        """Update a customer's account fields; fields left out are unchanged."""
        customer = book.customer(customer_id)
        changes = {"name": name, "email": email, "phone": phone, "plan": plan, "status": status}
        customer.update({k: v for k, v in changes.items() if v is not None})
        return dict(customer)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    def process_refund(customer_id: str, amount: float, reason: str, currency: str = "USD") -> dict[str, Any]:
        """Refund an amount to a customer's original payment method."""
        customer = book.customer(customer_id)
        if amount <= 0:
            raise ToolError("amount must be positive")
        refund = {
            "refund_id": book.next_id("re"),
            "customer_id": customer_id,
            "amount": round(amount, 2),
            "currency": currency,
            "reason": reason,
            "status": "succeeded",
        }
        customer["balance"] = round(customer["balance"] + amount, 2)
        book.refunds.append(refund)
        return refund

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True))
    def send_email(
        to: list[str], subject: str, body: str, cc: list[str] | None = None, bcc: list[str] | None = None
    ) -> dict[str, Any]:
        """Send an email to customers (to, cc and bcc are lists of addresses)."""
        message = {
            "message_id": book.next_id("msg"),
            "to": list(to),
            "cc": list(cc or []),
            "bcc": list(bcc or []),
            "subject": subject,
            "status": "queued",
        }
        book.outbox.append(message | {"body": body})
        return message

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
    def delete_customer(customer_id: str) -> dict[str, Any]:
        """Permanently delete a customer and their data."""
        customer = book.customer(customer_id)
        del book.customers[customer_id]
        return {"deleted": customer["id"], "name": customer["name"]}

    @server.resource("customers://{customer_id}", mime_type="application/json")
    def customer_record(customer_id: str) -> str:
        """A customer's account as JSON: contact details, plan, balance and status."""
        customer = book.customers.get(customer_id)
        if customer is None:
            raise ResourceNotFoundError(f"No customer {customer_id!r}")
        return json.dumps(customer, indent=2)

    @server.prompt()
    def refund_letter(customer_id: str, amount: str) -> list[Message]:
        """Draft a letter telling a customer that a refund is on its way."""
        customer = book.customers.get(customer_id)
        if customer is None:
            raise MCPError(INVALID_PARAMS, f"No customer {customer_id!r}")
        return [UserMessage(
            f"Draft a short, friendly letter to {customer['name']} <{customer['email']}> confirming a refund "
            f"of {amount} to their original payment method. Their plan is {customer['plan']}. "
            "Do not promise anything else; a person reviews the letter before it is sent."
        )]

    @server.prompt()
    def refund_review(customer_id: str) -> str:
        """Ask the model to review a customer's refund history before refunding."""
        return f"Review the account of customer {customer_id} and say whether a refund is justified."

    return server


def main() -> None:
    build_server().run("stdio")


if __name__ == "__main__":
    main()
