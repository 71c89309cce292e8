"""Which upstream addresses a server registered through the dashboard or the API may use.

A server written in an applied config file is trusted as written; one registered in the
browser is not: its URL must be https and must not resolve to a private, loopback,
link-local, metadata or otherwise non-public address (server-side request forgery), unless
`INTENDED_ALLOW_PRIVATE_UPSTREAMS` is on (the embedded default). `refusal()` is the pure
decision over resolved addresses; `check_upstream_url()` resolves the name and applies it,
and is what callers run again on every redirect.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]

# Cloud metadata endpoints that are not already link-local.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192", "169.254.170.2")
)
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})


class UnsafeUpstream(ValueError):
    """The URL may not be used as an upstream; the message says why, for the admin."""


def address_refusal(address: IPAddress) -> str | None:
    """Why this address may not be an upstream, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a reserved, non-public address"
    return None


def refusal(url: str, addresses: Iterable[str], *, allow_private: bool) -> str | None:
    """Why `url` (whose host resolved to `addresses`) may not be an upstream, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        return f"the URL must start with https:// (got {parts.scheme or 'no scheme'!r})"
    if not parts.hostname:
        return "the URL has no host"
    if allow_private:
        return None
    if parts.scheme != "https":
        return "only https:// upstreams are allowed (plain http is allowed only when private upstreams are)"
    if parts.hostname.lower().rstrip(".") in METADATA_HOSTS:
        return f"{parts.hostname} is a cloud metadata host"
    resolved = list(addresses)
    if not resolved:
        return f"{parts.hostname} does not resolve to any address"
    for raw in resolved:
        try:
            address = ipaddress.ip_address(raw.split("%", 1)[0])
        except ValueError:
            return f"{parts.hostname} resolved to {raw!r}, which is not an IP address"
        reason = address_refusal(address)
        if reason:
            return f"{parts.hostname} resolves to {address}, {reason}"
    return None


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeUpstream(f"{host} cannot be resolved: {exc.strerror or exc}") from None
    return sorted({str(info[4][0]) for info in infos})


def check_upstream_url(url: str, *, allow_private: bool | None = None,
                       resolver: Resolver = resolve) -> None:
    """Raise UnsafeUpstream when `url` may not be registered (or followed, on a redirect)."""
    if allow_private is None:
        from django.conf import settings

        allow_private = bool(settings.INTENDED_ALLOW_PRIVATE_UPSTREAMS)
    parts = urlsplit(url)
    addresses: Iterable[str] = ()
    if not allow_private and parts.scheme == "https" and parts.hostname:
        try:
            addresses = [str(ipaddress.ip_address(parts.hostname))]
        except ValueError:
            addresses = resolver(parts.hostname, parts.port or 443)
    reason = refusal(url, addresses, allow_private=allow_private)
    if reason:
        raise UnsafeUpstream(reason)
