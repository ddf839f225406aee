"""The archive of closed workflow runs: their histories copied from Temporal into the engine's
database, so that a dossier stays readable, replayable and verifiable for as long as the law
keeps its record, long after the namespace's retention has deleted it from Temporal.

A history is kept as Temporal serialised it (the protobuf `History`, payloads still encrypted
by the data converter), zlib-compressed, with the SHA-256 of the uncompressed bytes. Only the
archiver writes here (`activities.archive`); the table refuses UPDATE and DELETE.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Collection
from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from store.tables import archived_histories, dossiers


class ArchivedRun(BaseModel):
    """What the archive says of one closed run, without its history."""

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    run_id: str
    dossier_code: str
    workflow_type: str
    execution_status: str
    closed_at: AwareDatetime
    archived_at: AwareDatetime
    event_count: int
    history_bytes: int
    sha256: str


class ArchiveDamaged(ValueError):
    """An archived history that no longer matches the digest taken when it was copied."""


def packed(run: ArchivedRun, history: bytes) -> dict[str, object]:
    """The row of a run whose serialised history is `history`."""
    if hashlib.sha256(history).hexdigest() != run.sha256 or len(history) != run.history_bytes:
        raise ValueError(f"{run.workflow_id}/{run.run_id}: digest or size does not match")
    return {**run.model_dump(), "history": zlib.compress(history, 6)}


async def add(conn: AsyncConnection, rows: list[dict[str, object]]) -> None:
    """Archive runs; a run already archived keeps its first copy (a retried pass)."""
    if not rows:
        return
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
        archived_histories
    )
    await conn.execute(
        insert.on_conflict_do_nothing(index_elements=["workflow_id", "run_id"]), rows
    )


async def archived_among(conn: AsyncConnection, run_ids: Collection[str]) -> set[str]:
    if not run_ids:
        return set()
    rows = await conn.execute(
        select(archived_histories.c.run_id).where(archived_histories.c.run_id.in_(run_ids))
    )
    return {str(row.run_id) for row in rows}


async def last_pass(conn: AsyncConnection) -> datetime | None:
    """When the archiver last copied a run (its own clock, not the runs' close times, which a
    time-skipping test server may have put in the future)."""
    value = (await conn.execute(select(func.max(archived_histories.c.archived_at)))).scalar()
    if value is None:
        return None
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_RUN_COLUMNS = [archived_histories.c[name] for name in ArchivedRun.model_fields]


async def runs_of(conn: AsyncConnection, dossier_code: str) -> list[ArchivedRun]:
    """The dossier's archived runs (its own and its lane's), in the order they closed."""
    rows = await conn.execute(
        select(*_RUN_COLUMNS)
        .where(archived_histories.c.dossier_code == dossier_code)
        .order_by(archived_histories.c.closed_at, archived_histories.c.workflow_id)
    )
    return [ArchivedRun.model_validate(row._asdict()) for row in rows]


async def history_of(conn: AsyncConnection, workflow_id: str, run_id: str) -> bytes | None:
    """A run's serialised history as Temporal gave it; None when it was never archived."""
    row = (
        await conn.execute(
            select(archived_histories.c.history, archived_histories.c.sha256).where(
                archived_histories.c.workflow_id == workflow_id,
                archived_histories.c.run_id == run_id,
            )
        )
    ).first()
    if row is None:
        return None
    history = zlib.decompress(row.history)
    if hashlib.sha256(history).hexdigest() != row.sha256:
        raise ArchiveDamaged(
            f"archived history of {workflow_id} run {run_id} does not match its SHA-256"
        )
    return history


class ArchiveCounts(BaseModel):
    model_config = ConfigDict(frozen=True)

    runs: int
    dossiers: int


async def counts(conn: AsyncConnection) -> ArchiveCounts:
    h = archived_histories.c
    runs, codes = (
        await conn.execute(select(func.count(), func.count(h.dossier_code.distinct())))
    ).one()
    return ArchiveCounts(runs=int(runs), dossiers=int(codes))


class PendingArchive(BaseModel):
    model_config = ConfigDict(frozen=True)

    dossiers: int
    oldest_closed_at: AwareDatetime | None


def _unarchived_closed() -> ColumnElement[bool]:
    d = dossiers.c
    return d.closed_at.is_not(None) & ~exists().where(archived_histories.c.workflow_id == d.code)


async def pending(conn: AsyncConnection) -> PendingArchive:
    """Dossiers closed in the read model whose own history the archive does not hold yet."""
    row = (
        await conn.execute(
            select(func.count(), func.min(dossiers.c.closed_at)).where(_unarchived_closed())
        )
    ).one()
    oldest = row[1]
    if isinstance(oldest, datetime) and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return PendingArchive(dossiers=int(row[0]), oldest_closed_at=oldest)


async def unarchived_before(
    conn: AsyncConnection, closed_before: datetime
) -> list[tuple[str, datetime]]:
    """Dossiers closed before `closed_before` and still not archived, oldest first."""
    rows = await conn.execute(
        select(dossiers.c.code, dossiers.c.closed_at)
        .where(_unarchived_closed(), dossiers.c.closed_at < closed_before.astimezone(UTC))
        .order_by(dossiers.c.closed_at)
    )
    return [(str(r.code), r.closed_at) for r in rows]
