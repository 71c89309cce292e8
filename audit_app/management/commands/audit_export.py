from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit_app import actions, exports, queries
from audit_app.queries import EntryFilter, FilterError


class Command(BaseCommand):
    help = "Export audit entries (filters as the API's) as jsonl, csv, ocsf or a signed bundle."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", default="jsonl",
                            help="one or more of jsonl,csv,ocsf,bundle (comma separated)")
        parser.add_argument("--out", required=True,
                            help="output file, or '-' for stdout; with several formats, a stem for OUT.<format>")
        parser.add_argument("--from", dest="from_", metavar="FROM",
                            help="ISO 8601 time or date, inclusive (a date: from its start; UTC unless an offset is "
                                 "given, e.g. 2026-11-22+01:00)")
        parser.add_argument("--to", help="ISO 8601 time or date, inclusive (a date includes the whole day)")
        for name in queries.FILTERS[2:]:  # after from and to; --approval-status as well as the API's name
            spellings = [f"--{name.replace('_', '-')}", f"--{name}"] if "_" in name else [f"--{name}"]
            parser.add_argument(*spellings, dest=name)
        parser.add_argument("--no-seal", action="store_true", help="do not seal new entries before a bundle")

    def handle(self, *args: Any, **options: Any) -> None:
        formats = [f.strip() for f in options["format"].split(",") if f.strip()]
        unknown = [f for f in formats if f not in exports.FORMATS]
        if unknown or not formats:
            raise CommandError(f"unknown format {', '.join(unknown) or '(none)'}; choose from {', '.join(exports.FORMATS)}")
        params = {"from": options["from_"], **{k: options[k] for k in queries.FILTERS[1:]}}
        try:
            flt = EntryFilter.from_params(params)
        except FilterError as exc:
            raise CommandError(str(exc)) from None
        if "bundle" in formats and not options["no_seal"]:
            try:
                actions.seal()
            except actions.SealRefused as refused:
                raise CommandError(f"the chain is broken, not exporting a bundle: {refused.failure}") from None
        out = options["out"]
        for fmt in formats:
            target = out if len(formats) == 1 else f"{out}.{exports.EXTENSIONS[fmt]}"
            try:
                chunks = exports.export(fmt, flt)
                if target == "-":
                    for chunk in chunks:
                        sys.stdout.write(chunk)
                    continue
                path = Path(target)
                with path.open("w", encoding="utf-8") as handle:
                    for chunk in chunks:
                        handle.write(chunk)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            if target != "-":
                self.stderr.write(f"wrote {fmt} to {target}")
