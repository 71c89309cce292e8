"""What policies_app announces to the apps above it, which it does not import: they connect
their receivers in their AppConfig.ready (approvals_app sends the notifications)."""

from __future__ import annotations

from django.dispatch import Signal

# A server listed a tool it had never listed before, after its first catalog; sent once the pin
# is committed. Keyword arguments: server, tool, status ("admitted" or "held"), reason (why held).
new_tool = Signal()
