from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from policies_app.actions import NotHeld, approve_tool, held_tools
from policies_app.pinning import definition_diff


class Command(BaseCommand):
    help = "Approve a held tool definition (changed upstream, flagged by the poisoning scan, or new). Without arguments, lists held tools."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("server", nargs="?")
        parser.add_argument("tool", nargs="?")
        parser.add_argument("--as", dest="acting_user", default="cli")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["server"] or not options["tool"]:
            held = held_tools()
            if not held:
                self.stdout.write("no held tools")
            for pin in held:
                changed = ", ".join(definition_diff(pin.definition or {}, pin.pending_definition or {}))
                self.stdout.write(f"{pin.server} {pin.tool}: {pin.held_reason} (changed: {changed or '-'})")
            return
        try:
            approve_tool(acting_user=options["acting_user"], server=options["server"], tool=options["tool"])
        except NotHeld as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"approved {options['server']}/{options['tool']}")
