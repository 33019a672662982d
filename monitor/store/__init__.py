"""newsmon's store: SQLAlchemy Core tables, the repository the rest calls, Alembic migrations.

SQLite (WAL, one writer) on one node; PostgreSQL for many replicas, which share feeds and
outbox rows through leases. See :mod:`monitor.store.repository` for the contract.
"""

from monitor.store.repository import Ingest, Store
from monitor.store.rows import AlertRow, Applied, StoryRow

__all__ = ["AlertRow", "Applied", "Ingest", "Store", "StoryRow"]
