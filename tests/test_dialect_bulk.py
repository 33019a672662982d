"""Bulk integer helpers of the dialect module (``among``, ``int_rows``) on real SQLite and
PostgreSQL, over a small table of the test's own, and the scheduler's garbage-collector setup.
"""

from __future__ import annotations

import gc
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from monitor import scheduler
from monitor.store import dialect

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
EXTREMES = [INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX - 1, INT64_MAX]

# SQLite's compiled-in default for bound parameters a statement (since 3.32). Debian's build,
# the one here, raises it to 250,000, so the test lowers it back: a statement binding a
# parameter per value would pass here and fail on a stock SQLite.
SQLITE_DEFAULT_MAX_VARIABLES = 32_766
OVER_THE_LIMIT = 40_000

metadata = sa.MetaData()
keyed = sa.Table("keyed", metadata, sa.Column("k", sa.BigInteger, primary_key=True))
pairs = sa.Table(
    "pairs",
    metadata,
    sa.Column("a", sa.BigInteger, primary_key=True),
    sa.Column("b", sa.BigInteger, primary_key=True),
    sa.Column("c", sa.BigInteger, nullable=False),
)


def _stock_parameter_limit(engine: AsyncEngine) -> None:
    """Give every new SQLite connection of `engine` the stock limit of bound parameters.

    SQLite has no PRAGMA for it, so this calls ``sqlite3.Connection.setlimit`` on aiosqlite's
    thread through its private ``_execute`` and ``_conn``.
    """

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _limit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.run_async(
            lambda conn: conn._execute(
                conn._conn.setlimit,
                sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER,
                SQLITE_DEFAULT_MAX_VARIABLES,
            )
        )


@asynccontextmanager
async def _open(url: str) -> AsyncIterator[AsyncEngine]:
    made = dialect.create_engine(dialect.async_url(url))
    if made.dialect.name == dialect.SQLITE:
        _stock_parameter_limit(made)
    try:
        async with made.begin() as conn:
            await conn.run_sync(metadata.create_all)
        yield made
    finally:
        await made.dispose()


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[AsyncEngine]:
    async with _open(store_url) as made:
        yield made


async def _fill_keyed(engine: AsyncEngine, keys: list[int]) -> None:
    async with engine.begin() as conn:
        await conn.execute(keyed.insert(), [{"k": k} for k in keys])


async def _among(engine: AsyncEngine, values: list[int]) -> list[int]:
    stmt = sa.select(keyed.c.k).where(dialect.among(keyed.c.k, values, engine.dialect.name))
    async with engine.connect() as conn:
        return list((await conn.execute(stmt)).scalars())


async def test_among_selects_exactly_the_listed_keys(engine: AsyncEngine) -> None:
    await _fill_keyed(engine, [*EXTREMES, 7, 8, 9, -7])

    assert await _among(engine, []) == []
    assert sorted(await _among(engine, [8, 8, 8, 7, 1_000])) == [7, 8]
    assert sorted(await _among(engine, EXTREMES)) == sorted(EXTREMES)
    assert sorted(await _among(engine, [-7, INT64_MIN, 2])) == [INT64_MIN, -7]


async def test_among_binds_one_parameter_however_many_values(engine: AsyncEngine) -> None:
    stored = list(range(-500, 500, 3))
    await _fill_keyed(engine, [*stored, INT64_MIN, INT64_MAX])
    values = [*range(-OVER_THE_LIMIT // 2, OVER_THE_LIMIT // 2 - 2), INT64_MIN, INT64_MAX]
    assert len(values) == OVER_THE_LIMIT

    stmt = sa.select(keyed.c.k).where(dialect.among(keyed.c.k, values, engine.dialect.name))
    compiled = stmt.compile(dialect=engine.dialect)
    assert len(compiled.params) == 1
    (bound,) = compiled.params.values()
    assert (json.loads(bound) if isinstance(bound, str) else bound) == values

    assert sorted(await _among(engine, values)) == sorted([*stored, INT64_MIN, INT64_MAX])


async def test_a_plain_in_list_of_as_many_values_fails_on_sqlite(tmp_path: Path) -> None:
    """The control of the test above: the lowered limit is in force."""
    stmt = sa.select(keyed.c.k).where(keyed.c.k.in_(range(OVER_THE_LIMIT)))
    async with _open(f"sqlite:///{tmp_path / 'limit.db'}") as engine, engine.connect() as conn:
        with pytest.raises(OperationalError, match="too many SQL variables"):
            await conn.execute(stmt)


def _insert_pairs(rows: list[tuple[int, int]], c: int, backend: str, *, ignore: bool) -> Any:
    source = dialect.int_rows(("a", "b"), rows, backend)
    # WHERE true: SQLite's parser needs it between an INSERT's SELECT and ON CONFLICT
    # (as in corpus._index_bands).
    select = sa.select(source.c.a, source.c.b, sa.literal(c, sa.BigInteger)).where(sa.true())
    stmt = dialect.insert_ignore(pairs, ["a", "b"], backend) if ignore else pairs.insert()
    return stmt.from_select(["a", "b", "c"], select)


async def _pairs(engine: AsyncEngine) -> list[tuple[int, int, int]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(sa.select(pairs.c.a, pairs.c.b, pairs.c.c))]


async def test_int_rows_inserts_exactly_the_rows_given(engine: AsyncEngine) -> None:
    backend = engine.dialect.name
    rows = [(i, (i * 7919) % 50_000 - 25_000) for i in range(50_000)]
    rows += [(x, y) for x in (INT64_MIN, INT64_MAX) for y in (INT64_MIN, -1, INT64_MAX)]

    async with engine.begin() as conn:
        await conn.execute(_insert_pairs(rows, 3, backend, ignore=False))
        await conn.execute(_insert_pairs([], 4, backend, ignore=False))

    assert sorted(await _pairs(engine)) == sorted((a, b, 3) for a, b in rows)


async def test_int_rows_binds_a_parameter_per_column_or_one_for_all(engine: AsyncEngine) -> None:
    backend = engine.dialect.name
    rows = [(i, -i, i * 2) for i in range(OVER_THE_LIMIT)]
    compiled = sa.select(dialect.int_rows(("x", "y", "z"), rows, backend)).compile(
        dialect=engine.dialect
    )
    bound = list(compiled.params.values())
    if backend == dialect.POSTGRESQL:
        assert bound == [list(column) for column in zip(*rows, strict=True)]
    else:
        # One parameter holds every row; the others are the constant JSON path of each column.
        paths = [v for v in bound if v.startswith("$[")]
        (data,) = [json.loads(v) for v in bound if not v.startswith("$[")]
        assert paths == ["$[0]", "$[1]", "$[2]"]
        assert data == [list(row) for row in rows]


async def test_insert_ignore_from_int_rows_skips_existing_pairs(engine: AsyncEngine) -> None:
    backend = engine.dialect.name
    async with engine.begin() as conn:
        await conn.execute(
            _insert_pairs([(1, 1), (1, 2), (INT64_MAX, INT64_MIN)], 1, backend, ignore=True)
        )
        # Two already stored, two new, and one new pair given twice.
        again = [(1, 2), (INT64_MAX, INT64_MIN), (2, 1), (INT64_MIN, INT64_MAX), (2, 1)]
        await conn.execute(_insert_pairs(again, 2, backend, ignore=True))

    assert sorted(await _pairs(engine)) == sorted(
        [(1, 1, 1), (1, 2, 1), (INT64_MAX, INT64_MIN, 1), (2, 1, 2), (INT64_MIN, INT64_MAX, 2)]
    )


def test_settle_garbage_collector_freezes_and_raises_the_young_threshold() -> None:
    thresholds = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    try:
        scheduler.settle_garbage_collector()
        assert gc.get_freeze_count() > frozen_before
        assert gc.get_threshold() == (scheduler.GC_YOUNG_THRESHOLD, *thresholds[1:])
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
