from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from policies_app.simulation import SimulationError, simulate


class Command(BaseCommand):
    help = "What would happen if an agent called a tool with these arguments (nothing is called or counted)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--agent", required=True)
        parser.add_argument("--server", required=True)
        parser.add_argument("--tool", required=True)
        parser.add_argument("--args", dest="arguments", default="{}", help="the arguments as a JSON object")
        parser.add_argument("--json", action="store_true", help="print the whole result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            arguments = json.loads(options["arguments"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--args is not JSON: {exc}") from None
        try:
            result = simulate(options["agent"], options["server"], options["tool"], arguments)
        except SimulationError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2, default=str))
            return
        self.stdout.write(f"decision: {result['decision']}")
        self.stdout.write(f"intent: {result['intent']}")
        self.stdout.write(f"rules: {', '.join(result['rules']) or '-'}")
        self.stdout.write(f"reason: {result['reason']}")
        risk = result["risk"]
        factors = ", ".join(f"{f['name']} +{f['add']}" for f in risk["factors"]) or "-"
        self.stdout.write(f"risk: {risk['score']} ({factors})")
        for note in result["notes"]:
            self.stdout.write(f"note: {note}")
