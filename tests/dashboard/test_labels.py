"""Every form field on every page has a label a screen reader can announce."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from policies_app import actions


class Fields(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.labelled: set[str] = set()
        self.fields: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label" and a.get("for"):
            self.labelled.add(a["for"] or "")
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit", "button"):
            self.fields.append(a)

    def unlabelled(self) -> list[dict[str, str | None]]:
        return [f for f in self.fields if f.get("id") not in self.labelled and not f.get("aria-label")]


@pytest.mark.parametrize("path", ["/agents/", "/agents/bot/", "/agents/bot/scope/", "/servers/", "/servers/crm/",
                                  "/policies/", "/policies/simulate/", "/audit/"])
def test_it_labels_every_field(admin_client, settings, path):
    settings.INTENDED_ALLOW_PRIVATE_UPSTREAMS = True
    actions.save_server(acting_user="t", name="crm", url="http://127.0.0.1:9/mcp")
    actions.save_agent(acting_user="t", name="bot", tool_scope={"crm": ["lookup"]})
    parser = Fields()
    parser.feed(admin_client.get(path).content.decode())
    assert parser.fields, path
    assert parser.unlabelled() == []


def test_it_labels_the_login_form(client, db):
    parser = Fields()
    parser.feed(client.get("/login/").content.decode())
    assert len(parser.fields) == 2 and parser.unlabelled() == []
