"""The HTTP endpoints for operators: /healthz, /readyz and /metrics, on aiohttp.

- ``GET /healthz``: 200 ``ok`` whenever the process can answer at all (liveness: a container
  runtime restarts the process when it stops answering).
- ``GET /readyz``: 200 when the database answers a cheap query, the scheduler runs and the
  last poll cycle is recent; else 503. The body lists each check on its own line
  (``database: ok``), so a probe's log says which one failed.
- ``GET /metrics``: the Prometheus text exposition.

The daemon is reached only through the `Readiness` and `MetricsSource` protocols below, so this
module imports nothing of newsmon's (DESIGN.md, "Rooms"): it takes `settings.web` and objects
that have the right methods. The endpoints never change anything and never show a secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from aiohttp import web

log = logging.getLogger(__name__)

# The poll job runs every couple of seconds (scheduler.POLL_TICK); a cycle older than this
# means the scheduler is wedged, not merely busy.
STALE_AFTER = timedelta(minutes=2)
# A readiness probe must answer before the prober gives up (Kubernetes: 1 s by default,
# Docker: 30 s); a database that takes longer than this is not ready for our purposes.
DATABASE_TIMEOUT = timedelta(seconds=3)


class Readiness(Protocol):
    """What /readyz asks the daemon. Implementations must not raise for an unreachable
    database (return False); an exception is taken as "not ready" all the same."""

    async def database_ok(self) -> bool:
        """True when the database answered a cheap query (SELECT 1) just now."""
        ...

    def scheduler_running(self) -> bool:
        """True while the scheduler runs its jobs (False before start and after stop)."""
        ...

    def last_cycle(self) -> datetime | None:
        """When the last poll cycle (one claim of due feeds) finished, aware UTC; None if none."""
        ...


class MetricsSource(Protocol):
    """`monitor.metrics.Metrics` fits this."""

    @property
    def content_type(self) -> str: ...

    def render(self) -> bytes: ...


class WebConfig(Protocol):
    """`config.WebSettings` fits this."""

    @property
    def listen(self) -> str: ...


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9464`` for IPv6) -> (host, port). Raises ValueError."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"web.listen: expected host:port, got {listen!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"web.listen: write an IPv6 address in brackets ([::1]:9464): {listen!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"web.listen: port out of range: {listen!r}")
    return host, port


@dataclass(frozen=True, slots=True)
class ReadyReport:
    """The outcome of the readiness checks."""

    database: bool
    scheduler: bool
    cycle_age: timedelta | None  # since the last cycle; None: no cycle yet
    stale_after: timedelta

    @property
    def cycle_recent(self) -> bool:
        return self.cycle_age is not None and self.cycle_age <= self.stale_after

    @property
    def ready(self) -> bool:
        return self.database and self.scheduler and self.cycle_recent

    def text(self) -> str:
        if self.cycle_age is None:
            cycle = "none yet"
        else:
            age = f"{self.cycle_age.total_seconds():.0f}s ago"
            cycle = age if self.cycle_recent else f"stale ({age})"
        return (
            f"{'ready' if self.ready else 'not ready'}\n"
            f"database: {'ok' if self.database else 'unreachable'}\n"
            f"scheduler: {'running' if self.scheduler else 'stopped'}\n"
            f"last cycle: {cycle}\n"
        )


async def check_ready(
    readiness: Readiness,
    now: datetime,
    *,
    stale_after: timedelta = STALE_AFTER,
    database_timeout: timedelta = DATABASE_TIMEOUT,
) -> ReadyReport:
    """Run the readiness checks once."""
    try:
        database = await asyncio.wait_for(readiness.database_ok(), database_timeout.total_seconds())
    except Exception as error:  # TimeoutError included: a hung database is not ready
        log.debug("readiness: database check failed: %s", type(error).__name__)
        database = False
    try:
        scheduler = readiness.scheduler_running()
        last = readiness.last_cycle()
    except Exception:
        log.exception("readiness: the daemon's checks raised")
        scheduler, last = False, None
    age = None if last is None else max(timedelta(0), now - last)
    return ReadyReport(bool(database), bool(scheduler), age, stale_after)


def build_app(
    readiness: Readiness,
    metrics: MetricsSource,
    *,
    clock: Callable[[], datetime],
    stale_after: timedelta = STALE_AFTER,
    database_timeout: timedelta = DATABASE_TIMEOUT,
) -> web.Application:
    """The aiohttp application with the three routes (GET and HEAD)."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        report = await check_ready(
            readiness, clock(), stale_after=stale_after, database_timeout=database_timeout
        )
        return web.Response(text=report.text(), status=200 if report.ready else 503)

    async def metrics_page(_request: web.Request) -> web.Response:
        body = metrics.render()
        # The exposition's Content-Type carries a version and a charset parameter, which
        # aiohttp's `content_type=` argument refuses: set the header as it is.
        return web.Response(body=body, headers={"Content-Type": metrics.content_type})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app


@dataclass(slots=True)
class WebServer:
    """A running endpoint; `stop()` closes the socket and waits for requests in flight."""

    runner: web.AppRunner
    host: str
    port: int  # the bound port (the real one when `listen` asked for port 0)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def start_web(
    config: WebConfig,
    readiness: Readiness,
    metrics: MetricsSource,
    *,
    clock: Callable[[], datetime] = _utcnow,
    stale_after: timedelta = STALE_AFTER,
    database_timeout: timedelta = DATABASE_TIMEOUT,
) -> WebServer:
    """Serve the endpoints on `config.listen` until `stop()`.

    Raises ValueError for a malformed `listen` and OSError when the address cannot be bound
    (in use, not local): both at start, so `newsmon run` fails loudly rather than running blind.
    """
    host, port = parse_listen(config.listen)
    app = build_app(
        readiness, metrics, clock=clock, stale_after=stale_after, database_timeout=database_timeout
    )
    # No access log: a scraper every 15 s would drown the events that matter. The daemon
    # handles signals itself.
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    addresses = runner.addresses  # (host, port, ...) of each bound socket
    bound = int(addresses[0][1]) if addresses else port
    log.info("web endpoint listening on %s:%d", host, bound)
    return WebServer(runner, host, bound)
