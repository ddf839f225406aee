"""Surge sharing of a ward's certification lane with its neighbours' certifiers.

Workflows cannot read the database in a validator, so the engine resolves the sharing here:
when a neighbour's certifier acts on a shared dossier, the open grant is read from
`certification_sharing` and carried by the step (`acting_for`); the lane's validator checks
it against the task and its own clock, deterministically, and the timeline records it. A
signal to every open dossier of the unit would have to reach dossiers filed later too, and
closing would race the steps in flight; a grant carried by the step has neither problem.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from domain.calendar import HANOI
from domain.catalogue import Catalogue, CatalogueError
from schemas.actions import SharingClosing, SharingOpening
from schemas.catalogue import UnitKind
from schemas.dossier import Officer
from schemas.statuses import Role
from services.dossiers import ActionRefused, FilingError
from store import sharing, views
from store.db import engine_for

# A surge, not a merger of units: a month at most, then the leader opens it again.
MAX_SHARING = timedelta(days=31)
CERTIFYING = (UnitKind.WARD, UnitKind.COMMUNE)


class SharingRefused(FilingError):
    """An opening or closing that breaks a rule: names the field and the rule."""


def _leader_of(unit: str, officer: Officer) -> None:
    if officer.role != Role.LEADER.value or officer.unit != unit:
        raise SharingRefused(
            "officer",
            f"only the leader of {unit} opens or closes the sharing of its certification; "
            f"{officer.officer_id} acts as {officer.role} at {officer.unit}",
        )


def _certifying_unit(catalogue: Catalogue, code: str, field: str) -> None:
    try:
        unit = catalogue.unit(code)
    except CatalogueError as err:
        raise SharingRefused(field, str(err)) from err
    if unit.kind not in CERTIFYING:
        raise SharingRefused(field, f"{code} is a {unit.kind.value}; wards and communes certify")


async def open_sharing(
    database_url: str,
    catalogue: Catalogue,
    unit: str,
    opening: SharingOpening,
    recorded_by: str,
    now: datetime | None = None,
) -> list[views.SharingRecord]:
    now = now or datetime.now(HANOI)
    _certifying_unit(catalogue, unit, "unit")
    _leader_of(unit, opening.officer)
    if len(set(opening.neighbours)) != len(opening.neighbours):
        raise SharingRefused("neighbours", "each neighbour once")
    for i, neighbour in enumerate(opening.neighbours):
        if neighbour == unit:
            raise SharingRefused(f"neighbours[{i}]", f"{unit} certifies its own dossiers")
        _certifying_unit(catalogue, neighbour, f"neighbours[{i}]")
    if opening.until <= now:
        raise SharingRefused("until", "must be in the future")
    if opening.until > now + MAX_SHARING:
        raise SharingRefused("until", f"at most {MAX_SHARING.days} days from now")
    ids = await sharing.open_rows(
        database_url,
        unit=unit,
        neighbours=opening.neighbours,
        opened_by=opening.officer.officer_id,
        opened_at=now,
        until=opening.until,
        reason=opening.reason,
        recorded_by=recorded_by,
    )
    async with engine_for(database_url).connect() as conn:
        return [r for r in await views.sharings(conn, unit=unit) if r.id in ids]


async def close_sharing(
    database_url: str, unit: str, closing: SharingClosing, now: datetime | None = None
) -> list[views.SharingRecord]:
    now = now or datetime.now(HANOI)
    _leader_of(unit, closing.officer)
    ids = await sharing.close_rows(
        database_url,
        unit=unit,
        neighbours=closing.neighbours,
        closed_by=closing.officer.officer_id,
        closed_at=now,
        reason=closing.reason,
    )
    if not ids:
        named = f" with {', '.join(closing.neighbours)}" if closing.neighbours else ""
        raise ActionRefused(f"no open sharing of {unit}'s certification{named} to close")
    async with engine_for(database_url).connect() as conn:
        return [r for r in await views.sharings(conn, unit=unit) if r.id in ids]


async def shared_with(database_url: str, neighbour: str, now: datetime | None = None) -> list[str]:
    async with engine_for(database_url).connect() as conn:
        return await views.units_sharing_with(
            conn, neighbour=neighbour, at=now or datetime.now(HANOI)
        )
