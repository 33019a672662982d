"""SQL for the outbox (the deliveries table): claiming due deliveries and settling them.

Functions take an open connection inside the caller's transaction; ``Store`` owns
transactions and states the contracts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Row, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from monitor import model
from monitor.store import dialect
from monitor.store.corpus import to_item
from monitor.store.tables import DEAD, PENDING, alerts, deliveries, items, matches


async def claim(
    conn: AsyncConnection,
    backend: str,
    now: datetime,
    *,
    limit: int,
    lease: timedelta,
    owner: str,
) -> list[model.Delivery]:
    due = (
        select(deliveries.c.id)
        .where(
            deliveries.c.status == PENDING,
            deliveries.c.next_attempt_at <= now,
            or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until <= now),
        )
        .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
        .limit(limit)
    )
    ids = await dialect.take_leases(
        conn, backend, due, deliveries, "id", owner=owner, until=now + lease
    )
    if not ids:
        return []
    detail = (
        select(
            deliveries.c.id.label("delivery_id"),
            deliveries.c.alert_id,
            deliveries.c.channel.label("delivery_channel"),
            deliveries.c.attempts,
            deliveries.c.created.label("delivery_created"),
            alerts.c.rule.label("alert_rule"),
            alerts.c.priority,
            alerts.c.story.label("alert_story"),
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
    found = {row.delivery_id: row for row in await conn.execute(detail)}
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
            )
        )
    return claimed


async def settle(conn: AsyncConnection, delivery_id: int, values: dict[str, Any]) -> None:
    """Update one delivery; ``LookupError`` when there is none with that id."""
    result = await conn.execute(
        sa.update(deliveries).where(deliveries.c.id == delivery_id).values(values)
    )
    if result.rowcount != 1:
        raise LookupError(f"no delivery {delivery_id}")


async def revive(conn: AsyncConnection, delivery_id: int | None, now: datetime) -> int:
    stmt = sa.update(deliveries).where(deliveries.c.status == DEAD)
    if delivery_id is not None:
        stmt = stmt.where(deliveries.c.id == delivery_id)
    result = await conn.execute(
        stmt.values(
            status=PENDING, next_attempt_at=now, attempts=0, lease_owner=None, lease_until=None
        )
    )
    return result.rowcount


async def depth(conn: AsyncConnection) -> int:
    stmt = select(func.count()).where(deliveries.c.status == PENDING)
    return int((await conn.execute(stmt)).scalar_one())


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
