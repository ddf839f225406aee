"""Alembic migrations on SQLite and on PostgreSQL: empty to head, twice, the append-only audit
log, a newer schema refused untouched, a pre-migrations database adopted, and many processes
migrating at once at start-up.

PostgreSQL: each test gets a fresh database on the server DATABASE_URL names (when it is a
PostgreSQL URL) or on 127.0.0.1:5432, dropped afterwards; DATABASE_URL's own database is
never touched. The tests skip only when no server answers and DATABASE_URL names none."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

import store.tables
from store.db import engine_for, metadata
from store.migrate import SchemaTooNew, alembic_config, current_revision, head_revision, migrate
from store.sequences import next_value

ROOT = Path(__file__).resolve().parent.parent
TABLES = set(metadata.tables)
DEFAULT_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def postgres_server() -> tuple[URL, bool]:
    """The maintenance database of the server to create scratch databases on, and whether
    DATABASE_URL named it (then a server that does not answer is a failure, not a skip)."""
    configured = os.environ.get("DATABASE_URL", "")
    if configured and make_url(configured).get_backend_name() == "postgresql":
        return make_url(configured).set(drivername="postgresql+asyncpg", database="postgres"), True
    return make_url(DEFAULT_SERVER), False


@asynccontextmanager
async def scratch_postgres(prefix: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database for one test (or module); dropped afterwards."""
    server, required = postgres_server()
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except (OSError, DBAPIError) as unreachable:
        await admin.dispose()
        if required:
            raise
        pytest.skip(f"no PostgreSQL server at {server.render_as_string()}: {unreachable}")
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        await engine_for(url).dispose()
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database: a file (in a folder that does not exist yet) or a scratch
    PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/not-yet/engine.db"
        yield url
        await engine_for(url).dispose()
    else:
        async with scratch_postgres("migrations_test") as url:
            yield url


async def _snapshot(url: str) -> dict[str, Any]:
    """Everything migrate() could change: tables, indexes, triggers, functions, revision."""
    async with engine_for(url).connect() as conn:
        if conn.dialect.name == "sqlite":
            objects = await conn.exec_driver_sql(
                "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
            )
            schema = [tuple(row) for row in objects]
        else:
            catalog = await conn.exec_driver_sql(
                "SELECT 'table', tablename, '' FROM pg_tables WHERE schemaname = 'public' "
                "UNION ALL SELECT 'index', indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = 'public' "
                "UNION ALL SELECT 'trigger', tgname, '' FROM pg_trigger WHERE NOT tgisinternal "
                "UNION ALL SELECT 'function', proname, '' FROM pg_proc "
                "WHERE pronamespace = 'public'::regnamespace ORDER BY 1, 2"
            )
            schema = [tuple(row) for row in catalog]
        names = {str(row[1]) for row in schema}
        versions = (
            sorted(
                (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).scalars()
            )
            if "alembic_version" in names
            else None
        )
    return {"schema": schema, "versions": versions}


async def _table_names(url: str) -> set[str]:
    async with engine_for(url).connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


def _metadata_diff(connection: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


async def test_empty_database_migrates_to_head_as_tables_py(database_url: str) -> None:
    assert store.tables.dossiers.name in metadata.tables  # tables.py is the spec compared to
    assert await current_revision(database_url) is None
    await migrate(database_url)

    assert await current_revision(database_url) == head_revision()
    assert await _table_names(database_url) == TABLES | {"alembic_version"}
    async with engine_for(database_url).connect() as conn:
        # Columns, types, nullability, keys, unique constraints, indexes, comments.
        assert await conn.run_sync(_metadata_diff) == []
        # Autogenerate ignores partial-index predicates: check those by hand.
        if conn.dialect.name == "sqlite":
            definitions = await conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
            )
        else:
            definitions = await conn.execute(
                text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
            )
        sql = {name: re.sub(r"[()]", "", definition) for name, definition in definitions}
    assert sql["ix_dossiers_open_due"].endswith("WHERE closed_at IS NULL")
    assert sql["ix_tasks_open_inbox"].endswith("WHERE done_at IS NULL")
    assert "WHERE" not in sql["ix_dossiers_closed"]


async def test_migrating_twice_changes_nothing(database_url: str) -> None:
    await migrate(database_url)
    assert await next_value(database_url, "twice") == 1
    before = await _snapshot(database_url)

    await migrate(database_url)

    assert await _snapshot(database_url) == before
    assert await next_value(database_url, "twice") == 2  # the row survived


def _audit_event(seq: int) -> dict[str, Any]:
    return {
        "dossier_code": "000.01.01.H26-261127-0001",
        "seq": seq,
        "event_key": f"run-1:{seq}",
        "event_type": "received",
        "actor": "counter_officer:hk-1",
        "at": datetime(2026, 11, 27, 2, seq, tzinfo=UTC),
        "payload": "{}",
        "payload_digest": "0" * 64,
        "prev_hash": "0" * 64,
        "hash": f"{seq}" * 64,
    }


async def test_audit_events_are_append_only(database_url: str) -> None:
    await migrate(database_url)
    async with engine_for(database_url).begin() as conn:
        await conn.execute(store.tables.audit_events.insert(), [_audit_event(1), _audit_event(2)])

    refused = [
        "UPDATE audit_events SET actor = 'someone else' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 2",
        "DELETE FROM audit_events",
    ]
    if database_url.startswith("postgresql"):
        refused.append("TRUNCATE audit_events")
    for statement in refused:
        with pytest.raises(DBAPIError, match="audit_events is append-only"):
            async with engine_for(database_url).begin() as conn:
                await conn.exec_driver_sql(statement)

    async with engine_for(database_url).connect() as conn:
        rows = (await conn.execute(text("SELECT seq, actor FROM audit_events ORDER BY seq"))).all()
    assert [tuple(row) for row in rows] == [
        (1, "counter_officer:hk-1"),
        (2, "counter_officer:hk-1"),
    ]


async def test_a_newer_schema_is_refused_untouched(database_url: str) -> None:
    # A later engine's database: its own revision, and a table this code has never heard of.
    async with engine_for(database_url).begin() as conn:
        await conn.exec_driver_sql(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"
        )
        await conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('0042_future')")
        await conn.exec_driver_sql("CREATE TABLE dossier_archive (code VARCHAR(40) PRIMARY KEY)")
    before = await _snapshot(database_url)

    message = (
        f"database at schema revision 0042_future, newer than this code's head {head_revision()}: "
        "upgrade the engine before starting it"
    )
    with pytest.raises(SchemaTooNew, match=re.escape(message)):
        await migrate(database_url)

    assert await _snapshot(database_url) == before  # not one of our tables was created
    assert await current_revision(database_url) == "0042_future"
    assert issubclass(SchemaTooNew, RuntimeError)


@pytest.mark.parametrize("legacy", ["sequences only", "all tables"])
async def test_a_database_from_create_all_is_adopted(database_url: str, legacy: str) -> None:
    # What `create_schema` (metadata.create_all) left before migrations: no alembic_version.
    made = [store.tables.sequences] if legacy == "sequences only" else None
    async with engine_for(database_url).begin() as conn:
        await conn.run_sync(lambda sync: metadata.create_all(sync, tables=made))
    assert await next_value(database_url, "000.01.01.H26-261127") == 1
    assert await next_value(database_url, "000.01.01.H26-261127") == 2

    await migrate(database_url)

    assert await current_revision(database_url) == head_revision()
    assert await _table_names(database_url) == TABLES | {"alembic_version"}
    assert await next_value(database_url, "000.01.01.H26-261127") == 3  # the counter kept
    async with engine_for(database_url).connect() as conn:
        assert await conn.run_sync(_metadata_diff) == []
    async with engine_for(database_url).begin() as conn:
        await conn.execute(store.tables.audit_events.insert(), [_audit_event(1)])
    with pytest.raises(DBAPIError, match="append-only"):  # the guard came with the adoption
        async with engine_for(database_url).begin() as conn:
            await conn.exec_driver_sql("DELETE FROM audit_events")


async def test_a_foreign_table_is_not_adopted(database_url: str) -> None:
    # Same name, other shape: refuse, and roll back what was created before the check.
    async with engine_for(database_url).begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)")
    before = await _snapshot(database_url)

    with pytest.raises(RuntimeError, match=r"table tasks exists with columns \['id', 'title'\]"):
        await migrate(database_url)

    assert await _snapshot(database_url) == before  # no sequences, no alembic_version


async def test_concurrent_migrations_from_tasks(database_url: str, tmp_path: Path) -> None:
    # Several tasks on this database, and meanwhile another database in the same process
    # (Alembic's proxies are process-wide: the two upgrades must not mix).
    other = f"sqlite+aiosqlite:///{tmp_path}/other/engine.db"
    runs = [migrate(database_url) for _ in range(6)] + [migrate(other) for _ in range(2)]
    await asyncio.wait_for(asyncio.gather(*runs), timeout=60)

    for url in (database_url, other):
        assert await current_revision(url) == head_revision()
        assert await _table_names(url) == TABLES | {"alembic_version"}
        async with engine_for(url).connect() as conn:
            versions = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).all()
        assert len(versions) == 1
    await engine_for(other).dispose()


# Imports first, then every process starts migrating at the same instant (argv[2]).
_RACER = """
import asyncio, sys, time
from store.migrate import migrate
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
asyncio.run(migrate(sys.argv[1]))
"""


async def test_concurrent_migrations_from_processes(database_url: str) -> None:
    # Every worker process runs the migration at start-up: they race on an empty database.
    start = f"{time.time() + 2:.3f}"  # importing takes under a second
    runs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _RACER, database_url, start, cwd=ROOT, stderr=subprocess.PIPE
        )
        for _ in range(6)
    ]
    results = await asyncio.wait_for(
        asyncio.gather(*(run.communicate() for run in runs)), timeout=90
    )

    assert [run.returncode for run in runs] == [0] * 6, [err.decode() for _out, err in results]
    assert await current_revision(database_url) == head_revision()
    assert await _table_names(database_url) == TABLES | {"alembic_version"}


async def test_downgrade_removes_everything(database_url: str) -> None:
    await migrate(database_url)
    empty = await _snapshot(database_url)

    async with engine_for(database_url).begin() as conn:
        await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), "base"))

    assert await _table_names(database_url) == {"alembic_version"}
    left = (await _snapshot(database_url))["schema"]
    assert [row for row in left if "alembic_version" not in str(row[1])] == []  # no trigger
    await migrate(database_url)
    assert await _snapshot(database_url) == empty


async def test_current_revision_does_not_create_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "engine.db"
    assert await current_revision(f"sqlite+aiosqlite:///{path}") is None
    assert not path.exists()


def _run_cli(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "store.migrate"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_command_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/data/engine.db"
    done = await asyncio.to_thread(_run_cli, url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{url}: schema revision {head_revision()}"

    async with engine_for(url).begin() as conn:
        await conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_future'")
    await engine_for(url).dispose()
    refused = await asyncio.to_thread(_run_cli, url)
    assert refused.returncode == 1
    expected = (
        f"database at schema revision 0099_future, newer than this code's head {head_revision()}"
    )
    assert expected in refused.stderr
