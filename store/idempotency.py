"""Idempotent submissions: one dossier per (system, Idempotency-Key), however often the
counter software retries, and a clear conflict when the same key comes with another body."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from store.db import writing
from store.sequences import next_value_in
from store.tables import idempotency_keys


class Claim(BaseModel):
    model_config = ConfigDict(frozen=True)

    system: str
    key: str
    body_digest: str
    dossier_code: str
    received_at: datetime
    due_at: datetime
    created: bool  # False: an earlier request with this key made the dossier


async def claim(
    database_url: str,
    *,
    system: str,
    key: str,
    body_digest: str,
    sequence_scope: str,
    code_for: Callable[[int], str],
    received_at: datetime,
    due_at: datetime,
) -> Claim:
    """The dossier code for this key: the one already given, or a new one allocated and
    recorded in the same transaction (so a crash between the two cannot lose the key)."""
    where = (idempotency_keys.c.system == system, idempotency_keys.c.key == key)
    try:
        async with writing(database_url) as conn:
            row = (await conn.execute(select(idempotency_keys).where(*where))).first()
            if row is not None:
                return Claim(**row._asdict(), created=False)
            code = code_for(await next_value_in(conn, sequence_scope))
            values = {
                "system": system,
                "key": key,
                "body_digest": body_digest,
                "dossier_code": code,
                "received_at": received_at,
                "due_at": due_at,
                "created_at": datetime.now(UTC),
            }
            await conn.execute(idempotency_keys.insert().values(**values))
            return Claim(**values, created=True)
    except IntegrityError:
        # Another request with the same key committed first (PostgreSQL): take its answer.
        async with writing(database_url) as conn:
            row = (await conn.execute(select(idempotency_keys).where(*where))).one()
            return Claim(**row._asdict(), created=False)
