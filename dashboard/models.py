from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone


class SignInIdentity(models.Model):
    """The OpenID Connect identity (issuer and subject) a dashboard account signs in as.

    `sub` is the only claim an issuer promises never to reassign; user names and e-mail
    addresses change and may be reused, so accounts are found by this pair (dashboard/oidc.py).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sign_in_identities")
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    linked_at = models.DateTimeField(auto_now_add=True)
    last_sign_in = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="one_account_per_identity")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class ApiToken(models.Model):
    """A REST API token (`Authorization: Token <token>`): stored as the SHA-256 of the token,
    named by its prefix, expiring, revocable, several per user (dashboard/tokens.py)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64, unique=True)
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}…"

    def refusal(self, now: datetime) -> str | None:
        """Why this token may not be used at `now`, or None when it may."""
        if self.revoked_at is not None:
            return f"API token {self.prefix} was revoked."
        if self.expires_at <= now:
            return f"API token {self.prefix} expired at {self.expires_at:%Y-%m-%d %H:%M} UTC; issue a new one."
        if not self.user.is_active:
            return f"The account of API token {self.prefix} is disabled."
        return None

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= timezone.now() else "active"
