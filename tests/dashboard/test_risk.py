"""`{% risk %}`: a risk score said in words and number, never by colour alone (issue 14)."""

from __future__ import annotations

import pytest
from django.template import Context, Template

from dashboard.templatetags.risk import risk_level


@pytest.mark.parametrize(("score", "level"), [(0, "low"), (39, "low"), (40, "medium"), (69, "medium"),
                                              (70, "high"), (100, "high")])
def test_it_names_the_level_of_a_score(score, level):
    assert risk_level(score) == level


@pytest.mark.parametrize(("value", "html"), [
    ({"score": 85, "factors": []}, '<span class="risk risk-high">high 85</span>'),
    (55, '<span class="risk risk-medium">medium 55</span>'),
    ("10", '<span class="risk risk-low">low 10</span>'),
    (None, '<span class="muted">—</span>'),
    ({}, '<span class="muted">—</span>'),
])
def test_it_writes_the_level_beside_the_score(value, html):
    assert Template("{% load risk %}{% risk value %}").render(Context({"value": value})) == html
