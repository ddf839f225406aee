"""Gap-tolerant counters: dossier codes per agency and day, certification book numbers.

Allocation is one atomic upsert, so concurrent counters in several processes never hand out
the same number. A number taken by a start that then fails is simply skipped.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from store.db import writing
from store.tables import book_entries, sequences


async def next_value(database_url: str, scope: str) -> int:
    async with writing(database_url) as conn:
        return await next_value_in(conn, scope)


async def next_value_in(conn: AsyncConnection, scope: str) -> int:
    """The next number of `scope`, inside the caller's transaction."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(sequences)
        .values(scope=scope, last_value=1)
        .on_conflict_do_update(
            index_elements=[sequences.c.scope],
            set_={"last_value": sequences.c.last_value + 1},
        )
        .returning(sequences.c.last_value)
    )
    return int((await conn.execute(statement)).scalar_one())


async def book_number(database_url: str, scope: str, dossier_code: str) -> int:
    """The dossier's number in the book `scope`, taken on its first call: a step run again
    (a retried or replayed workflow task) gets the same number, not the next one."""
    try:
        async with writing(database_url) as conn:
            held = await _held(conn, scope, dossier_code)
            if held is not None:
                return held
            number = await next_value_in(conn, scope)
            await conn.execute(
                book_entries.insert().values(scope=scope, dossier_code=dossier_code, number=number)
            )
            return number
    except IntegrityError:
        # Another attempt for the same dossier took its number first (PostgreSQL lets both
        # read before either writes); this one's counter step was rolled back with it.
        async with writing(database_url) as conn:
            held = await _held(conn, scope, dossier_code)
        if held is None:
            raise
        return held


async def _held(conn: AsyncConnection, scope: str, dossier_code: str) -> int | None:
    number = (
        await conn.execute(
            select(book_entries.c.number).where(
                book_entries.c.scope == scope, book_entries.c.dossier_code == dossier_code
            )
        )
    ).scalar_one_or_none()
    return None if number is None else int(number)
