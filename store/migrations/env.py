"""Alembic environment. Migrations run only through store.migrate, which hands over a
connection already inside the transaction that holds the start-up lock (BEGIN IMMEDIATE on
SQLite, an advisory lock on PostgreSQL): Alembic must neither open nor commit its own."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import store.tables  # noqa: F401  (registers the tables on the metadata, for autogenerate)
from store.db import metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: autogenerate writes batch operations for it.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if context.is_offline_mode() or not isinstance(connection, Connection):
    # 0001 inspects the database it adopts, and the lock lives in store.migrate.
    raise RuntimeError("run migrations with `python -m store.migrate`, not the alembic CLI")
run_migrations(connection)
