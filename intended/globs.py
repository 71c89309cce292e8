"""The one glob dialect of the product: `*` matches any run of characters (dots and slashes
included); every other character is literal. Policies and velocity rules match intents with
it, scopes match resource URIs with it, and the audit search filters intents and subjects with
it, so a pattern means the same thing wherever an admin or an auditor writes it."""

from __future__ import annotations

import re
from functools import lru_cache

# Stands for "anything" inside a string that is itself a pattern (a URI template's expressions):
# no URI or intent holds it, so only a `*` of the other glob can match it.
ANYTHING = "\x00"


@lru_cache(maxsize=4096)
def compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def glob_regex(pattern: str) -> str:
    """An anchored regular expression for the pattern (what the audit search sends to SQL)."""
    return "^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"


def matches(pattern: str, text: str) -> bool:
    return compiled(pattern).fullmatch(text) is not None


def is_glob(pattern: str) -> bool:
    return "*" in pattern


def overlap(a: str, b: str) -> bool:
    """Is there a string that both globs match? (A URI template read as a glob against a scope;
    two globs of one intent map that must not both claim a URI.) A dynamic programme over both
    patterns, row by row: no recursion, whatever their length."""
    # reach[j]: a[:i] and b[:j] can match one common string (with each side's `*`s).
    reach = [True] + [False] * len(b)
    for j in range(1, len(b) + 1):
        reach[j] = reach[j - 1] and b[j - 1] == "*"
    for i in range(1, len(a) + 1):
        row = [reach[0] and a[i - 1] == "*"] + [False] * len(b)
        for j in range(1, len(b) + 1):
            x, y = a[i - 1], b[j - 1]
            if x == "*":
                row[j] = reach[j] or row[j - 1]  # a's * takes nothing more, or takes b's next piece
            elif y == "*":
                row[j] = row[j - 1] or reach[j]
            else:
                row[j] = x == y and reach[j - 1]
        reach = row
    return reach[len(b)]


def contains(outer: str, inner: str) -> bool:
    """Does every string the glob `inner` matches also match `outer`? `inner`'s `*`s are read as
    ANYTHING, which only a `*` of `outer` can match (sound: a yes is always right)."""
    return matches(outer, inner.replace("*", ANYTHING))
