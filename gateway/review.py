"""Records a reviewer needs beside a held call, read from the server when the approval is
created: the domain pack's `review:` names them (a refund's customer, read as
`customers://<id>`).

The reads go over the gateway's own short-lived connection with the server's credential, not
through the agent's session, and never decide anything: a record that cannot be read within
READ_TIMEOUT_SECONDS is shown to the reviewer as unavailable, with the reason. At most
READS_PER_SERVER run at once per server in this process, so holds cannot be turned into a
flood of reads. What was read is named in the approval's audit entry with the SHA-256 of the
answer (`approvals_app.actions.records_read`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from audit_app.chain import canonical_sha256
from gateway.catalog import read_resource
from gateway.upstream import upstream_for
from policies_app.core import packs
from policies_app.core.context import CallContext

log = logging.getLogger("intended.gateway")

READ_TIMEOUT_SECONDS = 3.0
READS_PER_SERVER = 4
_limits: dict[str, asyncio.Semaphore] = {}


async def read_records(ctx: CallContext) -> None:
    """Fill ctx.review_records: field name -> {uri, shown, sha256} or {uri, error}. Never raises."""
    try:
        arguments = packs.redact(ctx.server.domain_pack, ctx.intent, ctx.arguments)
        reads = packs.review_records(ctx.server.domain_pack, ctx.intent, arguments, ctx.attributes)
    except Exception:  # a record is context for a person, never a reason to refuse the hold
        log.exception("could not tell which records to read for call %s", ctx.call_id)
        return
    if reads:
        found = await asyncio.gather(*(_read(ctx, uri, show) for _, uri, show in reads))
        ctx.review_records = {name: record for (name, _, _), record in zip(reads, found, strict=True)}


async def _read(ctx: CallContext, uri: str, show: tuple[str, ...]) -> dict[str, Any]:
    limit = _limits.setdefault(ctx.server.name, asyncio.Semaphore(READS_PER_SERVER))
    try:
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            async with limit:
                result = await read_resource(upstream_for(ctx.server), ctx.era, uri)
    except Exception as exc:  # the reviewer sees why; the call is held all the same
        reason = "no answer in time" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        log.warning("could not read %s for the reviewer of call %s: %s", uri, ctx.call_id, reason)
        return {"uri": uri, "error": reason[:200]}
    try:
        digest = canonical_sha256(result)  # RFC 8785, as an auditor would compute it
    except Exception:  # e.g. NaN, which JSON parsing admits and canonical JSON refuses
        return {"uri": uri, "error": "the answer is not canonical JSON"}
    shown = packs.record_view(result, uri, show)
    if shown is None:
        return {"uri": uri, "error": "the answer is not a JSON record of this URI", "sha256": digest}
    return {"uri": uri, "shown": shown, "sha256": digest}
