from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audit_app import actions


class Command(BaseCommand):
    help = "One sealing pass: extend the Merkle tree over new audit entries and sign a checkpoint."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = actions.seal()
        except actions.SealRefused as refused:
            self.stderr.write(f"seal refused: {refused.failure}")
            raise SystemExit(1) from None
        self.stdout.write(f"sealed {result.size} entries ({result.new_entries} new), root {result.root_hash}")
        self.stdout.write(result.note, ending="")
