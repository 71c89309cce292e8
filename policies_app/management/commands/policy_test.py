from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError

from policies_app.simulation import SimulationError, simulate
from policies_app.snapshots import build_snapshot

CASE_KEYS = {"name", "agent", "server", "tool", "arguments", "expect", "expect_rules"}


class Command(BaseCommand):
    help = "Run policy test cases (agent, server, tool, arguments, expected decision) against the live policy; exit 1 on a failure."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("cases", help="YAML: a list of cases, or {cases: [...]}")

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["cases"]
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from None
        cases = raw.get("cases") if isinstance(raw, dict) else raw
        if not isinstance(cases, list) or not cases:
            raise CommandError(f"{path} must hold a list of cases")
        snap = build_snapshot()
        failures = 0
        for i, case in enumerate(cases):
            label, problem, result = self._run(i, case, snap)
            if problem:
                failures += 1
                self.stdout.write(f"FAIL {label}: {problem}")
            else:
                self.stdout.write(f"pass {label}: {result['decision']}")
        self.stdout.write(f"{len(cases) - failures} passed, {failures} failed")
        if failures:
            raise SystemExit(1)

    def _run(self, i: int, case: Any, snap: Any) -> tuple[str, str, dict[str, Any]]:
        if not isinstance(case, dict):
            return f"case {i}", "a case must be a mapping", {}
        label = str(case.get("name") or f"case {i}")
        unknown = set(case) - CASE_KEYS
        missing = {"agent", "server", "tool", "expect"} - set(case)
        if unknown or missing:
            return label, f"unknown keys {sorted(unknown)} / missing keys {sorted(missing)}", {}
        try:
            result = simulate(case["agent"], case["server"], case["tool"], case.get("arguments") or {}, snap=snap)
        except SimulationError as exc:
            return label, str(exc), {}
        if result["decision"] != case["expect"]:
            return label, f"expected {case['expect']}, got {result['decision']} ({result['reason']})", result
        expected_rules = case.get("expect_rules")
        if expected_rules is not None and list(expected_rules) != result["rules"]:
            return label, f"expected rules {expected_rules}, got {result['rules']}", result
        return label, "", result
