from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from policies_app.actions import apply_config
from policies_app.config import ConfigError


class Command(BaseCommand):
    help = "Apply a configuration file (servers, agents, reviewers, policies): prints the plan, then applies it atomically."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="the YAML file, or - for standard input")
        parser.add_argument("--dry-run", action="store_true", help="only print the plan")
        parser.add_argument("--as", dest="acting_user", default="cli", help="who applies (recorded in the audit trail)")
        parser.add_argument("-m", "--message", dest="description", default="apply",
                            help="what changed and why (kept with the new policy version; default: apply)")

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"]
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        try:
            plan = apply_config(text, acting_user=options["acting_user"], dry_run=options["dry_run"],
                                description=options["description"])
        except ConfigError as exc:
            for error in exc.errors:
                self.stderr.write(f"{path}: {error}")
            raise CommandError(f"{path} is invalid: nothing was applied ({len(exc.errors)} errors)") from None
        self.stdout.write(str(plan))
        if plan.empty:
            return
        if options["dry_run"]:
            self.stdout.write("dry run: nothing was applied")
        else:
            version = f" (policy version {plan.policy_version})" if plan.policy_version else ""
            self.stdout.write(f"applied{version}")
