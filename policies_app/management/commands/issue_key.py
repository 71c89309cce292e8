from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from policies_app import actions
from policies_app.models import Agent


class Command(BaseCommand):
    help = "Create a key for an agent and print it once (the last line of stdout)."

    def add_arguments(self, parser):
        parser.add_argument("agent")
        parser.add_argument("--label", default="")

    def handle(self, *args, agent: str, label: str, **options):
        try:
            found = Agent.objects.get(name=agent)
        except Agent.DoesNotExist:
            raise CommandError(f"No agent named {agent!r}") from None
        key, full_key = actions.issue_key(acting_user="cli", agent=found, label=label)
        self.stderr.write(f"Key {key.prefix} for agent {agent}. It is shown only once; store it now.")
        self.stdout.write(full_key)
