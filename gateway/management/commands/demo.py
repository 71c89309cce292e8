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

import yaml
from django.conf import settings
from django.core.management import call_command, get_commands
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


def load_without_apply(text: str) -> None:
    """Until the `apply` command exists: servers, agents and reviewers through gateway.actions."""
    from gateway import actions

    config = yaml.safe_load(text)
    for server in config.get("servers", []):
        credential = server.get("credential") or {}
        actions.save_server(
            acting_user=DEMO_ACTOR,
            name=server["name"],
            url=server.get("url", ""),
            command=server.get("command", []),
            credential_header=credential.get("header", ""),
            credential=os.environ.get(credential.get("value_env", ""), credential.get("value")),
            domain_pack=server.get("domain_pack", ""),
            tool_intents=server.get("tools", {}),
        )
    for agent in config.get("agents", []):
        actions.save_agent(acting_user=DEMO_ACTOR, name=agent["name"], owner=agent.get("owner", ""),
                           roles=agent.get("roles", []), tool_scope=agent.get("tools", {}))
    for reviewers in config.get("reviewers", []):
        for user in reviewers["users"]:
            actions.create_user(acting_user=DEMO_ACTOR, username=user, roles=[reviewers["role"]])


def fresh_keys() -> dict[str, str]:
    """One new key per demo agent; the keys an earlier demo run printed stop working."""
    from gateway import actions
    from gateway.models import Agent, AgentKey

    keys = {}
    for name in AGENTS:
        agent = Agent.objects.get(name=name)
        for old in AgentKey.objects.filter(agent=agent, label=KEY_LABEL, revoked_at__isnull=True):
            actions.revoke_key(acting_user=DEMO_ACTOR, key=old)
        _, keys[name] = actions.issue_key(acting_user=DEMO_ACTOR, agent=agent, label=KEY_LABEL)
    return keys


def set_logins() -> dict[str, str]:
    from gateway import actions

    fixed = os.environ.get("INTENDED_DEMO_PASSWORD", "")
    passwords = {}
    for username, roles in LOGINS:
        passwords[username] = fixed or secrets.token_urlsafe(9)
        actions.create_user(acting_user=DEMO_ACTOR, username=username, roles=roles, password=passwords[username])
    return passwords


def banner(base: str, upstream_url: str, keys: dict[str, str], passwords: dict[str, str], applied: bool) -> str:
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
    if not applied:
        lines += ["", "  Note: policies and velocity rules load once `manage.py apply` exists; until then"
                      " only servers, agents and reviewers are set up."]
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
        applied = "apply" in get_commands()
        try:
            if applied:
                call_command("apply", str(config_path), stdout=self.stdout)
            else:
                load_without_apply(config_path.read_text())
        except Exception as exc:
            raise CommandError(f"could not load the demo configuration: {exc}") from exc
        keys = fresh_keys()
        passwords = set_logins()

        from intended.asgi import application

        beat = InProcessBeat()
        app = DemoApplication(application, credential=credential, port=port)
        import uvicorn

        config = uvicorn.Config(app, **uvicorn_options(host=host, port=port, lifespan="on", access_log=False))
        self.stdout.write(banner(base, upstream_url, keys, passwords, applied))
        self.stdout.flush()
        asyncio.run(serve_with_beat(config, beat))
