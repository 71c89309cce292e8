"""The decision core runs with no Django at all: its stages, on a snapshot built by hand, with
in-process counters and snapshot pins as its ports (a fresh interpreter, so nothing else has
configured Django first)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import ROOT

SCRIPT = r'''
import asyncio, sys
from policies_app.core.context import AgentView, CallContext, ServerView
from policies_app.core.pinning import PinView
from policies_app.core.ports import Ports, snapshot_pin
from policies_app.core.rules import compile
from policies_app.core.snapshot import Snapshot
from policies_app.core.stages import UnknownSubject, decide
from policies_app.core.velocity import InProcessCounters

server = ServerView(id=1, name="ops", url="", command=(), credential_header="", credential="", domain_pack="",
                    tool_intents={}, new_tools="pin", timeout=30.0, connect_timeout=5.0,
                    resource_intents={"customers://*": "data.customer.read"})
agent = AgentView(id=1, name="reader", owner="", roles=frozenset(), tool_scope={"ops": frozenset({"lookup"})},
                  resource_scope={"ops": ("customers://*",)})
policy = compile({"policies": [{"intent": "data.customer.read", "decision": "allow"}],
                  "velocity_rules": [{"agent": "reader", "intent": "data.customer.read", "window": "60s",
                                      "max_calls": 2, "exceeded_action": "deny", "reason": "slow down"}]})
snap = Snapshot(generation=(1, ""), agents={"reader": agent}, keys={}, servers={"ops": server}, policy=policy,
                pins={("ops", "lookup"): PinView("ops", "lookup", "admitted", "h")})
ports = Ports(counters=InProcessCounters(), pins=snapshot_pin)

async def main():
    out = []
    for uri in ("customers://1", "customers://2", "customers://3"):
        ctx = CallContext(agent=agent, server=server, subject=uri, arguments={}, args_sha256="",
                          operation="resources/read")
        await decide(ctx, snap, ports)
        out.append((ctx.intent, ctx.decision, ctx.reason))
    try:
        await decide(CallContext(agent=agent, server=server, subject="orders://1", arguments={}, args_sha256="",
                                 operation="resources/read"), snap, ports)
        out.append("decided")
    except UnknownSubject:
        out.append("unknown")
    return out

print(asyncio.run(main()))
print(sorted(m for m in sys.modules if m == "django" or m.startswith(("django.", "channels", "gateway"))))
'''


def test_it_decides_without_django() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    decisions, modules = done.stdout.strip().splitlines()
    assert decisions == str([
        ("data.customer.read", "allow", "Allowed by allow:data.customer.read#d62ea6"),
        ("data.customer.read", "allow", "Allowed by allow:data.customer.read#d62ea6"),
        ("data.customer.read", "deny", "slow down"),
        "unknown",
    ])
    assert modules == "[]"  # no Django, no Channels, no transport
