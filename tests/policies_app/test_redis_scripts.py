"""The velocity stage's own Redis connection, against real redis-server processes: replies in
order under pipelining, a flushed script cache, the URL's password and db, its TLS options
honoured (a TLS-only server with its own CA and client certificates) and the others refused
at start-up, and every way Redis can fail (down, silent, restarted) ending in ScriptError,
never a hang or a wrong reply."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from policies_app.apps import check_velocity_redis_url
from policies_app.redis_scripts import Script, ScriptClient, ScriptError, url_options
from tests.support.processes import ROOT, child_env, free_port, redis_server_argv, running

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

ECHO = Script("return {KEYS[1], ARGV[1]}")
INCR = Script("return redis.call('INCR', KEYS[1])")


class RedisServer:
    def __init__(self, directory: Path, *extra: str) -> None:
        self.port = free_port()
        self.argv = redis_server_argv(self.port, directory, *extra)

    def url(self, auth: str = "", db: int = 0) -> str:
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    redis_server = RedisServer(tmp_path)
    with running(redis_server.argv, redis_server.port):
        yield redis_server


async def test_it_answers_each_of_many_calls_in_flight_with_its_own_reply(server: RedisServer):
    client = ScriptClient(server.url(), timeout=2)
    replies = await asyncio.gather(*(client.run(ECHO, [f"k{i}"], [i]) for i in range(300)))
    assert replies == [[f"k{i}".encode(), str(i).encode()] for i in range(300)]


async def test_it_reloads_a_script_that_redis_forgot(server: RedisServer):
    client = ScriptClient(server.url(), timeout=2)
    assert await client.run(INCR, ["n"], []) == 1
    redis.Redis.from_url(server.url()).script_flush()
    assert await client.run(INCR, ["n"], []) == 2


async def test_it_uses_the_password_and_database_of_the_url(tmp_path: Path):
    locked = RedisServer(tmp_path, "--requirepass", "s3cret")
    with running(locked.argv, locked.port):
        assert await ScriptClient(locked.url(":s3cret@", db=5), timeout=2).run(INCR, ["n"], []) == 1
        assert redis.Redis.from_url(locked.url(":s3cret@", db=5)).get("n") == b"1"
        assert redis.Redis.from_url(locked.url(":s3cret@", db=0)).get("n") is None
        with pytest.raises(ScriptError, match="refused the connection"):
            await ScriptClient(locked.url(":wrong@"), timeout=2).run(INCR, ["n"], [])


async def test_it_reports_a_redis_that_is_not_there():
    with pytest.raises(ScriptError, match="cannot reach Redis"):
        await ScriptClient(f"redis://127.0.0.1:{free_port()}/0", timeout=2).run(INCR, ["n"], [])


async def test_it_reports_a_script_error_as_refused(server: RedisServer):
    with pytest.raises(ScriptError, match="refused the script"):
        await ScriptClient(server.url(), timeout=2).run(Script("return redis.call('NOPE')"), [], [])


async def test_it_gives_up_on_a_silent_redis_and_fails_every_call_in_flight():
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    client = ScriptClient(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", timeout=0.3)
    results = await asyncio.gather(*(client.run(INCR, ["n"], []) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, ScriptError) for r in results), results
    silent.close()
    for conn in accepted:
        conn.close()


async def test_it_connects_again_after_redis_restarts(tmp_path: Path):
    restarting = RedisServer(tmp_path)
    client = ScriptClient(restarting.url(), timeout=2)
    with running(restarting.argv, restarting.port):
        assert await client.run(INCR, ["n"], []) == 1
    with pytest.raises(ScriptError):  # down: the call in flight fails, nothing hangs
        await client.run(INCR, ["n"], [])
    with running(restarting.argv, restarting.port):
        assert await client.run(INCR, ["n"], []) == 1  # a new server: empty, and no script cached



# --- the URL's options: honoured, or refused when the process starts ------------------------------


@pytest.mark.parametrize("url, named", [
    ("rediss://127.0.0.1:6380/0?ssl_min_version=4", "ssl_min_version"),
    ("rediss://127.0.0.1:6380/0?ssl_ciphers=ALL&ssl_password=x", "ssl_ciphers, ssl_password"),
    ("redis://127.0.0.1:6379/0?protocol=3", "protocol"),
])
def test_it_refuses_url_options_it_would_not_honour(url: str, named: str):
    with pytest.raises(ValueError, match=f"option\\(s\\) {named} are not supported"):
        url_options(url)
    with pytest.raises(ImproperlyConfigured, match=named):
        check_velocity_redis_url(url)


def test_it_takes_the_pool_and_timeout_options_other_clients_of_the_url_use():
    options = url_options("redis://127.0.0.1:6379/3?health_check_interval=30&socket_timeout=5&max_connections=50")
    assert options["db"] == 3


def test_it_refuses_a_tls_file_it_cannot_load(tmp_path: Path):
    with pytest.raises(ImproperlyConfigured, match="No such file"):
        check_velocity_redis_url(f"rediss://127.0.0.1:6380/0?ssl_ca_certs={tmp_path}/missing.pem")
    with pytest.raises(ImproperlyConfigured, match="ssl_cert_reqs=sometimes"):
        check_velocity_redis_url("rediss://127.0.0.1:6380/0?ssl_cert_reqs=sometimes")


def test_a_process_with_such_a_url_does_not_start():
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                          env=child_env(REDIS_URL="rediss://127.0.0.1:6380/0?ssl_ciphers=ALL"), timeout=60)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and "ssl_ciphers are not supported" in done.stderr


def _certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost and 127.0.0.1, and a client certificate."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def issue(name: str, key, issuer_name, issuer_key, *, ca: bool, san: list[x509.GeneralName] | None = None):
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                            critical=True)
            builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def write(name: str, cert, key) -> None:
        (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "velocity test CA")])
    ca = issue("velocity test CA", ca_key, ca_name, ca_key, ca=True)
    write("ca", ca, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    write("server", issue("localhost", server_key, ca_name, ca_key, ca=False,
                          san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
          server_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    write("client", issue("gateway", client_key, ca_name, ca_key, ca=False), client_key)
    return {name: directory / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, dict[str, Path]]]:
    """A redis-server that speaks only TLS and asks the client for a certificate from the CA."""
    files = _certificates(tmp_path)
    port = free_port()
    argv = redis_server_argv(0, tmp_path, "--tls-port", str(port), "--tls-cert-file", str(files["server.pem"]),
                             "--tls-key-file", str(files["server.key"]), "--tls-ca-cert-file", str(files["ca.pem"]),
                             "--tls-auth-clients", "yes")
    with running(argv, port):
        yield port, files


async def test_it_honours_the_tls_options_of_a_rediss_url(tls_server):
    port, files = tls_server
    base = f"rediss://localhost:{port}/0"
    client_cert = f"ssl_certfile={files['client.pem']}&ssl_keyfile={files['client.key']}"
    trusted = ScriptClient(f"{base}?ssl_ca_certs={files['ca.pem']}&{client_cert}", timeout=2)
    assert await trusted.run(INCR, ["n"], []) == 1
    # the CA of the URL is the one trusted: without it the server's certificate is refused
    with pytest.raises(ScriptError, match="CERTIFICATE_VERIFY_FAILED"):
        await ScriptClient(f"{base}?{client_cert}", timeout=2).run(INCR, ["n"], [])
    # the client certificate of the URL is the one sent: without it the server refuses us
    with pytest.raises(ScriptError):
        await ScriptClient(f"{base}?ssl_ca_certs={files['ca.pem']}", timeout=2).run(INCR, ["n"], [])
    # ssl_cert_reqs=none is what the URL asks for: no verification of the server
    unverified = ScriptClient(f"{base}?ssl_cert_reqs=none&{client_cert}", timeout=2)
    assert await unverified.run(INCR, ["n"], []) == 2
