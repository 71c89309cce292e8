"""The velocity stage's own Redis connection, against real redis-server processes: replies in
order under pipelining, a flushed script cache, the URL's password and db, and every way Redis
can fail (down, silent, restarted) ending in ScriptError, never a hang or a wrong reply."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from policies_app.redis_scripts import Script, ScriptClient, ScriptError
from tests.support.processes import free_port, redis_server_argv, running

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

