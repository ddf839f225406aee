"""Bring the engine database to the schema this code expects, with Alembic.

Every process (workers, starter, API) calls `migrate()` at start-up, so several may do it at
once: the upgrade runs under a database-wide lock (BEGIN IMMEDIATE on SQLite, a transaction
advisory lock on PostgreSQL) and in one transaction, so the first one upgrades and the others
then find the database at head. A database written by a newer engine is refused untouched.

    python -m store.migrate     # upgrade DATABASE_URL, print its revision
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from store.db import engine_for

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Key of the PostgreSQL advisory lock held while migrating (any constant unique to us).
_LOCK_KEY = 0x48414E4F49_0001  # "HANOI", 1


# Alembic's `context` and `op` are process-wide proxies, and run_sync interleaves upgrades on
# one thread: two databases migrated at once in a process would get each other's DDL. One
# upgrade at a time per event loop (the database lock only orders upgrades of one database).
_local_locks: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = WeakKeyDictionary()


class SchemaTooNew(RuntimeError):
    """The database is at a revision this code does not know: a newer engine wrote it."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, without an ini file. To write the next revision:
    `command.revision(alembic_config(), "message", rev_id="0002")`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration in {MIGRATIONS}")
    return head


async def current_revision(database_url: str) -> str | None:
    """The database's revision; None for an empty (or, on SQLite, absent) database."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        if not await asyncio.to_thread(Path(url.database).exists):
            return None  # don't create the file just to look at it
    engine = engine_for(database_url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_revision)
    finally:
        # Pooled connections are bound to this event loop: leave none behind.
        await engine.dispose()


async def migrate(database_url: str) -> None:
    """Upgrade the database to head; raise SchemaTooNew (touching nothing) when it is newer."""
    async with _local_lock():
        await _migrate(database_url)


async def _migrate(database_url: str) -> None:
    engine = engine_for(database_url)  # also creates the SQLite file's folder
    try:
        async with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # SQLite has transactional DDL, but the driver only opens transactions before
                # DML: take over and hold the write lock from the first read of alembic_version
                # (other processes wait on the busy timeout, then find the upgrade done).
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    await conn.run_sync(_upgrade)
                except BaseException:
                    await conn.exec_driver_sql("ROLLBACK")
                    raise
                await conn.exec_driver_sql("COMMIT")
            else:
                async with conn.begin():
                    # Released at commit or rollback, even if this process dies.
                    lock = text("SELECT pg_advisory_xact_lock(:key)")
                    await conn.execute(lock, {"key": _LOCK_KEY})
                    await conn.run_sync(_upgrade)
    finally:
        # Pooled connections are bound to this event loop: leave none behind.
        await engine.dispose()


def _local_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _local_locks.get(loop)
    if lock is None:
        lock = _local_locks[loop] = asyncio.Lock()
    return lock


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection) -> None:
    config = alembic_config(connection)
    script = ScriptDirectory.from_config(config)
    known = {revision.revision for revision in script.walk_revisions()}
    for current in MigrationContext.configure(connection).get_current_heads():
        if current not in known:
            raise SchemaTooNew(
                f"database at schema revision {current}, newer than this code's head "
                f"{script.get_current_head()}: upgrade the engine before starting it"
            )
    command.upgrade(config, "head")


async def _main() -> int:
    from config import settings
    from store.db import dispose_all

    database_url = settings().database_url
    shown = make_url(database_url).render_as_string(hide_password=True)
    try:
        await migrate(database_url)
        print(f"{shown}: schema revision {await current_revision(database_url)}")
    except SchemaTooNew as refused:
        print(f"{shown}: {refused}", file=sys.stderr)
        return 1
    finally:
        await dispose_all()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))
