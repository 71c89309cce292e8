from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit_app import keys, signing
from audit_app.actions import expectations_from_store, raise_alert
from audit_app.queries import _stored_rows
from audit_app.verify import EXIT_INTEGRITY, EXIT_USAGE, Expectation, IntegrityFailure, check_chain


class Command(BaseCommand):
    help = ("Verify the stored audit chain: every entry's hash and link, and the Merkle root at every retained "
            "checkpoint, the latest one's signature and the sealer's witness file. "
            "Exit 0 valid, 1 integrity failure (naming the first bad seq), 2 usage.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--previous-checkpoint", action="append", default=[], metavar="NOTE",
                            help="a signed checkpoint kept elsewhere, to detect truncation, rollback or a fork")
        parser.add_argument("--archive", action="store_true",
                            help="also check every checkpoint in the archived witness files (each signature)")

    def handle(self, *args: Any, previous_checkpoint: list[str], archive: bool, **options: Any) -> None:
        kept: list[Expectation] = []
        for path in previous_checkpoint:
            try:
                checkpoint, _ = signing.open_checkpoint(Path(path).read_text(), keys.verifiers(), origin=keys.origin())
            except (OSError, ValueError) as exc:
                self.stderr.write(f"audit_verify: cannot use {path}: {exc}")
                raise SystemExit(EXIT_USAGE) from None
            kept.append(Expectation(checkpoint.size, checkpoint.root_hash, "checkpoint you kept", kept=True))
        try:
            report = check_chain(_stored_rows(), [*expectations_from_store(archive=archive), *kept])
        except IntegrityFailure as failure:
            raise_alert(str(failure), failure.seq)
            self.stdout.write(str(failure))
            raise SystemExit(EXIT_INTEGRITY) from None
        self.stdout.write(f"VALID: {report.size} entries, root {report.root.hex()}, "
                          f"{len(report.checked)} checkpoint(s) reproduced")
