"""`python -m ops`: the operators' and auditors' tool.

python -m ops audit verify [CODE]    verify audit chains against the workflow histories
python -m ops rebuild                rebuild `dossiers` and `tasks` from Temporal
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.client import Client

from codec import project_converter
from config import Settings, settings
from domain.calendar import HANOI
from ops import audit as audit_ops
from ops import rebuild as rebuild_ops
from ops.export import export_app
from ops.keys import keys_app
from ops.operations import reset_command, retry_command
from ops.replay import replay_cli
from ops.signatures import signatures_app
from ops.stuck import stuck_command
from store import kpis
from store.db import engine_for
from store.kpis import GroupBy, Period
from store.migrate import migrate

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
kpi_app = typer.Typer(help="On-time ratios, dossiers past due, open tasks.", no_args_is_help=True)
app.add_typer(kpi_app, name="kpi")
app.add_typer(keys_app, name="keys")
app.command("replay")(replay_cli)
app.add_typer(export_app, name="export")
app.add_typer(signatures_app, name="signatures")
app.command("stuck")(stuck_command)
app.command("retry")(retry_command)
app.command("reset")(reset_command)
console = Console()
errors = Console(stderr=True)

DEFAULT_ADDRESS = "127.0.0.1:7233"  # the server `make run` starts


async def _client(config: Settings) -> Client:
    return await Client.connect(
        config.temporal_address or DEFAULT_ADDRESS,
        namespace=config.temporal_namespace,
        data_converter=project_converter(config.data_dir),
    )


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=errors, transient=True
    )


@audit_app.command("verify")
def audit_verify(
    code: Annotated[str | None, typer.Argument(help="one dossier code; all when absent")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Verify every dossier's hash chain and each event against the workflow's history."""

    async def run() -> audit_ops.VerifyReport:
        config = settings()
        await migrate(config.database_url)
        client = await _client(config)
        with _progress() as progress:
            task = progress.add_task("verifying", total=None)
            async with engine_for(config.database_url).connect() as conn:
                return await audit_ops.verify(
                    conn,
                    client,
                    code,
                    progress=lambda c: progress.update(task, description=f"verified {c}"),
                )

    report = asyncio.run(run())
    if as_json:
        console.print_json(report.model_dump_json())
    elif report.broken is None:
        console.print(f"audit: {report.dossiers} dossiers and {report.events} events verified")
    else:
        broken = report.broken
        errors.print(
            f"audit: BROKEN at dossier {broken.dossier_code}, event {broken.seq}: {broken.reason}"
        )
    if report.broken is not None:
        raise typer.Exit(1)


@app.command("rebuild")
def rebuild(
    as_json: Annotated[bool, typer.Option("--json", help="print the count as JSON")] = False,
) -> None:
    """Rebuild the `dossiers` and `tasks` tables from the Temporal histories."""

    async def run() -> int:
        config = settings()
        await migrate(config.database_url)
        client = await _client(config)
        with _progress() as progress:
            task = progress.add_task("rebuilding", total=None)
            async with engine_for(config.database_url, writer=True).begin() as conn:
                return await rebuild_ops.rebuild(
                    conn, client, lambda c: progress.update(task, description=f"rebuilt {c}")
                )

    count = asyncio.run(run())
    if as_json:
        console.print(json.dumps({"rebuilt": count}))
    else:
        console.print(f"rebuild: {count} dossiers")


# --- KPIs ---------------------------------------------------------------------------------------
Since = Annotated[datetime, typer.Option("--from", help="closed from (Hanoi time)")]
Until = Annotated[datetime, typer.Option("--to", help="closed before (Hanoi time)")]
AsJson = Annotated[bool, typer.Option("--json", help="print rows as JSON")]


def _hanoi(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=HANOI)


def _show(rows: Sequence[BaseModel], as_json: bool, title: str) -> None:
    if as_json:
        console.print_json(json.dumps([row.model_dump(mode="json") for row in rows]))
        return
    table = Table(title=title)
    if not rows:
        console.print(f"{title}: none")
        return
    for column in type(rows[0]).model_fields:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.model_dump().values()))
    console.print(table)


def _query(
    run: Callable[[AsyncConnection], Awaitable[Sequence[BaseModel]]],
) -> Sequence[BaseModel]:
    async def main() -> Sequence[BaseModel]:
        config = settings()
        await migrate(config.database_url)
        async with engine_for(config.database_url).connect() as conn:
            return await run(conn)

    return asyncio.run(main())


@kpi_app.command("on-time")
def kpi_on_time(
    closed_from: Since,
    closed_to: Until,
    by: Annotated[
        GroupBy, typer.Option(help="receiving_unit, competent_unit or procedure_code")
    ] = "competent_unit",
    key: Annotated[str | None, typer.Option(help="one unit or procedure")] = None,
    as_json: AsJson = False,
) -> None:
    """On-time ratio of the dossiers closed in a window, per unit or procedure."""
    rows = _query(
        lambda conn: kpis.on_time_ratio(
            conn,
            by=by,
            closed_from=_hanoi(closed_from),
            closed_to=_hanoi(closed_to),
            unit_or_procedure=key,
        )
    )
    _show(rows, as_json, f"on time per {by}")


@kpi_app.command("period")
def kpi_period(
    closed_from: Since,
    closed_to: Until,
    period: Annotated[Period, typer.Option(help="day or month")] = "month",
    unit: Annotated[str | None, typer.Option(help="one receiving unit")] = None,
    as_json: AsJson = False,
) -> None:
    """On-time ratio per Hanoi day or month."""
    rows = _query(
        lambda conn: kpis.on_time_by_period(
            conn,
            period=period,
            closed_from=_hanoi(closed_from),
            closed_to=_hanoi(closed_to),
            receiving_unit=unit,
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
    rows = _query(lambda conn: kpis.past_due(conn, now=now, unit=unit, limit=limit))
    _show(rows, as_json, "past due")


@kpi_app.command("open-tasks")
def kpi_open_tasks(
    unit: Annotated[str | None, typer.Option(help="one unit")] = None,
    as_json: AsJson = False,
) -> None:
    """Open officer tasks per unit and role."""
    rows = _query(lambda conn: kpis.open_tasks(conn, unit=unit))
    _show(rows, as_json, "open tasks")


@kpi_app.command("inbox")
def kpi_inbox(
    unit: Annotated[str, typer.Option(help="the unit")],
    role: Annotated[str | None, typer.Option(help="one role")] = None,
    limit: int = 100,
    as_json: AsJson = False,
) -> None:
    """A unit's open tasks, the earliest due first."""
    rows = _query(lambda conn: kpis.inbox(conn, unit=unit, role=role, limit=limit))
    _show(rows, as_json, f"inbox of {unit}")


def run() -> None:
    try:
        app()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if done.code is not None and not isinstance(done.code, int):
            print(done.code, file=sys.stderr)
    else:
        code = 0
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal runtime's threads can outlive the interpreter's shutdown and abort it
    # (SIGABRT) after the work is done: leave at once, with the command's own exit code.
    os._exit(code)


if __name__ == "__main__":
    run()
