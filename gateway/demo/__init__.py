"""The demo upstream: a customer-operations MCP server with in-memory data (see docs/DEMO.md)."""
