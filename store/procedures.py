"""The catalogue in the database, versioned: each (code, version) once, never rewritten, so a
dossier's procedure version keeps meaning what it meant when the dossier was filed.

The `procedures` table is where the catalogue in effect lives: the shipped file is recorded in
it at start-up, `ops catalogue import` adds versions to it, and every process that files
dossiers installs its latest version of each code (`install_recorded`) before the first one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.catalogue import Catalogue, default_catalogue, use_procedures
from schemas.catalogue import Procedure
from store.db import engine_for
from store.tables import dossiers, procedures


class CatalogueVersionError(RuntimeError):
    """A procedure changed without a new version number, or the version was taken meanwhile."""


async def record_catalogue(database_url: str, catalogue: Catalogue) -> int:
    """Insert the catalogue's (code, version) pairs not yet recorded; returns how many.

    A shipped entry older than the code's latest recorded version (the city imported a newer
    one) is not recorded: the city's version stays in effect."""
    engine = engine_for(database_url, writer=True)
    now = datetime.now(UTC)
    added = 0
    async with engine.begin() as conn:
        known = {
            (row.code, row.version): row.definition
            for row in await conn.execute(
                select(procedures.c.code, procedures.c.version, procedures.c.definition)
            )
        }
        latest: dict[str, int] = {}
        for code, version in known:
            latest[code] = max(version, latest.get(code, 0))
        for procedure in catalogue.procedures.values():
            recorded = known.get((procedure.code, procedure.version))
            if recorded is not None:
                # Compared as models, so a field added later with its default is no change.
                if Procedure.model_validate_json(recorded) != procedure:
                    raise CatalogueVersionError(
                        f"procedures.json: procedure {procedure.code} version "
                        f"{procedure.version} differs from the recorded one; give the change "
                        f"a version above {latest[procedure.code]} (or import it with "
                        "`ops catalogue import`)"
                    )
                continue
            if procedure.version < latest.get(procedure.code, 0):
                continue
            await _insert(conn, procedure, now)
            added += 1
    return added


async def recorded_procedures(conn: AsyncConnection) -> dict[str, Procedure]:
    """The latest recorded version of each code."""
    newest = (
        select(procedures.c.code, func.max(procedures.c.version).label("version"))
        .group_by(procedures.c.code)
        .subquery()
    )
    rows = await conn.execute(
        select(procedures.c.definition).join(
            newest,
            (procedures.c.code == newest.c.code) & (procedures.c.version == newest.c.version),
        )
    )
    found = (Procedure.model_validate_json(row.definition) for row in rows)
    return {p.code: p for p in sorted(found, key=lambda p: p.code)}


async def install_recorded(database_url: str) -> Catalogue:
    """Make the recorded catalogue (latest version of each code, retired codes left out) the
    one this process files new dossiers under; returns it."""
    async with engine_for(database_url).connect() as conn:
        latest = await recorded_procedures(conn)
    catalogue = default_catalogue()
    # The shipped file's order first (samples and demos walk it), then codes only imported.
    order = {code: index for index, code in enumerate(catalogue.procedures)}
    use_procedures(sorted(latest.values(), key=lambda p: (order.get(p.code, len(order)), p.code)))
    return catalogue


async def open_dossiers_by_version(conn: AsyncConnection) -> dict[tuple[str, int], int]:
    """Open dossiers per (procedure code, version), as the read model has them."""
    rows = await conn.execute(
        select(dossiers.c.procedure_code, dossiers.c.procedure_version, func.count())
        .where(dossiers.c.closed_at.is_(None))
        .group_by(dossiers.c.procedure_code, dossiers.c.procedure_version)
    )
    return {(str(code), int(version)): int(count) for code, version, count in rows}


async def record_versions(
    conn: AsyncConnection, versions: Sequence[Procedure], expected: Mapping[str, int | None]
) -> None:
    """Record imported versions in the caller's transaction. `expected` is each code's latest
    version the import was planned on: if another import recorded one meanwhile, nothing is
    recorded (the caller's transaction rolls back) and the import must be planned again."""
    latest = {
        str(code): int(version)
        for code, version in await conn.execute(
            select(procedures.c.code, func.max(procedures.c.version)).group_by(procedures.c.code)
        )
    }
    for procedure in versions:
        if latest.get(procedure.code) != expected.get(procedure.code):
            raise CatalogueVersionError(
                f"procedure {procedure.code} changed since the import was planned "
                f"(now version {latest.get(procedure.code)}): run the import again"
            )
    now = datetime.now(UTC)
    for procedure in versions:
        await _insert(conn, procedure, now, on_conflict_skip=False)


async def _insert(
    conn: AsyncConnection, procedure: Procedure, at: datetime, *, on_conflict_skip: bool = True
) -> None:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(procedures).values(
        code=procedure.code,
        version=procedure.version,
        name=procedure.name,
        tier=procedure.tier.value,
        definition=procedure.model_dump_json(),
        loaded_at=at,
    )
    await conn.execute(statement.on_conflict_do_nothing() if on_conflict_skip else statement)
