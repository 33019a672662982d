"""newsmon's Alembic migrations, run in code: no ``alembic.ini`` is needed at run time.

``versions/`` is written by hand to produce exactly ``monitor.store.tables.metadata``; a test
upgrades an empty database and compares it with the metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import Connection

if TYPE_CHECKING:
    from alembic.config import Config

HERE = Path(__file__).resolve().parent
# The newest revision, read from the file names (``versions/NNNN_what.py`` holds revision
# "NNNN"; a test checks that Alembic agrees): a process starting on an up-to-date database
# neither imports Alembic nor reads the scripts (about 0.2 s of every start).
HEAD = max(p.name.split("_", 1)[0] for p in (HERE / "versions").glob("[0-9]*_*.py"))


def config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at this package, bound to `connection` when given."""
    from alembic.config import Config

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
    from alembic import command

    command.upgrade(config(connection), revision)


def current(connection: Connection) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def at_head(connection: Connection) -> bool:
    """Whether the database is at `HEAD` already, read without Alembic."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return False
    found = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
    return list(found) == [HEAD]


def head() -> str | None:
    """The newest revision this code knows, as Alembic reads the scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config()).get_current_head()
