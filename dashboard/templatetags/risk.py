"""`{% risk value %}`: a risk score said in words and number ("high 85"), never by colour
alone (WCAG 1.4.1). `value` is a call's risk ({"score", "factors"}) or its score. Loaded by the
approval pages and the simulator."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()

# The dashboard's bands (docs/DASHBOARD.md): high from 70, the score at which the demo's e-mail
# rule (`risk.score < 70`) stops allowing; medium from 40; low below.
HIGH, MEDIUM = 70, 40


def risk_level(score: int) -> str:
    if score >= HIGH:
        return "high"
    return "medium" if score >= MEDIUM else "low"


def _score(value: Any) -> int | None:
    if isinstance(value, dict):
        value = value.get("score")
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


@register.simple_tag
def risk(value: Any) -> str:
    score = _score(value)
    if score is None:
        return mark_safe('<span class="muted">—</span>')  # a constant: nothing to escape
    level = risk_level(score)
    return format_html('<span class="risk risk-{}">{} {}</span>', level, level, score)
