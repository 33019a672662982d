"""Shared fixtures: real database backends for every test that needs a store.

``store_url`` (function scope, parametrized ``["sqlite", "postgresql"]``)
    A URL to a fresh, empty database for one test: ``sqlite:///<tmp_path>/newsmon.db``, or
    ``postgresql://…/newsmon_test_<pid>_<hex>_<n>``, a database created for the test and dropped
    after it. Request it and the test runs once per backend; the PostgreSQL run carries the
    ``postgres`` marker (``-m "not postgres"`` leaves it out).

``store`` (function scope)
    ``Store.open(store_url)``: migrated, closed after the test.

``pg_base_url`` (session scope)
    The server URL to create test databases on: ``$NEWSMON_TEST_PG_URL`` or
    ``postgresql://postgres@127.0.0.1:5432/postgres``. When the server cannot be reached the
    requesting test is skipped ("PostgreSQL not reachable on …"), except under ``CI=true``,
    where it fails: CI must run the PostgreSQL tests.

``pg_url`` (function scope)
    A fresh PostgreSQL database URL for one test, for tests that only make sense there
    (several replicas sharing one database).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url

from monitor.store import Store

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

# One prefix per test session, so that parallel sessions (and leftovers of a killed one) never
# collide; a counter makes each test's database fresh.
_SESSION_PREFIX = f"newsmon_test_{os.getpid()}_{secrets.token_hex(3)}"
_counter = itertools.count(1)


def _asyncpg_dsn(url: URL, database: str | None = None) -> str:
    plain = url.set(drivername="postgresql")
    if database is not None:
        plain = plain.set(database=database)
    return plain.render_as_string(hide_password=False)


async def _admin(base: URL, sql: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(base), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_base_url() -> Iterator[str]:
    url = os.environ.get("NEWSMON_TEST_PG_URL") or DEFAULT_PG_URL
    base = make_url(url)
    if not base.database:
        base = base.set(database="postgres")
    try:
        asyncio.run(_admin(base, "SELECT 1"))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        where = f"{base.host or '127.0.0.1'}:{base.port or 5432}"
        reason = f"PostgreSQL not reachable on {where} ({type(exc).__name__}: {exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
        pytest.skip(reason)
    yield base.render_as_string(hide_password=False)
    # Databases of tests interrupted before their own teardown.
    asyncio.run(_drop_leftovers(base))


async def _drop_leftovers(base: URL) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(base), timeout=5)
    try:
        names = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", _SESSION_PREFIX + "%"
        )
        for row in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def pg_url(pg_base_url: str) -> AsyncIterator[str]:
    base = make_url(pg_base_url)
    name = f"{_SESSION_PREFIX}_{next(_counter)}"
    await _admin(base, f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        # FORCE: a test that failed may have left connections open.
        await _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'newsmon.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()
