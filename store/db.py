"""One async engine per database URL: SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

metadata = MetaData()

T = TypeVar("T")
_engines: dict[str, AsyncEngine] = {}
_thread_engines: dict[str, Engine] = {}


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
    async with _write_turn(url), engine.begin() as conn:
        yield conn


async def run_write(url: str, write: Callable[[Connection], T]) -> T:
    """Run `write` in one write transaction. On SQLite the whole transaction runs in a thread,
    after this process's other writers: nothing else of the event loop runs while it holds
    the database's one write lock, so the API's writers wait milliseconds, not seconds."""
    thread_engine = _sqlite_thread_engine(url)
    if thread_engine is None:
        async with writing(url) as conn:
            return await conn.run_sync(write)
    async with _write_turn(url):
        return await asyncio.to_thread(_in_transaction, thread_engine, write)


def _in_transaction(engine: Engine, write: Callable[[Connection], T]) -> T:
    with engine.begin() as conn:
        return write(conn)


def _sqlite_thread_engine(url: str) -> Engine | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    engine = _thread_engines.get(url)
    if engine is None:
        engine = create_engine(
            parsed.set(drivername="sqlite"),
            # One transaction at a time (the write turn), each in whichever thread runs it.
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "connect", _sqlite_own_transactions)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        _thread_engines[url] = engine
    return engine


def _write_turn(url: str) -> asyncio.Lock:
    return _sqlite_write_locks.setdefault((url, asyncio.get_running_loop()), asyncio.Lock())


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
    for thread_engine in _thread_engines.values():
        thread_engine.dispose()
    _thread_engines.clear()
