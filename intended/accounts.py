"""Who is at the other end of an open websocket, now.

Channels resolves the user once, at the handshake. A socket may stay open for hours, so the
consumers ask `current_user(scope)` again before they send (docs/SECURITY.md): a disabled or
deleted account, or a session that was signed out, expired or outlived a password change, is
anonymous from then on, and the roles are those the database holds now.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.models import AnonymousUser
from django.utils.crypto import constant_time_compare


def current_user(scope: dict[str, Any]) -> Any:
    """The scope's user as the database has it now, or AnonymousUser (blocking: call it through
    database_sync_to_async)."""
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return AnonymousUser()
    fresh = get_user_model()._default_manager.filter(pk=user.pk).first()
    if fresh is None or not fresh.is_active:
        return AnonymousUser()
    session = scope.get("session")
    if session is not None and not _signs_in(session, fresh):
        return AnonymousUser()
    return fresh


def _signs_in(session: Any, user: Any) -> bool:
    """The socket's session still exists and signs this user in with the password it had. Read
    only: the browser's own requests are the ones that flush or cycle a session."""
    key = session.session_key
    if not key:
        return False
    data = import_module(settings.SESSION_ENGINE).SessionStore(key).load()  # {} once gone
    if data.get(SESSION_KEY) != user._meta.pk.value_to_string(user):
        return False
    presented = data.get(HASH_SESSION_KEY) or ""
    hashes = (user.get_session_auth_hash(), *user.get_session_auth_fallback_hash())
    return bool(presented) and any(constant_time_compare(presented, h) for h in hashes)
