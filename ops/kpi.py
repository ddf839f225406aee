"""`python -m ops kpi`: on-time ratios, dossiers past their appointment, open tasks and a
unit's inbox, from the read model (store.kpis, store.views)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated

import typer
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from config import settings
from domain.calendar import HANOI
from ops.cli import AsJson, show_rows
from store import kpis, views
from store.db import engine_for
from store.kpis import GroupBy, Period
from store.migrate import migrate

kpi_app = typer.Typer(help="On-time ratios, dossiers past due, open tasks.", no_args_is_help=True)

Since = Annotated[
    datetime | None,
    typer.Option("--from", help="closed from (Hanoi time); default: the start of this month"),
]
Until = Annotated[
    datetime | None, typer.Option("--to", help="closed before (Hanoi time); default: now")
]


def _window(
    closed_from: datetime | None, closed_to: datetime | None, *, year: bool = False
) -> tuple[datetime, datetime]:
    """The window asked for; unstated, this month (or year) so far, in Hanoi."""
    now = datetime.now(HANOI)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if year:
        start = start.replace(month=1)
    return (
        _in_hanoi(closed_from) if closed_from else start,
        _in_hanoi(closed_to) if closed_to else now,
    )


def _in_hanoi(value: datetime) -> datetime:
    """A time typed without an offset is Hanoi's."""
    return value if value.tzinfo else value.replace(tzinfo=HANOI)


def _read(
    query: Callable[[AsyncConnection], Awaitable[Sequence[BaseModel]]],
) -> Sequence[BaseModel]:
    async def main() -> Sequence[BaseModel]:
        config = settings()
        await migrate(config.database_url)
        async with engine_for(config.database_url).connect() as conn:
            return await query(conn)

    return asyncio.run(main())


def _show(rows: Sequence[BaseModel], as_json: bool, title: str) -> None:
    show_rows(rows, as_json, title, empty="none")


@kpi_app.command("on-time")
def kpi_on_time(
    closed_from: Since = None,
    closed_to: Until = None,
    by: Annotated[
        GroupBy, typer.Option(help="receiving_unit, competent_unit or procedure_code")
    ] = "competent_unit",
    key: Annotated[str | None, typer.Option(help="one unit or procedure")] = None,
    as_json: AsJson = False,
) -> None:
    """On-time ratio of the dossiers closed in a window (default: this month so far), per
    unit or procedure."""
    since, until = _window(closed_from, closed_to)
    rows = _read(
        lambda conn: kpis.on_time_ratio(
            conn, by=by, closed_from=since, closed_to=until, unit_or_procedure=key
        )
    )
    _show(rows, as_json, f"on time per {by}")


@kpi_app.command("period")
def kpi_period(
    closed_from: Since = None,
    closed_to: Until = None,
    period: Annotated[Period, typer.Option(help="day or month")] = "month",
    unit: Annotated[str | None, typer.Option(help="one receiving unit")] = None,
    as_json: AsJson = False,
) -> None:
    """On-time ratio per Hanoi day or month (default window: this year so far)."""
    since, until = _window(closed_from, closed_to, year=True)
    rows = _read(
        lambda conn: kpis.on_time_by_period(
            conn, period=period, closed_from=since, closed_to=until, receiving_unit=unit
        )
    )
    _show(rows, as_json, f"on time per {period}")


@kpi_app.command("past-due")
def kpi_past_due(
    unit: Annotated[str | None, typer.Option(help="one competent unit")] = None,
    limit: int = 100,
    as_json: AsJson = False,
) -> None:
    """Open dossiers past their appointment, the longest overdue first."""
    now = datetime.now(HANOI)
    rows = _read(lambda conn: kpis.past_due(conn, now=now, unit=unit, limit=limit))
    _show(rows, as_json, "past due")


@kpi_app.command("open-tasks")
def kpi_open_tasks(
    unit: Annotated[str | None, typer.Option(help="one unit")] = None,
    as_json: AsJson = False,
) -> None:
    """Open officer tasks per unit and role."""
    rows = _read(lambda conn: kpis.open_tasks(conn, unit=unit))
    _show(rows, as_json, "open tasks")


@kpi_app.command("inbox")
def kpi_inbox(
    unit: Annotated[str, typer.Option(help="the unit")],
    role: Annotated[str | None, typer.Option(help="one role")] = None,
    limit: int = 100,
    as_json: AsJson = False,
) -> None:
    """A unit's open tasks, the earliest due first."""
    rows = _read(lambda conn: views.inbox(conn, unit=unit, role=role, limit=limit))
    _show(rows, as_json, f"inbox of {unit}")
