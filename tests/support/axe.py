"""axe-core, the accessibility engine, run inside a Playwright page (Debian chromium).

The npm package is installed, pinned, in var/axe (or $AXE_DIR) by tests/support/axe/setup.sh;
its script is injected into the page as it is, without a CDN.

    from tests.support.axe import blocking_violations, described

    found = blocking_violations(page)       # axe's serious and critical violations on the page
    assert not found, described(found)      # id, impact, help, and each offending element
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

from tests.support.processes import ROOT

AXE_DIR = Path(os.environ.get("AXE_DIR", ROOT / "var" / "axe"))
# What Acceptance 5 of issue 14 forbids; axe's other impacts are "moderate" and "minor".
BLOCKING_IMPACTS = frozenset({"serious", "critical"})


@cache
def axe_source() -> str:
    script = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        raise FileNotFoundError(f"{script} is missing: run `bash tests/support/axe/setup.sh` (or `make peers`)")
    return script.read_text()


def violations(page: Any) -> list[dict[str, Any]]:
    """Every axe rule the page breaks, with axe's default rules (WCAG 2.0, 2.1 and 2.2 A and AA,
    and best practices), over the whole document as it stands."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # evaluated through the DevTools protocol: the dashboard's CSP (nonced scripts only)
        # stays in force for the page's own scripts
        page.evaluate(axe_source() + "\n;void 0")
    return page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")


def blocking_violations(page: Any) -> list[dict[str, Any]]:
    return [v for v in violations(page) if v.get("impact") in BLOCKING_IMPACTS]


def described(found: list[dict[str, Any]]) -> str:
    lines = []
    for v in found:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} [{v['helpUrl']}]")
        for node in v["nodes"]:
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"    {' > '.join(map(str, node['target']))}: {summary}")
    return "\n".join(lines)
