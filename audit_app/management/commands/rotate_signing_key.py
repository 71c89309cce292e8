from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from audit_app import actions, keys


class Command(BaseCommand):
    help = ("Create a new checkpoint signing key. The current keys keep co-signing for --overlap "
            "seconds (default one day), then retire; every public key stays published.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--overlap", type=int, default=86400, help="seconds both keys sign (default 86400)")

    def handle(self, *args: Any, overlap: int, **options: Any) -> None:
        key = keys.rotate(timedelta(seconds=max(overlap, 0)))
        with transaction.atomic():
            actions.record_admin("audit.signing_key_rotated", actor="cli", target=key.verifier.vkey,
                                 details={"overlap_seconds": overlap})
        self.stdout.write(key.verifier.vkey)
