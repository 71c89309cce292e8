"""Every change to people: dashboard users and their roles (Django groups), REST API tokens.
Each runs in one durable transaction that writes its audit entry."""

from __future__ import annotations

from django.db import transaction

from audit_app.actions import record_admin

ROLE_ADMIN = "admin"
ROLE_AUDITOR = "auditor"


@transaction.atomic(durable=True)
def create_user(*, acting_user: str, username: str, roles: list[str], password: str | None = None):
    from django.contrib.auth.models import Group, User

    user, created = User.objects.get_or_create(username=username)
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
def issue_api_token(*, acting_user: str, username: str) -> str:
    """A fresh REST API token for the user (any previous one stops working)."""
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    user = User.objects.get(username=username)
    Token.objects.filter(user=user).delete()
    token = Token.objects.create(user=user)
    record_admin("api_token.issued", actor=acting_user, target=username)
    return token.key
