"""The SSRF check for servers registered in the browser: pure decisions over resolved addresses."""

from __future__ import annotations

import pytest

from gateway.addresses import UnsafeUpstream, check_upstream_url, refusal


@pytest.mark.parametrize(("address", "why"), [
    ("127.0.0.1", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.9", "private"),
    ("192.168.1.1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "metadata"),
    ("169.254.10.10", "link-local"),
    ("fe80::1", "link-local"),
    ("fd00:ec2::254", "metadata"),
    ("100.100.100.200", "metadata"),
    ("100.64.0.1", "non-public"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:127.0.0.1", "loopback"),
])
def test_it_refuses_non_public_addresses(address, why):
    reason = refusal("https://tools.example.com/mcp", [address], allow_private=False)
    assert reason is not None and why in reason


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "8.8.8.8"])
def test_it_admits_public_addresses_over_https(address):
    assert refusal("https://tools.example.com/mcp", [address], allow_private=False) is None


def test_it_refuses_a_name_when_any_of_its_addresses_is_private():
    reason = refusal("https://mixed.example.com/mcp", ["8.8.8.8", "10.0.0.5"], allow_private=False)
    assert reason == "mixed.example.com resolves to 10.0.0.5, a private address"


def test_it_refuses_plain_http_unless_private_upstreams_are_allowed():
    assert "https" in refusal("http://tools.example.com/mcp", ["8.8.8.8"], allow_private=False)
    assert refusal("http://127.0.0.1:9000/mcp", [], allow_private=True) is None


@pytest.mark.parametrize("url", ["ftp://tools.example.com/mcp", "file:///etc/passwd", "gopher://x/"])
def test_it_refuses_other_schemes_even_when_private_upstreams_are_allowed(url):
    assert refusal(url, [], allow_private=True) is not None


def test_it_refuses_metadata_host_names_before_resolving():
    assert "metadata" in refusal("https://metadata.google.internal/", ["8.8.8.8"], allow_private=False)


def test_it_checks_after_resolution():
    def resolver(host, port):
        assert (host, port) == ("rebind.example.com", 8443)
        return ["127.0.0.1"]

    with pytest.raises(UnsafeUpstream, match="loopback"):
        check_upstream_url("https://rebind.example.com:8443/mcp", allow_private=False, resolver=resolver)


def test_it_checks_literal_addresses_without_resolving():
    def resolver(host, port):
        raise AssertionError("an IP literal needs no DNS")

    with pytest.raises(UnsafeUpstream, match="metadata"):
        check_upstream_url("https://[fd00:ec2::254]/latest", allow_private=False, resolver=resolver)


def test_it_says_when_a_name_does_not_resolve():
    with pytest.raises(UnsafeUpstream, match="cannot be resolved"):
        check_upstream_url("https://no-such-host.invalid/mcp", allow_private=False)


def test_it_follows_the_setting_by_default(settings):
    settings.INTENDED_ALLOW_PRIVATE_UPSTREAMS = False
    with pytest.raises(UnsafeUpstream):
        check_upstream_url("https://127.0.0.1/mcp")
    settings.INTENDED_ALLOW_PRIVATE_UPSTREAMS = True
    check_upstream_url("http://127.0.0.1:9000/mcp")
