"""SQL for the outbox (the deliveries table): claiming due deliveries, holding some for a
digest, and settling them.

Functions take an open connection inside the caller's transaction; ``Store`` owns
transactions and states the contracts.

A delivery is ``pending`` (due at ``next_attempt_at``), ``held`` (waiting for the digest due
at ``next_attempt_at``; ``hold`` says why), ``sent`` or ``dead``. Claims lease rows
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the single writer on SQLite), so replicas never
send the same row, nor the same digest, at once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import Row, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from monitor import model
from monitor.store import dialect
from monitor.store.corpus import to_item
from monitor.store.tables import (
    DEAD,
    HELD,
    HOLD_DIGEST,
    HOLD_QUIET,
    HOLD_RATE,
    PENDING,
    SENT,
    alerts,
    deliveries,
    items,
    matches,
)

HOUR = timedelta(hours=1)
# Rate-limited claims count a channel's recent sends; on PostgreSQL they hold this advisory
# lock (next to the migration and ingest keys) so two replicas cannot both see "29 sent"
# and send the 30th and 31st.
RATE_LOCK_KEY = dialect.MIGRATION_LOCK_KEY + 2
# A claim that holds every row it looks at (a burst on a limited channel) keeps looking for
# rows to send, but looks at no more than this many batches in one transaction (a thousand
# rows with the default batch of 50): the rest waits for the next claim rather than one
# transaction holding the writer for long.
MAX_SCANS = 20


class Gate(Protocol):
    """What holds a channel's alerts back now (``monitor.notify.digest.Gate`` is one)."""

    @property
    def hold_until(self) -> datetime | None: ...  # digest channel: every alert waits until then

    @property
    def quiet_until(self) -> datetime | None: ...  # quiet hours: non-high alerts wait until then

    @property
    def max_per_hour(self) -> int | None: ...  # messages in a rolling hour


@dataclass
class _Budget:
    """How many more messages a rate-limited channel may send now, and when the rest go."""

    left: int
    release: datetime


async def _budget(conn: AsyncConnection, channel: str, now: datetime, most: int) -> _Budget:
    """Messages sent in the rolling hour (a digest counts once) and sends in flight (leased
    pending rows: about to count) against ``most``. Held rows leave with one digest, at the
    hour's end: when the oldest message leaves the window, and no sooner than an hour after
    the last digest, so a steady overflow makes one digest an hour, not one per freed slot."""
    since = now - HOUR
    recent = and_(
        deliveries.c.channel == channel,
        deliveries.c.status == SENT,
        deliveries.c.sent_at > since,
    )

    def scalar(expr: Any, *where: Any) -> Any:
        return select(expr).select_from(deliveries).where(*where).scalar_subquery()

    row = (
        await conn.execute(
            select(
                scalar(func.count(), recent, deliveries.c.digest.is_(None)).label("alone"),
                scalar(
                    func.count(func.distinct(deliveries.c.digest)),
                    recent,
                    deliveries.c.digest.is_not(None),
                ).label("digests"),
                scalar(func.min(deliveries.c.sent_at), recent).label("oldest"),
                scalar(
                    func.max(deliveries.c.sent_at), recent, deliveries.c.digest.is_not(None)
                ).label("last_digest"),
                scalar(
                    func.count(),
                    deliveries.c.channel == channel,
                    deliveries.c.status == PENDING,
                    deliveries.c.lease_until > now,
                ).label("in_flight"),
            )
        )
    ).one()
    used = int(row.alone) + int(row.digests) + int(row.in_flight)
    # An aggregate over a scalar subquery may come back untyped (SQLite: text).
    oldest = _as_utc(row.oldest)
    last_digest = _as_utc(row.last_digest)
    release = (oldest + HOUR) if oldest is not None else now + HOUR
    if last_digest is not None:
        release = max(release, last_digest + HOUR)
    return _Budget(left=max(0, most - used), release=release)


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite: the naive-UTC text tables.UTCDateTime writes
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class _Due:
    id: int
    channel: str
    priority: str


async def _due(
    conn: AsyncConnection, backend: str, status: str, now: datetime, limit: int, *, by_channel: bool
) -> list[_Due]:
    """Lock up to ``limit`` rows of ``status`` due at ``now`` with no live lease: (id,
    channel, priority), earliest due first (grouped by channel first when ``by_channel``)."""
    order = [deliveries.c.next_attempt_at, deliveries.c.id]
    if by_channel:
        order.insert(0, deliveries.c.channel)
    due = (
        select(deliveries.c.id, deliveries.c.channel, deliveries.c.alert_id)
        .where(
            deliveries.c.status == status,
            deliveries.c.next_attempt_at <= now,
            or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until <= now),
        )
        .order_by(*order)
        .limit(limit)
    )
    # No join in the locking select: FOR UPDATE would then lock the alerts rows too.
    rows = list(await conn.execute(dialect.for_claim(due, backend)))
    if not rows:
        return []
    wanted = select(alerts.c.id, alerts.c.priority).where(
        alerts.c.id.in_([r.alert_id for r in rows])
    )
    priority = {row.id: row.priority for row in await conn.execute(wanted)}
    return [_Due(r.id, r.channel, priority.get(r.alert_id, "normal")) for r in rows]


async def _hold(conn: AsyncConnection, held: Mapping[tuple[datetime, str], list[int]]) -> None:
    for (until, reason), ids in held.items():
        for batch in dialect.chunks(ids):
            await conn.execute(
                sa.update(deliveries)
                .where(deliveries.c.id.in_(batch))
                .values(
                    status=HELD,
                    hold=reason,
                    next_attempt_at=until,
                    lease_owner=None,
                    lease_until=None,
                )
            )


async def claim(
    conn: AsyncConnection,
    backend: str,
    now: datetime,
    *,
    limit: int,
    lease: timedelta,
    owner: str,
    gates: Mapping[str, Gate],
) -> list[model.Delivery]:
    """Pending due rows to send now, leased; the ones a gate holds back become held."""
    if backend == dialect.POSTGRESQL and any(g.max_per_hour for g in gates.values()):
        await conn.execute(select(func.pg_advisory_xact_lock(RATE_LOCK_KEY)))
    budgets: dict[str, _Budget] = {}
    send: list[int] = []
    for _ in range(MAX_SCANS):
        # Whole batches each scan: on a limited channel most rows are held, and scanning
        # `limit - len(send)` rows would crawl through a burst a few rows at a time.
        rows = await _due(conn, backend, PENDING, now, limit, by_channel=False)
        if not rows:
            break
        held: dict[tuple[datetime, str], list[int]] = defaultdict(list)
        taken: list[int] = []
        for row in rows:
            if len(send) + len(taken) >= limit:
                break  # the rest stays pending, untouched, for the next claim
            g = gates.get(row.channel)
            if g is None:
                taken.append(row.id)
            elif g.hold_until is not None:
                held[(g.hold_until, HOLD_DIGEST)].append(row.id)
            elif g.quiet_until is not None and row.priority != "high":
                held[(g.quiet_until, HOLD_QUIET)].append(row.id)
            elif g.max_per_hour is not None:
                budget = budgets.get(row.channel)
                if budget is None:
                    budget = await _budget(conn, row.channel, now, g.max_per_hour)
                    budgets[row.channel] = budget
                if budget.left > 0:
                    budget.left -= 1
                    taken.append(row.id)
                else:
                    held[(budget.release, HOLD_RATE)].append(row.id)
            else:
                taken.append(row.id)
        await _hold(conn, held)
        # Leased at once: the next scan of this claim, and the budget, see them as in flight.
        await dialect.stamp_leases(conn, deliveries, "id", taken, owner=owner, until=now + lease)
        send += taken
        if len(send) >= limit:
            break
    return await _details(conn, send)


async def claim_held(
    conn: AsyncConnection,
    backend: str,
    now: datetime,
    *,
    limit: int,
    lease: timedelta,
    owner: str,
    gates: Mapping[str, Gate],
) -> list[model.Delivery]:
    """Held rows whose digest is due, leased, grouped by channel; during a channel's quiet
    hours its rows without priority high are held on until the quiet hours end."""
    send: list[int] = []
    for _ in range(MAX_SCANS):
        rows = await _due(conn, backend, HELD, now, limit - len(send), by_channel=True)
        if not rows:
            break
        held: dict[tuple[datetime, str], list[int]] = defaultdict(list)
        taken: list[int] = []
        for row in rows:
            g = gates.get(row.channel)
            if g is not None and g.quiet_until is not None and row.priority != "high":
                held[(g.quiet_until, HOLD_QUIET)].append(row.id)
            else:
                taken.append(row.id)
        await _hold(conn, held)
        await dialect.stamp_leases(conn, deliveries, "id", taken, owner=owner, until=now + lease)
        send += taken
        if len(send) >= limit or not held:
            break
    return await _details(conn, send)


async def _details(conn: AsyncConnection, ids: Sequence[int]) -> list[model.Delivery]:
    """The claimed rows as ``Delivery`` values, in ``ids``' order."""
    if not ids:
        return []
    found: dict[int, Row[Any]] = {}
    for batch in dialect.chunks(ids):
        found.update({row.delivery_id: row for row in await conn.execute(_detail_query(batch))})
    copies = await _copies(conn, {row.alert_story for row in found.values()})
    claimed = []
    for delivery_id in ids:
        row = found[delivery_id]
        item = to_item(row)
        # One copy per other outlet: "also reported by" names outlets, not every re-post.
        also: dict[str, model.Copy] = {}
        for copy in copies.get(row.alert_story, ()):
            if copy.feed != item.feed:
                also.setdefault(copy.feed, copy)
        claimed.append(
            model.Delivery(
                id=row.delivery_id,
                alert_id=row.alert_id,
                channel=row.delivery_channel,
                rule=row.alert_rule,
                priority=row.priority,
                item=item,
                match=None if row.match_id is None else _match(row.alert_rule, row),
                story=row.alert_story,
                attempts=row.attempts,
                created=row.delivery_created,
                also=tuple(also.values()),
                revision=row.alert_revision,
            )
        )
    return claimed


def _detail_query(ids: Sequence[int]) -> Any:
    return (
        select(
            deliveries.c.id.label("delivery_id"),
            deliveries.c.alert_id,
            deliveries.c.channel.label("delivery_channel"),
            deliveries.c.attempts,
            deliveries.c.created.label("delivery_created"),
            alerts.c.rule.label("alert_rule"),
            alerts.c.priority,
            alerts.c.story.label("alert_story"),
            alerts.c.revision.label("alert_revision"),
            matches.c.id.label("match_id"),
            matches.c.snippet,
            matches.c.highlights,
            matches.c.fields,
            *items.c,  # under their own names, for to_item()
        )
        .select_from(
            deliveries.join(alerts, alerts.c.id == deliveries.c.alert_id)
            .join(items, items.c.id == alerts.c.item_id)
            .outerjoin(
                matches, and_(matches.c.item_id == items.c.id, matches.c.rule == alerts.c.rule)
            )
        )
        .where(deliveries.c.id.in_(ids))
    )


async def settle(conn: AsyncConnection, delivery_id: int, values: dict[str, Any]) -> None:
    """Update one delivery; ``LookupError`` when there is none with that id."""
    result = await conn.execute(
        sa.update(deliveries).where(deliveries.c.id == delivery_id).values(values)
    )
    if result.rowcount != 1:
        raise LookupError(f"no delivery {delivery_id}")


async def settle_sent(
    conn: AsyncConnection, sent: Sequence[tuple[int, datetime]]
) -> dict[int, LookupError]:
    """Mark each (delivery id, time) 'sent' at that time, one more attempt, lease released, in
    one statement; returns the positions of the ids there is no delivery for."""
    ids = {delivery_id for delivery_id, _ in sent}
    stored: set[int] = set()
    for batch in dialect.chunks(ids):
        stored.update(await conn.scalars(select(deliveries.c.id).where(deliveries.c.id.in_(batch))))
    refused = {
        i: LookupError(f"no delivery {delivery_id}")
        for i, (delivery_id, _) in enumerate(sent)
        if delivery_id not in stored
    }
    rows = [
        {"b_id": delivery_id, "b_sent_at": at}
        for i, (delivery_id, at) in enumerate(sent)
        if i not in refused
    ]
    if rows:
        stmt = (
            sa.update(deliveries)
            .where(deliveries.c.id == sa.bindparam("b_id"))
            .values(
                status=SENT,
                sent_at=sa.bindparam("b_sent_at"),
                attempts=deliveries.c.attempts + 1,
                lease_owner=None,
                lease_until=None,
            )
        )
        await conn.execute(stmt, rows)
    return refused


async def settle_many(conn: AsyncConnection, ids: Sequence[int], values: dict[str, Any]) -> None:
    """Update every delivery of ``ids`` alike (ids that are gone are skipped: pruned since)."""
    for batch in dialect.chunks(ids):
        await conn.execute(sa.update(deliveries).where(deliveries.c.id.in_(batch)).values(values))


async def revive(conn: AsyncConnection, alert_id: int | None, now: datetime) -> int:
    stmt = sa.update(deliveries).where(deliveries.c.status == DEAD)
    if alert_id is not None:
        # By alert: the id `newsmon alerts` shows. Delivery ids are another sequence, which
        # drifts from the alerts' on PostgreSQL (an insert that hit the key still takes one).
        stmt = stmt.where(deliveries.c.alert_id == alert_id)
    result = await conn.execute(
        # Back to pending, not to held: the channel's gates decide afresh whether it waits.
        stmt.values(
            status=PENDING,
            next_attempt_at=now,
            attempts=0,
            lease_owner=None,
            lease_until=None,
            hold=None,
            digest=None,
        )
    )
    return result.rowcount


async def depth(conn: AsyncConnection) -> int:
    stmt = select(func.count()).where(deliveries.c.status.in_([PENDING, HELD]))
    return int((await conn.execute(stmt)).scalar_one())


async def holds(
    conn: AsyncConnection, alert_ids: Collection[int]
) -> dict[int, tuple[str, datetime]]:
    found: dict[int, tuple[str, datetime]] = {}
    for batch in dialect.chunks(alert_ids):
        rows = await conn.execute(
            select(deliveries.c.alert_id, deliveries.c.hold, deliveries.c.next_attempt_at).where(
                deliveries.c.alert_id.in_(batch), deliveries.c.status == HELD
            )
        )
        for row in rows:
            found[row.alert_id] = (row.hold or HOLD_DIGEST, row.next_attempt_at)
    return found


async def _copies(conn: AsyncConnection, stories: Collection[str]) -> dict[str, list[model.Copy]]:
    copies: dict[str, list[model.Copy]] = defaultdict(list)
    for batch in dialect.chunks(stories):
        rows = await conn.execute(
            select(items.c.story, items.c.feed, items.c.url, items.c.published)
            .where(items.c.story.in_(batch))
            .order_by(func.coalesce(items.c.published, items.c.fetched_at), items.c.id)
        )
        for row in rows:
            copies[row.story].append(
                model.Copy(feed=row.feed, url=row.url, published=row.published)
            )
    return copies


def _match(rule: str, row: Row[*tuple[Any, ...]]) -> model.Match:
    return model.Match(
        rule=rule,
        snippet=row.snippet,
        highlights=tuple((int(a), int(b)) for a, b in json.loads(row.highlights)),
        fields=tuple(json.loads(row.fields)),
    )
