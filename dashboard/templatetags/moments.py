"""`{% moment value %}`: a time with its year and zone in the person's chosen zone
(dashboard.display_zone); `{% zone_label %}` for column headers; `{% zone_picker %}` the form
that changes it. Loaded by the audit pages and the approval history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils.html import format_html

from dashboard import display_zone

register = template.Library()


def _choice(context: Any) -> str:
    request = context.get("request")
    return display_zone.chosen(getattr(request, "session", None))


@register.simple_tag(takes_context=True)
def moment(context: Any, value: datetime | str | None) -> str:
    when = display_zone.parse_time(value) if value not in (None, "") else None
    if when is None:
        return format_html('<span class="muted">—</span>') if value in (None, "") else str(value)
    shown = display_zone.moment(when, _choice(context))
    if shown.browser:
        return format_html('<time datetime="{}" data-moment="browser">{}</time>', shown.iso, shown.text)
    return format_html('<time datetime="{}">{}</time>', shown.iso, shown.text)


@register.simple_tag(takes_context=True)
def zone_label(context: Any) -> str:
    return display_zone.zone_label(_choice(context))


@register.inclusion_tag("dashboard/_zone_picker.html", takes_context=True)
def zone_picker(context: Any) -> dict[str, Any]:
    request = context.get("request")
    return {"choice": _choice(context), "zones": display_zone.zone_names(), "browser": display_zone.BROWSER,
            "next": request.get_full_path() if request is not None else "/", "csrf_token": context.get("csrf_token")}
