"""systemd's notify protocol without a dependency: readiness, status, stopping, watchdog.

``SystemdNotify.from_env()`` reads ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract
namespace) the way sd_notify(3) does; without it (a terminal, a container) every call is a
no-op returning False, so the daemon calls it unconditionally. ``watchdog_interval()`` reads
``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``, which must be ours when set).

``Watchdog`` pings ``WATCHDOG=1`` every half interval, but only when its ``alive`` check
answers True within a quarter interval: the daemon passes a check that the database answers,
and the ping itself runs on the event loop, so a stuck loop or a dead database both stop the
pings and systemd restarts the service (``WatchdogSec``, ``Restart=on-failure``).

Never raises for a missing or broken socket: a notification that cannot be sent is logged once
at debug level and reported as False. Stdlib only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

log = logging.getLogger(__name__)


def _one_line(text: str) -> str:
    # Each line of a notification is one assignment: a newline in a status text taken from a
    # feed or an error would let it add READY=1 or MAINPID=... of its own.
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


class SystemdNotify:
    """Sends notifications to the service manager's socket. Safe to call from the event loop:
    the socket is non-blocking."""

    def __init__(self, address: str | None) -> None:
        """`address`: the socket path, `@name` for the abstract namespace, or None for none."""
        self.address = address or None
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SystemdNotify:
        environ = os.environ if env is None else env
        return cls(environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send `assignments` ("READY=1", "STATUS=…") in one datagram; True when sent."""
        if self.address is None or not assignments:
            return False
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]
        elif not target.startswith("/"):
            # sd_notify(3) accepts only absolute paths and '@' (vsock aside, which we do not use).
            self._fail(f"unsupported NOTIFY_SOCKET {self.address!r}")
            return False
        payload = "\n".join(assignments).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # A full receive queue (systemd stalled) must not stall the event loop: the
                # datagram is dropped instead, as a lost ping is.
                sock.setblocking(False)
                sock.connect(target)
                sock.send(payload)
        except OSError as error:
            self._fail(f"{self.address}: {error.strerror or error}")
            return False
        return True

    def _fail(self, reason: str) -> None:
        if not self._warned:
            self._warned = True
            log.debug("systemd notification not sent: %s", reason)

    def ready(self, status: str | None = None) -> bool:
        """The service is up (Type=notify: systemd starts dependents now)."""
        return self.send("READY=1", *(() if status is None else (f"STATUS={_one_line(status)}",)))

    def stopping(self) -> bool:
        """A graceful stop has begun."""
        return self.send("STOPPING=1")

    def reloading(self) -> bool:
        """A reload has begun; call `ready()` when it is done."""
        return self.send("RELOADING=1")

    def status(self, text: str) -> bool:
        """A one-line status shown by `systemctl status`; control characters become spaces."""
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """Keep-alive: the service is healthy."""
        return self.send("WATCHDOG=1")


def watchdog_interval(
    env: Mapping[str, str] | None = None, *, pid: int | None = None
) -> timedelta | None:
    """The watchdog timeout systemd set (``WatchdogSec``), or None when there is none or it is
    meant for another process (``$WATCHDOG_PID`` names another pid)."""
    environ = os.environ if env is None else env
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID")
    if owner and owner.strip() != str(os.getpid() if pid is None else pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return timedelta(microseconds=value) if value > 0 else None


class Watchdog:
    """Pings the watchdog while `alive()` says so. Run `run()` as a task; cancel it to stop.

    `alive` is awaited every `interval / 2`, with `interval / 4` to answer; an exception, a
    timeout or False skips that ping. Two skipped pings in a row and systemd acts.
    """

    def __init__(
        self,
        notify: SystemdNotify,
        interval: timedelta,
        alive: Callable[[], Awaitable[bool]],
    ) -> None:
        if interval <= timedelta(0):
            raise ValueError("the watchdog interval must be positive")
        self._notify = notify
        self._period = interval.total_seconds() / 2
        self._answer_within = interval.total_seconds() / 4
        self._alive = alive
        self.pings = 0  # sent so far, for tests and the log
        self.skipped = 0

    async def tick(self) -> bool:
        """One check and, when it passes, one ping; True when pinged."""
        try:
            ok = await asyncio.wait_for(self._alive(), self._answer_within)
        except TimeoutError:
            ok, why = False, f"no answer within {self._answer_within:.1f}s"
        except Exception as error:  # the check is the daemon's; any failure means "not alive"
            ok, why = False, f"{type(error).__name__}: {error}"
        else:
            why = "not alive"
        if ok and self._notify.watchdog():
            self.pings += 1
            return True
        if not ok:
            self.skipped += 1
            log.warning("watchdog ping skipped: %s", why)
        return False

    async def run(self) -> None:
        """Tick every half interval until cancelled."""
        while True:
            await self.tick()
            await asyncio.sleep(self._period)
