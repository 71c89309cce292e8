"""Approvals: an escalated tools/call waiting for reviewers, bound to exactly that call.

An approval binds the agent, the MCP session, the server, the tool, the pinned definition hash,
the SHA-256 of the canonical arguments and the policy version, so that a decision can release
only that call, and only once (`consumed_at`). Every change of status is a conditional UPDATE
on `status='pending'` (see `approvals_app.actions`): exactly one outcome wins a race.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

PENDING = "pending"
APPROVED = "approved"
DENIED = "denied"
EXPIRED = "expired"

SINGLE = "single"
QUORUM = "quorum"


class Approval(models.Model):
    STATUS_CHOICES = [(PENDING, "pending"), (APPROVED, "approved"), (DENIED, "denied"), (EXPIRED, "expired")]
    TYPE_CHOICES = [(SINGLE, "single"), (QUORUM, "quorum")]

    call_id = models.CharField(max_length=64, db_index=True)
    agent = models.CharField(max_length=64)
    agent_owner = models.CharField(max_length=150, blank=True)
    requester = models.CharField(max_length=150, blank=True)
    session_id = models.CharField(max_length=200, blank=True)
    server = models.CharField(max_length=64)
    tool = models.CharField(max_length=200, blank=True)  # the tool of a tools/call, else empty
    operation = models.CharField(max_length=64, default="tools/call")  # the governed JSON-RPC method
    subject = models.CharField(max_length=500, blank=True)  # what it names: tool, URI, prompt
    intent = models.CharField(max_length=200, blank=True)
    tool_hash = models.CharField(max_length=64, blank=True)
    args_sha256 = models.CharField(max_length=64)
    policy_version = models.BigIntegerField(default=0)
    arguments = models.JSONField(default=dict)
    risk = models.JSONField(default=dict)
    rules = models.JSONField(default=list)
    reason = models.TextField(blank=True)
    # What the reviewer sees first (the domain pack's `review:`): {"fields": [{name, label,
    # value, text}], "records": {field: {uri, shown, sha256} | {uri, error}}}, fixed when held.
    review = models.JSONField(default=dict, blank=True)

    type = models.CharField(max_length=8, choices=TYPE_CHOICES, default=SINGLE)
    required = models.PositiveSmallIntegerField(default=1)
    reviewers = models.JSONField(default=list)  # ["role:support-lead", "user:carol", ...]

    status = models.CharField(max_length=8, choices=STATUS_CHOICES, default=PENDING)
    requested_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=150, blank=True)
    comment = models.TextField(blank=True)
    consumed_at = models.DateTimeField(null=True, blank=True)
    consumed_by_call = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["agent", "server", "tool", "args_sha256"]),
        ]
        constraints = [
            # Identical calls held at once share one pending approval, whichever process asks.
            models.UniqueConstraint(
                fields=["agent", "server", "operation", "subject", "tool", "args_sha256", "tool_hash",
                        "policy_version"],
                condition=models.Q(status=PENDING), name="one_pending_approval_per_operation",
            ),
        ]

    def __str__(self) -> str:
        return f"approval {self.pk} {self.agent} {self.server}/{self.tool} {self.status}"

    @property
    def what(self) -> str:
        """What the held call asks for, for people: the tool, or the operation and its subject."""
        return self.tool or f"{self.subject} ({self.operation})"

    @property
    def rule(self) -> str:
        return ", ".join(self.rules)

    @property
    def review_items(self) -> list[dict]:
        """The pack's review fields with the record read for each, ready to show: [{name, label,
        value, text, record: {..} | None, record_name, record_details, record_error, record_uri}]."""
        review = self.review if isinstance(self.review, dict) else {}
        records = review.get("records") or {}
        items = []
        for f in review.get("fields") or []:
            record = records.get(f.get("name")) or {}
            shown = record.get("shown") or {}
            items.append({**f, "record": shown or None, "record_name": shown.get("name", ""),
                          "record_details": {k: v for k, v in shown.items() if k != "name"},
                          "record_error": record.get("error", ""), "record_uri": record.get("uri", "")})
        return items

    @property
    def group_name(self) -> str:
        return f"approval-{self.pk}"

    def is_open(self, now=None) -> bool:
        return self.status == PENDING and self.expires_at > (now or timezone.now())


class ApprovalVote(models.Model):
    """One reviewer's decision; a quorum needs `required` distinct approving reviewers."""

    APPROVE = "approve"
    DENY = "deny"

    approval = models.ForeignKey(Approval, on_delete=models.CASCADE, related_name="votes")
    reviewer = models.CharField(max_length=150)
    vote = models.CharField(max_length=8, choices=[(APPROVE, "approve"), (DENY, "deny")])
    comment = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["approval", "reviewer"], name="one_vote_per_reviewer"),
        ]

    def __str__(self) -> str:
        return f"{self.reviewer}: {self.vote} approval {self.approval_id}"


class Notification(models.Model):
    """A notification sent (or being sent) for an approval: the unique key makes each one once."""

    EMAIL = "email"
    WEBHOOK = "webhook"
    REQUESTED = "requested"
    REMINDER = "reminder"

    approval = models.ForeignKey(Approval, on_delete=models.CASCADE, related_name="notifications")
    channel = models.CharField(max_length=16)
    kind = models.CharField(max_length=16)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["approval", "channel", "kind"], name="one_notification_each"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.kind} for approval {self.approval_id}"
