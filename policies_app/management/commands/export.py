from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from policies_app.actions import export_config


class Command(BaseCommand):
    help = "Write the live configuration in the format `apply` reads (applying it changes nothing)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--out", help="write to this file instead of standard output")

    def handle(self, *args: Any, **options: Any) -> None:
        text = export_config()
        if options.get("out"):
            Path(options["out"]).write_text(text)
        else:
            self.stdout.write(text, ending="")
