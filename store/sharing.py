"""Writing surge sharings of certification: opened one row per neighbour, closed by setting
`closed_at`; a row is never deleted (who opened and closed what stays on record)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from store.db import run_write
from store.tables import certification_sharing


async def open_rows(
    database_url: str,
    *,
    unit: str,
    neighbours: Sequence[str],
    opened_by: str,
    opened_at: datetime,
    until: datetime,
    reason: str,
    recorded_by: str,
) -> list[int]:
    def write(conn: Connection) -> list[int]:
        ids: list[int] = []
        for neighbour in neighbours:
            result = conn.execute(
                certification_sharing.insert().values(
                    unit=unit,
                    neighbour=neighbour,
                    opened_by=opened_by,
                    opened_at=opened_at,
                    until=until,
                    reason=reason,
                    recorded_by=recorded_by,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            ids.append(int(key[0]))
        return ids

    return await run_write(database_url, write)


async def close_rows(
    database_url: str,
    *,
    unit: str,
    neighbours: Sequence[str],
    closed_by: str,
    closed_at: datetime,
    reason: str,
) -> list[int]:
    """Closes the unit's sharings open at `closed_at` (with these neighbours only, when
    named); returns their ids."""
    c = certification_sharing.c

    def write(conn: Connection) -> list[int]:
        where = [c.unit == unit, c.closed_at.is_(None), c.until > closed_at]
        if neighbours:
            where.append(c.neighbour.in_(neighbours))
        ids = [int(row.id) for row in conn.execute(select(c.id).where(*where))]
        if ids:
            conn.execute(
                update(certification_sharing)
                .where(c.id.in_(ids))
                .values(closed_at=closed_at, closed_by=closed_by, close_reason=reason)
            )
        return ids

    return await run_write(database_url, write)
