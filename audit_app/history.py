"""A long sealing history, simulated: what the sealer would have left behind after many passes
(checkpoint rows, pruned by the retention rule, and witness lines, rotated into the archive), so
that the scale bench and the tests can check that a pass costs the same whatever came before.

    python manage.py seal --simulate-history 100000 [--interval 5]

The simulated checkpoints are real: each covers the entries up to its size, its root is computed
from them and it is signed with the current keys, so `audit_verify` checks them like any other.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction

from audit_app import actions, keys, signing, witness
from audit_app.models import AuditEntry, ChainHead, Checkpoint
from audit_app.verify import check_chain

INSERT_BATCH = 1000


@dataclass(frozen=True)
class SimulatedHistory:
    passes: int
    first_size: int
    last_size: int
    checkpoint_rows: int
    pruned_below: int


def simulate(passes: int, *, interval: float = 5.0, now: datetime | None = None) -> SimulatedHistory:
    """Seal the unsealed entries as `passes` passes `interval` seconds apart would have, ending now:
    each pass a checkpoint a little larger than the one before (at most one per entry). Raises
    ValueError when there are no unsealed entries to spread the passes over."""
    now = now or datetime.now(UTC)
    signers = [k.signer for k in keys.signing_keys(now)]
    verifiers, origin = keys.verifiers(), keys.origin()
    log_id = actions._stable_log_id()
    with transaction.atomic():
        actions._lock_sealer()
        base = actions._trusted_base(log_id, verifiers)
        head = ChainHead.objects.filter(pk=1).values_list("size", flat=True).first() or 0
        gap = head - base.size
        if passes < 1 or gap < 1:
            raise ValueError("nothing to simulate: append entries first (each simulated pass seals at least one)")
        count = min(passes, gap)
        rows = ((seq, bytes(data), leaf) for seq, data, leaf in
                AuditEntry.objects.filter(seq__gte=base.size, seq__lt=head).order_by("seq")
                .values_list("seq", "canonical", "leaf_hash").iterator(chunk_size=2000))
        compact, prev, size = base.compact, base.last_leaf, base.size
        pending: list[Checkpoint] = []
        last: witness.Kept | None = None
        for i in range(count):
            target = base.size + gap * (i + 1) // count
            report = check_chain(itertools.islice(rows, target - size), start=size, prev_leaf=prev, compact=compact)
            size, prev = report.size, report.last_leaf
            signed_at = now - timedelta(seconds=interval * (count - 1 - i))
            checkpoint = signing.Checkpoint(origin, size, report.root, (f"time {int(signed_at.timestamp())}",))
            note = signing.sign_note(checkpoint.text(), signers)
            frontier = tuple(compact.hashes)
            pending.append(Checkpoint(size=size, root_hash=report.root.hex(), note=note, signed_at=signed_at,
                                      frontier=[h.hex() for h in frontier], last_leaf_hash=prev.hex()))
            if len(pending) >= INSERT_BATCH:
                Checkpoint.objects.bulk_create(pending)
                pending = []
            if last is not None:
                witness.append(log_id if base.size else actions._stable_log_id(), last)
            last = witness.Kept(size, report.root, note, frontier, prev, 0)
        Checkpoint.objects.bulk_create(pending)
        pruned_below = base.pruned_below
        while (advanced := actions.prune_checkpoints(pruned_below)) != pruned_below:
            pruned_below = advanced
    assert last is not None
    witness.append(log_id if base.size else actions._stable_log_id(),
                   witness.Kept(last.size, last.root, last.note, last.frontier, last.last_leaf, pruned_below))
    while actions.store_new_tiles(size):  # the tiles those passes would have stored
        pass
    return SimulatedHistory(count, base.size + gap // count, size, Checkpoint.objects.count(), pruned_below)
