from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from dashboard import actions


class Command(BaseCommand):
    help = "Create (or update) a dashboard user with roles: admin, auditor, or a reviewer role."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--roles", default="", help="comma list, e.g. admin or support-lead,auditor")
        parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    def handle(self, *args, name: str, roles: str, password_stdin: bool, **options):
        role_list = [r.strip() for r in roles.split(",") if r.strip()]
        password = None
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
            if not password:
                raise CommandError("--password-stdin given but no password on stdin")
        user = actions.create_user(acting_user="cli", username=name, roles=role_list, password=password)
        self.stdout.write(f"{user.username} roles={','.join(sorted(role_list)) or '-'}")
