"""The outbox worker: delivers queued alerts, with retries, without losing or doubling one.

The store holds the outbox; this module only claims, sends and records:

    claim due rows (with a lease) -> send each through its channel -> mark_sent | mark_failed

- **Nothing lost.** A row is marked sent only after its channel accepted the alert. Any
  failure is recorded with the next try time; a crash leaves the row leased, and it is
  claimed again once the lease runs out.
- **Nothing twice** (as far as a sender can promise it): leases keep two workers off one
  row, and a send is started only while at least ``notifier.timeout`` of its lease is left,
  so a slow channel cannot outlive the lease and be sent again by another replica. What
  remains is at-least-once: a crash between the channel's "accepted" and ``mark_sent``, a
  send that timed out here yet reached the service, or a multi-URL channel that partly
  failed, means one more copy, never a silent loss.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from monitor.model import Delivery

from .channels import Notifier, SendOutcome

__all__ = ["DrainReport", "OutboxStore", "OutboxWorker", "next_attempt"]

log = logging.getLogger(__name__)


class OutboxStore(Protocol):
    """The part of the store the outbox worker needs (implemented by ``monitor.store.Store``).

    All datetimes are timezone-aware UTC. Methods may raise on a database failure; the
    worker lets such errors escape after the sends in flight have finished.
    """

    async def claim_deliveries(
        self, now: datetime, *, limit: int, lease: timedelta, owner: str
    ) -> list[Delivery]:
        """Lease up to ``limit`` rows that are pending and due (next try <= ``now``) and
        not leased by anyone else until ``now + lease``; return them, oldest first."""
        ...

    async def mark_sent(self, delivery_id: int, now: datetime) -> None:
        """The channel accepted the alert: the row leaves the outbox for good."""
        ...

    async def mark_failed(
        self, delivery_id: int, now: datetime, error: str, retry_at: datetime | None
    ) -> None:
        """One more failed attempt: count it, keep ``error`` (masked), release the lease.
        ``retry_at`` is when it is due again; None means dead, never tried again."""
        ...


@dataclass(frozen=True, slots=True)
class DrainReport:
    """What one ``drain`` did."""

    sent: int  # accepted by their channel and marked sent
    retried: int  # failed, due again later
    dead: int  # failed for good (permanent error or too many attempts)


def next_attempt(
    attempts: int,
    now: datetime,
    *,
    rng: random.Random,
    retry_after: float | None = None,
    base: float = 30.0,
    cap: float = 3600.0,
) -> datetime:
    """When to try again after ``attempts`` failed attempts (1 = the first one failed).

    Exponential backoff with full jitter above a floor: the delay is drawn uniformly from
    ``[base, min(cap, base * 2**(attempts-1))]`` seconds. The floor keeps a down service
    from being hit again at once (plain full jitter can draw ~0); the jitter spreads the
    retries of a burst of alerts that failed together. A service's ``retry_after`` is a
    floor on top, honoured even above ``cap``. Pure: the randomness comes from ``rng``.
    """
    # 2**62 * 30 s already dwarfs any cap; the clamp keeps the float conversion finite.
    exponent = min(max(attempts, 1) - 1, 62)
    ceiling = max(base, min(cap, base * 2.0**exponent))
    delay = rng.uniform(base, ceiling) if ceiling > base else ceiling
    if retry_after is not None:
        delay = max(delay, retry_after)
    return now + timedelta(seconds=delay)


class OutboxWorker:
    """Drains the outbox: call ``drain()`` from a scheduler tick (or ``poll --once``).

    One ``drain`` at a time per worker; several workers (processes, replicas) may drain the
    same store at once, each under its own ``owner`` name.
    """

    def __init__(
        self,
        store: OutboxStore,
        notifier: Notifier,
        *,
        owner: str,
        clock: Callable[[], datetime],
        lease: timedelta = timedelta(minutes=2),
        batch: int = 50,
        concurrency: int = 8,
        max_attempts: int = 20,
        rng: random.Random | None = None,
    ) -> None:
        if batch < 1 or concurrency < 1 or max_attempts < 1:
            raise ValueError("batch, concurrency and max_attempts must be at least 1")
        if lease.total_seconds() <= notifier.timeout:
            # Otherwise a send could still be running when another replica re-claims the row.
            raise ValueError(
                f"lease ({lease.total_seconds():g}s) must be longer than the notifier's "
                f"timeout ({notifier.timeout:g}s)"
            )
        self._store = store
        self._notifier = notifier
        self._owner = owner
        self._clock = clock
        self._lease = lease
        self._batch = batch
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._rng = rng if rng is not None else random.Random()

    async def drain(self) -> DrainReport:
        """Send every delivery due now; return the counts.

        Claims batches of ``batch`` until one comes back short, sending up to
        ``concurrency`` at once. A delivery is marked sent only when its channel accepted
        it. A failure is marked with the next try time, or as dead (``retry_at`` None)
        when the error is permanent or this was attempt ``max_attempts``. A delivery for a
        channel that is no longer configured is an ordinary temporary failure: a config
        reload may bring the channel back, and until then the alert waits in the outbox
        (dead after ``max_attempts``, like any failure). Never raises for a channel's
        failure; a store error escapes once the sends in flight have finished.
        """
        sent = retried = dead = 0
        handled: set[int] = set()
        limit = asyncio.Semaphore(self._concurrency)
        while True:
            claimed_at = self._clock()
            deliveries = await self._store.claim_deliveries(
                claimed_at, limit=self._batch, lease=self._lease, owner=self._owner
            )
            fresh = [d for d in deliveries if d.id not in handled]
            if not fresh:
                # Empty, or a store that handed back rows we already settled in this drain
                # (a lease it did not keep): stop rather than send them again.
                break
            handled.update(d.id for d in fresh)
            # Start a send only while its whole timeout fits in what is left of the lease.
            start_by = claimed_at + self._lease - timedelta(seconds=self._notifier.timeout)
            results = await asyncio.gather(
                *(self._deliver(d, start_by, limit) for d in fresh), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
                sent += result == "sent"
                retried += result == "retried"
                dead += result == "dead"
            if len(deliveries) < self._batch:
                break
        return DrainReport(sent=sent, retried=retried, dead=dead)

    async def _deliver(
        self, delivery: Delivery, start_by: datetime, limit: asyncio.Semaphore
    ) -> str:
        async with limit:
            if self._clock() > start_by:
                # Left leased and untouched: it is claimed again when the lease runs out.
                log.info(
                    "delivery %d to channel %r postponed: too little of its lease left",
                    delivery.id,
                    delivery.channel,
                )
                return "postponed"
            outcome = await self._send(delivery)
            now = self._clock()
            if outcome.ok:
                await self._store.mark_sent(delivery.id, now)
                return "sent"
            return await self._fail(delivery, outcome, now)

    async def _send(self, delivery: Delivery) -> SendOutcome:
        try:
            return await self._notifier.send(delivery)
        except Exception as exc:  # a bug in rendering or sending must cost one row, not the drain
            log.exception("delivery %d: unexpected error while sending", delivery.id)
            return SendOutcome(False, f"internal error: {type(exc).__name__}")

    async def _fail(self, delivery: Delivery, outcome: SendOutcome, now: datetime) -> str:
        attempts = delivery.attempts + 1  # this one included
        error = outcome.error or "the channel did not accept the alert"
        if outcome.permanent or attempts >= self._max_attempts:
            await self._store.mark_failed(delivery.id, now, error, None)
            why = "permanent error" if outcome.permanent else f"{attempts} attempts"
            log.error(
                "delivery %d to channel %r dead (%s): %s", delivery.id, delivery.channel, why, error
            )
            return "dead"
        retry_at = next_attempt(attempts, now, rng=self._rng, retry_after=outcome.retry_after)
        await self._store.mark_failed(delivery.id, now, error, retry_at)
        log.warning(
            "delivery %d to channel %r failed (attempt %d), retry at %s: %s",
            delivery.id,
            delivery.channel,
            attempts,
            retry_at.isoformat(timespec="seconds"),
            error,
        )
        return "retried"
