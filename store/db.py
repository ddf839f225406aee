"""One async engine per database URL: SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import MetaData, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

metadata = MetaData()

_engines: dict[str, AsyncEngine] = {}


def engine_for(url: str, *, writer: bool = False) -> AsyncEngine:
    """The engine for `url`. `writer=True` on SQLite gives one whose transactions take the
    write lock when they begin: a transaction that reads, then writes, would otherwise fail
    at once with SQLITE_BUSY whenever another process wrote in between, instead of waiting."""
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    key = f"{url}#writer" if writer and sqlite else url
    engine = _engines.get(key)
    if engine is None:
        if sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # Several processes (workers, starter, API) share the file: wait for the lock
            # rather than failing at once.
            engine = create_async_engine(url, connect_args={"timeout": 30})
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            if writer:
                event.listen(engine.sync_engine, "connect", _sqlite_own_transactions)
                event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
        else:
            engine = create_async_engine(url, pool_pre_ping=True)
        _engines[key] = engine
    return engine


@contextlib.asynccontextmanager
async def writing(url: str) -> AsyncIterator[AsyncConnection]:
    """A write transaction. On SQLite, writers in this process queue on an asyncio lock
    first: SQLite's own busy handler sleeps in coarse steps, and a worker writing the read
    model for many dossiers at once would spend its time there."""
    engine = engine_for(url, writer=True)
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    lock = _sqlite_write_locks.setdefault((url, asyncio.get_running_loop()), asyncio.Lock())
    async with lock, engine.begin() as conn:
        yield conn


_sqlite_write_locks: dict[tuple[str, asyncio.AbstractEventLoop], asyncio.Lock] = {}


def _sqlite_own_transactions(dbapi_connection: object, _record: object) -> None:
    # The driver would open its own deferred transaction; the "begin" listener opens ours.
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]


def _sqlite_begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


async def dispose_all() -> None:
    for engine in _engines.values():
        await engine.dispose()
    _engines.clear()
