"""`python -m ops archive`: the record that outlives Temporal.

    python -m ops archive status     the namespace's retention, the archive, what waits for it
    python -m ops archive run        an archive pass now (the schedule runs one every
                                     ARCHIVE_EVERY), waited for

Temporal deletes a closed workflow's history when the namespace's retention (TEMPORAL_RETENTION)
ends; by then the archiver has copied it into the engine's database, from where `ops export`,
`ops replay --dossier`, `ops signatures verify` and `ops audit verify` read it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import typer
from pydantic import AwareDatetime, BaseModel, ConfigDict

from bootstrap import connect, namespace_retention
from config import settings
from domain import lanes
from ops.cli import AsJson, console, fail, print_json, spinner
from schemas.exchanges import ArchivePass
from store import archive
from store.db import engine_for
from store.migrate import migrate
from workflows.archive import SCHEDULE_ID as ARCHIVE_SCHEDULE_ID
from workflows.archive import ArchiveWorkflow

archive_app = typer.Typer(
    help="The archive of closed dossiers' histories, and the retention.", no_args_is_help=True
)


class ArchiveStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    namespace: str
    retention: timedelta
    archive_every: timedelta
    archived_runs: int
    archived_dossiers: int
    pending_dossiers: int
    oldest_pending_closed_at: AwareDatetime | None
    next_pass_at: AwareDatetime | None


async def archive_status() -> ArchiveStatus:
    config = settings()
    await migrate(config.database_url)
    client = await connect(config)
    retention = await namespace_retention(client)
    try:
        described = await client.get_schedule_handle(ARCHIVE_SCHEDULE_ID).describe()
        upcoming = described.info.next_action_times
        next_pass = upcoming[0] if upcoming else None
    except Exception:  # no schedule: nobody serves the archive queue yet
        next_pass = None
    async with engine_for(config.database_url).connect() as conn:
        kept = await archive.counts(conn)
        waiting = await archive.pending(conn)
    return ArchiveStatus(
        namespace=config.temporal_namespace,
        retention=retention,
        archive_every=config.archive_every,
        archived_runs=kept.runs,
        archived_dossiers=kept.dossiers,
        pending_dossiers=waiting.dossiers,
        oldest_pending_closed_at=waiting.oldest_closed_at,
        next_pass_at=next_pass,
    )


def _span(value: timedelta) -> str:
    seconds = value.total_seconds()
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.3g} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.3g} hours"
    return f"{seconds / 60:.3g} minutes"


@archive_app.command("status")
def status_command(as_json: AsJson = False) -> None:
    """How long Temporal keeps closed histories, and how far the archive is behind."""
    status = asyncio.run(archive_status())
    if as_json:
        print_json(status)
        return
    now = datetime.now(UTC)
    console.print(
        f"retention: Temporal keeps closed histories of namespace {status.namespace} for "
        f"{_span(status.retention)}",
        highlight=False,
    )
    console.print(
        f"archive: {status.archived_runs} runs of {status.archived_dossiers} dossiers; a pass "
        f"every {_span(status.archive_every)}",
        highlight=False,
    )
    if status.next_pass_at is not None:
        console.print(f"next pass: {status.next_pass_at.isoformat()}", highlight=False)
    oldest = status.oldest_pending_closed_at
    lag = "" if oldest is None else f", the oldest closed {_span(now - oldest)} ago"
    console.print(
        f"waiting: {status.pending_dossiers} closed dossiers not archived yet{lag}", highlight=False
    )


@archive_app.command("run")
def run_command(as_json: AsJson = False) -> None:
    """Run an archive pass now, on the archive queue's workers, and wait for it."""

    async def run() -> ArchivePass:
        config = settings()
        client = await connect(config)
        with spinner() as progress:
            progress.add_task("archiving closed dossiers", total=None)
            # Its own id: a pass the schedule is running goes on beside it, the runs it
            # copies are skipped by the other.
            return await client.execute_workflow(
                ArchiveWorkflow.run,
                id=f"{ARCHIVE_SCHEDULE_ID}-by-hand-{datetime.now(UTC):%Y%m%dT%H%M%S}",
                task_queue=lanes.ARCHIVE,
            )

    try:
        done = asyncio.run(run())
    except Exception as err:
        raise fail(f"archive: the pass failed: {err}", 1) from err
    if as_json:
        print_json(done)
        return
    console.print(
        f"archive: {done.archived} runs archived ({done.already_archived} already were); "
        f"{done.pending_dossiers} closed dossiers waiting",
        highlight=False,
    )
