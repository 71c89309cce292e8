from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit_app import actions, history
from audit_app.verify import IntegrityFailure


class Command(BaseCommand):
    help = ("One sealing pass: extend the Merkle tree over new audit entries and sign a checkpoint. "
            "With --simulate-history N, seal the unsealed entries as N past passes would have (for the scale bench).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--simulate-history", type=int, metavar="N",
                            help="spread the unsealed entries over N simulated past passes (checkpoint rows, "
                                 "witness lines, retention) instead of one pass")
        parser.add_argument("--interval", type=float, default=5.0,
                            help="seconds between the simulated passes (default 5)")

    def handle(self, *args: Any, simulate_history: int | None, interval: float, **options: Any) -> None:
        if simulate_history is not None:
            try:
                simulated = history.simulate(simulate_history, interval=interval)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            except IntegrityFailure as failure:
                raise CommandError(f"the chain is broken, not simulating over it: {failure}") from None
            self.stdout.write(f"simulated {simulated.passes} seal passes (sizes {simulated.first_size}.."
                              f"{simulated.last_size}); {simulated.checkpoint_rows} checkpoint rows kept")
            return
        started = time.perf_counter()
        try:
            result = actions.seal()
        except actions.SealRefused as refused:
            self.stderr.write(f"seal refused: {refused.failure}")
            raise SystemExit(1) from None
        elapsed = time.perf_counter() - started
        self.stdout.write(f"sealed {result.size} entries ({result.new_entries} new), root {result.root_hash}")
        self.stdout.write(result.note, ending="")
        self.stderr.write(f"seal pass: {elapsed * 1000:.1f} ms")
