"""Every change to servers, agents and keys: one function each, in a durable transaction that
also writes the audit entry and bumps the configuration stamp (so every gateway process picks
the change up within a second)."""

from __future__ import annotations

import secrets
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit_app.actions import record_admin
from gateway.models import KEY_PREFIX, Agent, AgentKey, ConfigStamp, Server, hash_secret


def _changed() -> None:
    ConfigStamp.bump()


@transaction.atomic(durable=True)
def save_server(*, acting_user: str, name: str, credential: str | None = None, **fields: Any) -> Server:
    return write_server(acting_user=acting_user, name=name, credential=credential, **fields)


def write_server(*, acting_user: str, name: str, credential: str | None = None, **fields: Any) -> Server:
    """save_server inside the caller's transaction (bulk changes such as `apply`)."""
    server, created = Server.objects.get_or_create(name=name, defaults=fields)
    if not created:
        for key, value in fields.items():
            setattr(server, key, value)
    if credential is not None:
        server.set_credential(credential)
    server.full_clean()
    server.save()
    record_admin(
        "server.created" if created else "server.updated",
        actor=acting_user,
        target=name,
        details={k: v for k, v in fields.items()} | {"credential_set": bool(credential)},
    )
    _changed()
    return server


@transaction.atomic(durable=True)
def delete_server(*, acting_user: str, name: str) -> None:
    remove_server(acting_user=acting_user, name=name)


def remove_server(*, acting_user: str, name: str) -> None:
    """delete_server inside the caller's transaction."""
    Server.objects.filter(name=name).delete()
    record_admin("server.deleted", actor=acting_user, target=name)
    _changed()


@transaction.atomic(durable=True)
def save_agent(*, acting_user: str, name: str, **fields: Any) -> Agent:
    return write_agent(acting_user=acting_user, name=name, **fields)


def write_agent(*, acting_user: str, name: str, **fields: Any) -> Agent:
    """save_agent inside the caller's transaction."""
    agent, created = Agent.objects.get_or_create(name=name, defaults=fields)
    if not created:
        for key, value in fields.items():
            setattr(agent, key, value)
    agent.full_clean()
    agent.save()
    record_admin(
        "agent.created" if created else "agent.updated", actor=acting_user, target=name, details=fields
    )
    _changed()
    return agent


@transaction.atomic(durable=True)
def delete_agent(*, acting_user: str, name: str) -> None:
    remove_agent(acting_user=acting_user, name=name)


def remove_agent(*, acting_user: str, name: str) -> None:
    """delete_agent inside the caller's transaction."""
    Agent.objects.filter(name=name).delete()
    record_admin("agent.deleted", actor=acting_user, target=name)
    _changed()


def new_key_material() -> tuple[str, str, str]:
    """(full key shown once, lookup prefix, secret)."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{KEY_PREFIX}{prefix}_{secret}", prefix, secret


def split_key(full_key: str) -> tuple[str, str] | None:
    """(prefix, secret) of a presented key, or None when it is not shaped like one of ours."""
    if not full_key.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = full_key[len(KEY_PREFIX):].partition("_")
    if not sep or not prefix or not secret:
        return None
    return prefix, secret


@transaction.atomic(durable=True)
def issue_key(*, acting_user: str, agent: Agent, label: str = "") -> tuple[AgentKey, str]:
    full_key, prefix, secret = new_key_material()
    key = AgentKey.objects.create(agent=agent, prefix=prefix, secret_hash=hash_secret(secret), label=label)
    record_admin("key.issued", actor=acting_user, target=agent.name, details={"prefix": prefix})
    _changed()
    return key, full_key


@transaction.atomic(durable=True)
def revoke_key(*, acting_user: str, key: AgentKey) -> None:
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    record_admin("key.revoked", actor=acting_user, target=key.agent.name, details={"prefix": key.prefix})
    _changed()


def mark_key_used(key_id: int) -> None:
    """Bookkeeping, not an admin change: no audit entry and no configuration bump."""
    AgentKey.objects.filter(id=key_id).update(last_used_at=timezone.now())


# --- people: dashboard users, their roles (Django groups) and REST API tokens --------------

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
