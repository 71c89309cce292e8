"""The one glob dialect: `*` spans anything, the rest is literal; overlap and containment are
what scopes and intent maps rely on."""

from __future__ import annotations

import itertools

import pytest

from intended import globs


@pytest.mark.parametrize("pattern, text, matches", [
    ("financial.refund.*", "financial.refund.process", True),
    ("financial.refund.*", "financial.refunds", False),
    ("customers://*", "customers://a/b", True),
    ("data.?", "data.x", False),  # ? is literal
    ("customers://1", "customers://1\n", False),  # the whole text, a trailing newline included
])
def test_it_matches_the_whole_text_with_only_star_special(pattern: str, text: str, matches: bool) -> None:
    assert globs.matches(pattern, text) is matches


def test_it_knows_when_two_globs_share_a_string() -> None:
    words = [""] + ["".join(p) for n in range(1, 6) for p in itertools.product("ab", repeat=n)]
    patterns = [""] + ["".join(p) for n in range(1, 4) for p in itertools.product("ab*", repeat=n)]
    for a, b in itertools.product(patterns, repeat=2):
        shared = any(globs.matches(a, w) and globs.matches(b, w) for w in words)
        assert globs.overlap(a, b) is shared, (a, b)


def test_it_compares_long_globs_without_recursion() -> None:
    assert globs.overlap("a" * 5000 + "*", "*" + "a" * 5000)


@pytest.mark.parametrize("outer, inner, contained", [
    ("customers://*", "customers://*", True),
    ("customers://*", "customers://c-*", True),
    ("customers://c-4*", "customers://*", False),
    ("*/x", "a*/x", True),
    ("a*b", "a*", False),
])
def test_it_knows_when_one_glob_holds_every_string_of_another(outer: str, inner: str, contained: bool) -> None:
    assert globs.contains(outer, inner) is contained
