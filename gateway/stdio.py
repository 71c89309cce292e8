"""stdio upstreams: an MCP server the gateway spawns, presented to the proxy as if it were a
Streamable HTTP server (the `Upstream` seam in gateway/upstream.py).

The child speaks newline-delimited JSON-RPC on stdin/stdout. How HTTP maps onto it:

- **Legacy era** (a POSTed `initialize`): one child per MCP session. `initialize` spawns it
  and, once it answered, mints the `Mcp-Session-Id`; later POSTs of that session go to the same
  child; DELETE (or the child exiting) ends the session. A POSTed request is answered as SSE
  when the agent accepts `text/event-stream`, else as JSON. The child's answer goes to the
  stream of the request it answers; a progress notification to the stream of the request
  that carried its progressToken; any other server message (sampling, elicitation, roots,
  logging) to the one open request stream if exactly one is open, else to the GET stream
  (kept in a small buffer until the agent opens it). Events carry no ids, so no agent tries
  to resume them with Last-Event-ID.
- **Modern era** (a POST without session whose `_meta` carries the 2026-07-28 envelope): a
  small pool of children, each leased to one request at a time, so every message a child
  writes during the lease belongs to that request and nothing leaks between agents. A child
  goes back to the pool when its answer is complete; when the agent closes the stream early
  (the modern era's cancellation) or the answer times out, the child is killed. An
  `input_required` answer remembers its child so the MRTR retry lands on the same process
  (servers seal `requestState` with per-process keys) when that child is free.

The child gets a minimal environment (never the gateway's own secrets); the server's
credential, if any, is passed in the environment variable named by its credential header.
A child that exits or breaks the framing fails every open request with a readable JSON-RPC
error naming its exit status and last stderr line. Children are killed (their whole process
group) on DELETE, on `aclose()`, and when a session idles out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.jsonrpc import error_body, id_key, is_modern_message, sse_message
from gateway.upstream import UpstreamError, UpstreamResponse, UpstreamTimeout

log = logging.getLogger("intended.gateway.stdio")

IDLE_STREAM_HEADER = "x-intended-stream"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
STREAM_QUEUE = 256  # messages buffered per response stream before the child is made to wait
ORPHAN_BUFFER = 100  # server messages kept for a GET stream that is not open yet
STDERR_LINES = 20
AFFINITY_ENTRIES = 256
ENV_PASSTHROUGH = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
                   "PYTHONPATH", "VIRTUAL_ENV", "NODE_PATH", "SYSTEMROOT")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- messages and HTTP shapes (pure) -------------------------------------------------------

@dataclass(frozen=True)
class Message:
    """One JSON-RPC message as the child wrote it (raw bytes are what the agent gets)."""

    raw: bytes
    data: Mapping[str, Any]

    @property
    def is_response(self) -> bool:
        return "method" not in self.data and "id" in self.data

    @property
    def is_request(self) -> bool:
        return "method" in self.data and "id" in self.data

    @property
    def id_key(self) -> str:
        return id_key(self.data.get("id"))


def progress_token(data: Mapping[str, Any]) -> Any:
    params = data.get("params")
    if not isinstance(params, Mapping):
        return None
    if data.get("method") == "notifications/progress":
        return params.get("progressToken")
    meta = params.get("_meta")
    return meta.get("progressToken") if isinstance(meta, Mapping) else None


def request_state(data: Mapping[str, Any]) -> str | None:
    """The MRTR `requestState` of a retried request, or of an `input_required` result."""
    holder = data.get("params") if "method" in data else data.get("result")
    state = holder.get("requestState") if isinstance(holder, Mapping) else None
    return state if isinstance(state, str) else None


def one_line(body: bytes) -> bytes:
    """JSON text on one line: JSON strings cannot hold raw newlines, so this is lossless."""
    return body.strip().replace(b"\r", b" ").replace(b"\n", b" ")


def header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def accepts_sse(headers: Sequence[tuple[str, str]]) -> bool:
    return "text/event-stream" in (header(headers, "accept") or "")


async def _once(chunk: bytes) -> AsyncIterator[bytes]:
    if chunk:
        yield chunk


def json_response(status: int, payload: bytes = b"", extra: Sequence[tuple[str, str]] = ()) -> UpstreamResponse:
    headers = [("content-type", "application/json")] if payload else []
    return UpstreamResponse(status, headers + list(extra), _once(payload))


def http_error(status: int, code: int, message: str) -> UpstreamResponse:
    return json_response(status, error_body(None, code, message))


def child_environment(credential_name: str = "", credential: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ENV_PASSTHROUGH or k.startswith("LC_")}
    if credential and ENV_NAME.match(credential_name):
        env[credential_name] = credential
    return env


# --- one child process ----------------------------------------------------------------------

class ChildProcess:
    """A spawned MCP server: writes lines to its stdin, hands each stdout line to `on_message`."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        on_message: Callable[[Message], Awaitable[None]],
        on_exit: Callable[[str], None],
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.on_message = on_message
        self.on_exit = on_exit
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self.exit_reason: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._broken = ""

    async def start(self) -> None:
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
                limit=MAX_MESSAGE_BYTES,
                start_new_session=True,  # its own process group, so stop() reaches grandchildren
            )
        except OSError as exc:
            raise UpstreamError(f"Cannot start the upstream server {self.argv[0]!r}: {exc.strerror or exc}") from exc
        self._tasks = [asyncio.create_task(self._read_stdout()), asyncio.create_task(self._read_stderr())]

    @property
    def alive(self) -> bool:
        return self.exit_reason is None

    async def send(self, line: bytes) -> None:
        if self.exit_reason is not None or self.proc is None or self.proc.stdin is None:
            raise UpstreamError(self.exit_reason or "The upstream server is not running")
        try:
            self.proc.stdin.write(line + b"\n")
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise UpstreamError(await self._describe_exit()) from exc

    async def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    break
                line = line.strip()
                if not line:
                    continue
                try:
                    data = json.loads(line)
                except ValueError:
                    # Servers that print to stdout break the framing; skip the line, keep serving.
                    log.warning("stdio upstream %s wrote a non-JSON line: %.200r", self.argv[0], line)
                    continue
                if not isinstance(data, dict):
                    log.warning("stdio upstream %s wrote a non-object message", self.argv[0])
                    continue
                await self.on_message(Message(line, data))
        except ValueError:  # asyncio's LimitOverrunError for an over-long line
            self._broken = f"The upstream server sent a message over {MAX_MESSAGE_BYTES // (1024 * 1024)} MiB"
        except asyncio.CancelledError:
            raise
        except Exception:  # a routing bug must not leave requests hanging
            log.exception("stdio upstream %s: reading its output failed", self.argv[0])
            self._broken = "The gateway could not read the upstream server's output"
        reason = self._broken or await self._describe_exit()
        self.exit_reason = reason
        if self._broken:
            await self.stop()
        self.on_exit(reason)

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while True:
            try:
                line = await self.proc.stderr.readline()
            except ValueError:  # an over-long stderr line: drop it
                continue
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            if text:
                self.stderr_tail.append(text)
                log.debug("stdio upstream %s: %s", self.argv[0], text)

    async def _describe_exit(self) -> str:
        assert self.proc is not None
        try:
            code = await asyncio.wait_for(self.proc.wait(), 2.0)
        except TimeoutError:
            return "The upstream server closed its output"
        last = self.stderr_tail[-1] if self.stderr_tail else ""
        return f"The upstream server exited with status {code}" + (f": {last}" if last else "")

    async def stop(self) -> None:
        """Close stdin (the polite stop for an MCP stdio server), then terminate, then kill."""
        proc = self.proc
        if proc is None:
            return
        if self.exit_reason is None:
            self.exit_reason = "The upstream server was stopped"
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                if proc.stdin is not None:
                    proc.stdin.close()
            for sig, wait in ((None, 1.0), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
                if sig is not None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, sig)
                try:
                    await asyncio.wait_for(proc.wait(), wait)
                    break
                except TimeoutError:
                    continue
        else:
            # The leader is gone; make sure nothing it started lingers.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current and not task.done():
                task.cancel()


# --- one response stream --------------------------------------------------------------------

_END = object()


class ResponseStream:
    """The messages bound for one HTTP response (a POSTed request's answer, or the GET stream)."""

    def __init__(self, request_id: Any = None, *, sse: bool = True) -> None:
        self.request_id = request_id
        self.sse = sse
        self.closed = False
        self.completed = False
        self._queue: asyncio.Queue[Any] = asyncio.Queue(STREAM_QUEUE)

    async def put(self, message: Message, *, final: bool = False) -> None:
        if self.closed:
            return
        await self._queue.put(message)
        if final:
            await self._queue.put(_END)

    def fail(self, reason: str) -> None:
        """The child is gone: answer the request with a readable error (or just end a GET)."""
        if self.closed:
            return
        self._drain()
        if self.request_id is not None:
            raw = error_body(self.request_id, -32603, reason)
            self._queue.put_nowait(Message(raw, json.loads(raw)))
        self._queue.put_nowait(_END)

    def end(self) -> None:
        if not self.closed:
            self._drain()
            self._queue.put_nowait(_END)

    def close(self) -> None:
        self.closed = True
        self._drain()

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def messages(self, idle_timeout: float | None) -> AsyncIterator[Message]:
        """Each message until the final one; raises UpstreamTimeout after `idle_timeout` of silence."""
        while True:
            try:
                item = await asyncio.wait_for(self._queue.get(), idle_timeout)
            except TimeoutError:
                raise UpstreamTimeout(
                    f"The upstream server did not answer within {idle_timeout:g}s"
                ) from None
            if item is _END:
                self.completed = True
                return
            yield item


async def _sse_body(stream: ResponseStream, idle_timeout: float | None,
                    done: Callable[[ResponseStream], Awaitable[None]]) -> AsyncIterator[bytes]:
    try:
        async for message in stream.messages(idle_timeout):
            yield sse_message(message.raw)
    finally:
        stream.close()
        await done(stream)


async def _final_answer(stream: ResponseStream, idle_timeout: float | None) -> Message:
    """The answer to a request answered as JSON; notifications meanwhile are dropped."""
    answer: Message | None = None
    async for message in stream.messages(idle_timeout):
        if message.is_response:
            answer = message
    if answer is None:
        raise UpstreamError("The upstream server ended without answering")
    return answer


def _sse_headers(extra: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    return [("content-type", "text/event-stream"), ("cache-control", "no-cache"),
            ("x-accel-buffering", "no"), *extra]


# --- legacy era: one child per session -------------------------------------------------------

class LegacySession:
    def __init__(self, session_id: str, upstream: StdioUpstream) -> None:
        self.id = session_id
        self.upstream = upstream
        self.child = ChildProcess(upstream.command, upstream.env, self._route, self._child_exited)
        self.pending: dict[str, ResponseStream] = {}
        self.progress: dict[str, ResponseStream] = {}
        self.get_stream: ResponseStream | None = None
        self.orphans: collections.deque[Message] = collections.deque(maxlen=ORPHAN_BUFFER)
        self.last_used = time.monotonic()

    @property
    def busy(self) -> bool:
        return bool(self.pending) or self.get_stream is not None

    async def _route(self, message: Message) -> None:
        if message.is_response:
            stream = self.pending.pop(message.id_key, None)
            if stream is not None:
                self.progress = {k: s for k, s in self.progress.items() if s is not stream}
                await stream.put(message, final=True)
            return
        token = progress_token(message.data)
        if token is not None and (stream := self.progress.get(id_key(token))) is not None:
            await stream.put(message)
            return
        open_posts = [s for s in self.pending.values() if s.sse and not s.closed]
        if len(open_posts) == 1:
            await open_posts[0].put(message)
        elif self.get_stream is not None and not self.get_stream.closed:
            await self.get_stream.put(message)
        else:
            self.orphans.append(message)

    def _child_exited(self, reason: str) -> None:
        log.info("stdio session %s ended: %s", self.id, reason)
        for stream in self.pending.values():
            stream.fail(reason)
        self.pending.clear()
        if self.get_stream is not None:
            self.get_stream.end()
        self.upstream.forget_session(self.id)

    async def post(self, data: Mapping[str, Any], line: bytes, headers: Sequence[tuple[str, str]],
                   timeout: float | None) -> UpstreamResponse:
        self.last_used = time.monotonic()
        sid = [("mcp-session-id", self.id)]
        if "method" not in data or "id" not in data:  # a notification, or the agent's answer
            await self.child.send(line)
            return json_response(202, extra=sid)
        stream = ResponseStream(data["id"], sse=accepts_sse(headers))
        key = id_key(data["id"])
        self.pending[key] = stream
        token = progress_token(data)
        if token is not None and stream.sse:
            self.progress[id_key(token)] = stream
        try:
            await self.child.send(line)
        except UpstreamError:
            self._forget(stream)
            raise
        if stream.sse:
            return UpstreamResponse(200, _sse_headers(sid), _sse_body(stream, timeout, self._done))
        try:
            answer = await _final_answer(stream, timeout)
        finally:
            self._forget(stream)
        return json_response(200, answer.raw, sid)

    def _forget(self, stream: ResponseStream) -> None:
        stream.close()
        self.pending = {k: s for k, s in self.pending.items() if s is not stream}
        self.progress = {k: s for k, s in self.progress.items() if s is not stream}

    async def _done(self, stream: ResponseStream) -> None:
        self.last_used = time.monotonic()
        if stream is self.get_stream:
            self.get_stream = None
        else:
            self._forget(stream)

    def open_get_stream(self) -> UpstreamResponse:
        self.last_used = time.monotonic()
        if self.get_stream is not None and not self.get_stream.closed:
            return http_error(409, -32000, "Conflict: only one GET stream is allowed per session")
        stream = ResponseStream(None)
        while self.orphans:
            stream._queue.put_nowait(self.orphans.popleft())
        self.get_stream = stream
        return UpstreamResponse(200, _sse_headers([("mcp-session-id", self.id)]), _sse_body(stream, None, self._done))

    async def close(self) -> None:
        self.upstream.forget_session(self.id)
        for stream in self.pending.values():
            stream.end()
        if self.get_stream is not None:
            self.get_stream.end()
        await self.child.stop()


# --- modern era: a pool of children, one request each ------------------------------------------

class PooledChild:
    def __init__(self, upstream: StdioUpstream) -> None:
        self.child = ChildProcess(upstream.command, upstream.env, self._route, self._exited)
        self.stream: ResponseStream | None = None
        self.request_key = ""

    async def _route(self, message: Message) -> None:
        stream = self.stream
        if stream is None:
            return  # a late message for a request that is already over
        final = message.is_response and message.id_key == self.request_key
        await stream.put(message, final=final)

    def _exited(self, reason: str) -> None:
        if self.stream is not None:
            self.stream.fail(reason)


class ModernPool:
    def __init__(self, upstream: StdioUpstream, max_children: int, keep_idle: int) -> None:
        self.upstream = upstream
        self.keep_idle = keep_idle
        self.idle: list[PooledChild] = []
        self.leased: set[PooledChild] = set()
        self.slots = asyncio.Semaphore(max_children)
        self.affinity: collections.OrderedDict[str, PooledChild] = collections.OrderedDict()

    async def lease(self, state: str | None) -> PooledChild:
        try:
            await asyncio.wait_for(self.slots.acquire(), self.upstream.timeout)
        except TimeoutError:
            raise UpstreamTimeout("Every process of the upstream server is busy") from None
        try:
            self.idle = [c for c in self.idle if c.child.alive]
            preferred = self.affinity.pop(state, None) if state else None
            if preferred is not None and preferred in self.idle:
                self.idle.remove(preferred)
                chosen = preferred
            elif self.idle:
                chosen = self.idle.pop()
            else:
                chosen = PooledChild(self.upstream)
                await chosen.child.start()
        except BaseException:
            self.slots.release()
            raise
        self.leased.add(chosen)
        return chosen

    async def release(self, pooled: PooledChild, *, reusable: bool, answer: Message | None = None) -> None:
        pooled.stream = None
        self.leased.discard(pooled)
        self.slots.release()
        if answer is not None and (state := request_state(answer.data)):
            self.affinity[state] = pooled
            while len(self.affinity) > AFFINITY_ENTRIES:
                self.affinity.popitem(last=False)
        if reusable and pooled.child.alive and len(self.idle) < self.keep_idle:
            self.idle.append(pooled)
        else:
            await pooled.child.stop()

    async def post(self, data: Mapping[str, Any], line: bytes, headers: Sequence[tuple[str, str]],
                   timeout: float | None) -> UpstreamResponse:
        if "method" not in data or "id" not in data:
            # The 2026-07-28 core defines no client-to-server notifications and no server
            # requests to answer; accept and drop, as a stateless HTTP server does.
            return json_response(202)
        pooled = await self.lease(request_state(data))
        stream = ResponseStream(data["id"], sse=accepts_sse(headers))
        pooled.stream = stream
        pooled.request_key = id_key(data["id"])
        try:
            await pooled.child.send(line)
        except BaseException:
            await self.release(pooled, reusable=False)
            raise
        if stream.sse:
            return UpstreamResponse(200, _sse_headers(), self._sse(pooled, stream, timeout))
        answer: Message | None = None
        try:
            answer = await _final_answer(stream, timeout)
        finally:
            await self.release(pooled, reusable=answer is not None, answer=answer)
        return json_response(200, answer.raw)

    async def _sse(self, pooled: PooledChild, stream: ResponseStream, timeout: float | None) -> AsyncIterator[bytes]:
        last: Message | None = None
        try:
            async for message in stream.messages(timeout):
                last = message
                yield sse_message(message.raw)
        finally:
            stream.close()
            # Ending before the answer is the agent's cancellation: the child goes with it.
            await self.release(pooled, reusable=stream.completed, answer=last)

    async def aclose(self) -> None:
        children = self.idle + list(self.leased)
        self.idle, self.leased = [], set()
        for pooled in children:
            await pooled.child.stop()


# --- the upstream ----------------------------------------------------------------------------

class StdioUpstream:
    """An `Upstream` that spawns `command` and speaks Streamable HTTP semantics in front of it."""

    def __init__(
        self,
        server: Any,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        max_sessions: int = 32,
        max_modern_children: int = 4,
        keep_idle_children: int = 1,
        session_idle_seconds: float = 900.0,
    ) -> None:
        """`server` is a policies_app.core.context.ServerView (its command, credential and timeout), or
        the argv to spawn."""
        if isinstance(server, (list, tuple)):
            command, credential_env = list(server), child_environment()
        else:
            command = list(server.command)
            credential_env = child_environment(server.credential_header, server.credential)
            timeout = server.timeout if timeout is None else timeout
        if not command:
            raise ValueError("a stdio upstream needs a command")
        self.command = command
        self.env = dict(env) if env is not None else credential_env
        self.timeout = 30.0 if timeout is None else timeout
        self.max_sessions = max_sessions
        self.session_idle_seconds = session_idle_seconds
        self.sessions: dict[str, LegacySession] = {}
        self.modern = ModernPool(self, max_modern_children, keep_idle_children)

    async def request(self, method: str, headers: Sequence[tuple[str, str]], body: bytes = b"") -> UpstreamResponse:
        method = method.upper()
        session_id = header(headers, "mcp-session-id")
        session = self.sessions.get(session_id) if session_id else None
        if session_id and session is None:
            return http_error(404, -32001, "Session not found")
        if method == "GET":
            if session is None:
                return http_error(400, -32000, "Bad Request: No valid session ID provided")
            if not accepts_sse(headers):
                return http_error(406, -32000, "Not Acceptable: the GET stream is text/event-stream")
            return session.open_get_stream()
        if method == "DELETE":
            if session is None:
                return http_error(400, -32000, "Bad Request: No valid session ID provided")
            await session.close()
            return json_response(200)
        if method != "POST":
            return http_error(405, -32000, f"Method {method} not allowed")
        try:
            data = json.loads(body)
        except ValueError:
            return http_error(400, -32700, "Parse error")
        if not isinstance(data, dict):
            return http_error(400, -32600, "Invalid Request: one JSON-RPC message per POST")
        line = one_line(body)
        # The proxy marks answers that may legitimately idle (e.g. subscriptions/listen).
        timeout = None if header(headers, IDLE_STREAM_HEADER) is not None else self.timeout
        if session is not None:
            return await session.post(data, line, headers, timeout)
        if data.get("method") == "initialize":
            return await self._initialize(data, line, headers)
        if is_modern_message(data):
            return await self.modern.post(data, line, headers, timeout)
        return http_error(400, -32000, "Bad Request: No valid session ID provided")

    async def _initialize(self, data: Mapping[str, Any], line: bytes, headers: Sequence[tuple[str, str]]) -> UpstreamResponse:
        await self._make_room()
        session = LegacySession(secrets.token_hex(16), self)
        await session.child.start()
        stream = ResponseStream(data.get("id"), sse=False)
        session.pending[id_key(data.get("id"))] = stream
        try:
            await session.child.send(line)
            answer = await _final_answer(stream, self.timeout)
        except BaseException:
            await session.child.stop()
            raise
        if not session.child.alive:
            raise UpstreamError(session.child.exit_reason or "The upstream server exited")
        if "error" in answer.data:
            await session.child.stop()
            extra: list[tuple[str, str]] = []
        else:
            self.sessions[session.id] = session
            extra = [("mcp-session-id", session.id)]
        if accepts_sse(headers):
            return UpstreamResponse(200, _sse_headers(extra), _once(sse_message(answer.raw)))
        return json_response(200, answer.raw, extra)

    async def _make_room(self) -> None:
        """Reap idle sessions (many clients never DELETE theirs), then check the cap."""
        now = time.monotonic()
        for session in list(self.sessions.values()):
            if not session.busy and now - session.last_used > self.session_idle_seconds:
                await session.close()
        if len(self.sessions) >= self.max_sessions:
            raise UpstreamError(f"The upstream server has too many open sessions ({self.max_sessions})")

    def forget_session(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    async def aclose(self) -> None:
        for session in list(self.sessions.values()):
            await session.close()
        await self.modern.aclose()
