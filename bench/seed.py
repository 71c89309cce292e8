"""Fallback for `manage.py apply` while that command does not exist yet: loads the bench
config's servers and agents through gateway.actions and stores its policies as a new policy
version. Run with the project's venv: `python bench/seed.py CONFIG.yaml`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import django
import yaml

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "intended.settings")
django.setup()

from django.db import transaction  # noqa: E402

from gateway import actions  # noqa: E402
from gateway.models import ConfigStamp  # noqa: E402

try:
    from policies_app.models import PolicyVersion
except ImportError:  # the skeleton policy engine (allows everything, stores nothing)
    PolicyVersion = None


def main(path: str) -> None:
    config = yaml.safe_load(Path(path).read_text())
    for server in config.get("servers", []):
        actions.save_server(acting_user="bench", name=server["name"], url=server["url"])
    for agent in config.get("agents", []):
        actions.save_agent(
            acting_user="bench",
            name=agent["name"],
            owner=agent.get("owner", ""),
            roles=agent.get("roles", []),
            tool_scope=agent.get("tools", {}),
        )
    if PolicyVersion is None:
        print("seed: no PolicyVersion model in this commit; policies not stored", file=sys.stderr)
        return
    with transaction.atomic():
        PolicyVersion.objects.create(
            number=PolicyVersion.next_number(),
            document={"policies": config.get("policies", []), "velocity_rules": config.get("velocity_rules", [])},
            author="bench",
        )
        ConfigStamp.bump()


if __name__ == "__main__":
    main(sys.argv[1])
