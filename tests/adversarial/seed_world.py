"""Seed a world into whatever database DATABASE_URL names (a test's own PostgreSQL cluster):
the misbehaving server, alice with every tool, an allow-all policy. Prints alice's key."""

from __future__ import annotations

import os
import sys

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "intended.settings")
    django.setup()
    from policies_app import actions
    from policies_app.actions import save_policy_document

    actions.save_server(acting_user="tests", name="bad", url=sys.argv[1], timeout_seconds=3.0)
    alice = actions.save_agent(acting_user="tests", name="alice", tool_scope={"bad": "*"})
    save_policy_document({"policies": [{"intent": "mcp.*", "decision": "allow"}]}, acting_user="tests")
    print(actions.issue_key(acting_user="tests", agent=alice)[1])


if __name__ == "__main__":
    main()
