"""Alembic's entry point for newsmon's schema.

Migrations run only on a connection handed over by :func:`monitor.store.migrations.upgrade`
(``Store.open`` calls it): the caller owns the transaction and, on PostgreSQL, the advisory
lock around it, so this file only binds the connection and the target metadata.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from monitor.store.tables import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "newsmon migrations run through monitor.store.migrations.upgrade() on an open "
        "connection (Store.open does it), not from the alembic command line"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters tables by copying them; batch mode lets later revisions use op.alter_column.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
