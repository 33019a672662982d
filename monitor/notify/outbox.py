"""The outbox worker: delivers queued alerts, with retries, without losing or doubling one.

The store holds the outbox; this module only claims, sends and records:

    claim due rows (with a lease; the channels' gates hold some back for a digest)
        -> send each through its channel -> mark_sent | mark_failed
    claim held rows whose digest is due (with a lease)
        -> one digest message per channel -> mark_digest_sent | mark_digest_failed

- **Nothing lost.** A row is marked sent only after its channel accepted the alert. Any
  failure is recorded with the next try time; a crash leaves the row leased, and it is
  claimed again once the lease runs out.
- **Nothing twice** (as far as a sender can promise it): leases keep two workers off one
  row, and a send is started only while at least ``notifier.timeout`` of its lease is left,
  so a slow channel cannot outlive the lease and be sent again by another replica. What
  remains is at-least-once: a crash between the channel's "accepted" and ``mark_sent``, a
  send that timed out here yet reached the service, or a multi-URL channel that partly
  failed, means one more copy, never a silent loss. Sends are not serialized: a crash
  duplicates each alert whose send was in flight, at most ``concurrency`` alerts
  (``SEND_CONCURRENCY``), each once. A digest is the same: its rows are marked sent
  together, in one transaction, only after the channel accepted the message.
- **Retries.** Transient failures are retried with exponential backoff and jitter, never
  sooner than a service's Retry-After; a permanent failure (``SendOutcome.permanent``) is
  dead after that one attempt, and so is any failure after ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import Protocol

from monitor.model import Channel, Delivery

from .channels import Notifier, SendOutcome, digest_message_id
from .digest import Gate, gate, render_digest, sends_as_digest

__all__ = ["SEND_CONCURRENCY", "DrainReport", "OutboxStore", "OutboxWorker", "next_attempt"]

log = logging.getLogger(__name__)

# Sends one drain runs at once, by default; also the most alerts a crash can duplicate.
SEND_CONCURRENCY = 8


class OutboxStore(Protocol):
    """The part of the store the outbox worker needs (implemented by ``monitor.store.Store``).

    All datetimes are timezone-aware UTC. Methods may raise on a database failure; the
    worker lets such errors escape after the sends in flight have finished.
    """

    async def claim_deliveries(
        self,
        now: datetime,
        *,
        limit: int,
        lease: timedelta,
        owner: str,
        gates: Mapping[str, Gate] | None = None,
    ) -> list[Delivery]:
        """Lease up to ``limit`` rows that are pending and due (next try <= ``now``) and
        not leased by anyone else until ``now + lease``; return them, oldest first.

        ``gates`` by channel: rows a gate holds back (``hold_until``; ``quiet_until`` for
        alerts not priority high; beyond ``max_per_hour`` messages in the rolling hour)
        become held until their digest is due, in the same transaction, and are not
        returned."""
        ...

    async def claim_held(
        self,
        now: datetime,
        *,
        limit: int,
        lease: timedelta,
        owner: str,
        gates: Mapping[str, Gate] | None = None,
    ) -> list[Delivery]:
        """Lease up to ``limit`` held rows whose digest is due, grouped by channel. Rows of a
        channel in quiet hours (gate ``quiet_until``) not priority high stay held until then."""
        ...

    async def mark_sent(self, delivery_id: int, now: datetime) -> None:
        """The channel accepted the alert: the row leaves the outbox for good."""
        ...

    async def mark_digest_sent(self, delivery_ids: Sequence[int], now: datetime) -> None:
        """The channel accepted one digest carrying these rows: all leave the outbox at once."""
        ...

    async def mark_failed(
        self, delivery_id: int, now: datetime, error: str, retry_at: datetime | None
    ) -> None:
        """One more failed attempt: count it, keep ``error`` (masked), release the lease.
        ``retry_at`` is when it is due again; None means dead, never tried again."""
        ...

    async def mark_digest_failed(
        self, delivery_ids: Sequence[int], now: datetime, error: str, retry_at: datetime | None
    ) -> None:
        """``mark_failed`` for every row of a digest that failed, at once."""
        ...


@dataclass(frozen=True, slots=True)
class DrainReport:
    """What one ``drain`` did."""

    sent: int  # alerts accepted by their channel and marked sent (digests' included)
    retried: int  # alerts failed, due again later
    dead: int  # alerts failed for good (permanent error or too many attempts)
    digests: int = 0  # digest messages accepted (each carrying one or more of `sent`)


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
    """Drains the outbox: call ``drain()`` from a scheduler tick (or ``poll --once``), and
    ``drain(digests=[name])`` at a channel's digest times.

    Drains may overlap (a tick and a digest job): leases keep them off each other's rows.
    Several workers (processes, replicas) may drain the same store at once, each under its
    own ``owner`` name. ``channels`` are the configured channels (digest, time zone, quiet
    hours, max_per_hour); a channel missing there is sent at once, one alert at a time.
    """

    def __init__(
        self,
        store: OutboxStore,
        notifier: Notifier,
        *,
        owner: str,
        clock: Callable[[], datetime],
        channels: Mapping[str, Channel] | None = None,
        lease: timedelta = timedelta(minutes=2),
        batch: int = 50,
        concurrency: int = SEND_CONCURRENCY,
        max_attempts: int = 20,
        digest_max: int = 1000,
        rng: random.Random | None = None,
        on_outcome: Callable[[str, str, int], None] | None = None,
    ) -> None:
        """``digest_max``: the most alerts one digest message carries; more due at once
        leave in further digests (a thousand lines is past what anyone reads in one go).
        ``on_outcome(channel, state, alerts)``: told of every settled send, state "sent",
        "retried" or "dead" (metrics); it must not raise."""
        if batch < 1 or concurrency < 1 or max_attempts < 1 or digest_max < 1:
            raise ValueError("batch, concurrency, max_attempts and digest_max must be at least 1")
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
        self._channels = dict(channels or {})
        self._lease = lease
        self._batch = batch
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._digest_max = digest_max
        self._rng = rng if rng is not None else random.Random()
        self._on_outcome = on_outcome or (lambda _channel, _state, _alerts: None)

    def gates(self, now: datetime, digests: Collection[str] = ()) -> dict[str, Gate]:
        """Every configured channel's gate at ``now``; ``digests``: channels whose digest
        time is now, so what is pending for them joins this digest."""
        return {
            name: gate(channel, now, digest_due=name in digests)
            for name, channel in self._channels.items()
        }

    async def drain(self, *, digests: Collection[str] = ()) -> DrainReport:
        """Send every delivery due now, and every digest due now; return the counts.

        First the pending deliveries: claimed in batches of ``batch`` until one comes back
        short, sent up to ``concurrency`` at once; the store holds back, as it claims, those
        that the channels' gates say must wait. Then the held deliveries whose digest is
        due: per channel one digest message (a channel without ``digest`` that has at most
        ``digest.FEW`` due sends them one by one instead).

        A delivery is marked sent only when its channel accepted it. A failure is marked
        with the next try time, or as dead (``retry_at`` None) when the error is permanent
        or this was attempt ``max_attempts``; a failed digest counts for each alert in it.
        A delivery for a channel that is no longer configured is an ordinary temporary
        failure: a config reload may bring the channel back, and until then the alert waits
        in the outbox (dead after ``max_attempts``, like any failure). Never raises for a
        channel's failure; a store error escapes once the sends in flight have finished.
        """
        totals = [0, 0, 0, 0]  # sent, retried, dead, digests
        handled: set[int] = set()
        limit = asyncio.Semaphore(self._concurrency)
        while True:
            claimed_at = self._clock()
            deliveries = await self._store.claim_deliveries(
                claimed_at,
                limit=self._batch,
                lease=self._lease,
                owner=self._owner,
                gates=self.gates(claimed_at, digests),
            )
            fresh = self._fresh(deliveries, handled)
            if not fresh:
                break
            await self._gather(
                [self._deliver(d, self._start_by(claimed_at), limit) for d in fresh], totals
            )
            if len(deliveries) < self._batch:
                break
        while True:
            claimed_at = self._clock()
            held = await self._store.claim_held(
                claimed_at,
                limit=self._digest_max,
                lease=self._lease,
                owner=self._owner,
                gates=self.gates(claimed_at, digests),
            )
            fresh = self._fresh(held, handled)
            if not fresh:
                break
            start_by = self._start_by(claimed_at)
            jobs = []
            for channel, rows in groupby(fresh, key=lambda d: d.channel):
                group = list(rows)
                if sends_as_digest(self._channels.get(channel), len(group)):
                    jobs.append(self._deliver_digest(channel, group, start_by, limit))
                else:
                    jobs += [self._deliver(d, start_by, limit) for d in group]
            await self._gather(jobs, totals)
            if len(held) < self._digest_max:
                break
        sent, retried, dead, digests_sent = totals
        return DrainReport(sent=sent, retried=retried, dead=dead, digests=digests_sent)

    @staticmethod
    def _fresh(deliveries: list[Delivery], handled: set[int]) -> list[Delivery]:
        # A store that hands back rows already settled in this drain (a lease it did not
        # keep) must not make us send them again: the drain stops instead.
        fresh = [d for d in deliveries if d.id not in handled]
        handled.update(d.id for d in fresh)
        return fresh

    def _start_by(self, claimed_at: datetime) -> datetime:
        # Start a send only while its whole timeout fits in what is left of the lease.
        return claimed_at + self._lease - timedelta(seconds=self._notifier.timeout)

    @staticmethod
    async def _gather(jobs: Sequence[Awaitable[tuple[str, int]]], totals: list[int]) -> None:
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
            what, count = result
            if what == "sent":
                totals[0] += count
            elif what == "retried":
                totals[1] += count
            elif what == "dead":
                totals[2] += count
            elif what == "digest":
                totals[0] += count
                totals[3] += 1

    async def _deliver(
        self, delivery: Delivery, start_by: datetime, limit: asyncio.Semaphore
    ) -> tuple[str, int]:
        async with limit:
            if self._clock() > start_by:
                # Left leased and untouched: it is claimed again when the lease runs out.
                log.info(
                    "delivery postponed delivery=%d channel=%s rule=%s item=%s reason=%s",
                    delivery.id,
                    delivery.channel,
                    delivery.rule,
                    delivery.item.guid,
                    "too little of its lease left",
                )
                return "postponed", 1
            outcome = await self._send(delivery)
            now = self._clock()
            if outcome.ok:
                await self._store.mark_sent(delivery.id, now)
                log.info(
                    "delivery sent delivery=%d channel=%s rule=%s item=%s attempt=%d",
                    delivery.id,
                    delivery.channel,
                    delivery.rule,
                    delivery.item.guid,
                    delivery.attempts + 1,
                )
                state = "sent"
            else:
                state = await self._fail(delivery, outcome, now)
            self._on_outcome(delivery.channel, state, 1)
            return state, 1

    async def _deliver_digest(
        self, channel: str, group: list[Delivery], start_by: datetime, limit: asyncio.Semaphore
    ) -> tuple[str, int]:
        ids = [d.id for d in group]
        async with limit:
            if self._clock() > start_by:
                log.info(
                    "digest postponed channel=%s alerts=%d reason=%s",
                    channel,
                    len(ids),
                    "too little of its lease left",
                )
                return "postponed", len(ids)
            outcome = await self._send_digest(channel, group)
            now = self._clock()
            what = await self._settle_digest(channel, group, ids, outcome, now)
            self._on_outcome(channel, "sent" if what == "digest" else what, len(ids))
            return what, len(ids)

    async def _settle_digest(
        self,
        channel: str,
        group: list[Delivery],
        ids: list[int],
        outcome: SendOutcome,
        now: datetime,
    ) -> str:
        """Mark a digest's rows after its send: "digest" (sent), "dead" or "retried"."""
        if outcome.ok:
            await self._store.mark_digest_sent(ids, now)
            log.info("digest sent channel=%s alerts=%d", channel, len(ids))
            return "digest"
        attempts = max(d.attempts for d in group) + 1
        error = outcome.error or "the channel did not accept the digest"
        if outcome.permanent or attempts >= self._max_attempts:
            await self._store.mark_digest_failed(ids, now, error, None)
            log.error(
                "digest dead channel=%s alerts=%d attempts=%d error=%s",
                channel,
                len(ids),
                attempts,
                error,
            )
            return "dead"
        retry_at = next_attempt(attempts, now, rng=self._rng, retry_after=outcome.retry_after)
        await self._store.mark_digest_failed(ids, now, error, retry_at)
        log.warning(
            "digest failed channel=%s alerts=%d attempt=%d retry_at=%s error=%s",
            channel,
            len(ids),
            attempts,
            retry_at.isoformat(timespec="seconds"),
            error,
        )
        return "retried"

    async def _send_digest(self, channel: str, group: list[Delivery]) -> SendOutcome:
        config = self._channels.get(channel) or Channel(channel, ())
        try:
            title, body = render_digest(config, group, self._clock())
            # Stable across resends of these rows: a digest resent after a crash is one email.
            mail_id = digest_message_id(group)
            return await self._notifier.send_text(channel, title, body, message_id=mail_id)
        except Exception as exc:  # a bug must cost one digest's attempt, not the drain
            log.exception("digest send crashed channel=%s", channel)
            return SendOutcome(False, f"internal error: {type(exc).__name__}")

    async def _send(self, delivery: Delivery) -> SendOutcome:
        try:
            return await self._notifier.send(delivery)
        except Exception as exc:  # a bug in rendering or sending must cost one row, not the drain
            log.exception(
                "delivery send crashed delivery=%d channel=%s", delivery.id, delivery.channel
            )
            return SendOutcome(False, f"internal error: {type(exc).__name__}")

    async def _fail(self, delivery: Delivery, outcome: SendOutcome, now: datetime) -> str:
        attempts = delivery.attempts + 1  # this one included
        error = outcome.error or "the channel did not accept the alert"
        if outcome.permanent or attempts >= self._max_attempts:
            await self._store.mark_failed(delivery.id, now, error, None)
            why = "permanent error" if outcome.permanent else f"{attempts} attempts"
            log.error(
                "delivery dead delivery=%d channel=%s rule=%s item=%s why=%s error=%s",
                delivery.id,
                delivery.channel,
                delivery.rule,
                delivery.item.guid,
                why,
                error,
            )
            return "dead"
        retry_at = next_attempt(attempts, now, rng=self._rng, retry_after=outcome.retry_after)
        await self._store.mark_failed(delivery.id, now, error, retry_at)
        log.warning(
            "delivery failed delivery=%d channel=%s rule=%s item=%s attempt=%d retry_at=%s "
            "error=%s",
            delivery.id,
            delivery.channel,
            delivery.rule,
            delivery.item.guid,
            attempts,
            retry_at.isoformat(timespec="seconds"),
            error,
        )
        return "retried"
