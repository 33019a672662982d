"""Every difference between SQLite and PostgreSQL, in one place.

The repository speaks portable SQLAlchemy Core and asks this module whenever the backends
part ways: which async driver a URL maps to, how an engine is tuned (SQLite pragmas and its
one-writer transactions), how to insert-or-ignore, how a claim locks its rows, and how
replicas starting together agree on who migrates.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Select,
    String,
    Subquery,
    Table,
    any_,
    bindparam,
    event,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

log = logging.getLogger("newsmon")

SQLITE, POSTGRESQL = "sqlite", "postgresql"

_T = TypeVar("_T")

_DRIVERS = {SQLITE: "sqlite+aiosqlite", POSTGRESQL: "postgresql+asyncpg"}

# How long a SQLite connection waits for another process's write lock (a `newsmon alerts` run
# beside the daemon) before failing. In-process writers never wait on it: they queue on the
# store's writer lock instead.
SQLITE_BUSY_TIMEOUT_MS = 30_000

# Execution option that makes a SQLite transaction start with BEGIN IMMEDIATE: a writer takes
# the write lock up front, so a transaction that reads then writes can never fail half-way
# with SQLITE_BUSY when another process wrote in between.
WRITE_OPTION = "newsmon_write"

# Key of the PostgreSQL advisory lock held while migrating: an arbitrary constant that every
# newsmon replica shares ("newsmon" in ASCII, fits in a bigint).
MIGRATION_LOCK_KEY = 0x6E657773_6D6F6E
INGEST_LOCK_KEY = MIGRATION_LOCK_KEY + 1  # ingest transactions, see lock_for_ingest


def async_url(url: str) -> URL:
    """The URL with its async driver: ``sqlite://`` → aiosqlite, ``postgresql://`` → asyncpg.

    Raises ``ValueError`` for any other backend or driver.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgres":  # the libpq spelling
        backend = POSTGRESQL
    if backend not in _DRIVERS:
        raise ValueError(f"unsupported database {backend!r}: use sqlite:// or postgresql://")
    wanted = _DRIVERS[backend]
    # Plain "sqlite://" and "postgresql://" name no driver: they get the async one.
    named = "+" in parsed.drivername
    if named and parsed.get_driver_name() != wanted.split("+")[1]:
        raise ValueError(f"unsupported driver {parsed.drivername!r}: use {wanted}://")
    return parsed.set(drivername=wanted)


def is_memory(url: URL) -> bool:
    return url.get_backend_name() == SQLITE and url.database in (None, "", ":memory:")


def _private_file(path: Path) -> None:
    """Create the database file (and a missing directory) readable by the owner only.

    The corpus holds what was watched and alerted, which may itself be sensitive; the -wal and
    -shm files SQLite adds inherit the database file's mode. A file that already exists (made
    by an older version, a copy, a `touch` under umask 022) is tightened to the owner only, and
    its -wal and -shm with it. A directory open to other users is only warned about: it may be
    shared on purpose, and its mode is the operator's to choose.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    for file in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                file.chmod(mode & 0o700)
                log.warning("database file %s was mode %03o; made owner-only", file, mode)
        except FileNotFoundError:  # no -wal or -shm until SQLite writes in WAL mode
            continue
    directory = path.parent.resolve()
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "database directory %s is mode %03o: other users can %s it; make it owner-only "
            "(chmod 700)",
            directory,
            mode,
            "write to" if mode & 0o022 else "list",
        )


def create_engine(url: URL) -> AsyncEngine:
    """An engine tuned for its backend; creates a SQLite file's parent directory."""
    if url.get_backend_name() == POSTGRESQL:
        # pre_ping: a replica outlives database restarts and failovers without a stale pool.
        return create_async_engine(url, pool_pre_ping=True)

    kwargs: dict[str, Any] = {}
    if is_memory(url):
        # One connection, else every pooled connection would see its own empty database.
        kwargs["poolclass"] = StaticPool
    else:
        assert url.database is not None
        _private_file(Path(url.database))
    engine = create_async_engine(url, **kwargs)
    memory = is_memory(url)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            # WAL: readers never block the writer nor it them; NORMAL is durable across crashes
            # of the process (only an OS crash may lose the last transactions) and much faster.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # 16 MiB of page cache a connection instead of SQLite's 2 MiB: each stored item adds 16
        # rows at random places of the band index, and with 2 MiB most of those inserts missed
        # the cache (bench/decide_bench.py: band rows 5.0 s -> 3.2 s for 30,000 items).
        cursor.execute("PRAGMA cache_size=-16384")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def insert_ignore(table: Table, conflict: Sequence[str], backend: str) -> Any:
    """``INSERT … ON CONFLICT (conflict) DO NOTHING`` for `table` on `backend`.

    Returned as the dialect's ``Insert`` so that callers can add ``.returning(...)``: the rows
    it returns are exactly the rows inserted.
    """
    module: Any = postgresql if backend == POSTGRESQL else sqlite
    return module.insert(table).on_conflict_do_nothing(index_elements=list(conflict))


def among(column: ColumnElement[Any], values: Collection[int], backend: str) -> ColumnElement[bool]:
    """``column IN (values)`` for integers, however many, as one bound parameter.

    SQLAlchemy binds an IN list as one parameter per value, which for the thousands of band
    keys of a batch costs more than the lookup itself (and SQLite caps parameters). PostgreSQL
    gets ``= ANY(:array)``; SQLite ``IN (SELECT value FROM json_each(:json))``, which it answers
    from the index exactly as it does a list.
    """
    ints = [int(v) for v in values]
    if backend == POSTGRESQL:
        return column == any_(bindparam(None, ints, type_=postgresql.ARRAY(BigInteger)))
    listed = func.json_each(bindparam(None, json.dumps(ints), type_=String)).table_valued("value")
    return column.in_(select(listed.c.value).scalar_subquery())


def int_rows(columns: Sequence[str], rows: Sequence[Sequence[int]], backend: str) -> Subquery:
    """`rows` of integers as a table with `columns`, from one bound parameter per column
    (PostgreSQL: parallel ``unnest`` of arrays) or one for all the rows (SQLite: ``json_each``,
    plus each column's constant JSON path): never one per row. For
    ``INSERT … SELECT`` of many small rows: an ``executemany`` pays SQLAlchemy's processing of
    every row's parameters in Python, this pays it once."""
    if backend == POSTGRESQL:
        arrays = [
            func.unnest(
                bindparam(None, [int(r[i]) for r in rows], type_=postgresql.ARRAY(BigInteger))
            )
            for i in range(len(columns))
        ]
        return select(*(a.label(c) for a, c in zip(arrays, columns, strict=True))).subquery()
    listed = func.json_each(
        bindparam(None, json.dumps([[int(v) for v in r] for r in rows]), type_=String)
    ).table_valued("value")
    picked = [func.json_extract(listed.c.value, f"$[{i}]").label(c) for i, c in enumerate(columns)]
    return select(*picked).subquery()


def for_claim(stmt: Select[Any], backend: str) -> Select[Any]:
    """Lock the selected rows for the claiming transaction, skipping rows others hold.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so replicas claiming at once split the rows. SQLite
    has no row locks and needs none: its claims run inside the single writer's transaction.
    """
    if backend == POSTGRESQL:
        return stmt.with_for_update(skip_locked=True)
    return stmt


async def take_leases(
    conn: AsyncConnection,
    backend: str,
    due: Select[Any],
    table: Table,
    key: str,
    *,
    owner: str,
    until: datetime,
) -> list[Any]:
    """Claim the rows `due` selects (it selects `table.c[key]`): lock them, stamp the lease.

    Returns the claimed keys in `due`'s order. Runs inside the caller's transaction, so the
    rows stay locked (PostgreSQL) or the writer held (SQLite) until the lease is written.
    """
    keys = list((await conn.execute(for_claim(due, backend))).scalars())
    await stamp_leases(conn, table, key, keys, owner=owner, until=until)
    return keys


async def stamp_leases(
    conn: AsyncConnection,
    table: Table,
    key: str,
    keys: Sequence[Any],
    *,
    owner: str,
    until: datetime,
) -> None:
    """Lease the rows of `table` whose `key` is in `keys` to `owner` until `until`.

    The caller has locked them (``for_claim``) in this transaction; IN lists are chunked.
    """
    column = table.c[key]
    for batch in chunks(keys):
        await conn.execute(
            update(table).where(column.in_(batch)).values(lease_owner=owner, lease_until=until)
        )


async def lock_for_migration(conn: AsyncConnection) -> None:
    """Serialise migrations across processes for the rest of `conn`'s transaction.

    PostgreSQL: a transaction-level advisory lock, released by the commit that ends the
    migration, so replicas starting together migrate once and the others then find the schema
    at head. SQLite: the migration runs in a BEGIN IMMEDIATE transaction, which is lock enough.
    """
    if conn.dialect.name == POSTGRESQL:
        await conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))


async def lock_for_ingest(conn: AsyncConnection) -> None:
    """Serialise ingests (known -> decide -> apply) across processes for `conn`'s transaction.

    Two copies of a story polled at once from two feeds (by two tasks, or two replicas) must
    not both find "no such story yet" and start one each: that would be two alerts. PostgreSQL:
    a transaction-level advisory lock, held until commit; READ COMMITTED then lets each ingest
    see every story committed before it. SQLite: the single writer's BEGIN IMMEDIATE is the lock.
    """
    if conn.dialect.name == POSTGRESQL:
        await conn.execute(select(func.pg_advisory_xact_lock(INGEST_LOCK_KEY)))


# Longest IN list sent at once: well below SQLite's 32766 bound parameters, and small enough
# for PostgreSQL to plan quickly.
CHUNK = 500


def chunks(values: Iterable[_T], size: int = CHUNK) -> Iterator[list[_T]]:
    """`values` in lists of at most `size`, for IN lists every backend accepts."""
    batch: list[_T] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
