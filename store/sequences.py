"""Gap-tolerant counters: dossier codes per agency and day, certification book numbers.

Allocation is one atomic upsert, so concurrent counters in several processes never hand out
the same number. A number taken by a start that then fails is simply skipped.
"""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from store.db import writing
from store.tables import sequences


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
