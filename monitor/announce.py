"""Admin announcements: a feed that fell unwell is announced on the `admin` channel, once.

Once per episode (a feed's key for one stretch of failing or silence, `FeedHealth.key`),
across restarts and replicas: the store hands the key to one caller (`claim_announcement`).
A send that fails gives the key back (`release_announcement`) and is retried here with the
outbox's backoff, honouring a Retry-After; a restart or another replica may send it instead.
A crash between the claim and the send still loses that one announcement: announcements are
a courtesy to the operator, and the feed's state stays in `newsmon feeds` and the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from monitor.health import FeedHealth
from monitor.notify import Notifier, next_attempt
from monitor.store import Store

log = logging.getLogger("newsmon")

ADMIN = "admin"  # the channel name that receives announcements, when configured


@dataclass(slots=True)
class _Pending:
    """An announcement of one episode, waiting to be sent."""

    health: FeedHealth
    due: datetime  # the next attempt
    attempts: int = 0  # failed so far


class Announcer:
    """The announcements of one process; not safe for concurrent `send_due` calls."""

    def __init__(self, store: Store, *, rng: random.Random) -> None:
        self._store = store
        self._rng = rng
        self._pending: dict[str, _Pending] = {}  # by episode key

    def note(self, health: FeedHealth, now: datetime) -> None:
        """`health` fell unwell at `now`: announce it at the next `send_due`."""
        self._pending.setdefault(health.key, _Pending(health, now))

    async def send_due(
        self, notifier: Notifier | None, current: Collection[str], now: datetime
    ) -> None:
        """Send the announcements that are due, for episodes whose keys are in `current`.

        `notifier` is the running one (it changes on reload); None when no `admin` channel
        is configured now, which drops what was pending.
        """
        for key, pending in list(self._pending.items()):
            if key not in current or notifier is None:
                del self._pending[key]  # recovered, or no admin channel since a reload
                continue
            if pending.due > now:
                continue
            if not await self._store.claim_announcement(key, now):
                del self._pending[key]  # announced already, by us or by another replica
                continue
            health = pending.health
            try:
                outcome = await notifier.send_text(
                    ADMIN,
                    f"newsmon: feed {health.feed} is {health.state}",
                    f"Feed {health.feed} is {health.state}: {health.reason}.",
                )
            except BaseException:
                await asyncio.shield(self._store.release_announcement(key))
                raise
            if outcome.ok:
                del self._pending[key]
                log.info("admin announcement sent feed=%s state=%s", health.feed, health.state)
                continue
            await self._store.release_announcement(key)
            pending.attempts += 1
            pending.due = next_attempt(
                pending.attempts, now, rng=self._rng, retry_after=outcome.retry_after
            )
            log.warning(
                "admin announcement failed feed=%s state=%s attempt=%d retry_at=%s error=%s",
                health.feed,
                health.state,
                pending.attempts,
                pending.due.isoformat(timespec="seconds"),
                outcome.error,
            )
