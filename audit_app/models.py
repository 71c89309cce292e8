"""The audit trail: an append-only hash chain of canonical entries, sealed by signed checkpoints.

The entry's `canonical` bytes are the record; the other columns are copies kept for querying
and are never trusted by verification.
"""

from __future__ import annotations

from django.db import models


class AuditEntry(models.Model):
    seq = models.BigIntegerField(unique=True)  # the leaf index in the Merkle tree, from 0
    time = models.DateTimeField()  # never earlier than the previous entry's (ChainHead.last_time)
    kind = models.CharField(max_length=16)
    call_id = models.CharField(max_length=32, blank=True, db_index=True)
    agent = models.CharField(max_length=64, blank=True)
    server = models.CharField(max_length=64, blank=True)
    tool = models.CharField(max_length=200, blank=True)
    intent = models.CharField(max_length=200, blank=True)
    decision = models.CharField(max_length=16, blank=True)
    operation = models.CharField(max_length=64, blank=True)  # the governed JSON-RPC method
    subject = models.CharField(max_length=500, blank=True)  # what it names: tool, URI, prompt
    user = models.CharField(max_length=150, blank=True)  # the person an OAuth token acts for
    canonical = models.BinaryField()
    leaf_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]
        # Every search returns entries in seq order, and a time range becomes a seq range
        # (queries.search; times never go backwards along the chain), so each filter's index
        # ends in seq: an equality filter plus a time range is one index range already in order.
        # The glob columns (intent, subject) use the pattern operator class on PostgreSQL, so a
        # `LIKE 'prefix%'` is an index range under any database collation, not only "C"
        # (other backends ignore opclasses). `decision` has no index of its own: three values,
        # each common, so a walk of the seq range finds a page of them sooner than an index would
        # (and every index costs each append).
        indexes = [
            models.Index(fields=["time", "seq"], name="audit_time_seq"),
            models.Index(fields=["agent", "seq"], name="audit_agent_seq"),
            models.Index(fields=["intent", "seq"], name="audit_intent_seq",
                         opclasses=["varchar_pattern_ops", "int8_ops"]),
            models.Index(fields=["subject", "seq"], name="audit_subject_seq",
                         opclasses=["varchar_pattern_ops", "int8_ops"]),
            models.Index(fields=["server", "tool", "seq"], name="audit_server_tool_seq"),
            models.Index(fields=["operation", "seq"], name="audit_operation_seq"),
            models.Index(fields=["kind", "seq"], name="audit_kind_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind} {self.agent} {self.intent}"


class ChainHead(models.Model):
    """The one row every append locks: the size of the chain and the hash of its last entry."""

    size = models.BigIntegerField(default=0)
    last_leaf_hash = models.CharField(max_length=64, blank=True)
    # The time of the last entry: the next one is never stamped earlier, even when clocks
    # disagree between processes or step back, so a time range is a seq range.
    last_time = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"chain head at {self.size}"


class Checkpoint(models.Model):
    """A signed tree head. `frontier` (the compact range) lets the next seal extend the tree
    without reading old entries; it is checked against the signed root before use."""

    size = models.BigIntegerField(unique=True)
    root_hash = models.CharField(max_length=64)
    note = models.TextField()
    signed_at = models.DateTimeField()
    frontier = models.JSONField(default=list)
    last_leaf_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["size"]

    def __str__(self) -> str:
        return f"checkpoint {self.size} {self.root_hash[:12]}"


class AuditTile(models.Model):
    """The root of a full tile of the sealed tree (audit_app.chain.TILE_SIZE entries from
    index * TILE_SIZE), written by the sealer: what an inclusion proof reads instead of every
    leaf. A cache of the entries' leaf hashes, trusted for nothing: each proof is checked
    against the signed root before it is shown or served."""

    index = models.BigIntegerField(primary_key=True)
    root_hash = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"tile {self.index} {self.root_hash[:12]}"


class ChainAlert(models.Model):
    """A detected break in the chain: the sealer refuses to sign until an operator acts."""

    raised_at = models.DateTimeField(auto_now_add=True)
    message = models.TextField()
    first_bad_seq = models.BigIntegerField(null=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-raised_at"]

    def __str__(self) -> str:
        return self.message
