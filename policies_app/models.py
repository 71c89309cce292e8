"""What an admin manages as policy: upstream servers, agents and their keys, policy versions
and tool pins, and the configuration stamp that every change bumps.

The hot path never reads these per call: `policies_app.snapshots` compiles them into a frozen
in-memory view (`policies_app.core.snapshot.Snapshot`), reloaded when `ConfigStamp` moves.
Servers, agents and keys keep the tables they had when they lived in the gateway app
(migration 0002 moved them by state only).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.db import models
from django.utils import timezone

from policies_app import credentials


class PolicyVersion(models.Model):
    """One applied policy document (`policies` + `velocity_rules`); the highest number is live."""

    number = models.PositiveIntegerField(unique=True)
    document = models.JSONField()
    author = models.CharField(max_length=150)
    # What changed and why, in the author's words (the dashboard asks for it; `apply` says "apply"
    # unless given --message; a rollback names its version).
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    DESCRIPTION_MAX = 2000

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"policy v{self.number}"

    @property
    def text(self) -> str:
        """The document in the configuration file's format."""
        import yaml

        return yaml.safe_dump(dict(self.document), sort_keys=False, allow_unicode=True, width=100)

    @classmethod
    def active(cls) -> PolicyVersion | None:
        return cls.objects.order_by("-number").first()

    @classmethod
    def next_number(cls) -> int:
        latest = cls.objects.order_by("-number").values_list("number", flat=True).first()
        return (latest or 0) + 1


class ToolPin(models.Model):
    """The trusted definition of one upstream tool (trust on first use) and any held change."""

    ADMITTED = "admitted"
    HELD = "held"
    REJECTED = "rejected"

    server = models.CharField(max_length=64)
    tool = models.CharField(max_length=200)
    # The approved definition; empty while a never-admitted tool is held or rejected.
    definition_hash = models.CharField(max_length=64, blank=True)
    definition = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=[(ADMITTED, "admitted"), (HELD, "held"), (REJECTED, "rejected")])
    # What the upstream offers now, while held; the definition an admin refused, while rejected.
    pending_hash = models.CharField(max_length=64, blank=True)
    pending_definition = models.JSONField(default=dict, blank=True)
    held_reason = models.TextField(blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    changed_at = models.DateTimeField(default=timezone.now)
    approved_by = models.CharField(max_length=150, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    rejected_by = models.CharField(max_length=150, blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)
    # The admin's words on the last approval or rejection.
    review_comment = models.TextField(blank=True)
    # A tool that appeared after its server's first catalog: admins see it on every dashboard
    # page until one of them reviews it (approves, keeps or rejects it).
    new_tool_alert = models.BooleanField(default=False)

    class Meta:
        ordering = ["server", "tool"]
        constraints = [models.UniqueConstraint(fields=["server", "tool"], name="unique_tool_pin")]

    def __str__(self) -> str:
        return f"{self.server}/{self.tool} ({self.status})"

    @property
    def offered_definition(self) -> dict[str, Any]:
        return self.pending_definition if self.status == self.HELD else self.definition


class ConfigStamp(models.Model):
    """A single row whose `generation` every configuration change bumps in its transaction.

    Each gateway process polls it (at most every INTENDED_CONFIG_POLL_SECONDS) and rebuilds its
    snapshot when it moved: that is how a change reaches every replica within a second without
    a query per call.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    generation = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "gateway_configstamp"

    def __str__(self) -> str:
        return f"configuration generation {self.generation}"

    @classmethod
    def bump(cls) -> None:
        stamp, _ = cls.objects.select_for_update().get_or_create(id=1)
        stamp.generation += 1
        stamp.changed_at = timezone.now()
        stamp.save(update_fields=["generation", "changed_at"])

    @classmethod
    def current(cls) -> int:
        row = cls.objects.filter(id=1).values_list("generation", flat=True).first()
        return row or 0

    @classmethod
    def identity(cls) -> tuple[int, str]:
        """What a snapshot is built from: the generation and when it moved. The time is part of
        it because a restored or re-created database can repeat a generation number with other
        contents, and a gateway must not keep serving the old configuration then."""
        row = cls.objects.filter(id=1).values_list("generation", "changed_at").first()
        return (row[0], row[1].isoformat()) if row else (0, "")


class Server(models.Model):
    TRANSPORT_HTTP = "http"
    TRANSPORT_STDIO = "stdio"
    NEW_TOOLS_PIN = "pin"
    NEW_TOOLS_HOLD = "hold"

    name = models.SlugField(max_length=64, unique=True, help_text="Agents connect to /mcp/<name>.")
    url = models.URLField(max_length=500, blank=True, help_text="Streamable HTTP endpoint.")
    command = models.JSONField(default=list, blank=True, help_text="stdio: argv to spawn.")
    credential_header = models.CharField(max_length=100, blank=True)
    credential_encrypted = models.TextField(blank=True, editable=False)
    credential_env = models.CharField(max_length=100, blank=True)
    domain_pack = models.CharField(max_length=64, blank=True)
    tool_intents = models.JSONField(default=dict, blank=True)
    resource_intents = models.JSONField(default=dict, blank=True, help_text="URI glob -> intent.")
    prompt_intents = models.JSONField(default=dict, blank=True, help_text="Prompt name -> intent.")
    new_tools = models.CharField(
        max_length=8,
        choices=[(NEW_TOOLS_PIN, "pin on first use"), (NEW_TOOLS_HOLD, "hold until approved")],
        default=NEW_TOOLS_PIN,
    )
    timeout_seconds = models.FloatField(default=30.0)
    connect_timeout_seconds = models.FloatField(default=5.0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        db_table = "gateway_server"

    def __str__(self) -> str:
        return self.name

    @property
    def transport(self) -> str:
        return self.TRANSPORT_STDIO if self.command else self.TRANSPORT_HTTP

    def set_credential(self, value: str) -> None:
        self.credential_encrypted = credentials.encrypt(value) if value else ""

    def credential(self) -> str:
        return credentials.decrypt(self.credential_encrypted) if self.credential_encrypted else ""


class Agent(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    owner = models.CharField(max_length=150, blank=True, help_text="May not approve its calls.")
    roles = models.JSONField(default=list, blank=True)
    # {server name: ["tool", ...] or "*"}; a server absent here is closed to the agent.
    tool_scope = models.JSONField(default=dict, blank=True)
    # {server name: ["customers://*", ...]}: resource URI globs; a server absent here admits none.
    resource_scope = models.JSONField(default=dict, blank=True)
    # {server name: ["prompt", ...] or "*"}; a server absent here admits no prompt.
    prompt_scope = models.JSONField(default=dict, blank=True)
    # The OAuth client id (the access token's client_id or azp) that acts as this agent; at
    # most one agent per client, so a token always names one agent (docs/SECURITY.md).
    oauth_client = models.CharField(max_length=255, blank=True, default="",
                                    help_text="OAuth client id whose access tokens act as this agent.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        db_table = "gateway_agent"
        constraints = [
            models.UniqueConstraint(fields=["oauth_client"], condition=~models.Q(oauth_client=""),
                                    name="agent_oauth_client_unique"),
        ]

    def __str__(self) -> str:
        return self.name


KEY_PREFIX = "int_"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class AgentKey(models.Model):
    """An agent's API key: `int_<prefix>_<secret>`, looked up by prefix, stored hashed."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="keys")
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        db_table = "gateway_agentkey"

    def __str__(self) -> str:
        return f"{KEY_PREFIX}{self.prefix}_…"

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.secret_hash, hash_secret(secret))

    @property
    def active(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
