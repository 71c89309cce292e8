"""Re-encrypt every stored upstream credential under the newest key.

Rotation: put the new Fernet key first in INTENDED_CREDENTIAL_KEYS, keep the old ones after it,
restart, run this command, then drop the old keys (docs/DEPLOY.md). A credential that no
configured key can decrypt stops the command before anything changes.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import InvalidToken
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit_app.actions import record_admin
from policies_app import credentials
from policies_app.models import Server


@transaction.atomic(durable=True)
def rotate_credentials(*, acting_user: str) -> list[str]:
    """Re-encrypt every server's credential in one transaction; the names of those rotated.

    The plaintext does not change, so the configuration stamp is not bumped: running gateways
    keep the credential they already hold in memory.
    """
    rotated = []
    for server in Server.objects.select_for_update().exclude(credential_encrypted="").order_by("name"):
        try:
            server.credential_encrypted = credentials.rotate(server.credential_encrypted)
        except InvalidToken:
            raise CommandError(
                f"the credential of server {server.name!r} cannot be decrypted with any key in "
                "INTENDED_CREDENTIAL_KEYS; nothing was changed"
            ) from None
        server.save(update_fields=["credential_encrypted"])
        rotated.append(server.name)
    record_admin(
        "credentials.rotated", actor=acting_user, target="servers", details={"servers": rotated}
    )
    return rotated


class Command(BaseCommand):
    help = "Re-encrypt every stored upstream credential under the first INTENDED_CREDENTIAL_KEYS key."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--actor", default="cli", help="who is rotating, for the audit trail")

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = rotate_credentials(acting_user=options["actor"])
        for name in rotated:
            self.stdout.write(f"rotated {name}")
        self.stdout.write(f"{len(rotated)} credential(s) re-encrypted under the newest key")
