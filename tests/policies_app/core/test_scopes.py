"""Resource scopes are matched on the URI's text, so a URI that a server could read as another
one is not in any scope; templates are listed when they may produce a URI in scope and
completed only when every URI they produce is."""

from __future__ import annotations

import pytest

from policies_app.core.context import AgentView

READER = AgentView(id=1, name="reader", owner="", roles=frozenset(), tool_scope={},
                   resource_scope={"files": ("file:///srv/public/*", "customers://c-4*")})


@pytest.mark.parametrize("uri, readable", [
    ("file:///srv/public/report.txt", True),
    ("file:///srv/public/../secret/key", False),
    ("file:///srv/public/./report.txt", False),
    ("file:///srv/public/%2e%2e/secret/key", False),
    ("file:///srv/public/..%2Fsecret", False),
    ("file:///srv/public\\..\\secret", False),
    ("FILE:///srv/public/report.txt", False),
    ("file:///srv/public/report.txt\n", False),
    ("customers://c-42", True),
    ("customers://c-99", False),
])
def test_it_reads_only_plain_uris_inside_the_scope(uri: str, readable: bool) -> None:
    assert READER.may_read("files", uri) is readable


@pytest.mark.parametrize("template, listed, completed", [
    ("customers://{customer_id}", True, False),  # some of its URIs are in scope, not all
    ("customers://c-4{rest}", True, True),
    ("file:///srv/public/{name}", True, True),
    ("orders://{order_id}", False, False),
])
def test_it_lists_and_completes_templates_by_what_they_can_produce(template: str, listed: bool,
                                                                     completed: bool) -> None:
    assert READER.may_see_template("files", template) is listed
    assert READER.may_complete_template("files", template) is completed
