"""newsmon's Alembic migrations, run in code: no ``alembic.ini`` is needed at run time.

``versions/`` is written by hand to produce exactly ``monitor.store.tables.metadata``; a test
upgrades an empty database and compares it with the metadata.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

HERE = Path(__file__).resolve().parent


def config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at this package, bound to `connection` when given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade the database behind `connection` to `revision` (sync; use ``run_sync``).

    Runs inside the caller's transaction: the caller commits, and holds whatever lock keeps
    other processes from migrating at the same time.
    """
    command.upgrade(config(connection), revision)


def current(connection: Connection) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    return MigrationContext.configure(connection).get_current_revision()


def head() -> str | None:
    """The newest revision this code knows."""
    return ScriptDirectory.from_config(config()).get_current_head()
