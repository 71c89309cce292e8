from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from policies_app.actions import NotHeld, approve_tool, held_tools, reject_tool
from policies_app.pinning import definition_diff


class Command(BaseCommand):
    help = ("Approve a held tool definition (changed upstream, flagged by the poisoning scan, or new), or "
            "reject it with --reject and a --comment saying why. Without arguments, lists held tools.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("server", nargs="?")
        parser.add_argument("tool", nargs="?")
        parser.add_argument("--as", dest="acting_user", default="cli")
        parser.add_argument("--comment", default="", help="why (stored with the review and audited; required with --reject)")
        parser.add_argument("--reject", action="store_true",
                            help="refuse the offered definition: the tool stays hidden from every agent")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["server"] or not options["tool"]:
            if options["reject"]:
                raise CommandError("--reject needs the server and the tool")
            held = held_tools()
            if not held:
                self.stdout.write("no held tools")
            for pin in held:
                changed = ", ".join(definition_diff(pin.definition or {}, pin.pending_definition or {}))
                self.stdout.write(f"{pin.server} {pin.tool}: {pin.held_reason} (changed: {changed or '-'})")
            return
        who = {"acting_user": options["acting_user"], "server": options["server"], "tool": options["tool"],
               "comment": options["comment"]}
        try:
            if options["reject"]:
                reject_tool(**who)
            else:
                approve_tool(**who)
        except (NotHeld, ValueError) as exc:
            raise CommandError(str(exc)) from None
        done = "rejected" if options["reject"] else "approved"
        self.stdout.write(f"{done} {options['server']}/{options['tool']}")
