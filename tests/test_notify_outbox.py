"""The outbox worker with an in-memory OutboxStore and real channels; next_attempt's bounds."""

from __future__ import annotations

import asyncio
import io
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from monitor.model import Channel, Delivery
from monitor.notify import DrainReport, Notifier, OutboxWorker, next_attempt
from tests.support.receivers import HookReceiver
from tests.test_notify import delivery

T0 = datetime(2026, 11, 23, 7, 15, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Row:
    delivery: Delivery
    due: datetime
    state: str = "pending"  # pending | sent | dead
    attempts: int = 0
    leased_until: datetime | None = None
    errors: list[str] = field(default_factory=list)
    retry_ats: list[datetime | None] = field(default_factory=list)


class MemoryOutbox:
    """An OutboxStore in memory, keeping the contract: due rows, leases, counted attempts."""

    def __init__(self, deliveries: list[Delivery], *, keeps_leases: bool = True) -> None:
        self.rows = {d.id: Row(d, due=d.created) for d in deliveries}
        self.claims: list[list[int]] = []
        self.keeps_leases = keeps_leases

    async def claim_deliveries(
        self, now: datetime, *, limit: int, lease: timedelta, owner: str
    ) -> list[Delivery]:
        due = [
            row
            for row in sorted(self.rows.values(), key=lambda r: r.delivery.id)
            if row.state == "pending"
            and (not self.keeps_leases or row.due <= now)
            and (not self.keeps_leases or row.leased_until is None or row.leased_until <= now)
        ][:limit]
        for row in due:
            row.leased_until = now + lease
        self.claims.append([row.delivery.id for row in due])
        return [replace(row.delivery, attempts=row.attempts) for row in due]

    async def mark_sent(self, delivery_id: int, now: datetime) -> None:
        row = self.rows[delivery_id]
        row.state, row.leased_until = "sent", None

    async def mark_failed(
        self, delivery_id: int, now: datetime, error: str, retry_at: datetime | None
    ) -> None:
        row = self.rows[delivery_id]
        row.attempts += 1
        row.errors.append(error)
        row.retry_ats.append(retry_at)
        row.leased_until = None
        if retry_at is None:
            row.state = "dead"
        else:
            row.due = retry_at


def worker(store: MemoryOutbox, notifier: Notifier, clock: Clock, **kw: Any) -> OutboxWorker:
    return OutboxWorker(
        store,
        notifier,
        owner="test",
        clock=clock,
        rng=random.Random(7),
        **kw,
    )


def alert(id: int, channel: str) -> Delivery:
    return replace(delivery(channel=channel, id=id), created=T0 - timedelta(minutes=1))


async def test_retries_until_accepted_then_exactly_one_post() -> None:
    async with HookReceiver(answers=[500, 500]) as hook:
        store = MemoryOutbox([alert(1, "desk")])
        clock = Clock()
        w = worker(store, Notifier({"desk": Channel("desk", (hook.url(),))}), clock)

        assert await w.drain() == DrainReport(sent=0, retried=1, dead=0)
        assert await w.drain() == DrainReport(0, 0, 0)  # not due yet: nothing claimed
        row = store.rows[1]
        first_retry = row.due
        assert first_retry > T0

        clock.now = first_retry
        assert await w.drain() == DrainReport(sent=0, retried=1, dead=0)
        second_retry = row.due
        assert second_retry - first_retry >= timedelta(seconds=30)

        clock.now = second_retry
        assert await w.drain() == DrainReport(sent=1, retried=0, dead=0)
        assert await w.drain() == DrainReport(0, 0, 0)

        assert [p.status for p in hook.posts] == [500, 500, 200]
        assert len(hook.accepted) == 1
        assert row.state == "sent" and row.attempts == 2
        assert row.retry_ats == [first_retry, second_retry]
        assert all("500" in e for e in row.errors)


async def test_unknown_channel_is_retried_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryOutbox([alert(1, "removed")])
    w = worker(store, Notifier({}), Clock())
    assert await w.drain() == DrainReport(sent=0, retried=1, dead=0)
    row = store.rows[1]
    assert row.state == "pending" and row.attempts == 1 and row.due > T0
    assert "'removed'" in row.errors[0]
    [line] = [r for r in caplog.records if r.name == "monitor.notify.outbox"]
    assert "'removed'" in line.getMessage()


async def test_bad_url_is_dead_after_one_attempt() -> None:
    store = MemoryOutbox([alert(1, "desk")])
    notifier = Notifier({"desk": Channel("desk", ("nosuch://user:hunter2pw@host/x",))})
    w = worker(store, notifier, Clock())
    assert await w.drain() == DrainReport(sent=0, retried=0, dead=1)
    row = store.rows[1]
    assert row.state == "dead" and row.attempts == 1 and row.retry_ats == [None]
    assert "hunter2pw" not in row.errors[0]


async def test_dead_after_max_attempts() -> None:
    async with HookReceiver(answers=[502] * 5) as hook:
        store = MemoryOutbox([alert(1, "desk")])
        clock = Clock()
        w = worker(store, Notifier({"desk": Channel("desk", (hook.url(),))}), clock, max_attempts=3)
        reports = []
        for _ in range(3):
            reports.append(await w.drain())
            clock.now = store.rows[1].due
        assert [r.dead for r in reports] == [0, 0, 1]
        assert store.rows[1].state == "dead" and store.rows[1].attempts == 3
        assert len(hook.posts) == 3


async def test_batches_until_short_and_bounded_concurrency() -> None:
    in_flight = peak = 0
    got: list[str] = []

    async def slow_hook(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        got.append((await request.json())["title"])
        in_flight -= 1
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", slow_hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        port = runner.addresses[0][1]
        store = MemoryOutbox([alert(i, "desk") for i in range(1, 8)])
        notifier = Notifier({"desk": Channel("desk", (f"json://127.0.0.1:{port}/hook",))})
        w = worker(store, notifier, Clock(), batch=3, concurrency=2)
        assert await w.drain() == DrainReport(sent=7, retried=0, dead=0)
    finally:
        await runner.cleanup()
    assert store.claims == [[1, 2, 3], [4, 5, 6], [7]]
    assert len(got) == 7 and peak == 2


async def test_a_store_that_hands_rows_back_does_not_loop() -> None:
    store = MemoryOutbox([alert(1, "gone")], keeps_leases=False)
    w = worker(store, Notifier({}), Clock(), batch=1)
    assert await w.drain() == DrainReport(sent=0, retried=1, dead=0)
    assert store.claims == [[1], [1]]


async def test_a_send_that_would_outlive_the_lease_is_not_started() -> None:
    class Jumping(Clock):
        """Jumps past the lease after the claim, as if the previous send took that long."""

        calls = 0

        def __call__(self) -> datetime:
            self.calls += 1
            return self.now if self.calls == 1 else self.now + timedelta(minutes=5)

    stream = io.StringIO()
    store = MemoryOutbox([alert(1, "c")])
    notifier = Notifier({"c": Channel("c", ("console://",))}, stdout=stream)
    assert await worker(store, notifier, Jumping()).drain() == DrainReport(0, 0, 0)
    assert stream.getvalue() == "" and store.rows[1].state == "pending"


def test_lease_must_outlast_a_send() -> None:
    with pytest.raises(ValueError, match="lease"):
        worker(MemoryOutbox([]), Notifier({}, timeout=30), Clock(), lease=timedelta(seconds=30))


# --- next_attempt ----------------------------------------------------------------------------


def delay(attempts: int, rng: random.Random, **kw: float) -> float:
    return (next_attempt(attempts, T0, rng=rng, **kw) - T0).total_seconds()


def test_next_attempt_bounds_growth_and_cap() -> None:
    rng = random.Random(1)
    for attempts in range(1, 40):
        ceiling = min(3600.0, 30.0 * 2 ** (attempts - 1))
        for _ in range(50):
            assert 30.0 <= delay(attempts, rng) <= ceiling
    assert delay(1, rng) == 30.0
    assert delay(10_000, rng) <= 3600.0  # no overflow on absurd counts
    # The typical delay grows with each failure until the cap.
    means = [sum(delay(n, rng) for _ in range(400)) / 400 for n in range(1, 9)]
    assert means == sorted(means)


def test_next_attempt_jitter_spreads_within_the_range() -> None:
    rng = random.Random(2)
    draws = [delay(5, rng) for _ in range(500)]  # range [30, 480]
    assert min(draws) < 60 and max(draws) > 450
    assert len(set(draws)) > 450


def test_next_attempt_honours_retry_after_as_a_floor() -> None:
    rng = random.Random(3)
    assert delay(1, rng, retry_after=120) == 120
    assert delay(20, rng, retry_after=7200) == 7200  # above the cap: the service said so
    assert delay(1, rng, retry_after=5) == 30.0


def test_next_attempt_is_pure() -> None:
    first = [next_attempt(n, T0, rng=random.Random(9)) for n in range(1, 10)]
    again = [next_attempt(n, T0, rng=random.Random(9)) for n in range(1, 10)]
    assert first == again
