"""`python -m ops stuck`: the dossiers that are not moving, and why.

A dossier (its Dossier workflow and, while the competent unit holds it, its lane child
`<code>.processing` or `<code>.certification`) is stuck when

- an activity fails again and again (a registry that is down answers every retry the same
  way): a pending activity at attempt 2 or more, or with a last failure; the row names the
  activity, the attempt count and the last failure's message;
- an activity is silent: started and not heard of (no answer, no heartbeat) for longer than
  any call of the engine takes, as when its worker died with the task (it would wait out its
  start-to-close timeout), or scheduled and taken by no worker (nobody serves its lane);
- its workflow task fails (non-determinism after a deploy, a bug): a pending workflow task
  at attempt 2 or more; the message is the last `WorkflowTaskFailed` event's;
- a human step is past due: an open task of the read model (`tasks`) whose due time has
  passed, for a dossier still running;
- a closed dossier is not archived a quarter of the namespace's retention after it closed:
  its record is at risk once Temporal deletes the history (the archiver is down, or its
  schedule is gone);
- a message of its outbox is undelivered: refused by the portal or the notify service (the
  row keeps the reason), given up (a webhook receiver down for a day), or still failing
  UNDELIVERED_AFTER after the step that wrote it.

Running dossiers come from a visibility query on the search attributes (`DossierProcedure`,
`ReceivingUnit`/`CompetentUnit`, `DossierLane`, `StartTime` for the age); each is then
described, a bounded number at a time.
"""

from __future__ import annotations

import asyncio
import re
import textwrap
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

import typer
from pydantic import BaseModel, ConfigDict, Field
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.api.enums.v1 import EventType, PendingActivityState, WorkflowTaskFailedCause
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.exceptions import ApplicationError

from bootstrap import connect
from config import settings
from domain import lanes
from domain.calendar import HANOI
from ops.cli import AsJson, bar, console, fail, print_json
from ops.temporal import (
    DESCRIBE_CONCURRENCY,
    Progressed,
    describe_if_exists,
    for_each,
    history_tail,
    running_dossiers,
    running_dossiers_query,
)
from schemas.statuses import Stage
from store import archive, outbox, views
from store.db import engine_for
from store.migrate import migrate

# The server replaces a retried activity's failure over its size limit
# (`limit.mutableStateActivityFailureSize.error`, 4 KiB by default) with this one, keeping a
# truncated copy of the original as its cause.
FAILURE_OVER_LIMIT = "Failure exceeds size limit."
# Registry calls answer in seconds and signing heartbeats while it waits for the signer: an
# attempt silent this long has lost its worker, or no worker serves its lane.
SILENT_AFTER = timedelta(minutes=2)
ENCODED = "Encoded failure"


class StuckKind(StrEnum):
    ACTIVITY = "activity"
    WORKFLOW_TASK = "workflow_task"
    HUMAN_TASK = "human_task"
    UNARCHIVED = "unarchived"
    UNDELIVERED = "undelivered"


# A closed dossier must be in the archive well before the retention deletes its history.
UNARCHIVED_AFTER_SHARE_OF_RETENTION = 4
# A portal sync, notice or webhook still failing this long after its step: the drainer or its
# destination needs a look.
UNDELIVERED_AFTER = timedelta(minutes=15)


class StuckRow(BaseModel):
    """One reason a dossier is not moving."""

    model_config = ConfigDict(frozen=True)

    code: str
    workflow_id: str = Field(description="the dossier workflow or its lane child")
    kind: StuckKind
    activity: str | None = Field(
        default=None, description="activity type, or the awaited step of a human task"
    )
    attempts: int | None = None
    last_error: str | None = None
    since: datetime | None = Field(
        default=None,
        description="activity: first scheduled; workflow task: first failed; task: due",
    )
    # What `ops retry` needs to target the activity; not part of the listing.
    run_id: str | None = Field(default=None, exclude=True)
    activity_id: str | None = Field(default=None, exclude=True)


class Filters(BaseModel):
    model_config = ConfigDict(frozen=True)

    unit: str | None = None
    procedure: str | None = None
    lane: str | None = None
    older_than: timedelta | None = None


# --- which dossiers ---------------------------------------------------------------------------
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:-]+$")
_DURATION = re.compile(r"(\d+)\s*([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_age(text: str) -> timedelta:
    """`2h`, `30m`, `1d12h`, `90s` as a duration."""
    compact = text.replace(" ", "").lower()
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r}: expected a duration such as 2h, 30m, 1d12h or 90s")
    age = timedelta()
    for number, unit in parts:
        age += timedelta(**{_UNITS[unit]: int(number)})
    return age


def _quoted(name: str, value: str) -> str:
    if not _SAFE_VALUE.match(value):
        raise ValueError(f"{name}: {value!r} is not a unit, procedure or lane code")
    return f"'{value}'"


def visibility_query(filters: Filters, now: datetime) -> str:
    """The running dossiers the filters select, as a Temporal list filter."""
    clauses: list[str] = []
    if filters.procedure:
        clauses.append(f"DossierProcedure = {_quoted('--procedure', filters.procedure)}")
    if filters.unit:
        unit = _quoted("--unit", filters.unit)
        clauses.append(f"(ReceivingUnit = {unit} OR CompetentUnit = {unit})")
    if filters.lane:
        clauses.append(f"DossierLane = {_quoted('--lane', filters.lane)}")
    if filters.older_than is not None:
        cutoff = (now - filters.older_than).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        clauses.append(f"StartTime < '{cutoff}'")
    return running_dossiers_query(" AND ".join(clauses) or None)


# --- why each one is stuck --------------------------------------------------------------------
async def failure_text(client: Client, failure: Failure) -> str:
    """A failure's message as the workers wrote it: decoded with the project's converter
    (failure messages travel encrypted), the application error type in front."""
    copy = Failure()
    copy.CopyFrom(failure)
    try:
        error: BaseException = await client.data_converter.decode_failure(copy)
    except Exception:  # a payload this converter cannot open (another key, say)
        return failure.message
    if str(getattr(error, "message", "")) == FAILURE_OVER_LIMIT and error.__cause__ is not None:
        inner = error.__cause__
        message = str(getattr(inner, "message", "") or "")
        kind = inner.type if isinstance(inner, ApplicationError) else None
        if not message or message == ENCODED:
            return (
                f"{kind or type(inner).__name__}: message dropped by the server (the failure "
                "was over its size limit for a retried activity's failure)"
            )
        return f"{kind}: {message}" if kind else message
    message = str(getattr(error, "message", "") or error)
    if isinstance(error, ApplicationError) and error.type:
        return f"{error.type}: {message}"
    return message


async def _first_scheduled(client: Client, workflow_id: str, run_id: str) -> dict[str, datetime]:
    """When each activity of the run was first scheduled (retries add no events)."""
    scheduled: dict[str, datetime] = {}
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activity_id = event.activity_task_scheduled_event_attributes.activity_id
            scheduled[activity_id] = event.event_time.ToDatetime(tzinfo=UTC)
    return scheduled


def silence(activity: PendingActivityInfo, now: datetime) -> str | None:
    """Why a pending activity that has not failed is not moving, if it is not."""
    if activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
        heard = activity.last_started_time.ToDatetime(tzinfo=UTC)
        if activity.HasField("last_heartbeat_time"):
            heard = max(heard, activity.last_heartbeat_time.ToDatetime(tzinfo=UTC))
        silent = now - heard
        if silent > SILENT_AFTER:
            worker = activity.last_worker_identity or "unknown"
            return (
                f"attempt {activity.attempt} silent for {_minutes(silent)} (no answer, no "
                f"heartbeat; expected within {_minutes(SILENT_AFTER)}); its worker {worker} "
                "may be gone"
            )
    elif activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED:
        waiting = now - activity.scheduled_time.ToDatetime(tzinfo=UTC)
        if activity.HasField("scheduled_time") and waiting > SILENT_AFTER:
            return f"taken by no worker for {_minutes(waiting)}: is a worker serving its lane?"
    return None


def _minutes(span: timedelta) -> str:
    return f"{span.total_seconds() / 60:.0f} min"


async def workflow_problems(
    client: Client, code: str, description: WorkflowExecutionDescription, now: datetime
) -> list[StuckRow]:
    """Failing or silent activities and a failing workflow task of one workflow (dossier or
    lane)."""
    raw = description.raw_description
    workflow_id, run_id = description.id, description.run_id
    rows: list[StuckRow] = []
    held: list[tuple[PendingActivityInfo, str | None]] = []
    for activity in raw.pending_activities:
        if activity.attempt >= 2 or activity.HasField("last_failure"):
            held.append((activity, None))
        elif (why := silence(activity, now)) is not None:
            held.append((activity, why))
    if held:
        first_scheduled = await _first_scheduled(client, workflow_id, run_id)
        for activity, why in held:
            last_error = (
                await failure_text(client, activity.last_failure)
                if activity.HasField("last_failure")
                else why
            )
            rows.append(
                StuckRow(
                    code=code,
                    workflow_id=workflow_id,
                    kind=StuckKind.ACTIVITY,
                    activity=activity.activity_type.name,
                    attempts=activity.attempt,
                    last_error=last_error,
                    since=first_scheduled.get(activity.activity_id),
                    run_id=run_id,
                    activity_id=activity.activity_id,
                )
            )
    task = raw.pending_workflow_task
    if raw.HasField("pending_workflow_task") and task.attempt > 1:
        task_error: str | None = None
        since = (
            task.original_scheduled_time.ToDatetime(tzinfo=UTC)
            if task.HasField("original_scheduled_time")
            else None
        )
        for event in await history_tail(client, workflow_id, run_id):
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                attributes = event.workflow_task_failed_event_attributes
                cause = WorkflowTaskFailedCause.Name(attributes.cause).removeprefix(
                    "WORKFLOW_TASK_FAILED_CAUSE_"
                )
                task_error = f"{cause}: {await failure_text(client, attributes.failure)}"
                since = since or event.event_time.ToDatetime(tzinfo=UTC)
                break
        rows.append(
            StuckRow(
                code=code,
                workflow_id=workflow_id,
                kind=StuckKind.WORKFLOW_TASK,
                attempts=task.attempt,
                last_error=task_error,
                since=since,
                run_id=run_id,
            )
        )
    return rows


async def inspect_dossier(client: Client, code: str, now: datetime | None = None) -> list[StuckRow]:
    """What holds one dossier up in Temporal: its workflow and its running lane, if any."""
    now = now or datetime.now(UTC)
    parent = await describe_if_exists(client, code)
    if parent is None:
        return []
    rows = await workflow_problems(client, code, parent, now)
    for child in parent.raw_description.pending_children:
        lane = await describe_if_exists(client, child.workflow_id)
        if lane is not None:
            rows += await workflow_problems(client, code, lane, now)
    return rows


async def inspect_all(
    client: Client,
    codes: Sequence[str],
    *,
    concurrency: int = DESCRIBE_CONCURRENCY,
    progress: Progressed | None = None,
    now: datetime | None = None,
) -> dict[str, list[StuckRow]]:
    """`inspect_dossier` for each code, at most `concurrency` at a time."""
    found = await for_each(
        codes,
        lambda code: inspect_dossier(client, code, now),
        concurrency=concurrency,
        progress=progress,
    )
    return dict(zip(codes, found, strict=True))


async def _held_in_processing(conn: AsyncConnection, code: str, lane: str) -> str:
    """The workflow that takes a processing task: its lane child's, or the dossier's own when
    the lane runs inside it (as its last recorded step says)."""
    recorded = await views.snapshot(conn, code)
    if recorded is not None and recorded.view.handled_by == code:
        return code
    return lanes.lane_workflow_id(code, lane)


async def past_due_tasks(
    conn: AsyncConnection, filters: Filters, now: datetime, running: Iterable[str] | None = None
) -> list[StuckRow]:
    """Open officer tasks past their due time, for open dossiers (the read model)."""
    past_due = await views.past_due_tasks(
        conn,
        now=now,
        procedure=filters.procedure or None,
        unit=filters.unit or None,
        lane=filters.lane or None,
    )
    keep = set(running) if running is not None else None
    rows: list[StuckRow] = []
    for found in past_due:
        task, dossier = found.task, found.dossier
        if keep is not None and task.dossier_code not in keep:
            continue
        assert task.due_at is not None  # past due: it has a due time
        held_by = (
            await _held_in_processing(conn, dossier.code, dossier.lane)
            if dossier.stage is Stage.PROCESSING
            else dossier.code
        )
        claimed = f", claimed by {task.claimed_by}" if task.claimed_by else ""
        rows.append(
            StuckRow(
                code=task.dossier_code,
                workflow_id=held_by,
                kind=StuckKind.HUMAN_TASK,
                activity=task.action,
                last_error=(
                    f"awaits {task.role} at {task.unit}, due "
                    f"{task.due_at.astimezone(HANOI):%Y-%m-%d %H:%M}{claimed}"
                ),
                since=task.due_at,
            )
        )
    return rows


async def unarchived(conn: AsyncConnection, now: datetime, after: timedelta) -> list[StuckRow]:
    """Dossiers closed longer than `after` ago whose history the archive does not hold."""
    return [
        StuckRow(
            code=code,
            workflow_id=code,
            kind=StuckKind.UNARCHIVED,
            last_error=f"closed, history not archived after {_minutes(now - closed_at)}",
            since=closed_at,
        )
        for code, closed_at in await archive.unarchived_before(conn, now - after)
    ]


async def undelivered(conn: AsyncConnection, now: datetime, after: timedelta) -> list[StuckRow]:
    """Outbox messages refused, given up, or failing longer than `after`."""
    return [
        StuckRow(
            code=message.dossier_code,
            workflow_id=message.dossier_code,
            kind=StuckKind.UNDELIVERED,
            # The destination, short: a subscription by the start of its id.
            activity=message.destination[: len(outbox.WEBHOOK_PREFIX) + 8],
            attempts=message.attempts,
            last_error=f"{message.state.value}, step {message.sequence}: "
            f"{message.last_error or 'no answer yet'}",
            since=message.created_at,
        )
        for message in await outbox.undelivered(conn, now, after)
    ]


async def find_stuck(
    client: Client,
    conn: AsyncConnection,
    filters: Filters,
    *,
    now: datetime | None = None,
    unarchived_after: timedelta | None = None,
    undelivered_after: timedelta | None = UNDELIVERED_AFTER,
    concurrency: int = DESCRIBE_CONCURRENCY,
    progress: Progressed | None = None,
) -> list[StuckRow]:
    """Every stuck dossier the filters select, with why, ordered by code."""
    now = now or datetime.now(UTC)
    codes = await running_dossiers(client, visibility_query(filters, now))
    found = await inspect_all(client, codes, concurrency=concurrency, progress=progress, now=now)
    rows = [row for code in codes for row in found[code]]
    rows += await past_due_tasks(conn, filters, now, codes)
    if unarchived_after is not None:
        rows += await unarchived(conn, now, unarchived_after)
    if undelivered_after is not None:
        rows += await undelivered(conn, now, undelivered_after)
    order = {kind: index for index, kind in enumerate(StuckKind)}
    return sorted(rows, key=lambda r: (r.code, r.workflow_id, order[r.kind], r.activity or ""))


# --- the command --------------------------------------------------------------------------------
def _when(value: datetime | None) -> str:
    return "" if value is None else f"{value.astimezone(HANOI):%Y-%m-%d %H:%M:%S}"


# Below this many columns the table would fold every cell: one entry of two lines per row.
WIDE_TABLE = 120


def show_narrow(rows: Sequence[StuckRow]) -> None:
    """An 80-column terminal (the operator's laptop over SSH at 2 a.m.): the dossier, what is
    stuck and since when on one line; which workflow and why on the next, wrapped."""
    console.print(f"stuck: {len({r.code for r in rows})} dossiers", highlight=False)
    for row in rows:
        attempts = f" x{row.attempts}" if row.attempts else ""
        since = f"  since {row.since.astimezone(HANOI):%m-%d %H:%M}" if row.since else ""
        step = f" {row.activity}" if row.activity else ""
        console.print(f"{row.code}  {row.kind.value}{step}{attempts}{since}", highlight=False)
        where = row.workflow_id.removeprefix(row.code) or "dossier"
        why = f"{where.lstrip('.')}: {row.last_error or ''}".rstrip(": ")
        for line in textwrap.wrap(why, width=max(40, console.width - 4)):
            console.print(f"    {line}", highlight=False, markup=False)


def show_stuck(rows: Sequence[StuckRow], as_json: bool) -> None:
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("stuck: none")
        return
    if console.width < WIDE_TABLE:
        show_narrow(rows)
        return
    table = Table(title=f"stuck: {len({r.code for r in rows})} dossiers", show_lines=False)
    for column in ("code", "workflow", "kind", "activity / step", "attempts", "last error"):
        table.add_column(column, overflow="fold")
    table.add_column("since (Hanoi)", no_wrap=True)
    for row in rows:
        table.add_row(
            row.code,
            row.workflow_id,
            row.kind.value,
            row.activity or "",
            "" if row.attempts is None else str(row.attempts),
            row.last_error or "",
            _when(row.since),
        )
    console.print(table)


def _age(value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_age(value)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--older-than") from err


def stuck_command(
    unit: Annotated[
        str | None, typer.Option(help="receiving or competent unit, e.g. hoan-kiem")
    ] = None,
    procedure: Annotated[str | None, typer.Option(help="procedure code, e.g. 1.001193")] = None,
    lane: Annotated[
        str | None, typer.Option(help="lane: certification, ward-processing, city-processing")
    ] = None,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="filed at least this long ago: 2h, 1d")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """List stuck dossiers, each with why.

    A failing activity (attempts, last error), a failing workflow task, or a human step past
    due; dossier workflows and their lanes; closed dossiers not archived; portal syncs,
    notices and webhooks refused or failing (undelivered).
    """
    try:
        filters = Filters(unit=unit, procedure=procedure, lane=lane, older_than=_age(older_than))
        visibility_query(filters, datetime.now(UTC))  # reject bad values before connecting
    except ValueError as err:
        raise fail(f"ops stuck: {err}", 2) from err

    async def run() -> list[StuckRow]:
        config = settings()
        await migrate(config.database_url)
        client = await connect(config)
        with bar() as progress:
            task = progress.add_task("describing dossiers", total=None)
            async with engine_for(config.database_url).connect() as conn:
                return await find_stuck(
                    client,
                    conn,
                    filters,
                    unarchived_after=config.temporal_retention
                    / UNARCHIVED_AFTER_SHARE_OF_RETENTION,
                    progress=lambda done, total: progress.update(task, completed=done, total=total),
                )

    show_stuck(asyncio.run(run()), as_json)
