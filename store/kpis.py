"""The KPIs officers and leaders read: on-time ratios, dossiers past their appointment and open
tasks per unit and role. Queries over the read model, as store.views (same records, same
bounds): each emits one query an index serves, checked by tests/test_kpis.py.

Time windows are half-open, [from, to), and every datetime must be timezone-aware. Results
are in UTC. Dates of "day" and "month" periods are Hanoi's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal

from sqlalchemy import Float, String, case, extract, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from schemas.statuses import Outcome
from store.tables import audit_events, dossiers, tasks
from store.views import PastDueDossier, Record, aware, check_limit, columns, record_of

# Hanoi (domain.calendar.HANOI) has kept UTC+7 without daylight saving since 1975: the SQL
# that groups by Hanoi day or month shifts UTC by this fixed offset.
HANOI_UTC_OFFSET_HOURS = 7

GroupBy = Literal["receiving_unit", "competent_unit", "procedure_code"]
Period = Literal["day", "month"]
UnitRole = Literal["competent_unit", "receiving_unit"]


class OnTimeRow(Record):
    """One unit or procedure. `closed` counts the dossiers closed with a verdict (on time or
    late); those closed without one (withdrawn, rejected at intake, stopped) are apart in
    `no_verdict` and outside the ratio."""

    key: str
    closed: int
    on_time: int
    late: int
    no_verdict: int
    ratio: float | None  # on_time / closed; None when nothing closed with a verdict


class PeriodRow(Record):
    period: date  # first day of the Hanoi-local day or month
    closed: int
    on_time: int
    late: int
    no_verdict: int
    ratio: float | None


class OpenTasksRow(Record):
    unit: str
    role: str
    open: int
    oldest_since: datetime
    earliest_due_at: datetime | None


async def on_time_ratio(
    conn: AsyncConnection,
    *,
    by: GroupBy,
    closed_from: datetime,
    closed_to: datetime,
    unit_or_procedure: str | None = None,
) -> list[OnTimeRow]:
    """Dossiers closed in [closed_from, closed_to), per unit or procedure, by key."""
    key = _group_column(by)
    statement = (
        select(key.label("key"), *_verdict_counts())
        .where(dossiers.c.closed_at >= aware(closed_from), dossiers.c.closed_at < aware(closed_to))
        .group_by(key)
        .order_by(key)
    )
    if unit_or_procedure is not None:
        statement = statement.where(key == unit_or_procedure)
    rows = (await conn.execute(statement)).all()
    return [OnTimeRow(key=row.key, **_verdicts(row)) for row in rows]


async def on_time_by_period(
    conn: AsyncConnection,
    *,
    period: Period,
    closed_from: datetime,
    closed_to: datetime,
    receiving_unit: str | None = None,
) -> list[PeriodRow]:
    """Dossiers closed in [closed_from, closed_to), per Hanoi-local day or month, in order."""
    bucket = hanoi_period(conn.dialect.name, period, dossiers.c.closed_at)
    statement = (
        select(bucket.label("period"), *_verdict_counts())
        .where(dossiers.c.closed_at >= aware(closed_from), dossiers.c.closed_at < aware(closed_to))
        .group_by(bucket)
        .order_by(bucket)
    )
    if receiving_unit is not None:
        statement = statement.where(dossiers.c.receiving_unit == receiving_unit)
    rows = (await conn.execute(statement)).all()
    return [
        PeriodRow(period=date.fromisoformat(_full_date(row.period)), **_verdicts(row))
        for row in rows
    ]


async def past_due(
    conn: AsyncConnection,
    *,
    now: datetime,
    unit: str | None = None,
    unit_role: UnitRole = "competent_unit",
    limit: int = 100,
    after_due: datetime | None = None,
    after_code: str | None = None,
) -> list[PastDueDossier]:
    """Open dossiers whose appointment is before `now`, the longest overdue first.

    `unit` filters on the competent unit (the one the legal clock runs against), or on the
    receiving unit with unit_role="receiving_unit". Next page: pass the last row's due_at
    and code as after_due and after_code (many dossiers share a 17:00 appointment, so the
    code breaks ties; after_due alone skips every dossier due at that instant)."""
    check_limit(limit)
    statement = (
        select(*columns(PastDueDossier, dossiers))
        .where(dossiers.c.closed_at.is_(None), dossiers.c.due_at < aware(now))
        .order_by(dossiers.c.due_at, dossiers.c.code)
        .limit(limit)
    )
    if unit is not None:
        statement = statement.where(_unit_column(unit_role) == unit)
    if after_due is not None:
        after = aware(after_due)
        if after_code is None:
            statement = statement.where(dossiers.c.due_at > after)
        else:
            # The >= bound keeps the range on the due_at index; the OR only trims ties.
            statement = statement.where(
                dossiers.c.due_at >= after,
                or_(dossiers.c.due_at > after, dossiers.c.code > after_code),
            )
    rows = (await conn.execute(statement)).mappings().all()
    return [record_of(PastDueDossier, row) for row in rows]


async def open_tasks(conn: AsyncConnection, *, unit: str | None = None) -> list[OpenTasksRow]:
    """Open tasks (not done) per unit and role, by unit then role."""
    statement = (
        select(
            tasks.c.unit,
            tasks.c.role,
            func.count().label("open"),
            func.min(tasks.c.since).label("oldest_since"),
            func.min(tasks.c.due_at).label("earliest_due_at"),
        )
        .where(tasks.c.done_at.is_(None))
        .group_by(tasks.c.unit, tasks.c.role)
        .order_by(tasks.c.unit, tasks.c.role)
    )
    if unit is not None:
        statement = statement.where(tasks.c.unit == unit)
    rows = (await conn.execute(statement)).all()
    return [
        OpenTasksRow(
            unit=row.unit,
            role=row.role,
            open=row.open,
            oldest_since=row.oldest_since,
            earliest_due_at=row.earliest_due_at,
        )
        for row in rows
    ]


def hanoi_period(
    dialect: str, period: Period, column: ColumnElement[datetime]
) -> ColumnElement[str]:
    """The Hanoi-local day ('YYYY-MM-DD') or month ('YYYY-MM') of a UTC timestamp, as text
    so both backends group and return the same thing. The formats are SQL literals, not
    parameters: PostgreSQL only matches the GROUP BY to the select list when they are."""
    hours = HANOI_UTC_OFFSET_HOURS
    if dialect == "postgresql":
        fmt = "YYYY-MM-DD" if period == "day" else "YYYY-MM"
        local = func.timezone(literal_column(f"INTERVAL '{hours:+03d}:00'"), column)
        return func.to_char(local, literal_column(f"'{fmt}'"), type_=String())
    if dialect == "sqlite":
        fmt = "%Y-%m-%d" if period == "day" else "%Y-%m"
        shift: ColumnElement[str] = literal_column(f"'{hours:+d} hours'")
        return func.strftime(literal_column(f"'{fmt}'"), column, shift, type_=String())
    raise NotImplementedError(f"no Hanoi-local periods on {dialect}")


def _verdict_counts() -> Sequence[ColumnElement[Any]]:
    return (
        func.count().label("all_closed"),
        func.count(dossiers.c.on_time).label("closed"),
        func.count(case((dossiers.c.on_time, 1))).label("on_time"),
    )


def _verdicts(row: Any) -> dict[str, Any]:
    closed, on_time = int(row.closed), int(row.on_time)
    return {
        "closed": closed,
        "on_time": on_time,
        "late": closed - on_time,
        "no_verdict": int(row.all_closed) - closed,
        "ratio": on_time / closed if closed else None,
    }


def _group_column(by: str) -> ColumnElement[str]:
    if by not in ("receiving_unit", "competent_unit", "procedure_code"):
        raise ValueError(f"by: unknown grouping {by!r}")
    return dossiers.c[by]


def _unit_column(unit_role: str) -> ColumnElement[str]:
    if unit_role not in ("competent_unit", "receiving_unit"):
        raise ValueError(f"unit_role: unknown unit column {unit_role!r}")
    return dossiers.c[unit_role]


def _full_date(period: str) -> str:
    return period if len(period) == len("YYYY-MM-DD") else f"{period}-01"


# --- what the surge planner measures (planner/measure.py) ----------------------------------------
class StepTimeRow(Record):
    """One officer's task done on a dossier received in the window: when it was awaited, when
    the officer claimed it (if they did) and when it was done."""

    procedure_code: str
    action: str
    since: datetime
    claimed_at: datetime | None
    done_at: datetime


class ProcedureOutcomeRow(Record):
    procedure_code: str
    decided: int  # approved or refused
    refused: int
    supplemented: int  # dossiers that went back to the citizen for a supplement


class ArrivalDayRow(Record):
    day: date  # Hanoi-local day of receipt
    receiving_unit: str
    procedure_code: str
    count: int


async def step_times(
    conn: AsyncConnection, *, received_from: datetime, received_to: datetime
) -> list[StepTimeRow]:
    """Every done task of the dossiers received in [received_from, received_to), with the time
    of its claim: the claim is an audit event by the claiming officer between the task's
    start and its end."""
    claimed_at = (
        select(func.max(audit_events.c.at))
        .where(
            audit_events.c.dossier_code == tasks.c.dossier_code,
            audit_events.c.event_type == "claimed",
            audit_events.c.actor == tasks.c.claimed_by,
            audit_events.c.at >= tasks.c.since,
            audit_events.c.at <= tasks.c.done_at,
        )
        .scalar_subquery()
    )
    statement = (
        select(
            dossiers.c.procedure_code,
            tasks.c.action,
            tasks.c.since,
            claimed_at.label("claimed_at"),
            tasks.c.done_at,
        )
        .join(tasks, tasks.c.dossier_code == dossiers.c.code)
        .where(
            dossiers.c.received_at >= aware(received_from),
            dossiers.c.received_at < aware(received_to),
            tasks.c.done_at.is_not(None),
        )
        .order_by(dossiers.c.procedure_code, tasks.c.action, tasks.c.done_at)
    )
    rows = (await conn.execute(statement)).all()
    return [
        StepTimeRow(
            procedure_code=row.procedure_code,
            action=row.action,
            since=_utc(row.since),
            claimed_at=_utc(row.claimed_at) if row.claimed_at is not None else None,
            done_at=_utc(row.done_at),
        )
        for row in rows
    ]


_DECIDED = (Outcome.APPROVED.value, Outcome.REFUSED.value)


async def procedure_outcomes(
    conn: AsyncConnection, *, received_from: datetime, received_to: datetime
) -> list[ProcedureOutcomeRow]:
    """Per procedure, the dossiers received in the window that were decided, refused, and
    sent back for a supplement."""
    supplemented = (
        select(tasks.c.dossier_code)
        .where(tasks.c.action == "provide_supplement")
        .distinct()
        .scalar_subquery()
    )
    statement = (
        select(
            dossiers.c.procedure_code,
            func.count(case((dossiers.c.outcome.in_(_DECIDED), 1))).label("decided"),
            func.count(case((dossiers.c.outcome == Outcome.REFUSED.value, 1))).label("refused"),
            func.count(case((dossiers.c.code.in_(supplemented), 1))).label("supplemented"),
        )
        .where(
            dossiers.c.received_at >= aware(received_from),
            dossiers.c.received_at < aware(received_to),
        )
        .group_by(dossiers.c.procedure_code)
        .order_by(dossiers.c.procedure_code)
    )
    rows = (await conn.execute(statement)).all()
    return [
        ProcedureOutcomeRow(
            procedure_code=row.procedure_code,
            decided=int(row.decided),
            refused=int(row.refused),
            supplemented=int(row.supplemented),
        )
        for row in rows
    ]


async def arrivals_by_day(
    conn: AsyncConnection, *, received_from: datetime, received_to: datetime
) -> list[ArrivalDayRow]:
    """Dossiers received in the window per Hanoi day, receiving unit and procedure."""
    day = hanoi_period(conn.dialect.name, "day", dossiers.c.received_at)
    statement = (
        select(
            day.label("day"),
            dossiers.c.receiving_unit,
            dossiers.c.procedure_code,
            func.count().label("filed"),
        )
        .where(
            dossiers.c.received_at >= aware(received_from),
            dossiers.c.received_at < aware(received_to),
        )
        .group_by(day, dossiers.c.receiving_unit, dossiers.c.procedure_code)
        .order_by(day, dossiers.c.receiving_unit, dossiers.c.procedure_code)
    )
    rows = (await conn.execute(statement)).all()
    return [
        ArrivalDayRow(
            day=date.fromisoformat(row.day),
            receiving_unit=row.receiving_unit,
            procedure_code=row.procedure_code,
            count=int(row.filed),
        )
        for row in rows
    ]


def _utc(value: datetime) -> datetime:
    """A correlated subquery's timestamp comes back without the column's type on SQLite."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- the console's dashboard ------------------------------------------------------------------
Tier = Literal["ward", "city"]


class DashboardFilters(Record):
    """What the dashboard narrows to. `unit` is the competent unit (the one the legal clock
    runs against), except for what was received, where it is the receiving unit (the counter
    that took the dossier)."""

    unit: str | None = None
    tier: Tier | None = None
    procedure: str | None = None


class ReceivedRow(Record):
    day: date  # Hanoi-local day of receipt
    channel: str  # counter, online, post
    lane: str  # certification, ward-processing, city-processing (intake while routing)
    received: int


class BacklogRow(Record):
    unit: str  # competent unit
    tier: str
    open: int
    overdue: int  # open with the appointment before `now`


class OnTimeBreakdownRow(Record):
    period: date | None  # first day of the Hanoi-local day or month; None when not by period
    key: str | None  # unit or procedure; None when not grouped by one
    closed: int
    on_time: int
    late: int
    no_verdict: int
    ratio: float | None


class QualityRow(Record):
    """Dossiers received in a window, per unit or procedure: what went wrong on the way."""

    key: str
    received: int
    apologized: int  # an apology slip with a new appointment was issued (Decree 61 art. 19)
    supplemented: int  # a supplement was asked for
    result_ready: int
    # Wall-clock seconds, over the dossiers whose result is ready: receipt to result, and
    # receipt to the appointment (the legal time, moved by supplements as the law says).
    avg_processing_seconds: float | None
    avg_allowed_seconds: float | None


def _dashboard_where(filters: DashboardFilters, unit: ColumnElement[str]) -> list[Any]:
    clauses: list[Any] = []
    if filters.unit is not None:
        clauses.append(unit == filters.unit)
    if filters.tier is not None:
        clauses.append(dossiers.c.tier == filters.tier)
    if filters.procedure is not None:
        clauses.append(dossiers.c.procedure_code == filters.procedure)
    return clauses


async def received_per_day(
    conn: AsyncConnection,
    *,
    received_from: datetime,
    received_to: datetime,
    filters: DashboardFilters | None = None,
) -> list[ReceivedRow]:
    """Dossiers received in [received_from, received_to), per Hanoi day, intake channel and
    lane (the certification lane's load is its share), in day order."""
    filters = filters or DashboardFilters()
    d = dossiers.c
    day = hanoi_period(conn.dialect.name, "day", d.received_at)
    statement = (
        select(day.label("day"), d.intake_channel, d.lane, func.count().label("received"))
        .where(
            d.received_at >= aware(received_from),
            d.received_at < aware(received_to),
            *_dashboard_where(filters, d.receiving_unit),
        )
        .group_by(day, d.intake_channel, d.lane)
        .order_by(day, d.intake_channel, d.lane)
    )
    rows = (await conn.execute(statement)).all()
    return [
        ReceivedRow(
            day=date.fromisoformat(row.day),
            channel=row.intake_channel,
            lane=row.lane,
            received=int(row.received),
        )
        for row in rows
    ]


async def backlog(
    conn: AsyncConnection, *, now: datetime, filters: DashboardFilters | None = None
) -> list[BacklogRow]:
    """Open dossiers per competent unit (a ward or a city department) and how many of them are
    past their appointment at `now`, by unit."""
    filters = filters or DashboardFilters()
    d = dossiers.c
    statement = (
        select(
            d.competent_unit,
            d.tier,
            func.count().label("open"),
            func.count(case((d.due_at < aware(now), 1))).label("overdue"),
        )
        .where(d.closed_at.is_(None), *_dashboard_where(filters, d.competent_unit))
        .group_by(d.competent_unit, d.tier)
        .order_by(d.competent_unit, d.tier)
    )
    rows = (await conn.execute(statement)).all()
    return [
        BacklogRow(
            unit=row.competent_unit, tier=row.tier, open=int(row.open), overdue=int(row.overdue)
        )
        for row in rows
    ]


async def on_time_breakdown(
    conn: AsyncConnection,
    *,
    closed_from: datetime,
    closed_to: datetime,
    by: GroupBy | None = None,
    period: Period | None = None,
    filters: DashboardFilters | None = None,
) -> list[OnTimeBreakdownRow]:
    """Dossiers closed in [closed_from, closed_to) with their verdicts, per unit or procedure
    (`by`), per Hanoi day or month (`period`), or both, in order."""
    filters = filters or DashboardFilters()
    d = dossiers.c
    groups: list[ColumnElement[Any]] = []
    bucket = None if period is None else hanoi_period(conn.dialect.name, period, d.closed_at)
    key = None if by is None else _group_column(by)
    if bucket is not None:
        groups.append(bucket.label("period"))
    if key is not None:
        groups.append(key.label("key"))
    statement = select(*groups, *_verdict_counts()).where(
        d.closed_at >= aware(closed_from),
        d.closed_at < aware(closed_to),
        *_dashboard_where(filters, d.competent_unit),
    )
    grouping = [g for g in (bucket, key) if g is not None]
    if grouping:
        statement = statement.group_by(*grouping).order_by(*grouping)
    rows = (await conn.execute(statement)).all()
    return [
        OnTimeBreakdownRow(
            period=None if bucket is None else date.fromisoformat(_full_date(row.period)),
            key=None if key is None else row.key,
            **_verdicts(row),
        )
        for row in rows
        if row.all_closed
    ]


async def quality(
    conn: AsyncConnection,
    *,
    by: Literal["competent_unit", "procedure_code"],
    received_from: datetime,
    received_to: datetime,
    filters: DashboardFilters | None = None,
) -> list[QualityRow]:
    """Dossiers received in [received_from, received_to), per competent unit or procedure:
    apology slips, supplements asked for, and the time to the result against the time the
    law allowed, by key."""
    filters = filters or DashboardFilters()
    d = dossiers.c
    key = _group_column(by)
    supplement = (
        select(tasks.c.id)
        .where(tasks.c.dossier_code == d.code, tasks.c.action == "provide_supplement")
        .exists()
    )
    ready = d.result_ready_at.is_not(None)
    dialect = conn.dialect.name
    statement = (
        select(
            key.label("key"),
            func.count().label("received"),
            func.count(case((d.apologized, 1))).label("apologized"),
            func.count(case((supplement, 1))).label("supplemented"),
            func.count(d.result_ready_at).label("result_ready"),
            func.avg(case((ready, _seconds(dialect, d.received_at, d.result_ready_at)))).label(
                "processing"
            ),
            func.avg(case((ready, _seconds(dialect, d.received_at, d.due_at)))).label("allowed"),
        )
        .where(
            d.received_at >= aware(received_from),
            d.received_at < aware(received_to),
            *_dashboard_where(filters, d.competent_unit),
        )
        .group_by(key)
        .order_by(key)
    )
    rows = (await conn.execute(statement)).all()
    return [
        QualityRow(
            key=row.key,
            received=int(row.received),
            apologized=int(row.apologized),
            supplemented=int(row.supplemented),
            result_ready=int(row.result_ready),
            avg_processing_seconds=None if row.processing is None else float(row.processing),
            avg_allowed_seconds=None if row.allowed is None else float(row.allowed),
        )
        for row in rows
    ]


def _seconds(
    dialect: str, start: ColumnElement[datetime], end: ColumnElement[datetime]
) -> ColumnElement[float]:
    """Seconds from `start` to `end`, both stored in UTC."""
    if dialect == "postgresql":
        return extract("epoch", end - start).cast(Float())
    if dialect == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * literal_column("86400.0")
    raise NotImplementedError(f"no durations on {dialect}")
