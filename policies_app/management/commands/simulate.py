from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from policies_app.simulation import SimulationError, simulate


class Command(BaseCommand):
    help = ("What would happen if an agent called a tool (or asked for any governed operation) with these "
            "arguments: nothing is called, counted, held or audited.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--agent", required=True)
        parser.add_argument("--server", required=True)
        subject = parser.add_mutually_exclusive_group(required=True)
        subject.add_argument("--tool", help="a tools/call's tool")
        subject.add_argument("--subject", help="with --operation: a resource URI, a prompt name, ...")
        parser.add_argument("--operation", default="tools/call", help="the governed method (default tools/call)")
        parser.add_argument("--args", dest="arguments", default="{}", help="the arguments as a JSON object")
        parser.add_argument("--json", action="store_true", help="print the whole result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            arguments = json.loads(options["arguments"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--args is not JSON: {exc}") from None
        try:
            result = simulate(options["agent"], options["server"], options["tool"] or options["subject"], arguments,
                              operation=options["operation"])
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
