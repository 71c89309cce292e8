from __future__ import annotations

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from dashboard import actions, tokens
from dashboard.models import ApiToken


class Command(BaseCommand):
    help = ("Issue a REST API token for a user and print it once (the last line of stdout); "
            "--list shows the user's tokens, --revoke PREFIX revokes one.")

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--expires", default=f"{tokens.DEFAULT_LIFETIME.days}d",
                            help=f"lifetime such as 90d, 12h, 30m or 2w (default "
                                 f"{tokens.DEFAULT_LIFETIME.days}d, at most {tokens.MAX_LIFETIME.days}d)")
        parser.add_argument("--label", default="", help="where the token will be used, e.g. ci-nightly")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--revoke", metavar="PREFIX", help="revoke the user's token with this prefix")
        mode.add_argument("--list", dest="list_only", action="store_true", help="list the user's tokens")

    def handle(self, *args, name: str, expires: str, label: str, revoke: str | None, list_only: bool, **options):
        try:
            user = User.objects.get(username=name)
        except User.DoesNotExist:
            raise CommandError(f"No user named {name!r}") from None
        if list_only:
            self.list_tokens(user)
        elif revoke is not None:
            self.revoke(user, revoke)
        else:
            self.issue(user, expires, label)

    def issue(self, user: User, expires: str, label: str) -> None:
        try:
            lifetime = tokens.parse_lifetime(expires)
        except ValueError as exc:
            raise CommandError(f"--expires: {exc}") from None
        if len(label) > 100:
            raise CommandError("--label: at most 100 characters")
        token = actions.issue_api_token(acting_user="cli", username=user.username, label=label, lifetime=lifetime)
        row = ApiToken.objects.get(token_hash=tokens.hash_token(token))
        self.stderr.write(f"API token {row.prefix} for {user.username}, expires {row.expires_at:%Y-%m-%d %H:%M} UTC. "
                          "It is shown only once; store it now. Send it as 'Authorization: Token <token>'.")
        self.stdout.write(token)

    def revoke(self, user: User, prefix: str) -> None:
        token = ApiToken.objects.filter(user=user, prefix=prefix.strip().rstrip("…")).first()
        if token is None:
            raise CommandError(f"{user.username} has no API token with prefix {prefix!r} (see --list)")
        if actions.revoke_api_token(acting_user="cli", token=token):
            self.stdout.write(f"Revoked API token {token.prefix} of {user.username}.")
        else:
            self.stdout.write(f"API token {token.prefix} of {user.username} was already revoked "
                              f"({token.revoked_at:%Y-%m-%d %H:%M} UTC by {token.revoked_by}).")

    def list_tokens(self, user: User) -> None:
        rows = ApiToken.objects.filter(user=user)
        if not rows:
            self.stdout.write(f"{user.username} has no API tokens.")
        for row in rows:
            used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
            self.stdout.write(f"{row.prefix}  {row.status:<7}  created {row.created_at:%Y-%m-%d %H:%M}  "
                              f"expires {row.expires_at:%Y-%m-%d %H:%M}  last used {used}  {row.label}")
