"""A lean Redis connection for the velocity scripts, the one Redis round trip of every call.

Why not redis-py here: its asyncio client (connection pool checkout, stream reader and writer,
command object, script wrapper) cost about 120 µs of CPU per EVALSHA on the benchmark box, a
tenth of the gateway's whole budget per call; this client costs about 25 µs. It does one
thing: run Lua scripts by SHA over one pipelined connection per event loop, with replies
parsed by hiredis (the C parser redis-py itself uses when installed). Everything else (session
bindings, the channel layer, Celery, readiness) keeps redis-py. The URL forms are redis-py's
(`parse_url`): redis://, rediss:// (TLS) and unix://, with username, password and db.
Measured against redis-py's asyncio client by bench/redis_client_ab.py (docs/PERFORMANCE.md).

The URL's options are redis-py's too, and this client honours or refuses each (`url_options`,
checked when the app starts): a `rediss://` option it did not apply would weaken TLS unseen.

Failure rule: any error, timeout or lost connection fails every call in flight on that
connection with `ScriptError`, and the next call connects afresh. The velocity stage turns
that into a denial with a reason (fail closed).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
from typing import Any

import hiredis
from redis.connection import SSLConnection, parse_url


class ScriptError(Exception):
    """Redis could not run the script (unreachable, timed out, or refused it)."""


# Options of redis-py's URL that this client applies.
HONOURED = frozenset({"host", "port", "path", "username", "password", "db", "connection_class",
                      "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile",
                      "ssl_check_hostname"})
# Options of redis-py's connection pool, timeouts and retries, which the same REDIS_URL may carry
# for Celery and the channel layer: they have no meaning for one connection whose every call is
# bounded by INTENDED_VELOCITY_TIMEOUT_SECONDS and which reconnects on the next call.
NOT_APPLICABLE = frozenset({"socket_timeout", "socket_connect_timeout", "timeout", "socket_keepalive",
                            "health_check_interval", "max_connections", "retry_on_timeout",
                            "retry_on_error", "socket_read_size", "client_name"})
CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def url_options(url: str) -> dict[str, Any]:
    """The connection options of a Redis URL, or ValueError naming each option the client would
    not honour (every other `ssl_*` option, `protocol`, ...)."""
    options = parse_url(url)
    refused = sorted(set(options) - HONOURED - NOT_APPLICABLE)
    if refused:
        raise ValueError(f"REDIS_URL option(s) {', '.join(refused)} are not supported by the velocity "
                         f"counters' Redis client (policies_app/redis_scripts.py); it honours "
                         f"{', '.join(sorted(HONOURED - {'connection_class', 'host', 'port', 'path'}))}")
    reqs = options.get("ssl_cert_reqs", "required")
    if isinstance(reqs, str) and reqs.lower() not in CERT_REQS:
        raise ValueError(f"REDIS_URL: ssl_cert_reqs={reqs} is not one of none, optional, required")
    if options.get("ssl_keyfile") and not options.get("ssl_certfile"):
        raise ValueError("REDIS_URL: ssl_keyfile needs ssl_certfile")
    return options


def tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """The TLS context of a rediss:// URL, as redis-py builds it from the same options."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"), capath=options.get("ssl_ca_path"))
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    reqs = options.get("ssl_cert_reqs", "required")
    reqs = CERT_REQS[reqs.lower()] if isinstance(reqs, str) else reqs
    check_hostname = options.get("ssl_check_hostname", True) and reqs != ssl.CERT_NONE
    context.check_hostname = bool(check_hostname)
    context.verify_mode = reqs
    return context


class Script:
    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest().encode()


def command(*args: Any) -> bytes:
    """A command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
            while (reply := self.reader.gets()) is not False:
                future = self.waiting.popleft()
                if not future.done():
                    future.set_result(reply)
        except Exception as exc:  # a protocol error or a reply nobody asked for
            self.fail(ScriptError(f"unreadable reply from Redis: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ScriptError(f"connection to Redis lost: {exc or 'closed by the server'}"))

    def fail(self, error: Exception) -> None:
        self.lost = True
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()

    def send(self, data: bytes) -> asyncio.Future[Any]:
        if self.lost or self.transport is None:
            raise ScriptError("connection to Redis lost")
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        self.transport.write(data)
        return future


class ScriptClient:
    """One pipelined connection per event loop (the gateway's), made on first use."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.options = url_options(url)
        self.timeout = timeout  # a slow store is an unreachable one
        self.conn: _Connection | None = None
        self.connecting: asyncio.Lock | None = None

    async def run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._connection()
                reply = await conn.send(command(b"EVALSHA", script.sha, len(keys), *keys, *args))
                if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
                    # a restarted or flushed Redis: EVAL sends the source and caches it again
                    reply = await conn.send(command(b"EVAL", script.source, len(keys), *keys, *args))
        except TimeoutError:
            error = ScriptError(f"Redis did not answer within {self.timeout} s")
            self._drop(error)  # the calls in flight on this connection fail with the same reason
            raise error from None
        except OSError as exc:
            error = ScriptError(f"cannot reach Redis: {exc}")
            self._drop(error)
            raise error from exc
        if isinstance(reply, hiredis.ReplyError):
            raise ScriptError(f"Redis refused the script: {reply}")
        return reply

    def _drop(self, error: Exception) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.fail(error)

    async def _connection(self) -> _Connection:
        if self.conn is not None and not self.conn.lost:
            return self.conn
        if self.connecting is None:
            self.connecting = asyncio.Lock()
        async with self.connecting:
            if self.conn is None or self.conn.lost:
                self.conn = await self._connect()
        return self.conn

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        opts = self.options
        if "path" in opts:
            _, conn = await loop.create_unix_connection(_Connection, opts["path"])
        else:
            tls = tls_context(opts) if opts.get("connection_class") is SSLConnection else None
            _, conn = await loop.create_connection(_Connection, opts.get("host", "localhost"),
                                                   opts.get("port", 6379), ssl=tls)
        handshake = []
        if opts.get("password"):
            auth = [opts["username"], opts["password"]] if opts.get("username") else [opts["password"]]
            handshake.append(conn.send(command(b"AUTH", *auth)))
        if opts.get("db"):
            handshake.append(conn.send(command(b"SELECT", opts["db"])))
        for reply in await asyncio.gather(*handshake):
            if isinstance(reply, hiredis.ReplyError):
                conn.fail(ScriptError(str(reply)))
                raise ScriptError(f"Redis refused the connection: {reply}")
        return conn
