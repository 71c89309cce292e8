from __future__ import annotations

import pytest
from django.test import Client

from gateway.transport_security import is_loopback, plain_http_refused, refusal_for

# (secure transport, client, X-Forwarded-Proto, require, behind proxy) -> refused?
CASES = [
    (False, "203.0.113.9", None, False, False, False),  # not required: anything goes
    (False, "203.0.113.9", None, True, False, True),  # plain HTTP from another host
    (True, "203.0.113.9", None, True, False, False),  # TLS at the gateway (daphne -e ssl:...)
    (False, "127.0.0.1", None, True, False, False),  # loopback: local tools, probes
    (False, "::1", None, True, False, False),
    (False, "::ffff:127.0.0.1", None, True, False, False),
    (False, "127.8.9.10", None, True, False, False),
    (False, None, None, True, False, False),  # unix socket
    (False, "10.0.0.5", None, True, False, True),  # a private address is still another host
    (False, "example.org", None, True, False, True),  # not an address: not loopback
    (False, "127.0.0.1", "https", True, True, False),  # TLS proxy on this host, client used TLS
    (False, "127.0.0.1", "http", True, True, True),  # ...client used plain HTTP to the proxy
    (False, "127.0.0.1", "HTTPS, http", True, True, False),  # first hop counts
    (False, "10.0.0.2", "https", True, True, False),  # TLS load balancer on another host
    (False, "10.0.0.2", None, True, True, True),  # bypassing the load balancer
    (False, "203.0.113.9", "https", True, False, True),  # header not trusted without the setting
]


@pytest.mark.parametrize("secure,client,proto,require,behind,refused", CASES)
def test_it_refuses_plain_http_from_other_hosts_only(secure, client, proto, require, behind, refused):
    assert plain_http_refused(
        secure_transport=secure, client_host=client, forwarded_proto=proto,
        require_tls=require, behind_tls_proxy=behind,
    ) is refused


def test_it_knows_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("[::1]")
    assert not is_loopback("192.168.1.1") and not is_loopback("localhost.evil.example")


def test_it_reads_the_asgi_scope(settings):
    settings.INTENDED_REQUIRE_TLS = True
    settings.INTENDED_BEHIND_TLS_PROXY = False
    remote = {"type": "http", "scheme": "http", "client": ("198.51.100.7", 5555), "headers": []}
    assert (refusal_for(remote) or "").startswith("TLS required")
    assert refusal_for(remote | {"scheme": "https"}) is None
    assert refusal_for(remote | {"client": ("127.0.0.1", 5555)}) is None
    settings.INTENDED_BEHIND_TLS_PROXY = True
    proxied = remote | {"client": ("127.0.0.1", 1), "headers": [(b"x-forwarded-proto", b"http")]}
    assert refusal_for(proxied) is not None


@pytest.mark.django_db
def test_it_refuses_the_dashboard_over_plain_http_from_another_host(settings):
    settings.INTENDED_REQUIRE_TLS = True
    response = Client(REMOTE_ADDR="198.51.100.7").get("/admin/login/")
    assert response.status_code == 403
    assert "TLS required" in response.json()["detail"]


@pytest.mark.django_db
def test_it_serves_the_dashboard_to_loopback_and_over_tls(settings):
    settings.INTENDED_REQUIRE_TLS = True
    settings.SECURE_SSL_REDIRECT = False
    assert Client().get("/admin/login/").status_code == 200
    assert Client(REMOTE_ADDR="198.51.100.7").get("/admin/login/", secure=True).status_code == 200


@pytest.mark.django_db
def test_it_lets_load_balancer_probes_in_over_plain_http(settings):
    settings.INTENDED_REQUIRE_TLS = True
    assert Client(REMOTE_ADDR="198.51.100.7").get("/healthz").status_code == 200


@pytest.mark.django_db
def test_it_serves_anyone_when_tls_is_not_required(settings):
    settings.INTENDED_REQUIRE_TLS = False
    settings.SECURE_SSL_REDIRECT = False
    assert Client(REMOTE_ADDR="198.51.100.7").get("/admin/login/").status_code == 200
