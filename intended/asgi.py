"""ASGI routing: /mcp/<server> goes to the gateway (a raw, streaming ASGI app), everything else
over HTTP to Django, and websockets to the Channels consumers behind Django session auth."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "intended.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from gateway.lifespan import lifespan  # noqa: E402
from gateway.proxy import GatewayApp  # noqa: E402
from gateway.transport_security import RequireTLSForWebsockets, TrustedProxyHeaders  # noqa: E402
from intended.routing import websocket_urlpatterns  # noqa: E402

gateway = GatewayApp()

# TrustedProxyHeaders first: every part below reads the client's address from the scope.
application = TrustedProxyHeaders(ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                re_path(r"^mcp/(?P<server>[-a-zA-Z0-9_]+)/?$", gateway),
                re_path(r"", django_asgi),
            ]
        ),
        "websocket": RequireTLSForWebsockets(
            AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
        "lifespan": lifespan,
    }
))
