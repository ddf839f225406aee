"""The read model as the API, the officers and the operators read it: one record per table row
read, a unit's dossiers page by page, a unit's inbox, and the open tasks past their due time.
The KPIs (store.kpis) build on the same records. SQLAlchemy Core over store.tables, on SQLite
and PostgreSQL.

Each function takes an open AsyncConnection (the caller picks the transaction) and emits one
query that an index of store.tables serves; tests/test_kpis.py checks the plans. Every bound
must be timezone-aware; the UTCDateTime columns hand back aware UTC instants on every backend.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter
from sqlalchemy import LABEL_STYLE_TABLENAME_PLUS_COL, Column, Table, and_, or_, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.codes import is_dossier_code
from schemas.actions import SharingGrant
from schemas.dossier import DossierView, TimelineEntry
from schemas.statuses import DossierStatus, Outcome, Role, Stage
from store.tables import certification_sharing, dossier_snapshots, dossiers, tasks


class Record(BaseModel):
    """A row (or a figure) of the read model as read."""

    model_config = ConfigDict(frozen=True)


R = TypeVar("R", bound=Record)


# --- the records --------------------------------------------------------------------------------
class DossierLine(Record):
    """What names a dossier on a line of a list: its code, procedure, units, status and receipt."""

    code: str
    procedure_code: str
    receiving_unit: str
    competent_unit: str
    status: DossierStatus
    received_at: AwareDatetime


class PastDueDossier(DossierLine):
    """An open dossier whose appointment has passed."""

    due_at: AwareDatetime


class DossierRecord(DossierLine):
    """A row of `dossiers` as read. The applicant appears only as the masked citizen ID."""

    procedure_version: int
    tier: str
    lane: str
    stage: Stage
    portal_status_code: int
    outcome: Outcome | None
    due_at: AwareDatetime | None
    overdue: bool
    closed_at: AwareDatetime | None
    on_time: bool | None
    applicant_ref: str = Field(description="The citizen ID, masked")


class TaskRecord(Record):
    """A row of `tasks` as read: an open task of an officer's inbox."""

    id: int
    dossier_code: str
    action: str
    unit: str
    role: str
    since: AwareDatetime
    due_at: AwareDatetime | None
    claimed_by: str | None
    escalated_at: AwareDatetime | None = Field(
        default=None, description="When it went to the unit's leader, waiting past the threshold"
    )


class PastDueTask(Record):
    """An open task past its due time, and its dossier (whose stage and lane say which
    workflow holds the task)."""

    task: TaskRecord
    dossier: DossierRecord


def columns(record: type[Record], table: Table) -> list[Column[Any]]:
    """The columns of `table` a record reads."""
    return [table.c[name] for name in record.model_fields]


def record_of(record: type[R], row: RowMapping, prefix: str = "") -> R:
    return record.model_validate({name: row[prefix + name] for name in record.model_fields})


# --- bounds -------------------------------------------------------------------------------------
def aware(value: datetime) -> datetime:
    """A query bound as UTC. Refused when naive: a naive bound compared with the stored UTC
    would be off by Hanoi's seven hours without anyone noticing."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value.isoformat()}: a KPI bound must be timezone-aware")
    return value.astimezone(UTC)


def check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit: must be at least 1, not {limit}")


# --- one dossier ------------------------------------------------------------------------------
class DossierSnapshot(Record):
    """A dossier's `status` and `timeline` answers as its workflow last gave them."""

    view: DossierView
    timeline: list[TimelineEntry]
    closed: bool


async def snapshot(conn: AsyncConnection, code: str) -> DossierSnapshot | None:
    """The dossier as its last step left it; None for a code the read model has never seen."""
    s = dossier_snapshots.c
    row = (await conn.execute(select(s.view, s.timeline, s.closed).where(s.code == code))).first()
    if row is None:
        return None
    return DossierSnapshot(
        view=DossierView.model_validate_json(row.view),
        timeline=_TIMELINE.validate_json(row.timeline),
        closed=bool(row.closed),
    )


async def recorded_codes(conn: AsyncConnection) -> list[str]:
    """Every dossier the read model has a record of."""
    rows = await conn.execute(select(dossier_snapshots.c.code).order_by(dossier_snapshots.c.code))
    return [str(row.code) for row in rows]


_TIMELINE: TypeAdapter[list[TimelineEntry]] = TypeAdapter(list[TimelineEntry])


# --- a unit's dossiers --------------------------------------------------------------------------
class DossierFilters(Record):
    units: tuple[str, ...]  # the dossier's receiving or competent unit is one of these
    status: DossierStatus | None = None
    procedure: str | None = None
    overdue: bool | None = None


class DossierPage(Record):
    items: list[DossierRecord]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )


class BadCursor(ValueError):
    pass


def encode_cursor(received_at: datetime, code: str) -> str:
    raw = json.dumps([received_at.astimezone(UTC).isoformat(), code], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        received, code = json.loads(raw)
        when = datetime.fromisoformat(received)
        if when.tzinfo is None or not isinstance(code, str) or not is_dossier_code(code):
            raise ValueError("not a (received_at, code) pair")
        # A forged offset on year 1 or 9999 would overflow only when bound to the query.
        when = when.astimezone(UTC)
    except (binascii.Error, ValueError, TypeError, OverflowError) as err:
        raise BadCursor("not a cursor this API issued") from err
    return when, code


async def dossier_page(
    conn: AsyncConnection, filters: DossierFilters, limit: int, cursor: str | None
) -> DossierPage:
    """A page of the units' dossiers, newest received first.

    The cursor is opaque to callers: base64url of the last row's received_at and code. Paging
    on (received_at, code) rather than OFFSET keeps every page one index range, however deep,
    and a dossier filed while someone pages is neither skipped nor shown twice."""
    d = dossiers.c
    statement = (
        select(*columns(DossierRecord, dossiers))
        .where(or_(d.receiving_unit.in_(filters.units), d.competent_unit.in_(filters.units)))
        .order_by(d.received_at.desc(), d.code.desc())
        .limit(limit + 1)
    )
    if filters.status is not None:
        statement = statement.where(d.status == filters.status.value)
    if filters.procedure is not None:
        statement = statement.where(d.procedure_code == filters.procedure)
    if filters.overdue is not None:
        statement = statement.where(d.overdue == filters.overdue)
    if cursor is not None:
        after_received, after_code = decode_cursor(cursor)
        # The <= bound keeps the scan a range on received_at; the OR only trims ties.
        statement = statement.where(
            d.received_at <= after_received,
            or_(
                d.received_at < after_received,
                and_(d.received_at == after_received, d.code < after_code),
            ),
        )
    rows = (await conn.execute(statement)).mappings().all()
    items = [record_of(DossierRecord, row) for row in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return DossierPage(
        items=items,
        next_cursor=encode_cursor(last.received_at, last.code) if last is not None else None,
    )


# --- officers' tasks ----------------------------------------------------------------------------
async def inbox(
    conn: AsyncConnection,
    *,
    unit: str,
    role: str | None = None,
    limit: int = 100,
    shared_from: Sequence[str] = (),
    escalated: bool | None = None,
) -> list[TaskRecord]:
    """A unit's open tasks, earliest due first; tasks without a due time come last. With
    `shared_from` (the units whose certification lane is shared with `unit` now), their
    certifiers' tasks too."""
    check_limit(limit)
    mine = tasks.c.unit == unit
    if shared_from:
        mine = or_(mine, and_(tasks.c.unit.in_(shared_from), tasks.c.role == Role.CERTIFIER.value))
    statement = (
        select(*columns(TaskRecord, tasks))
        .where(tasks.c.done_at.is_(None), mine)
        # NULLS LAST spelled out: SQLite would put them first, PostgreSQL last.
        .order_by(tasks.c.due_at.asc().nulls_last(), tasks.c.since, tasks.c.id)
        .limit(limit)
    )
    if role is not None:
        statement = statement.where(tasks.c.role == role)
    if escalated is not None:
        statement = statement.where(
            tasks.c.escalated_at.is_not(None) if escalated else tasks.c.escalated_at.is_(None)
        )
    rows = (await conn.execute(statement)).mappings().all()
    return [record_of(TaskRecord, row) for row in rows]


# --- surge sharing of certification -------------------------------------------------------------
class SharingRecord(Record):
    """A row of `certification_sharing`: one unit's certification lane opened to one
    neighbour's certifiers."""

    id: int
    unit: str
    neighbour: str
    opened_by: str
    opened_at: AwareDatetime
    until: AwareDatetime
    reason: str
    recorded_by: str
    closed_at: AwareDatetime | None
    closed_by: str | None
    close_reason: str | None

    def grant(self) -> SharingGrant:
        """What a step taken under it carries to the lane (closing early ends it too)."""
        until = self.until if self.closed_at is None else min(self.until, self.closed_at)
        return SharingGrant(
            grant_id=self.id,
            unit=self.unit,
            neighbour=self.neighbour,
            opened_by=self.opened_by,
            opened_at=self.opened_at,
            until=until,
        )


def _open_at(at: datetime) -> Any:
    c = certification_sharing.c
    return and_(c.closed_at.is_(None), c.opened_at <= aware(at), c.until > aware(at))


async def sharing_grant(
    conn: AsyncConnection, *, unit: str, neighbour: str, at: datetime
) -> SharingRecord | None:
    """The sharing of `unit`'s certification with `neighbour` open at `at`, the latest opened."""
    c = certification_sharing.c
    row = (
        (
            await conn.execute(
                select(*columns(SharingRecord, certification_sharing))
                .where(c.neighbour == neighbour, c.unit == unit, _open_at(at))
                .order_by(c.opened_at.desc(), c.id.desc())
                .limit(1)
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else record_of(SharingRecord, row)


async def units_sharing_with(conn: AsyncConnection, *, neighbour: str, at: datetime) -> list[str]:
    """The units whose certification lane is open to `neighbour`'s certifiers at `at`."""
    c = certification_sharing.c
    rows = await conn.execute(
        select(c.unit).where(c.neighbour == neighbour, _open_at(at)).distinct().order_by(c.unit)
    )
    return [str(row.unit) for row in rows]


async def sharings(
    conn: AsyncConnection, *, unit: str, at: datetime | None = None
) -> list[SharingRecord]:
    """A unit's sharings, given (unit) and received (neighbour), newest first; with `at`, only
    those open then."""
    c = certification_sharing.c
    statement = (
        select(*columns(SharingRecord, certification_sharing))
        .where(or_(c.unit == unit, c.neighbour == unit))
        .order_by(c.opened_at.desc(), c.id.desc())
    )
    if at is not None:
        statement = statement.where(_open_at(at))
    rows = (await conn.execute(statement)).mappings().all()
    return [record_of(SharingRecord, row) for row in rows]


async def past_due_tasks(
    conn: AsyncConnection,
    *,
    now: datetime,
    procedure: str | None = None,
    unit: str | None = None,
    lane: str | None = None,
) -> list[PastDueTask]:
    """Open tasks past their due time, of open dossiers, the longest overdue first. `unit` is
    the dossier's receiving or competent unit."""
    statement = (
        select(*columns(TaskRecord, tasks), *columns(DossierRecord, dossiers))
        .join_from(tasks, dossiers, dossiers.c.code == tasks.c.dossier_code)
        .where(
            tasks.c.done_at.is_(None),
            tasks.c.due_at.is_not(None),
            tasks.c.due_at < aware(now),
            dossiers.c.closed_at.is_(None),
        )
        .order_by(tasks.c.due_at)
        .set_label_style(LABEL_STYLE_TABLENAME_PLUS_COL)
    )
    if procedure is not None:
        statement = statement.where(dossiers.c.procedure_code == procedure)
    if unit is not None:
        statement = statement.where(
            or_(dossiers.c.receiving_unit == unit, dossiers.c.competent_unit == unit)
        )
    if lane is not None:
        statement = statement.where(dossiers.c.lane == lane)
    rows: Sequence[RowMapping] = (await conn.execute(statement)).mappings().all()
    return [
        PastDueTask(
            task=record_of(TaskRecord, row, "tasks_"),
            dossier=record_of(DossierRecord, row, "dossiers_"),
        )
        for row in rows
    ]


# --- search (the console) -------------------------------------------------------------------
class DossierSearch(Record):
    """What a search narrows to; every part is optional but `units` bounds what may be seen:
    None for everything (city-wide roles), else the dossiers received or decided there."""

    units: tuple[str, ...] | None = None
    code: str | None = None
    applicant_ref: str | None = None  # the citizen ID as lists show it, masked
    received_from: AwareDatetime | None = None
    received_to: AwareDatetime | None = None


async def search_dossiers(
    conn: AsyncConnection, search: DossierSearch, *, limit: int = 50
) -> list[DossierRecord]:
    """Dossiers matching the search, newest received first, at most `limit`."""
    check_limit(limit)
    d = dossiers.c
    statement = (
        select(*columns(DossierRecord, dossiers))
        .order_by(d.received_at.desc(), d.code.desc())
        .limit(limit)
    )
    if search.units is not None:
        statement = statement.where(
            or_(d.receiving_unit.in_(search.units), d.competent_unit.in_(search.units))
        )
    if search.code is not None:
        statement = statement.where(d.code == search.code)
    if search.applicant_ref is not None:
        statement = statement.where(d.applicant_ref == search.applicant_ref)
    if search.received_from is not None:
        statement = statement.where(d.received_at >= aware(search.received_from))
    if search.received_to is not None:
        statement = statement.where(d.received_at < aware(search.received_to))
    rows = (await conn.execute(statement)).mappings().all()
    return [record_of(DossierRecord, row) for row in rows]
