"""Gap-tolerant counters: dossier codes per agency and day, certification book numbers.

Allocation is one atomic upsert, so concurrent counters in several processes never hand out
the same number. A number taken by a start that then fails is simply skipped.
"""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite

from store.db import engine_for, writing
from store.tables import sequences


async def next_value(database_url: str, scope: str) -> int:
    engine = engine_for(database_url, writer=True)
    insert = (
        postgresql.insert(sequences)
        if engine.dialect.name == "postgresql"
        else sqlite.insert(sequences)
    )
    statement = (
        insert.values(scope=scope, last_value=1)
        .on_conflict_do_update(
            index_elements=[sequences.c.scope],
            set_={"last_value": sequences.c.last_value + 1},
        )
        .returning(sequences.c.last_value)
    )
    async with writing(database_url) as conn:
        value = (await conn.execute(statement)).scalar_one()
    return int(value)
