"""`python manage.py serve`: the web process (gateway, dashboard, API, websockets) under uvicorn,
with the header deadline and size cap of gateway.http_protocol (plain `uvicorn` has neither).

On the embedded default (no REDIS_URL, so no Celery worker) it also runs the periodic tasks
of CELERY_BEAT_SCHEDULE in-process, which is what `demo` does too.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

log = logging.getLogger("intended.serve")


class InProcessBeat:
    """Runs each CELERY_BEAT_SCHEDULE task on its interval in a thread of this process: the
    embedded stand-in for `celery -A intended worker -B`."""

    def __init__(self, schedule: dict[str, dict[str, Any]] | None = None) -> None:
        self.schedule = schedule if schedule is not None else settings.CELERY_BEAT_SCHEDULE
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        from intended.celery import app

        app.loader.import_default_modules()
        for entry in self.schedule.values():
            name = entry["task"]
            task = app.tasks.get(name)
            if task is None:
                log.warning("in-process worker: task %s is not registered; skipped", name)
                continue
            every = entry["schedule"]
            seconds = every.total_seconds() if hasattr(every, "total_seconds") else float(every)
            self._tasks.append(asyncio.create_task(self._every(seconds, task, name)))

    async def _every(self, seconds: float, task: Any, name: str) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await asyncio.to_thread(task.apply, throw=True)
            except Exception:  # one failed run must not stop the schedule
                log.exception("in-process worker: task %s failed", name)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


def uvicorn_options(*, host: str, port: int, workers: int = 1, lifespan: str = "on",
                    access_log: bool = True) -> dict[str, Any]:
    from gateway.http_protocol import GuardedHttpProtocol

    return dict(
        access_log=access_log,
        host=host,
        port=port,
        workers=workers,
        lifespan=lifespan,
        # uvicorn's httptools protocol plus a header deadline and size cap, which uvicorn
        # lacks (slow-header clients would hold connections for ever: docs/SECURITY.md).
        http=GuardedHttpProtocol,
        # uvicorn would believe X-Forwarded-For from loopback; the application trusts it from
        # TRUSTED_PROXIES only (gateway/transport_security.py::TrustedProxyHeaders).
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
        log_level=os.environ.get("UVICORN_LOG_LEVEL", "info"),
    )


async def serve_with_beat(config: Any, beat: InProcessBeat | None) -> None:
    import uvicorn

    server = uvicorn.Server(config)
    if beat is not None:
        beat.start()
    try:
        await server.serve()
    finally:
        if beat is not None:
            await beat.stop()


class Command(BaseCommand):
    help = "Run the web process (gateway, dashboard, REST API, websockets) under uvicorn."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
        parser.add_argument(
            "--in-process-worker",
            choices=["auto", "on", "off"],
            default="auto",
            help="run periodic tasks in this process (auto: on the embedded default only)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        workers = options["workers"]
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        wanted = options["in_process_worker"]
        with_beat = wanted == "on" or (wanted == "auto" and settings.EMBEDDED)
        if workers > 1:
            if with_beat and wanted == "on":
                raise CommandError("--in-process-worker needs --workers 1 (run a Celery worker instead)")
            import uvicorn

            uvicorn.run("intended.asgi:application",
                        **uvicorn_options(host=options["host"], port=options["port"], workers=workers))
            return
        import uvicorn

        from intended.asgi import application

        config = uvicorn.Config(application, **uvicorn_options(host=options["host"], port=options["port"]))
        asyncio.run(serve_with_beat(config, InProcessBeat() if with_beat else None))
