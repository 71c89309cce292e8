"""Policy versions and tool pins.

The hot path never reads these per call: `rules.load_policy_index()` compiles the active
version and `pinning.load_pins()` reads the pins into the frozen gateway snapshot.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone


class PolicyVersion(models.Model):
    """One applied policy document (`policies` + `velocity_rules`); the highest number is live."""

    number = models.PositiveIntegerField(unique=True)
    document = models.JSONField()
    author = models.CharField(max_length=150)
    comment = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

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

    server = models.CharField(max_length=64)
    tool = models.CharField(max_length=200)
    # The approved definition; empty while a never-admitted tool is held.
    definition_hash = models.CharField(max_length=64, blank=True)
    definition = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=[(ADMITTED, "admitted"), (HELD, "held")])
    # What the upstream offers now, while held.
    pending_hash = models.CharField(max_length=64, blank=True)
    pending_definition = models.JSONField(default=dict, blank=True)
    held_reason = models.TextField(blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    changed_at = models.DateTimeField(default=timezone.now)
    approved_by = models.CharField(max_length=150, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["server", "tool"]
        constraints = [models.UniqueConstraint(fields=["server", "tool"], name="unique_tool_pin")]

    def __str__(self) -> str:
        return f"{self.server}/{self.tool} ({self.status})"

    @property
    def offered_definition(self) -> dict[str, Any]:
        return self.pending_definition if self.status == self.HELD else self.definition
