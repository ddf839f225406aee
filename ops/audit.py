"""`python -m ops audit`: the tamper-evident audit log from the operator's side.

Verification checks every dossier's hash chain, and each event against the workflow history
that produced it (the projection's receipt recorded in that history). Operator actions (retry,
reset) append their own events to the dossier's chain, keyed `operator:<uuid>`: no history
records those, so verification checks them by the chain alone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated

import typer
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.client import Client

from auditlog.verify import Verdict
from bootstrap import connect
from config import settings
from ops.auditlog import bundle_command, checkpoint_command, log_lines
from ops.cli import AsJson, console, errors, print_json, spinner
from ops.temporal import HistorySource, run_history
from schemas.exchanges import ProjectionReceipt
from store import audit, auditlog
from store.audit import OPERATOR_KEY_PREFIX, AuditEvent, ChainBreak
from store.db import engine_for
from store.migrate import migrate
from store.tables import audit_events

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


# --- verification -------------------------------------------------------------------------------
class VerifyReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    dossiers: int
    events: int
    # Dossiers whose history Temporal no longer holds, checked against the archive instead.
    checked_against_archive: int = 0
    breaks: list[ChainBreak] = []  # one per broken dossier, the first event that does not hold

    @property
    def broken(self) -> ChainBreak | None:
        return self.breaks[0] if self.breaks else None


async def dossier_codes(conn: AsyncConnection, code: str | None) -> AsyncIterator[str]:
    if code is not None:
        yield code
        return
    result = await conn.stream(
        select(audit_events.c.dossier_code).distinct().order_by(audit_events.c.dossier_code)
    )
    async for row in result:
        yield str(row[0])


async def receipts_in_history(
    client: Client, database_url: str, code: str, run_id: str
) -> tuple[dict[str, ProjectionReceipt], HistorySource] | None:
    """The projection receipts a run's history recorded, by event key, and where the history
    was read: Temporal, or the archive once retention has deleted it there. None when
    neither holds the run."""
    found_run = await run_history(client, database_url, code, run_id)
    if found_run is None:
        return None
    converter = client.data_converter
    found: dict[str, ProjectionReceipt] = {}
    for event in found_run.history.events:
        if not event.HasField("marker_recorded_event_attributes"):
            continue
        marker = event.marker_recorded_event_attributes
        data = marker.details.get("data")
        result = marker.details.get("result")
        if data is None or result is None or not data.payloads or not result.payloads:
            continue
        if json.loads(data.payloads[0].data).get("activity_type") != "project":
            continue
        [receipt] = await converter.decode(result.payloads, [ProjectionReceipt])
        found[receipt.event_key] = receipt
    return found, found_run.source


async def verify_dossier(
    conn: AsyncConnection, client: Client, database_url: str, code: str
) -> tuple[int, ChainBreak | None, bool]:
    """The dossier's event count, its first break, and whether any of its histories was read
    from the archive (Temporal no longer holding it)."""
    chain = await audit.events(conn, code)
    if not chain:
        return (
            0,
            ChainBreak(dossier_code=code, seq=0, reason="no audit events for this dossier"),
            False,
        )
    broken = audit.first_break(chain)
    if broken is not None:
        return len(chain), broken, False
    histories: dict[str, dict[str, ProjectionReceipt]] = {}
    archived = False
    for event in chain:
        if event.event_key.startswith(OPERATOR_KEY_PREFIX):
            continue
        run_id = event.event_key.split(":", 1)[0]
        if run_id not in histories:
            found = await receipts_in_history(client, database_url, code, run_id)
            if found is None:
                return (
                    len(chain),
                    _break(event, f"workflow run {run_id} is neither in Temporal nor archived"),
                    archived,
                )
            histories[run_id], source = found
            archived = archived or source is HistorySource.ARCHIVE
        receipt = histories[run_id].get(event.event_key)
        if receipt is None:
            return len(chain), _break(event, "event is not in the workflow's history"), archived
        if receipt.payload_digest != event.payload_digest or receipt.seq != event.seq:
            return (
                len(chain),
                _break(event, "event differs from the one the history recorded"),
                archived,
            )
    return len(chain), None, archived


def _break(event: AuditEvent, reason: str) -> ChainBreak:
    return ChainBreak(dossier_code=event.dossier_code, seq=event.seq, reason=reason)


async def verify(
    conn: AsyncConnection,
    client: Client,
    database_url: str,
    code: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> VerifyReport:
    dossiers = events = from_archive = 0
    breaks: list[ChainBreak] = []
    async for dossier in dossier_codes(conn, code):
        count, broken, archived = await verify_dossier(conn, client, database_url, dossier)
        dossiers += 1
        events += count
        from_archive += archived
        if progress is not None:
            progress(dossier)
        if broken is not None:
            breaks.append(broken)
    return VerifyReport(
        dossiers=dossiers, events=events, checked_against_archive=from_archive, breaks=breaks
    )


# --- the command --------------------------------------------------------------------------------
@audit_app.command("verify")
def verify_command(
    code: Annotated[str | None, typer.Argument(help="one dossier code; all when absent")] = None,
    as_json: AsJson = False,
) -> None:
    """Verify every dossier's hash chain and each event against the workflow's history, and
    the events against the global log and its signed checkpoints."""

    async def run() -> tuple[VerifyReport, Verdict]:
        config = settings()
        await migrate(config.database_url)
        client = await connect(config)
        with spinner() as progress:
            task = progress.add_task("verifying", total=None)
            async with engine_for(config.database_url).connect() as conn:
                report = await verify(
                    conn,
                    client,
                    config.database_url,
                    code,
                    progress=lambda c: progress.update(task, description=f"verified {c}"),
                )
                progress.update(task, description="checking the global log")
                return report, await auditlog.check(conn, code)

    report, log = asyncio.run(run())
    held, log_broken = log_lines(log)
    if as_json:
        print_json(AuditVerdict(chains=report, log=LogVerdict.of(log)))
    else:
        for broken in report.breaks:
            errors.print(
                f"audit: BROKEN at dossier {broken.dossier_code}, event {broken.seq}: "
                f"{broken.reason}",
                markup=False,
                highlight=False,
            )
        for line in log_broken:
            errors.print(line, markup=False, highlight=False)
        if report.breaks:
            console.print(
                f"audit: {report.dossiers} dossiers and {report.events} events checked, "
                f"{len(report.breaks)} dossiers broken"
            )
        else:
            console.print(f"audit: {report.dossiers} dossiers and {report.events} events verified")
        if report.checked_against_archive:
            console.print(
                f"audit: {report.checked_against_archive} dossiers' histories no longer in "
                "Temporal, checked against the archive"
            )
        for line in held:
            console.print(line, markup=False, highlight=False)
    if report.breaks or log_broken:
        raise typer.Exit(1)


class LogVerdict(BaseModel):
    model_config = ConfigDict(frozen=True)

    holds: bool
    events: int
    logged: int
    not_yet_checkpointed: int
    tree_size: int
    checkpoints: int
    key_ids: list[str]
    broken_dossiers: list[str]
    findings: list[str]

    @classmethod
    def of(cls, verdict: Verdict) -> LogVerdict:
        return cls(
            holds=verdict.holds,
            events=verdict.events,
            logged=verdict.logged,
            not_yet_checkpointed=verdict.unlogged,
            tree_size=verdict.tree_size,
            checkpoints=verdict.checkpoints,
            key_ids=verdict.key_ids,
            broken_dossiers=verdict.broken_dossiers(),
            findings=[f.line() for f in verdict.findings],
        )


class AuditVerdict(BaseModel):
    model_config = ConfigDict(frozen=True)

    chains: VerifyReport
    log: LogVerdict


audit_app.command("checkpoint")(checkpoint_command)
audit_app.command("bundle")(bundle_command)
