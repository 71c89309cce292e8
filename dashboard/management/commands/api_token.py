from __future__ import annotations

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from dashboard import actions


class Command(BaseCommand):
    help = "Issue a REST API token for a user and print it (the last line of stdout)."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name: str, **options):
        if not User.objects.filter(username=name).exists():
            raise CommandError(f"No user named {name!r}")
        self.stdout.write(actions.issue_api_token(acting_user="cli", username=name))
