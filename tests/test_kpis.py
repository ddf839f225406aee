"""KPIs on SQLite and PostgreSQL: hand-computed numbers on a few dozen rows, then the plans of
the exact SQL each function emits on ~300,000 dossiers and tasks: no full table scan."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypedDict

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.calendar import HANOI
from store import kpis, views
from store.db import engine_for
from store.migrate import migrate
from store.tables import dossiers, tasks
from tests.test_store_migrations import scratch_postgres

HK, BD, TP = "hoan-kiem", "ba-dinh", "so-tu-phap"  # two wards and a city department


def at(local: str) -> datetime:
    """A Hanoi wall-clock time."""
    return datetime.fromisoformat(local).replace(tzinfo=HANOI)


def _utc(value: datetime | None) -> datetime | None:
    # Written in UTC, as the projection must: SQLite keeps no offset.
    return None if value is None else value.astimezone(UTC)


def _dossier(
    code: str,
    receiving: str,
    competent: str,
    procedure: str,
    *,
    closed: str | None = None,
    on_time: bool | None = None,
    due: str | None = None,
) -> dict[str, Any]:
    received = at("2025-12-01 08:00")
    closed_at = at(closed) if closed else None
    return {
        "code": code,
        "procedure_code": procedure,
        "procedure_version": 1,
        "receiving_unit": receiving,
        "competent_unit": competent,
        "tier": "city" if competent == TP else "ward",
        "lane": "city-processing" if competent == TP else "ward-processing",
        "stage": "closed" if closed_at else "processing",
        "status": "returned" if closed_at else "in_processing",
        "portal_status_code": 10 if closed_at else 4,
        "received_at": _utc(received),
        "due_at": _utc(at(due)) if due else _utc(at("2025-12-20 17:00")),
        "closed_at": _utc(closed_at),
        "on_time": on_time,
        "applicant_ref": f"ref-{code}",
        "last_event_seq": 1,
        "updated_at": _utc(closed_at or received),
    }


DOSSIERS = [
    # Closed in January 2026 (Hanoi): the window of most checks.
    _dossier("D01", HK, HK, "1.001", closed="2026-01-01 00:00", on_time=True),  # = from
    _dossier("D02", HK, HK, "1.001", closed="2026-01-05 10:00", on_time=True),
    _dossier("D03", HK, HK, "1.002", closed="2026-01-05 16:00", on_time=False),
    _dossier("D04", HK, TP, "2.001", closed="2026-01-06 01:00", on_time=True),  # Jan 5 in UTC
    _dossier("D05", HK, HK, "1.001", closed="2026-01-06 09:00"),  # withdrawn: no verdict
    _dossier("D06", BD, BD, "1.001", closed="2026-01-10 11:00", on_time=True),
    _dossier("D07", BD, BD, "1.002", closed="2026-01-10 15:00", on_time=False),
    _dossier("D08", BD, TP, "2.001", closed="2026-01-20 08:00", on_time=False),
    _dossier("D09", BD, BD, "1.001", closed="2026-01-31 23:59:59", on_time=True),
    _dossier("D10", HK, HK, "1.002", closed="2026-01-20 10:00"),  # rejected at intake
    _dossier("D11", HK, TP, "2.001", closed="2026-01-25 14:00", on_time=False),
    _dossier("D16", BD, BD, "1.003", closed="2026-01-18 10:00"),  # withdrawn
    # Closed outside January.
    _dossier("D12", HK, HK, "1.001", closed="2025-12-31 23:59:59", on_time=True),
    _dossier("D13", BD, BD, "1.001", closed="2026-02-01 00:00", on_time=False),  # = to
    _dossier("D14", HK, HK, "1.001", closed="2025-12-15 10:00", on_time=False),
    _dossier("D15", BD, TP, "2.001", closed="2026-02-10 10:00", on_time=True),
    # Open; NOW is 2026-01-15 12:00.
    _dossier("O01", HK, HK, "1.001", due="2026-01-10 17:00"),
    _dossier("O02", HK, TP, "2.001", due="2026-01-10 17:00"),
    _dossier("O03", BD, BD, "1.002", due="2026-01-12 17:00"),
    _dossier("O04", HK, HK, "1.002", due="2026-01-14 17:00"),
    _dossier("O05", BD, TP, "2.001", due="2026-01-10 17:00"),
    _dossier("O06", HK, HK, "1.001", due="2026-01-15 12:00"),  # due exactly now: not past
    _dossier("O07", BD, BD, "1.001", due="2026-01-20 17:00"),
    {**_dossier("O08", HK, HK, "1.001"), "due_at": None},  # no appointment yet
]
NOW = at("2026-01-15 12:00")


class ReceivedWindow(TypedDict):
    received_from: datetime
    received_to: datetime


class Window(TypedDict):
    closed_from: datetime
    closed_to: datetime


JANUARY: Window = {"closed_from": at("2026-01-01 00:00"), "closed_to": at("2026-02-01 00:00")}


def _task(
    number: int,
    dossier: str,
    action: str,
    unit: str,
    role: str,
    since: str,
    *,
    due: str | None = None,
    done: str | None = None,
    claimed_by: str | None = None,
) -> dict[str, Any]:
    return {
        "id": number,
        "dossier_code": dossier,
        "action": action,
        "unit": unit,
        "role": role,
        "since": _utc(at(since)),
        "due_at": _utc(at(due)) if due else None,
        "claimed_by": claimed_by,
        "done_at": _utc(at(done)) if done else None,
        "done_by": "someone" if done else None,
    }


TASKS = [
    _task(1, "O01", "appraise", HK, "specialist", "2026-01-05 09:00", due="2026-01-08 17:00"),
    _task(2, "O04", "appraise", HK, "specialist", "2026-01-06 09:00", due="2026-01-07 17:00"),
    _task(3, "O01", "approve", HK, "leader", "2026-01-09 09:00", due="2026-01-10 12:00"),
    _task(4, "O03", "appraise", BD, "specialist", "2026-01-07 09:00", due="2026-01-09 17:00"),
    _task(5, "D02", "appraise", HK, "specialist", "2026-01-02 09:00", done="2026-01-03 10:00"),
    _task(6, "O08", "receive", HK, "counter_officer", "2026-01-14 09:00"),
    _task(7, "O06", "appraise", HK, "specialist", "2026-01-12 09:00"),
    _task(8, "O02", "approve", TP, "leader", "2026-01-08 09:00", due="2026-01-09 17:00"),
    _task(9, "O05", "approve", TP, "leader", "2026-01-08 10:00", due="2026-01-09 17:00"),
    _task(10, "D08", "approve", TP, "leader", "2026-01-15 09:00", done="2026-01-19 08:00"),
    _task(
        11,
        "O07",
        "provide_supplement",
        BD,
        "counter_officer",
        "2026-01-13 09:00",
        due="2026-01-16 17:00",
        claimed_by="officer-bd-1",
    ),
]


async def _seeded(url: str) -> None:
    await migrate(url)
    async with engine_for(url).begin() as conn:
        await conn.execute(dossiers.insert(), DOSSIERS)
        await conn.execute(tasks.insert(), TASKS)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def conn(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AsyncConnection]:
    """One seeded database per backend for the module; the tests only read it."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('kpis')}/engine.db"
        await _seeded(url)
        async with engine_for(url).connect() as connection:
            yield connection
        await engine_for(url).dispose()
    else:
        async with scratch_postgres("kpis_test") as url:
            await _seeded(url)
            async with engine_for(url).connect() as connection:
                yield connection


def _counts(rows: list[kpis.OnTimeRow]) -> list[tuple[Any, ...]]:
    return [(r.key, r.closed, r.on_time, r.late, r.no_verdict, r.ratio) for r in rows]


def _periods(rows: list[kpis.PeriodRow]) -> list[tuple[Any, ...]]:
    return [(r.period, r.closed, r.on_time, r.late, r.no_verdict, r.ratio) for r in rows]


async def test_on_time_ratio_per_receiving_unit(conn: AsyncConnection) -> None:
    rows = await kpis.on_time_ratio(conn, by="receiving_unit", **JANUARY)
    # HK: D01 D02 D04 on time, D03 D11 late, D05 D10 no verdict. BD: D06 D09 on time,
    # D07 D08 late, D16 no verdict. D12 (a second before) and D13 (= to) are outside.
    assert _counts(rows) == [(BD, 4, 2, 2, 1, 0.5), (HK, 5, 3, 2, 2, 0.6)]

    only = await kpis.on_time_ratio(conn, by="receiving_unit", unit_or_procedure=HK, **JANUARY)
    assert _counts(only) == [(HK, 5, 3, 2, 2, 0.6)]


async def test_on_time_ratio_per_competent_unit(conn: AsyncConnection) -> None:
    rows = await kpis.on_time_ratio(conn, by="competent_unit", **JANUARY)
    assert _counts(rows) == [
        (BD, 3, 2, 1, 1, 2 / 3),  # D06 D09 | D07 | D16
        (HK, 3, 2, 1, 2, 2 / 3),  # D01 D02 | D03 | D05 D10
        (TP, 3, 1, 2, 0, 1 / 3),  # D04 | D08 D11
    ]


async def test_on_time_ratio_per_procedure(conn: AsyncConnection) -> None:
    rows = await kpis.on_time_ratio(conn, by="procedure_code", **JANUARY)
    assert _counts(rows) == [
        ("1.001", 4, 4, 0, 1, 1.0),  # D01 D02 D06 D09 | D05
        ("1.002", 2, 0, 2, 1, 0.0),  # D03 D07 | D10
        ("1.003", 0, 0, 0, 1, None),  # only a withdrawal: no ratio
        ("2.001", 3, 1, 2, 0, 1 / 3),  # D04 | D08 D11
    ]
    none = await kpis.on_time_ratio(conn, by="procedure_code", unit_or_procedure="9.999", **JANUARY)
    assert none == []


async def test_on_time_per_hanoi_day(conn: AsyncConnection) -> None:
    rows = await kpis.on_time_by_period(conn, period="day", **JANUARY)
    assert _periods(rows) == [
        (date(2026, 1, 1), 1, 1, 0, 0, 1.0),  # D01 at 00:00 Hanoi, Dec 31 in UTC
        (date(2026, 1, 5), 2, 1, 1, 0, 0.5),  # D02 D03
        (date(2026, 1, 6), 1, 1, 0, 1, 1.0),  # D04 at 01:00 Hanoi, Jan 5 in UTC; D05
        (date(2026, 1, 10), 2, 1, 1, 0, 0.5),  # D06 D07
        (date(2026, 1, 18), 0, 0, 0, 1, None),  # D16
        (date(2026, 1, 20), 1, 0, 1, 1, 0.0),  # D08 | D10
        (date(2026, 1, 25), 1, 0, 1, 0, 0.0),  # D11
        (date(2026, 1, 31), 1, 1, 0, 0, 1.0),  # D09 at 23:59:59
    ]
    hoan_kiem = await kpis.on_time_by_period(conn, period="day", receiving_unit=HK, **JANUARY)
    assert _periods(hoan_kiem) == [
        (date(2026, 1, 1), 1, 1, 0, 0, 1.0),
        (date(2026, 1, 5), 2, 1, 1, 0, 0.5),
        (date(2026, 1, 6), 1, 1, 0, 1, 1.0),
        (date(2026, 1, 20), 0, 0, 0, 1, None),
        (date(2026, 1, 25), 1, 0, 1, 0, 0.0),
    ]


async def test_on_time_per_hanoi_month(conn: AsyncConnection) -> None:
    rows = await kpis.on_time_by_period(
        conn, period="month", closed_from=at("2025-12-01 00:00"), closed_to=at("2026-03-01 00:00")
    )
    assert _periods(rows) == [
        (date(2025, 12, 1), 2, 1, 1, 0, 0.5),  # D12 (Dec 31 23:59:59) D14
        (date(2026, 1, 1), 9, 5, 4, 3, 5 / 9),
        (date(2026, 2, 1), 2, 1, 1, 0, 0.5),  # D13 (Feb 1 00:00) D15
    ]
    # Bounds may come in any offset: the same instants in UTC give the same answer.
    utc: Window = {
        "closed_from": JANUARY["closed_from"].astimezone(UTC),
        "closed_to": JANUARY["closed_to"].astimezone(UTC),
    }
    assert await kpis.on_time_by_period(conn, period="month", **utc) == rows[1:2]


async def test_past_due_oldest_first_with_keyset_pages(conn: AsyncConnection) -> None:
    rows = await kpis.past_due(conn, now=NOW)
    # Three share the 17:00 appointment of Jan 10: the code orders them.
    assert [r.code for r in rows] == ["O01", "O02", "O05", "O03", "O04"]
    assert rows[0].due_at == at("2026-01-10 17:00")
    assert rows[0].due_at.tzinfo == UTC
    assert rows[0].model_dump(exclude={"due_at", "received_at"}) == {
        "code": "O01",
        "procedure_code": "1.001",
        "receiving_unit": HK,
        "competent_unit": HK,
        "status": "in_processing",
    }

    pages: list[list[str]] = []
    after: tuple[datetime | None, str | None] = (None, None)
    while True:
        page = await kpis.past_due(conn, now=NOW, limit=2, after_due=after[0], after_code=after[1])
        if not page:
            break
        pages.append([r.code for r in page])
        after = (page[-1].due_at, page[-1].code)
    assert pages == [["O01", "O02"], ["O05", "O03"], ["O04"]]

    later = await kpis.past_due(conn, now=NOW, after_due=at("2026-01-10 17:00"))
    assert [r.code for r in later] == ["O03", "O04"]


async def test_past_due_per_unit(conn: AsyncConnection) -> None:
    async def codes(unit: str, unit_role: kpis.UnitRole = "competent_unit") -> list[str]:
        rows = await kpis.past_due(conn, now=NOW, unit=unit, unit_role=unit_role)
        return [r.code for r in rows]

    assert await codes(TP) == ["O02", "O05"]
    assert await codes(HK) == ["O01", "O04"]
    assert await codes(HK, "receiving_unit") == ["O01", "O02", "O04"]
    assert await codes(BD, "receiving_unit") == ["O05", "O03"]


async def test_open_tasks_per_unit_and_role(conn: AsyncConnection) -> None:
    rows = await kpis.open_tasks(conn)
    summary = [(r.unit, r.role, r.open, r.oldest_since, r.earliest_due_at) for r in rows]
    assert summary == [
        (BD, "counter_officer", 1, at("2026-01-13 09:00"), at("2026-01-16 17:00")),
        (BD, "specialist", 1, at("2026-01-07 09:00"), at("2026-01-09 17:00")),
        (HK, "counter_officer", 1, at("2026-01-14 09:00"), None),
        (HK, "leader", 1, at("2026-01-09 09:00"), at("2026-01-10 12:00")),
        (HK, "specialist", 3, at("2026-01-05 09:00"), at("2026-01-07 17:00")),  # not task 5
        (TP, "leader", 2, at("2026-01-08 09:00"), at("2026-01-09 17:00")),  # not task 10
    ]
    assert await kpis.open_tasks(conn, unit=HK) == rows[2:5]


async def test_inbox_earliest_due_first(conn: AsyncConnection) -> None:
    async def ids(unit: str, role: str | None = None, limit: int = 100) -> list[int]:
        return [task.id for task in await views.inbox(conn, unit=unit, role=role, limit=limit)]

    assert await ids(HK) == [2, 1, 3, 7, 6]  # no due time last, by waiting time
    assert await ids(HK, "specialist") == [2, 1, 7]
    assert await ids(HK, "specialist", limit=2) == [2, 1]
    assert await ids(TP) == [8, 9]  # same due time: the older first
    claimed = await views.inbox(conn, unit=BD, role="counter_officer")
    assert [(t.dossier_code, t.action, t.claimed_by) for t in claimed] == [
        ("O07", "provide_supplement", "officer-bd-1")
    ]
    assert claimed[0].since == at("2026-01-13 09:00")


# --- the console's dashboard -------------------------------------------------------------------
DECEMBER_1: ReceivedWindow = {
    "received_from": at("2025-12-01 00:00"),
    "received_to": at("2025-12-02 00:00"),
}


async def test_received_per_day_channel_and_lane(conn: AsyncConnection) -> None:
    rows = await kpis.received_per_day(conn, **DECEMBER_1)
    # All 24 received on Dec 1 at the counter (the column's default); the 6 decided by the
    # city department (D04 D08 D11 D15 O02 O05) in its lane, the 18 others at their ward.
    assert [(r.day, r.channel, r.lane, r.received) for r in rows] == [
        (date(2025, 12, 1), "counter", "city-processing", 6),
        (date(2025, 12, 1), "counter", "ward-processing", 18),
    ]
    # Received at Hoan Kiem: D01-D05 D10 D11 D12 D14 O01 O02 O04 O06 O08, of which D04 D11
    # O02 go to the department.
    at_hk = await kpis.received_per_day(conn, filters=kpis.DashboardFilters(unit=HK), **DECEMBER_1)
    assert [(r.lane, r.received) for r in at_hk] == [
        ("city-processing", 3),
        ("ward-processing", 11),
    ]
    assert (
        await kpis.received_per_day(
            conn, received_from=at("2025-12-02 00:00"), received_to=at("2025-12-03 00:00")
        )
        == []
    )


async def test_backlog_and_overdue_per_competent_unit(conn: AsyncConnection) -> None:
    rows = await kpis.backlog(conn, now=NOW)
    # BD: O03 (due Jan 12, overdue) O07 (Jan 20). HK: O01 O04 overdue, O06 due exactly now and
    # O08 without an appointment are not. TP: O02 O05 both overdue.
    assert [(r.unit, r.tier, r.open, r.overdue) for r in rows] == [
        (BD, "ward", 2, 1),
        (HK, "ward", 4, 2),
        (TP, "city", 2, 2),
    ]
    city = await kpis.backlog(conn, now=NOW, filters=kpis.DashboardFilters(tier="city"))
    assert [(r.unit, r.open, r.overdue) for r in city] == [(TP, 2, 2)]


async def test_on_time_breakdown_agrees_with_the_ratios(conn: AsyncConnection) -> None:
    per_unit = await kpis.on_time_breakdown(conn, by="competent_unit", **JANUARY)
    ratios = await kpis.on_time_ratio(conn, by="competent_unit", **JANUARY)
    assert [(r.key, r.closed, r.on_time, r.no_verdict) for r in per_unit] == [
        (r.key, r.closed, r.on_time, r.no_verdict) for r in ratios
    ]
    per_day = await kpis.on_time_breakdown(conn, period="day", **JANUARY)
    days = await kpis.on_time_by_period(conn, period="day", **JANUARY)
    assert [(r.period, r.closed, r.on_time) for r in per_day] == [
        (r.period, r.closed, r.on_time) for r in days
    ]
    # The city tier in January: D04 on time, D08 D11 late.
    city = await kpis.on_time_breakdown(conn, filters=kpis.DashboardFilters(tier="city"), **JANUARY)
    assert [(r.period, r.key, r.closed, r.on_time, r.late) for r in city] == [(None, None, 3, 1, 2)]


async def test_quality_per_procedure(conn: AsyncConnection) -> None:
    rows = await kpis.quality(conn, by="procedure_code", **DECEMBER_1)
    # 1.001: D01 D02 D05 D06 D09 D12 D13 D14 O01 O06 O07 O08, of which O07 was asked for a
    # supplement (task 11); no result ready in the seed, so no average.
    assert [(r.key, r.received, r.apologized, r.supplemented, r.result_ready) for r in rows] == [
        ("1.001", 12, 0, 1, 0),
        ("1.002", 5, 0, 0, 0),
        ("1.003", 1, 0, 0, 0),
        ("2.001", 6, 0, 0, 0),
    ]
    assert all(r.avg_processing_seconds is None for r in rows)


async def test_quality_times_against_the_legal_time(conn: AsyncConnection) -> None:
    """Times and apology slips, on rows of their own written inside a transaction that is
    rolled back (the module's data stays as the other tests read it)."""
    extra = [
        {
            **_dossier("Q01", HK, HK, "3.001", closed="2026-03-06 09:00", on_time=True),
            "received_at": _utc(at("2026-03-02 08:00")),
            "result_ready_at": _utc(at("2026-03-03 08:00")),  # 24 h = 86,400 s
            "due_at": _utc(at("2026-03-05 17:00")),  # 3 d 9 h = 291,600 s
        },
        {
            **_dossier("Q02", HK, HK, "3.001", closed="2026-03-09 09:00", on_time=False),
            "received_at": _utc(at("2026-03-02 08:00")),
            "result_ready_at": _utc(at("2026-03-02 20:00")),  # 12 h = 43,200 s
            "due_at": _utc(at("2026-03-04 17:00")),  # 2 d 9 h = 205,200 s
            "apologized": True,
        },
        {
            **_dossier("Q03", HK, HK, "3.001"),
            "received_at": _utc(at("2026-03-02 09:00")),
            "result_ready_at": None,
            "apologized": False,
        },
    ]
    extra[0]["apologized"] = False
    transaction = await conn.begin_nested() if conn.in_transaction() else await conn.begin()
    try:
        await conn.execute(dossiers.insert(), extra)
        [row] = await kpis.quality(
            conn,
            by="procedure_code",
            received_from=at("2026-03-02 00:00"),
            received_to=at("2026-03-03 00:00"),
        )
    finally:
        await transaction.rollback()
    assert (row.key, row.received, row.apologized, row.result_ready) == ("3.001", 3, 1, 2)
    # Over Q01 and Q02, whose result is ready: (86,400 + 43,200) / 2 and (291,600 + 205,200) / 2.
    assert row.avg_processing_seconds == pytest.approx(64_800, abs=1)
    assert row.avg_allowed_seconds == pytest.approx(248_400, abs=1)


async def test_search_by_unit_masked_citizen_and_dates(conn: AsyncConnection) -> None:
    found = await views.search_dossiers(conn, views.DossierSearch(applicant_ref="ref-O07"))
    assert [d.code for d in found] == ["O07"]
    # Ba Dinh sees what it received or decides: D06-D09 D13 D15 D16 O03 O05 O07.
    at_bd = await views.search_dossiers(conn, views.DossierSearch(units=(BD,)), limit=100)
    assert sorted(d.code for d in at_bd) == sorted(
        ["D06", "D07", "D08", "D09", "D13", "D15", "D16", "O03", "O05", "O07"]
    )
    assert (
        await views.search_dossiers(conn, views.DossierSearch(units=(BD,), code="O01")) == []
    )  # Hoan Kiem's: not found from Ba Dinh
    none = views.DossierSearch(received_from=at("2025-12-02 00:00"))
    assert await views.search_dossiers(conn, none) == []


async def test_bounds_must_be_timezone_aware(conn: AsyncConnection) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await kpis.past_due(conn, now=datetime(2026, 1, 15, 12, 0))
    with pytest.raises(ValueError, match="limit"):
        await views.inbox(conn, unit=HK, limit=0)


# --- Plans at scale -------------------------------------------------------------------------

ROWS = {"postgresql": 300_000, "sqlite": 60_000}
# Both span Jan 2023 - Nov 2025 (300,000 x 5 min, 60,000 x 25 min), ~130 units, 37
# procedures. Open: what arrived in the last week, and about 1 in 100 stuck.
_SELECT = """
SELECT 'D' || g, 'p' || (g % 37), 1, 'unit-' || (g % 126), 'unit-' || ((g / 3) % 140),
       'ward', 'ward-processing', CASE WHEN open THEN 'processing' ELSE 'closed' END,
       CASE WHEN open THEN 'in_processing' ELSE 'returned' END, CASE WHEN open THEN 4 ELSE 10 END,
       received, {due}, CASE WHEN open THEN NULL ELSE {closed} END,
       CASE WHEN open OR g % 13 = 0 THEN NULL WHEN g % 7 = 0 THEN {false} ELSE {true} END,
       'ref-' || g, 3, received
"""
_TASK_SELECT = """
SELECT 'D' || g, 'appraise', 'unit-' || (g % 126),
       CASE (g / 7) % 4 WHEN 0 THEN 'specialist' WHEN 1 THEN 'leader' WHEN 2 THEN 'counter_officer'
       ELSE 'certifier' END,
       received, CASE WHEN g % 10 = 0 THEN NULL ELSE {due} END,
       CASE WHEN open THEN NULL ELSE {closed} END
"""
_DOSSIER_COLUMNS = (
    "code, procedure_code, procedure_version, receiving_unit, competent_unit, tier, lane, "
    "stage, status, portal_status_code, received_at, due_at, closed_at, on_time, "
    "applicant_ref, last_event_seq, updated_at"
)
_TASK_COLUMNS = "dossier_code, action, unit, role, since, due_at, done_at"


def _fill_statements(dialect: str) -> list[str]:
    n = ROWS[dialect]
    if dialect == "postgresql":
        source = f"""FROM (SELECT g, timestamptz '2023-01-01 00:00+07' + g * interval '5 minutes'
            AS received, (g > {n} - 2000 OR g % 97 = 0) AS open
            FROM generate_series(1, {n}) AS g) AS s"""
        shapes = {
            "due": "received + interval '10 days'",
            "closed": "received + interval '8 days'",
            "false": "false",
            "true": "true",
        }
        task_shapes = {
            "due": "received + interval '3 days'",
            "closed": "received + interval '1 day'",
        }
        return [
            f"INSERT INTO dossiers ({_DOSSIER_COLUMNS}) {_SELECT.format(**shapes)} {source}",
            f"INSERT INTO tasks ({_TASK_COLUMNS}) {_TASK_SELECT.format(**task_shapes)} {source}",
        ]

    # SQLite: a recursive counter, and UTC text in SQLAlchemy's DATETIME format.
    def shifted(minutes: str) -> str:
        offset = f"'+' || ({minutes}) || ' minutes'"
        return f"strftime('%Y-%m-%d %H:%M:%S.000000', '2022-12-31 17:00:00', {offset})"

    source = f"""FROM (SELECT g, {shifted("g * 25")} AS received,
            (g > {n} - 400 OR g % 97 = 0) AS open, g * 25 AS minute FROM counter)"""
    counter = (
        f"WITH RECURSIVE counter(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM counter WHERE g < {n})"
    )
    shapes = {
        "due": shifted("minute + 10 * 1440"),
        "closed": shifted("minute + 8 * 1440"),
        "false": "0",
        "true": "1",
    }
    task_shapes = {"due": shifted("minute + 3 * 1440"), "closed": shifted("minute + 1440")}
    return [
        f"{counter} INSERT INTO dossiers ({_DOSSIER_COLUMNS}) {_SELECT.format(**shapes)} {source}",
        f"{counter} INSERT INTO tasks ({_TASK_COLUMNS}) "
        f"{_TASK_SELECT.format(**task_shapes)} {source}",
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
async def big(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async def fill(url: str) -> AsyncEngine:
        await migrate(url)
        engine = engine_for(url)
        async with engine.begin() as conn:
            for statement in _fill_statements(conn.dialect.name):
                await conn.exec_driver_sql(statement)
        async with engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            vacuum = "VACUUM ANALYZE" if conn.dialect.name == "postgresql" else "ANALYZE"
            await autocommit.exec_driver_sql(vacuum)  # what autovacuum does in production
        return engine

    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/big.db"
        yield await fill(url)
        await engine_for(url).dispose()
    else:
        async with scratch_postgres("kpis_plans") as url:
            yield await fill(url)


@contextmanager
def _emitted(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """The statements and parameters the driver receives, exactly."""
    seen: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        _conn, _cursor, statement, parameters, _context, _many = args
        seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def _plan(conn: AsyncConnection, statement: str, parameters: Any) -> list[str]:
    """One line per plan node that reads a table: '<how> <table> [<index>]'."""
    if conn.dialect.name == "postgresql":
        explained = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
        document = explained.scalar_one()
        plan = json.loads(document) if isinstance(document, str) else document
        lines: list[str] = []
        nodes = [plan[0]["Plan"]]
        while nodes:
            node = nodes.pop()
            nodes.extend(node.get("Plans", []))
            if "Relation Name" in node or "Index Name" in node:
                table, index = node.get("Relation Name", ""), node.get("Index Name", "")
                lines.append(f"{node['Node Type']} {table} {index}")
        return lines
    explained = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
    return [
        str(row[-1]) for row in explained.all() if " dossiers" in row[-1] or " tasks" in row[-1]
    ]


JUNE_2025: Window = {"closed_from": at("2025-06-01 00:00"), "closed_to": at("2025-07-01 00:00")}
LATE_2025 = at("2025-11-10 00:00")
JUNE_RECEIVED: ReceivedWindow = {
    "received_from": at("2025-06-01 00:00"),
    "received_to": at("2025-07-01 00:00"),
}
UNIT = "unit-5"

Call = Callable[[AsyncConnection], Awaitable[list[Any]]]
TYPICAL: dict[str, Call] = {
    "on time, receiving unit": lambda c: kpis.on_time_ratio(
        c, by="receiving_unit", unit_or_procedure=UNIT, **JUNE_2025
    ),
    "on time, competent unit": lambda c: kpis.on_time_ratio(
        c, by="competent_unit", unit_or_procedure=UNIT, **JUNE_2025
    ),
    "on time, procedure": lambda c: kpis.on_time_ratio(
        c, by="procedure_code", unit_or_procedure="p5", **JUNE_2025
    ),
    "on time, every unit": lambda c: kpis.on_time_ratio(c, by="receiving_unit", **JUNE_2025),
    "per day, one unit": lambda c: kpis.on_time_by_period(
        c, period="day", receiving_unit=UNIT, **JUNE_2025
    ),
    "per day, the city": lambda c: kpis.on_time_by_period(c, period="day", **JUNE_2025),
    "per month, one unit": lambda c: kpis.on_time_by_period(
        c, period="month", receiving_unit=UNIT, **JUNE_2025
    ),
    "past due, competent unit": lambda c: kpis.past_due(c, now=LATE_2025, unit=UNIT),
    "past due, receiving unit": lambda c: kpis.past_due(
        c, now=LATE_2025, unit=UNIT, unit_role="receiving_unit"
    ),
    "past due, the city": lambda c: kpis.past_due(c, now=LATE_2025),
    "past due, next page": lambda c: kpis.past_due(
        c, now=LATE_2025, after_due=at("2024-06-01 00:00"), after_code="D100000"
    ),
    "open tasks, one unit": lambda c: kpis.open_tasks(c, unit=UNIT),
    "open tasks, the city": lambda c: kpis.open_tasks(c),
    "inbox, unit and role": lambda c: views.inbox(c, unit=UNIT, role="specialist"),
    "inbox, unit": lambda c: views.inbox(c, unit=UNIT),
    "received per day, the city": lambda c: kpis.received_per_day(c, **JUNE_RECEIVED),
    "received per day, one unit": lambda c: kpis.received_per_day(
        c, filters=kpis.DashboardFilters(unit=UNIT), **JUNE_RECEIVED
    ),
    "backlog, the city": lambda c: kpis.backlog(c, now=LATE_2025),
    "backlog, one unit": lambda c: kpis.backlog(
        c, now=LATE_2025, filters=kpis.DashboardFilters(unit=UNIT)
    ),
    "on time per unit and day": lambda c: kpis.on_time_breakdown(
        c, by="competent_unit", period="day", **JUNE_2025
    ),
    "on time per day, one unit": lambda c: kpis.on_time_breakdown(
        c, period="day", filters=kpis.DashboardFilters(unit=UNIT), **JUNE_2025
    ),
    "quality per procedure, the city": lambda c: kpis.quality(
        c, by="procedure_code", **JUNE_RECEIVED
    ),
    "quality per unit, one unit": lambda c: kpis.quality(
        c, by="competent_unit", filters=kpis.DashboardFilters(unit=UNIT), **JUNE_RECEIVED
    ),
    "search, masked citizen ID": lambda c: views.search_dossiers(
        c, views.DossierSearch(applicant_ref="ref-7")
    ),
    "search, a unit's dates": lambda c: views.search_dossiers(
        c,
        views.DossierSearch(
            units=(UNIT,),
            received_from=JUNE_RECEIVED["received_from"],
            received_to=JUNE_RECEIVED["received_to"],
        ),
    ),
    "search, the city's dates": lambda c: views.search_dossiers(
        c, views.DossierSearch(received_from=JUNE_RECEIVED["received_from"])
    ),
}


async def test_no_full_scan_at_scale(big: AsyncEngine) -> None:
    async with big.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM dossiers")).scalar_one() >= 60_000
        plans: dict[str, list[str]] = {}
        for name, call in TYPICAL.items():
            with _emitted(big) as emitted:
                assert await call(conn), f"{name}: no rows, so the plan proves nothing"
            selects = [
                (sql, params) for sql, params in emitted if sql.lstrip().startswith("SELECT")
            ]
            assert len(selects) == 1, f"{name}: {emitted}"
            plans[name] = await _plan(conn, *selects[0])
        # The detector itself: a lookup by an unindexed column must show up as a full scan.
        control = await _plan(conn, "SELECT code FROM dossiers WHERE portal_status_code = 7", ())

    def full_scan(lines: list[str]) -> bool:
        return not lines or any(
            line.startswith("Seq Scan")  # PostgreSQL
            or line in ("SCAN dossiers", "SCAN tasks")  # SQLite, no index at all
            for line in lines
        )

    assert full_scan(control), control
    assert {name: lines for name, lines in plans.items() if full_scan(lines)} == {}, plans
    for name, lines in plans.items():  # and each reads its table through an index
        assert any("INDEX" in line.upper() or "ix_" in line for line in lines), (name, lines)
