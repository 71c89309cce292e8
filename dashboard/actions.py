"""Every change to people: dashboard users and their roles (Django groups), REST API tokens.
Each runs in one durable transaction that writes its audit entry."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from audit_app.actions import record_admin
from dashboard import tokens

if TYPE_CHECKING:
    from dashboard.models import ApiToken

ROLE_ADMIN = "admin"
ROLE_AUDITOR = "auditor"


@transaction.atomic(durable=True)
def create_user(*, acting_user: str, username: str, roles: list[str], password: str | None = None,
                email: str | None = None):
    from django.contrib.auth.models import Group, User

    user, created = User.objects.get_or_create(username=username)
    if email is not None:
        user.email = email
    if password:
        user.set_password(password)
    elif created:
        user.set_unusable_password()
    if ROLE_ADMIN in roles:
        user.is_staff = True
        user.is_superuser = True
    user.save()
    for role in roles:
        group, _ = Group.objects.get_or_create(name=role)
        user.groups.add(group)
    record_admin(
        "user.created" if created else "user.updated",
        actor=acting_user,
        target=username,
        details={"roles": sorted(roles), "password_set": bool(password)},
    )
    return user


@transaction.atomic(durable=True)
def issue_api_token(*, acting_user: str, username: str, label: str = "",
                    lifetime: timedelta = tokens.DEFAULT_LIFETIME) -> str:
    """A new REST API token for the user, returned once and stored only as its hash. The
    user's other tokens keep working (several per user, for rotation)."""
    from django.contrib.auth.models import User

    from dashboard.models import ApiToken

    if not timedelta(0) < lifetime <= tokens.MAX_LIFETIME:
        raise ValueError(f"a token lives between a minute and {tokens.MAX_LIFETIME.days} days")
    user = User.objects.get(username=username)
    token, prefix = tokens.new_token()
    while ApiToken.objects.filter(prefix=prefix).exists():  # 32 bits: a clash is rare, not impossible
        token, prefix = tokens.new_token()
    row = ApiToken.objects.create(user=user, prefix=prefix, token_hash=tokens.hash_token(token),
                                  label=label, created_by=acting_user,
                                  expires_at=timezone.now() + lifetime)
    record_admin("api_token.issued", actor=acting_user, target=username,
                 details={"prefix": prefix, "label": label, "expires_at": row.expires_at.isoformat()})
    return token


@transaction.atomic(durable=True)
def revoke_api_token(*, acting_user: str, token: ApiToken) -> bool:
    """Revoke the token now (it is refused from the next request on). False, and no audit
    entry, when it was already revoked: revoking twice changes nothing."""
    from dashboard.models import ApiToken

    now = timezone.now()
    if not ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now, revoked_by=acting_user):
        return False
    token.revoked_at, token.revoked_by = now, acting_user
    record_admin("api_token.revoked", actor=acting_user, target=token.user.get_username(),
                 details={"prefix": token.prefix, "label": token.label})
    return True
