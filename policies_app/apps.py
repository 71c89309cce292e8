from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def check_velocity_redis_url(url: str) -> None:
    """Refuse, when a process starts, a REDIS_URL whose options the velocity counters' client
    would not honour (a TLS option ignored is a weaker connection than the operator asked for),
    and TLS files that cannot be loaded."""
    if not url:
        return
    from redis.connection import SSLConnection

    from policies_app.redis_scripts import tls_context, url_options

    try:
        options = url_options(url)
        if options.get("connection_class") is SSLConnection:
            tls_context(options)
    except (ValueError, OSError) as exc:  # ssl.SSLError is an OSError
        raise ImproperlyConfigured(str(exc)) from None


class PoliciesConfig(AppConfig):
    name = "policies_app"
    verbose_name = "Policies"

    def ready(self) -> None:
        check_velocity_redis_url(getattr(settings, "REDIS_URL", ""))
