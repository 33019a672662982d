"""`newsmon run` waits for its database at start instead of crash-looping.

A service started with its database down (a host booting, PostgreSQL restarting, a network
not up yet) used to fail in `Store.open` and exit 1; with `Restart=on-failure` systemd
started it again, and again, each start spawning worker processes and logging a traceback.
`open_when_ready` tries instead, with capped exponential backoff, until the database answers
or SIGTERM comes:

- each failed attempt is logged once, with its reason and the database URL with its password
  masked;
- systemd hears from us meanwhile: ``STATUS=`` says what we wait for, and
  ``EXTEND_TIMEOUT_USEC=`` (with a ``WATCHDOG=1`` ping) keeps its start timeout from
  killing a service that is waiting, not hung. ``READY=1`` comes only once the daemon runs;
- a stop while waiting returns None at once (the caller exits 0): there is nothing in flight.

Any error escapes that says the configuration, not the database, is wrong (an unknown
backend: ``ValueError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from monitor.logs import clean
from monitor.store import Store
from monitor.systemd import SystemdNotify

log = logging.getLogger("newsmon")

# The first retry after 1 s, doubling up to 30 s: a database restarting (seconds) is caught
# at once, one down for long is asked twice a minute, and the log gets a line per attempt.
FIRST_DELAY = 1.0
MAX_DELAY = 30.0
# One attempt (connect and migrate) may take this long: a host that drops packets would
# otherwise hold the start for the driver's own, longer, connect timeout.
ATTEMPT_TIMEOUT = 30.0
# While waiting, systemd hears from us this often, and each message asks for this much more
# time: past the wait, the rest of the start (workers, web, the first claim) fits in it.
NOTIFY_EVERY = 5.0
EXTEND_BY = 60.0

# What "the database is not there (yet)" looks like: the driver could not connect (refused,
# no route, DNS, deadline) or the server refused us (starting up, too many connections, no
# such database yet, authentication while credentials are being fixed).
UNREACHABLE: tuple[type[BaseException], ...] = (OSError, TimeoutError, sa.exc.DBAPIError)


def retry_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1 = the first)."""
    return min(MAX_DELAY, FIRST_DELAY * 2.0 ** min(max(attempt, 1) - 1, 30))


def masked_url(url: str) -> str:
    """`url` fit for a log line: its password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(unparsable database URL)"


def reason(error: BaseException) -> str:
    """One line saying why an attempt failed: the driver's message, not SQLAlchemy's wrapper
    (which appends the statement and a link)."""
    inner = error.orig if isinstance(error, sa.exc.DBAPIError) and error.orig else error
    text = str(inner).strip().splitlines()
    first = text[0] if text else ""
    return clean(f"{type(inner).__name__}: {first}" if first else type(inner).__name__)


async def _keep_systemd_waiting(notify: SystemdNotify, status: list[str]) -> None:
    while True:
        notify.status(status[0])
        notify.send(f"EXTEND_TIMEOUT_USEC={int(EXTEND_BY * 1_000_000)}", "WATCHDOG=1")
        await asyncio.sleep(NOTIFY_EVERY)


async def open_when_ready(
    url: str,
    stop: asyncio.Event,
    *,
    notify: SystemdNotify,
    open_store: Callable[[str], Awaitable[Store]] = Store.open,
) -> Store | None:
    """The store at `url`, opened (and migrated) once the database answers; None when `stop`
    was set first."""
    shown = masked_url(url)
    status = [f"opening the database {shown}"]
    keepalive = asyncio.create_task(_keep_systemd_waiting(notify, status), name="db-wait")
    try:
        attempt = 0
        while not stop.is_set():
            attempt += 1
            try:
                store = await _until_stopped(
                    asyncio.wait_for(open_store(url), ATTEMPT_TIMEOUT), stop
                )
            except UNREACHABLE as error:
                why = reason(error)
            else:
                if store is not None and attempt > 1:
                    log.info("database reachable database=%s attempts=%d", shown, attempt)
                return store
            delay = retry_delay(attempt)
            log.warning(
                "database unreachable database=%s attempt=%d retry_in=%.0fs error=%s",
                shown,
                attempt,
                delay,
                why,
            )
            status[0] = f"waiting for the database (attempt {attempt}, next in {delay:.0f}s): {why}"
            notify.status(status[0])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        return None
    finally:
        keepalive.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keepalive


async def _until_stopped(opening: Awaitable[Store], stop: asyncio.Event) -> Store | None:
    """`opening`'s store, or None (the attempt cancelled) as soon as `stop` is set."""
    task = asyncio.ensure_future(opening)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    try:
        late = await task
    except asyncio.CancelledError:
        return None
    except UNREACHABLE:
        return None
    await late.close()  # opened in the same instant as the stop: not wanted any more
    return None
