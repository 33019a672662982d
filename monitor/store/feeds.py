"""SQL for the feeds table: following the config, claiming due feeds, recording polls.

Functions take an open connection inside the caller's transaction; ``Store`` owns
transactions and states the contracts.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Row, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from monitor import model
from monitor.store import dialect
from monitor.store.tables import feeds


async def sync(
    conn: AsyncConnection, backend: str, configured: Sequence[model.Feed], now: datetime
) -> None:
    wanted = {feed.name: feed for feed in configured}
    if len(wanted) != len(configured):
        raise ValueError("feed names must be unique")
    stored = {
        row.name: row
        for row in await conn.execute(select(feeds.c.name, feeds.c.config_url, feeds.c.configured))
    }
    new = [
        {
            "name": feed.name,
            "config_url": feed.url,
            "url": feed.url,
            "configured": feed.enabled,
            "error_count": 0,
            "polls": 0,
            "created": now,
        }
        for feed in wanted.values()
        if feed.name not in stored
    ]
    if new:
        # Ignore conflicts: a replica starting at the same time may have inserted them.
        await conn.execute(dialect.insert_ignore(feeds, ["name"], backend), new)
    for name, feed in wanted.items():
        row = stored.get(name)
        if row is None:
            continue
        if row.config_url != feed.url:
            # What was learnt about the old URL says nothing about the new one.
            await conn.execute(
                sa.update(feeds)
                .where(feeds.c.name == name)
                .values(
                    config_url=feed.url,
                    url=feed.url,
                    configured=feed.enabled,
                    etag=None,
                    last_modified=None,
                    next_poll=None,
                    error_count=0,
                    last_error=None,
                    disabled_reason=None,
                )
            )
        elif row.configured != feed.enabled:
            await conn.execute(
                sa.update(feeds).where(feeds.c.name == name).values(configured=feed.enabled)
            )
    gone = [name for name, row in stored.items() if row.configured and name not in wanted]
    for batch in dialect.chunks(gone):
        await conn.execute(sa.update(feeds).where(feeds.c.name.in_(batch)).values(configured=False))


async def claim(
    conn: AsyncConnection,
    backend: str,
    now: datetime,
    *,
    limit: int,
    lease: timedelta,
    owner: str,
    force: bool,
) -> list[model.FeedState]:
    conditions: list[Any] = [
        feeds.c.configured,
        feeds.c.disabled_reason.is_(None),
        or_(feeds.c.lease_until.is_(None), feeds.c.lease_until <= now),
    ]
    if not force:
        conditions.append(or_(feeds.c.next_poll.is_(None), feeds.c.next_poll <= now))
    due = (
        select(feeds.c.name)
        .where(*conditions)
        .order_by(feeds.c.next_poll.asc().nulls_first(), feeds.c.name)
        .limit(limit)
    )
    names = await dialect.take_leases(
        conn, backend, due, feeds, "name", owner=owner, until=now + lease
    )
    if not names:
        return []
    rows = await conn.execute(select(feeds).where(feeds.c.name.in_(names)))
    by_name = {row.name: _state(row) for row in rows}
    return [by_name[name] for name in names]


async def reschedule(
    conn: AsyncConnection, next_polls: Mapping[str, datetime], now: datetime
) -> None:
    if not next_polls:
        return
    # Only feeds still due and not leased: one another replica is polling, or that it polled
    # since they were read, keeps the next poll it was given.
    stmt = (
        sa.update(feeds)
        .where(
            feeds.c.name == sa.bindparam("b_name"),
            or_(feeds.c.next_poll.is_(None), feeds.c.next_poll <= now),
            or_(feeds.c.lease_until.is_(None), feeds.c.lease_until <= now),
        )
        .values(next_poll=sa.bindparam("b_next"))
    )
    await conn.execute(stmt, [{"b_name": n, "b_next": t} for n, t in next_polls.items()])


async def states(conn: AsyncConnection) -> list[model.FeedState]:
    rows = await conn.execute(select(feeds).where(feeds.c.configured).order_by(feeds.c.name))
    return [_state(row) for row in rows]


async def record_poll(conn: AsyncConnection, u: model.FeedUpdate, *, new_items: bool) -> None:
    result = await conn.execute(
        sa.update(feeds).where(feeds.c.name == u.name).values(_poll_values(u, new_items=new_items))
    )
    if result.rowcount != 1:
        raise LookupError(f"feed {u.name!r} is not stored: sync_feeds() first")


async def record_polls(
    conn: AsyncConnection,
    updates: Sequence[model.FeedUpdate],
    new_items: Collection[str] = frozenset(),
) -> dict[int, LookupError]:
    """`record_poll` of each update, as few statements as their shapes allow; `new_items`:
    the feeds whose poll stored new items.

    Returns the positions of the refused ones (a feed never synced); the rest are recorded.
    """
    stored: set[str] = set()
    for batch in dialect.chunks({u.name for u in updates}):
        stored.update(await conn.scalars(select(feeds.c.name).where(feeds.c.name.in_(batch))))
    refused = {
        i: LookupError(f"feed {u.name!r} is not stored: sync_feeds() first")
        for i, u in enumerate(updates)
        if u.name not in stored
    }
    # One executemany per shape of values (a 304 and a failure set different columns): a
    # round trip to the database thread costs more than the update itself.
    # Expressions (``polls + 1``) are the same for every update that sets that column.
    shapes: dict[tuple[tuple[str, ...], tuple[str, ...]], list[dict[str, Any]]] = {}
    expressions: dict[str, Any] = {}
    for i, u in enumerate(updates):
        if i in refused:
            continue
        values = _poll_values(u, new_items=u.name in new_items)
        plain = {k: v for k, v in values.items() if not isinstance(v, sa.ColumnElement)}
        expressions |= {k: v for k, v in values.items() if k not in plain}
        shape = (tuple(sorted(plain)), tuple(sorted(values.keys() - plain.keys())))
        row = {"b_name": u.name} | {f"b_{k}": v for k, v in plain.items()}
        shapes.setdefault(shape, []).append(row)
    for (plain_keys, expression_keys), rows in shapes.items():
        values = {k: sa.bindparam(f"b_{k}") for k in plain_keys}
        values |= {k: expressions[k] for k in expression_keys}
        stmt = sa.update(feeds).where(feeds.c.name == sa.bindparam("b_name")).values(values)
        await conn.execute(stmt, rows)
    return refused


def _poll_values(u: model.FeedUpdate, *, new_items: bool) -> dict[str, Any]:
    """The columns a poll sets: plain values, and expressions over the row's own."""
    values: dict[str, Any] = {
        "last_polled": u.polled_at,
        "next_poll": u.next_poll,
        "lease_owner": None,
        "lease_until": None,
    }
    if u.success:
        values |= {
            "error_count": 0,
            "last_error": None,
            "last_success": u.polled_at,
            "polls": feeds.c.polls + 1,
            "etag": u.etag,
            "last_modified": u.last_modified,
        }
    else:
        # Validators are kept: once the server recovers, the next poll may be a cheap 304.
        values |= {
            "error_count": feeds.c.error_count + 1,
            "last_error": u.error or (f"HTTP {u.status}" if u.status else "failed"),
        }
    if new_items:
        values["last_new_item"] = u.polled_at
    if u.url is not None:
        values["url"] = u.url
    if u.disabled_reason is not None:
        values["disabled_reason"] = u.disabled_reason
    return values


def _state(row: Row[*tuple[Any, ...]]) -> model.FeedState:
    return model.FeedState(
        name=row.name,
        url=row.url,
        etag=row.etag,
        last_modified=row.last_modified,
        next_poll=row.next_poll,
        last_polled=row.last_polled,
        last_success=row.last_success,
        error_count=row.error_count,
        last_error=row.last_error,
        polls=row.polls,
        disabled_reason=row.disabled_reason,
        created=row.created,
        last_new_item=row.last_new_item,
    )
