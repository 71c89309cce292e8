"""The one glob dialect of the product: `*` matches any run of characters (dots and slashes
included); every other character is literal. Policies and velocity rules match intents with
it, scopes match resource URIs with it, and the audit search filters intents and subjects with
it, so a pattern means the same thing wherever an admin or an auditor writes it."""

from __future__ import annotations

import re
from functools import cache, lru_cache


@lru_cache(maxsize=4096)
def compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(glob_regex(pattern), re.DOTALL)


def glob_regex(pattern: str) -> str:
    """An anchored regular expression for the pattern (also what the audit search sends to SQL)."""
    return "^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"


def matches(pattern: str, text: str) -> bool:
    return compiled(pattern).match(text) is not None


def is_glob(pattern: str) -> bool:
    return "*" in pattern


def overlap(a: str, b: str) -> bool:
    """Is there a string that both globs match? (A template read as a glob against a scope; two
    globs of one intent map that must not both claim a URI.)"""

    @cache
    def meet(i: int, j: int) -> bool:  # can a[i:] and b[j:] match one string?
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*" and meet(i + 1, j):  # a's * matches nothing more
            return True
        if j < len(b) and b[j] == "*" and meet(i, j + 1):
            return True
        if i < len(a) and j < len(b):
            x, y = a[i], b[j]
            if x == "*" and y != "*":  # a's * takes b's next character
                return meet(i, j + 1)
            if y == "*" and x != "*":
                return meet(i + 1, j)
            return x == y != "*" and meet(i + 1, j + 1)
        return False

    return meet(0, 0)
