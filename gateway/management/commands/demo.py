"""`python manage.py demo`: the embedded all-in-one (see docs/DEMO.md).

Migrates the database, applies the customer-ops demo configuration, issues fresh agent keys,
sets demo logins, then serves the gateway, the dashboard and the demo upstream on one port with
the periodic tasks running in-process, and prints what to connect to.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from gateway.demo.app import DEMO_PATH, DemoApplication
from gateway.management.commands.serve import InProcessBeat, serve_with_beat, uvicorn_options

CONFIG_TEMPLATE = Path(__file__).resolve().parents[2] / "demo" / "customer-ops.yaml"
DEMO_ACTOR = "demo"
KEY_LABEL = "demo"
AGENTS = ("lookup-agent", "support-agent", "analytics-agent")
LOGINS = (("admin", ["admin"]), ("carol", ["support-lead"]), ("dave", ["support-lead"]), ("erin", ["auditor"]))


def render_config(upstream_url: str) -> str:
    return CONFIG_TEMPLATE.read_text().replace("${DEMO_UPSTREAM_URL}", upstream_url)


def fresh_keys() -> dict[str, str]:
    """One new key per demo agent; the keys an earlier demo run printed stop working."""
    from policies_app import actions
    from policies_app.models import Agent, AgentKey

    keys = {}
    for name in AGENTS:
        agent = Agent.objects.get(name=name)
        for old in AgentKey.objects.filter(agent=agent, label=KEY_LABEL, revoked_at__isnull=True):
            actions.revoke_key(acting_user=DEMO_ACTOR, key=old)
        _, keys[name] = actions.issue_key(acting_user=DEMO_ACTOR, agent=agent, label=KEY_LABEL)
    return keys


def set_logins() -> dict[str, str]:
    from dashboard import actions as people

    fixed = os.environ.get("INTENDED_DEMO_PASSWORD", "")
    passwords = {}
    for username, roles in LOGINS:
        passwords[username] = fixed or secrets.token_urlsafe(9)
        people.create_user(acting_user=DEMO_ACTOR, username=username, roles=roles, password=passwords[username])
    return passwords


def banner(base: str, upstream_url: str, keys: dict[str, str], passwords: dict[str, str]) -> str:
    gateway_url = f"{base}/mcp/customer-ops"
    lines = [
        "",
        "Intended demo is running.",
        "",
        f"  Dashboard       {base}/",
        f"  Gateway (MCP)   {gateway_url}",
        f"  REST API        {base}/api/   (schema: {base}/api/schema/)",
        f"  Demo upstream   {upstream_url}   (answers only the gateway)",
        "",
        "  Agent keys (send as  Authorization: Bearer <key>):",
        *[f"    {name:<16} {key}" for name, key in keys.items()],
        "",
        "  Logins:",
        *[f"    {user:<6} {password:<16} ({', '.join(roles)})"
          for (user, roles), password in zip(LOGINS, passwords.values(), strict=True)],
        "",
        "  Try it:",
        f"    .venv/bin/python -m gateway.demo.try_it {gateway_url} {keys['support-agent']}",
    ]
    return "\n".join(lines + ["", "Press Ctrl-C to stop.", ""])


class Command(BaseCommand):
    help = "Run the embedded all-in-one demo: gateway, dashboard, demo upstream and workers on one port."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        local = "127.0.0.1" if host in ("0.0.0.0", "::", "127.0.0.1") else host
        base = f"http://{local}:{port}"
        upstream_url = f"http://127.0.0.1:{port}{DEMO_PATH}"

        call_command("migrate", interactive=False, verbosity=0)
        credential = f"Bearer {secrets.token_urlsafe(24)}"
        os.environ["CUSTOMER_OPS_TOKEN"] = credential
        config_path = Path(settings.DATA_DIR) / "demo-customer-ops.yaml"
        config_path.write_text(render_config(upstream_url))
        try:
            call_command("apply", str(config_path), stdout=self.stdout)
        except Exception as exc:
            raise CommandError(f"could not load the demo configuration: {exc}") from exc
        keys = fresh_keys()
        passwords = set_logins()

        from gateway.lifespan import close_process_resources
        from intended.asgi import application

        beat = InProcessBeat()
        app = DemoApplication(application, credential=credential, port=port, on_shutdown=close_process_resources)
        import uvicorn

        config = uvicorn.Config(app, **uvicorn_options(host=host, port=port, lifespan="on", access_log=False))
        self.stdout.write(banner(base, upstream_url, keys, passwords))
        self.stdout.flush()
        asyncio.run(serve_with_beat(config, beat))
