"""`python manage.py demo`: the embedded all-in-one (see docs/DEMO.md).

Migrates the database, applies the customer-ops demo configuration, issues fresh agent keys,
sets demo logins (with e-mail addresses), points e-mail at files and the webhook at its own
receiver (docs/DEMO.md, "Where reviewers are told"), then serves the gateway, the dashboard and the demo upstream on one port with
the periodic tasks running in-process, and prints what to connect to.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from gateway.demo.app import DEMO_PATH, DemoApplication
from gateway.demo.webhook_receiver import WEBHOOK_PATH, WebhookReceiver
from gateway.management.commands.serve import InProcessBeat, serve_with_beat, uvicorn_options

CONFIG_TEMPLATE = Path(__file__).resolve().parents[2] / "demo" / "customer-ops.yaml"
DEMO_ACTOR = "demo"
KEY_LABEL = "demo"
AGENTS = ("lookup-agent", "support-agent", "analytics-agent")
LOGINS = (("admin", ["admin"]), ("carol", ["support-lead"]), ("dave", ["support-lead"]), ("erin", ["auditor"]))
# example.com is reserved (RFC 2606): nothing the demo writes can reach a real mailbox.
EMAIL_DOMAIN = "example.com"


@dataclass(frozen=True)
class Notifications:
    """Where the demo's reviewers and admins are told: mail files and the webhook's log."""

    mail_dir: Path | None  # None: EMAIL_BACKEND was set by the user and is left alone
    webhook_url: str
    webhook_log: Path | None  # None: INTENDED_WEBHOOK_URL was set by the user


def configure_notifications(base: str) -> tuple[Notifications, str]:
    """Point this process's e-mail at files under <data dir>/demo/mail and its webhook at the
    demo's own receiver, unless the environment chose otherwise; returns them and the
    receiver's secret ("" when the receiver is not used)."""
    demo_dir = Path(settings.DATA_DIR) / "demo"
    mail_dir = None
    if "EMAIL_BACKEND" not in os.environ:
        mail_dir = Path(os.environ.get("EMAIL_FILE_PATH") or demo_dir / "mail")
        settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
        settings.EMAIL_FILE_PATH = str(mail_dir)
    if not settings.INTENDED_PUBLIC_URL:
        settings.INTENDED_PUBLIC_URL = base  # the links in notifications
    if settings.INTENDED_WEBHOOK_URL:
        return Notifications(mail_dir, settings.INTENDED_WEBHOOK_URL, None), ""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    settings.INTENDED_WEBHOOK_URL, settings.INTENDED_WEBHOOK_SECRET = f"{base}{WEBHOOK_PATH}", secret
    return Notifications(mail_dir, settings.INTENDED_WEBHOOK_URL, demo_dir / "webhooks.jsonl"), secret


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
        people.create_user(acting_user=DEMO_ACTOR, username=username, roles=roles, password=passwords[username],
                           email=f"{username}@{EMAIL_DOMAIN}")
    return passwords


def banner(base: str, upstream_url: str, keys: dict[str, str], passwords: dict[str, str],
           told: Notifications) -> str:
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
        "  Reviewers (carol, dave) and the admin are told of held calls and new tools by:",
        f"    e-mail          {told.mail_dir or 'EMAIL_BACKEND from the environment'}"
        + ("   (one .log file per message)" if told.mail_dir else ""),
        f"    webhook         {told.webhook_url}"
        + (f"   (received: {told.webhook_log})" if told.webhook_log else ""),
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
        told, webhook_secret = configure_notifications(base)

        from gateway.lifespan import close_process_resources
        from intended.asgi import application

        beat = InProcessBeat()
        receiver = WebhookReceiver(told.webhook_log, webhook_secret) if told.webhook_log else None
        app = DemoApplication(application, credential=credential, port=port, webhook_receiver=receiver,
                              on_shutdown=close_process_resources)
        import uvicorn

        config = uvicorn.Config(app, **uvicorn_options(host=host, port=port, lifespan="on", access_log=False))
        self.stdout.write(banner(base, upstream_url, keys, passwords, told))
        self.stdout.flush()
        asyncio.run(serve_with_beat(config, beat))
