"""The time zone the dashboard shows times in, chosen by each person (docs/DASHBOARD.md).

UTC unless chosen otherwise; an IANA zone (rendered on the server) or the browser's own zone
(the page shows UTC and static/dashboard/audit.js rewrites it, so without scripts it stays
UTC and says so). Every time is shown with its year and its zone, because an auditor compares
times across systems and across years.
"""

from __future__ import annotations

import functools
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

SESSION_KEY = "display_zone"
UTC_NAME = "UTC"
BROWSER = "browser"  # the browser's own zone, converted by the page's script


@functools.cache
def zone_names() -> tuple[str, ...]:
    """The IANA zones offered, sorted; the legacy aliases (`US/Eastern`, `Etc/GMT+5`) left out."""
    return tuple(sorted(name for name in zoneinfo.available_timezones()
                        if "/" in name and not name.startswith(("Etc/", "SystemV/", "US/"))))


def valid_choice(value: str) -> bool:
    return value in (UTC_NAME, BROWSER) or value in zone_names()


def chosen(session: Any) -> str:
    """The person's choice, from their session; UTC when none (or one no longer offered)."""
    value = str(session.get(SESSION_KEY, "") if session is not None else "")
    return value if valid_choice(value) else UTC_NAME


def _zone(choice: str) -> tzinfo:
    return UTC if choice in (UTC_NAME, BROWSER) else zoneinfo.ZoneInfo(choice)


@dataclass(frozen=True)
class Moment:
    """A time as shown: `text` in the chosen zone, `iso` (UTC) for the `<time datetime>`."""

    text: str
    iso: str
    browser: bool  # the script should rewrite `text` into the browser's zone


def offset_label(moment: datetime) -> str:
    """`UTC`, or the offset from it (`UTC+01:00`): unambiguous, unlike abbreviations (IST)."""
    offset = moment.utcoffset()
    if not offset:
        return UTC_NAME
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def moment(value: datetime, choice: str) -> Moment:
    """`2026-12-07 11:36:45 UTC+01:00`: the year and the zone, always."""
    utc = value.astimezone(UTC)
    local = utc.astimezone(_zone(choice))
    return Moment(f"{local:%Y-%m-%d %H:%M:%S} {offset_label(local)}",
                  utc.isoformat().replace("+00:00", "Z"), choice == BROWSER)


def zone_label(choice: str) -> str:
    """What a column header says the times are in."""
    return "your browser's time zone" if choice == BROWSER else choice


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 string or a datetime (entry JSON holds strings)."""
    if isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
