"""The catalogue in the database, versioned: each (code, version) once, never rewritten, so a
dossier's procedure version keeps meaning what it meant when the dossier was filed."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from domain.catalogue import Catalogue
from store.db import engine_for
from store.tables import procedures


class CatalogueVersionError(RuntimeError):
    """A procedure changed without a new version number."""


async def record_catalogue(database_url: str, catalogue: Catalogue) -> int:
    """Insert the catalogue's (code, version) pairs not yet recorded; returns how many."""
    engine = engine_for(database_url, writer=True)
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    now = datetime.now(UTC)
    added = 0
    async with engine.begin() as conn:
        known = {
            (row.code, row.version): row.definition
            for row in await conn.execute(
                select(procedures.c.code, procedures.c.version, procedures.c.definition)
            )
        }
        for procedure in catalogue.procedures.values():
            definition = procedure.model_dump_json()
            recorded = known.get((procedure.code, procedure.version))
            if recorded is not None:
                if recorded != definition:
                    raise CatalogueVersionError(
                        f"procedures.json: procedure {procedure.code} version "
                        f"{procedure.version} differs from the recorded one; give the change "
                        "a new version"
                    )
                continue
            await conn.execute(
                insert(procedures)
                .values(
                    code=procedure.code,
                    version=procedure.version,
                    name=procedure.name,
                    tier=procedure.tier.value,
                    definition=definition,
                    loaded_at=now,
                )
                .on_conflict_do_nothing()
            )
            added += 1
    return added
