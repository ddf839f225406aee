"""`python -m ops retry` and `python -m ops reset`: get stuck dossiers moving again.

Each is an audited operator action: one `operator_retry` / `operator_reset` event in the
dossier's audit chain (`event_key="operator:<uuid>"`, actor = the operator), whose payload
says who, why, what was targeted and the dossier's state before and after (status, run ids
of the dossier workflow and its lane). The state before comes from the dossier's `status`
query; the state after from the server (the `DossierStatus` search attribute the workflow
keeps equal to that status, and the current runs), read inside the transaction that holds
the audit log from before the Temporal call: so the event precedes every step the action
sets going, and a call the server refuses leaves no event. A batch retry is the exception:
its events are written once the batch has run.

retry
    Temporal's activity reset on every failing activity of the dossier (in the dossier
    workflow or its lane child): the attempt count starts again at 1 and the next attempt is
    scheduled at once, instead of after the backoff a long outage has grown (up to a minute).
    Heartbeat details are dropped (these calls keep no progress); activity options an
    operator changed are kept. By query, one Temporal batch operation per activity type,
    paced by `--rate`.

reset --to STEP
    Temporal's reset of the workflow that holds STEP to the workflow task just before it:
    STEP and everything after it run again (signals and updates after the point are not
    replayed: each human step is asked for again). By query, one reset per dossier paced by
    `--rate` (a batch reset can only aim every workflow at the same kind of point, and each
    dossier's point is its own event). Resetting the dossier workflow before its lane started
    (intake) terminates the lane still running: the new run starts its own.

Where each step resets to (`WFTC` = a WorkflowTaskCompleted event; resetting to it drops it
and everything after, and runs that workflow task again):

step       workflow  reset point
intake     dossier   its first WFTC (the identity check is scheduled again)
appraisal  lane      the WFTC right before the first `consult_registry` scheduled; the lane's
                     first WFTC when it consults no registry (certification)
approval   lane      the WFTC right before the leader's decision (`approve`, `refuse`,
                     `certify`) was accepted; before any decision, the first WFTC after the
                     `appraise` update was accepted (a certification lane: its first WFTC)
signing    lane      the WFTC right before the first `issue_document` scheduled after the
                     decision (an apology slip issued before it does not count)
return     dossier   the first WFTC after the lane child completed (with a decision)

A step the dossier has not reached is refused with the reason. A lane step is possible only
while the lane runs: once its result is back at the receiving unit the lane has completed,
and a new run of it could not report to the dossier any more (reset to `return` or `intake`
instead). A closed dossier is not reopened.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from temporalio.api.batch.v1 import BatchOperationResetActivities
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import BatchOperationState, EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import (
    DescribeBatchOperationRequest,
    ResetActivityRequest,
    StartBatchOperationRequest,
)
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from config import settings
from ops.reset import (
    DossierState,
    WorkflowBusy,
    append_operator_event,
    hold_audit_log,
    reset_dossier,
    server_state,
    snapshot,
    until_no_task_running,
)
from ops.stuck import (
    DESCRIBE_CONCURRENCY,
    Progressed,
    StuckKind,
    StuckRow,
    connect,
    describe_if_exists,
    inspect_all,
    inspect_dossier,
    running_dossiers,
    running_dossiers_query,
)
from schemas.lanes import LaneResult
from schemas.lifecycle import DECISIONS
from schemas.statuses import Outcome
from store.db import writing
from store.migrate import migrate

console = Console()
errors = Console(stderr=True)

T = TypeVar("T")

DEFAULT_RATE = 5.0
RESET_ATTEMPTS = 3
IDLE_WAIT_SECONDS = 10.0
BATCH_POLL_SECONDS = 0.25


class Step(StrEnum):
    INTAKE = "intake"
    APPRAISAL = "appraisal"
    APPROVAL = "approval"
    SIGNING = "signing"
    RETURN = "return"


LANE_STEPS = frozenset({Step.APPRAISAL, Step.APPROVAL, Step.SIGNING})
CHILD_CLOSED = frozenset(
    {
        EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED,
        EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT,
        EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED,
    }
)


class OperatorError(ValueError):
    """A request refused before anything changed (the command exits 2)."""


class NotReached(OperatorError):
    """The dossier has not reached the step (or can no longer be reset to it)."""


def check_action(operator: str, reason: str) -> None:
    if not operator.strip():
        raise OperatorError("--operator: name the operator; the audit log records who acted")
    if not reason.strip():
        raise OperatorError("--reason: give a reason; the audit log records why")


# --- reset points ---------------------------------------------------------------------------------
class ResetPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    step: Step
    workflow_id: str
    run_id: str
    event_id: int
    note: str


def _wftc(events: Sequence[HistoryEvent]) -> list[int]:
    return [
        e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]


def _before(completed: Sequence[int], event_id: int) -> int | None:
    earlier = [c for c in completed if c < event_id]
    return earlier[-1] if earlier else None


def _after(completed: Sequence[int], event_id: int) -> int | None:
    return next((c for c in completed if c > event_id), None)


def _scheduled(events: Sequence[HistoryEvent], activity: str, after: int = 0) -> int | None:
    return next(
        (
            e.event_id
            for e in events
            if e.event_id > after
            and e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == activity
        ),
        None,
    )


def _accepted(events: Sequence[HistoryEvent]) -> list[tuple[int, str]]:
    return [
        (
            e.event_id,
            e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name,
        )
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]


async def _history(client: Client, workflow_id: str, run_id: str) -> list[HistoryEvent]:
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return list(history.events)


async def locate(client: Client, code: str, step: Step) -> ResetPoint:
    """Where resetting `code` to `step` goes: the workflow and its event (see the module's
    table). Raises NotReached with the reason when the dossier is not there."""
    parent = await describe_if_exists(client, code)
    if parent is None:
        raise OperatorError(f"dossier {code}: no such dossier workflow")
    if parent.status is WorkflowExecutionStatus.COMPLETED:
        raise NotReached(f"dossier {code} is closed; a reset does not reopen a closed dossier")
    events = await _history(client, code, parent.run_id)
    completed = _wftc(events)

    def point(workflow_id: str, run_id: str, event_id: int | None, note: str) -> ResetPoint:
        if event_id is None:
            raise NotReached(
                f"dossier {code} is entering {step.value} right now; try again in a moment"
            )
        return ResetPoint(
            code=code,
            step=step,
            workflow_id=workflow_id,
            run_id=run_id,
            event_id=event_id,
            note=note,
        )

    if step is Step.INTAKE:
        return point(
            code, parent.run_id, completed[0] if completed else None, "first workflow task"
        )

    if step is Step.RETURN:
        done = next(
            (
                e
                for e in events
                if e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED
            ),
            None,
        )
        if done is None:
            raise NotReached(
                f"dossier {code} has not reached return: its lane has not returned a result"
            )
        attributes = done.child_workflow_execution_completed_event_attributes
        try:
            [result] = await client.data_converter.decode(attributes.result.payloads, [LaneResult])
        except Exception:  # a result this converter cannot open: assume a decision
            result = None
        if isinstance(result, LaneResult) and result.outcome not in (
            Outcome.APPROVED,
            Outcome.REFUSED,
        ):
            raise NotReached(
                f"dossier {code} has no return step: its lane ended {result.outcome.value}"
            )
        return point(
            code,
            parent.run_id,
            _after(completed, done.event_id),
            f"after lane {attributes.workflow_execution.workflow_id} completed",
        )

    # A lane step: the lane child must be running.
    if parent.status is not WorkflowExecutionStatus.RUNNING:
        state = parent.status.name.lower() if parent.status else "not running"
        raise NotReached(f"dossier {code} is {state}; its lane is not running")
    started = next(
        (
            e
            for e in events
            if e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED
        ),
        None,
    )
    if started is None:
        raise NotReached(
            f"dossier {code} has not reached {step.value}: it is still at intake, no lane yet"
        )
    lane_id = started.child_workflow_execution_started_event_attributes.workflow_execution
    lane_id_text = lane_id.workflow_id
    if any(e.event_type in CHILD_CLOSED for e in events):
        raise NotReached(
            f"dossier {code}: lane {lane_id_text} has finished and its result is back at the "
            f"receiving unit, so {step.value} can no longer be reset on its own; reset to "
            "`return` (or `intake`) instead"
        )
    lane = await describe_if_exists(client, lane_id_text)
    if lane is None:
        raise NotReached(f"dossier {code}: lane {lane_id_text} not found")
    lane_events = await _history(client, lane_id_text, lane.run_id)
    lane_completed = _wftc(lane_events)
    certification = lane.workflow_type == "Certification"
    accepted = _accepted(lane_events)
    decision = next(((i, name) for i, name in accepted if name in DECISIONS), None)

    if step is Step.APPRAISAL:
        consult = _scheduled(lane_events, "consult_registry")
        if consult is not None:
            return point(
                lane_id_text,
                lane.run_id,
                _before(lane_completed, consult),
                "before the registries are consulted",
            )
        return point(
            lane_id_text,
            lane.run_id,
            lane_completed[0] if lane_completed else None,
            "first workflow task of the lane",
        )

    if step is Step.APPROVAL:
        if decision is not None:
            event_id, name = decision
            return point(
                lane_id_text,
                lane.run_id,
                _before(lane_completed, event_id),
                f"before `{name}` was accepted",
            )
        if certification:
            return point(
                lane_id_text,
                lane.run_id,
                lane_completed[0] if lane_completed else None,
                "first workflow task of the lane (awaiting certification)",
            )
        appraised = next((i for i, name in accepted if name == "appraise"), None)
        if appraised is None:
            raise NotReached(
                f"dossier {code} has not reached approval: lane {lane_id_text} awaits appraisal"
            )
        return point(
            lane_id_text,
            lane.run_id,
            _after(lane_completed, appraised),
            "after `appraise` was accepted",
        )

    # Signing: the result document issued after the decision.
    issued = _scheduled(lane_events, "issue_document", after=decision[0]) if decision else None
    if issued is None:
        raise NotReached(
            f"dossier {code} has not reached signing: lane {lane_id_text} has "
            + ("not issued its result yet" if decision else "no decision yet")
        )
    return point(
        lane_id_text,
        lane.run_id,
        _before(lane_completed, issued),
        "before the result document is issued",
    )


# --- results ------------------------------------------------------------------------------------
class RetryRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    workflow_id: str
    activity: str
    attempts: int | None
    last_error: str | None
    status_before: str | None = None
    status_after: str | None = None
    outcome: str


class ResetRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    workflow_id: str | None
    step: Step
    event_id: int | None
    run_id_before: str | None = None
    run_id_after: str | None = None
    status_before: str | None = None
    status_after: str | None = None
    outcome: str


ActionRow = TypeVar("ActionRow", RetryRow, ResetRow)


def _run_action(
    name: str,
    code: str | None,
    query: str | None,
    operator: str,
    reason: str,
    run: Callable[[], Coroutine[Any, Any, list[ActionRow]]],
    *,
    as_json: bool,
    dry_run: bool,
) -> None:
    """Check the arguments, run, show the rows; exit 2 on bad input, 1 when the server
    refused or any dossier failed."""
    try:
        _one_of(code, query, name)
        check_action(operator, reason)
        rows = asyncio.run(run())
    except OperatorError as err:
        raise _fail(name, err) from err
    except RPCError as err:  # the server refused: nothing of that call was done
        errors.print(f"ops {name}: Temporal refused: {err.message}", markup=False)
        raise typer.Exit(1) from err
    _show(rows, as_json, f"{name} (dry run)" if dry_run else name)
    if any(row.outcome.startswith("failed") for row in rows):
        raise typer.Exit(1)


class RetriedActivity(BaseModel):
    model_config = ConfigDict(frozen=True)

    workflow_id: str
    run_id: str | None
    activity_id: str | None
    activity_type: str | None
    attempts: int | None
    last_error: str | None


class OperatorRetry(BaseModel):
    """The audit payload of a retry."""

    model_config = ConfigDict(frozen=True)

    operator: str
    reason: str
    dossier_code: str
    activities: list[RetriedActivity]
    batch_job_id: str | None = None
    before: DossierState
    after: DossierState


def _retried(rows: Sequence[StuckRow]) -> list[RetriedActivity]:
    return [
        RetriedActivity(
            workflow_id=r.workflow_id,
            run_id=r.run_id,
            activity_id=r.activity_id,
            activity_type=r.activity,
            attempts=r.attempts,
            last_error=r.last_error,
        )
        for r in rows
    ]


def _retry_rows(
    rows: Sequence[StuckRow],
    outcome: str,
    before: DossierState | None = None,
    after: DossierState | None = None,
) -> list[RetryRow]:
    return [
        RetryRow(
            code=r.code,
            workflow_id=r.workflow_id,
            activity=f"{r.activity} #{r.activity_id}",
            attempts=r.attempts,
            last_error=r.last_error,
            status_before=before.status if before else None,
            status_after=after.status if after else None,
            outcome=outcome,
        )
        for r in rows
    ]


# --- retry ----------------------------------------------------------------------------------------
def failing_activities(rows: Sequence[StuckRow]) -> list[StuckRow]:
    return [r for r in rows if r.kind is StuckKind.ACTIVITY and r.activity_id]


def _nothing_to_retry(code: str, rows: Sequence[StuckRow]) -> str:
    task = next((r for r in rows if r.kind is StuckKind.WORKFLOW_TASK), None)
    if task is not None:
        return (
            f"dossier {code} has no failing activity; its workflow task fails on "
            f"{task.workflow_id} ({task.last_error}): deploy a fix, or reset it"
        )
    return f"dossier {code} has no failing activity to retry"


async def _reset_activity(client: Client, row: StuckRow, operator: str) -> None:
    await client.workflow_service.reset_activity(
        ResetActivityRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=row.workflow_id, run_id=row.run_id or ""),
            id=row.activity_id or "",
            identity=f"ops:{operator}",
            reset_heartbeat=True,
        )
    )


async def retry_dossier(
    client: Client,
    database_url: str,
    code: str,
    *,
    operator: str,
    reason: str,
    dry_run: bool = False,
) -> list[RetryRow]:
    """Retry every failing activity of one dossier now, as one audited operator action."""
    check_action(operator, reason)
    if await describe_if_exists(client, code) is None:
        raise OperatorError(f"dossier {code}: no such dossier workflow")
    found = await inspect_dossier(client, code)
    targets = failing_activities(found)
    if not targets:
        raise OperatorError(_nothing_to_retry(code, found))
    if dry_run:
        return _retry_rows(targets, "would retry")
    before = await snapshot(client, code)
    # One transaction around the reset and its event, the audit log held: the event comes
    # before any step the retried activity lets the dossier write.
    async with writing(database_url) as conn:
        await hold_audit_log(conn)
        for row in targets:
            await _reset_activity(client, row, operator)
        after = await server_state(client, code)
        await append_operator_event(
            conn,
            code=code,
            event_type="operator_retry",
            operator=operator,
            payload=OperatorRetry(
                operator=operator,
                reason=reason,
                dossier_code=code,
                activities=_retried(targets),
                before=before,
                after=after,
            ),
        )
    return _retry_rows(targets, "retried", before, after)


async def _gather_bounded(
    items: Sequence[str], work: Callable[[str], Awaitable[T]], limit: int
) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(item: str) -> T:
        async with gate:
            return await work(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


async def _run_batch(
    client: Client,
    *,
    activity_type: str,
    executions: Sequence[tuple[str, str]],
    operator: str,
    reason: str,
    rate: float,
    progress: Progressed | None,
) -> tuple[str, int]:
    """One Temporal batch operation resetting `activity_type` in each execution; waits for
    it. Returns its job id and how many of its operations failed."""
    job_id = f"ops-retry-{uuid.uuid4()}"
    await client.workflow_service.start_batch_operation(
        StartBatchOperationRequest(
            namespace=client.namespace,
            job_id=job_id,
            reason=f"{operator}: {reason}",
            executions=[WorkflowExecution(workflow_id=w, run_id=r) for w, r in executions],
            max_operations_per_second=rate,
            reset_activities_operation=BatchOperationResetActivities(
                identity=f"ops:{operator}",
                type=activity_type,
                reset_attempts=True,
                reset_heartbeat=True,
            ),
        )
    )
    while True:
        job = await client.workflow_service.describe_batch_operation(
            DescribeBatchOperationRequest(namespace=client.namespace, job_id=job_id)
        )
        if progress is not None:
            progress(
                job.complete_operation_count + job.failure_operation_count,
                job.total_operation_count or len(executions),
            )
        if job.state != BatchOperationState.BATCH_OPERATION_STATE_RUNNING:
            if job.state != BatchOperationState.BATCH_OPERATION_STATE_COMPLETED:
                raise RuntimeError(
                    f"batch job {job_id} ended {BatchOperationState.Name(job.state)}"
                )
            return job_id, int(job.failure_operation_count)
        await asyncio.sleep(BATCH_POLL_SECONDS)


async def retry_batch(
    client: Client,
    database_url: str,
    query: str,
    *,
    operator: str,
    reason: str,
    rate: float = DEFAULT_RATE,
    dry_run: bool = False,
    progress: Progressed | None = None,
) -> list[RetryRow]:
    """Retry the failing activities of every dossier `query` selects: Temporal batch
    operations (one per activity type) at `rate` per second, one audit event per dossier.

    The events are written once the batch has run (with the batch job's id): the audit log is
    not held for a batch's length, so a dossier's first step after the retry may come before
    its event in the chain.
    """
    check_action(operator, reason)
    if rate <= 0:
        raise OperatorError("--rate: must be more than 0 per second")
    codes = await running_dossiers(client, running_dossiers_query(query))
    found = await inspect_all(client, codes)
    targets = {code: failing_activities(found[code]) for code in codes}
    targets = {code: rows for code, rows in targets.items() if rows}
    if dry_run or not targets:
        return [row for rows in targets.values() for row in _retry_rows(rows, "would retry")]
    selected = list(targets)
    befores = dict(
        zip(
            selected,
            await _gather_bounded(selected, lambda c: snapshot(client, c), DESCRIBE_CONCURRENCY),
            strict=True,
        )
    )
    by_type: dict[str, dict[tuple[str, str], None]] = {}
    for rows in targets.values():
        for row in rows:
            by_type.setdefault(row.activity or "", {})[(row.workflow_id, row.run_id or "")] = None
    jobs: dict[str, tuple[str, int]] = {}
    for activity_type, executions in by_type.items():
        jobs[activity_type] = await _run_batch(
            client,
            activity_type=activity_type,
            executions=list(executions),
            operator=operator,
            reason=reason,
            rate=rate,
            progress=progress,
        )
    results: list[RetryRow] = []
    for code, rows in targets.items():
        job_ids = sorted({jobs[r.activity or ""][0] for r in rows})
        failed = sum(jobs[r.activity or ""][1] for r in rows)
        after = await server_state(client, code)
        async with writing(database_url) as conn:
            await append_operator_event(
                conn,
                code=code,
                event_type="operator_retry",
                operator=operator,
                payload=OperatorRetry(
                    operator=operator,
                    reason=reason,
                    dossier_code=code,
                    activities=_retried(rows),
                    batch_job_id=", ".join(job_ids),
                    before=befores[code],
                    after=after,
                ),
            )
        outcome = f"retried (batch {', '.join(job_ids)})"
        if failed:
            outcome += f"; the batch reported {failed} failed operations: see `ops stuck`"
        results += _retry_rows(rows, outcome, befores[code], after)
    return results


# --- reset ----------------------------------------------------------------------------------------
async def reset_to_step(
    client: Client,
    database_url: str,
    code: str,
    step: Step,
    *,
    operator: str,
    reason: str,
    dry_run: bool = False,
) -> ResetRow:
    """Reset one dossier to `step` (see the module's table), as an audited operator action."""
    check_action(operator, reason)
    where = await locate(client, code, step)
    if dry_run:
        return ResetRow(
            code=code,
            workflow_id=where.workflow_id,
            step=step,
            event_id=where.event_id,
            run_id_before=where.run_id,
            outcome=f"would reset: {where.note}",
        )
    before = await snapshot(client, code)
    for attempt in range(1, RESET_ATTEMPTS + 1):
        try:
            # Outside the transaction first: a step being written finishes.
            await until_no_task_running(client, where.workflow_id, IDLE_WAIT_SECONDS)
            async with writing(database_url) as conn:
                new_run = await reset_dossier(
                    client,
                    conn,
                    code=code,
                    workflow_task_finish_event_id=where.event_id,
                    operator=operator,
                    reason=reason,
                    workflow_id=where.workflow_id,
                    run_id=where.run_id,
                    step=step.value,
                    before=before,
                )
            break
        except WorkflowBusy as err:
            if attempt == RESET_ATTEMPTS:
                raise OperatorError(str(err)) from err
    after = await snapshot(client, code)
    return ResetRow(
        code=code,
        workflow_id=where.workflow_id,
        step=step,
        event_id=where.event_id,
        run_id_before=where.run_id,
        run_id_after=new_run,
        status_before=before.status,
        status_after=after.status,
        outcome=f"reset: {where.note}",
    )


class _Pace:
    """At most `rate` starts per second."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = time.monotonic()

    async def wait(self) -> None:
        delay = self._next - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self._next = max(self._next, time.monotonic()) + self._interval


async def reset_batch(
    client: Client,
    database_url: str,
    query: str,
    step: Step,
    *,
    operator: str,
    reason: str,
    rate: float = DEFAULT_RATE,
    dry_run: bool = False,
    progress: Progressed | None = None,
) -> list[ResetRow]:
    """Reset every dossier `query` selects to `step`, one at a time at `rate` per second;
    dossiers that have not reached the step are listed as skipped."""
    check_action(operator, reason)
    if rate <= 0:
        raise OperatorError("--rate: must be more than 0 per second")
    codes = await running_dossiers(client, running_dossiers_query(query))
    pace = _Pace(rate)
    rows: list[ResetRow] = []
    for index, code in enumerate(codes, start=1):
        try:
            if not dry_run:
                await pace.wait()
            rows.append(
                await reset_to_step(
                    client,
                    database_url,
                    code,
                    step,
                    operator=operator,
                    reason=reason,
                    dry_run=dry_run,
                )
            )
        except OperatorError as err:
            rows.append(
                ResetRow(
                    code=code,
                    workflow_id=None,
                    step=step,
                    event_id=None,
                    outcome=f"skipped: {err}",
                )
            )
        except RPCError as err:
            rows.append(
                ResetRow(
                    code=code,
                    workflow_id=None,
                    step=step,
                    event_id=None,
                    outcome=f"failed: {err.message}",
                )
            )
        if progress is not None:
            progress(index, len(codes))
    return rows


# --- the commands ------------------------------------------------------------------------------
Operator = Annotated[
    str, typer.Option("--operator", help="who acts; recorded as the audit event's actor")
]
Reason = Annotated[str, typer.Option("--reason", help="why; recorded in the audit event")]
Query = Annotated[
    str | None,
    typer.Option(
        "--query",
        help="visibility query selecting dossiers, e.g. \"DossierProcedure = '1.001193'\" "
        "(running Dossier workflows only)",
    ),
]
Rate = Annotated[float, typer.Option("--rate", help="batch: operations per second")]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="list what would change, and change nothing")
]
AsJson = Annotated[bool, typer.Option("--json", help="print rows as JSON")]


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
    )


def _one_of(code: str | None, query: str | None, command: str) -> None:
    if (code is None) == (query is None):
        raise OperatorError(f"ops {command}: give either a dossier CODE or --query, not both")


def _show(rows: Sequence[BaseModel], as_json: bool, title: str) -> None:
    if as_json:
        console.print_json(json.dumps([row.model_dump(mode="json") for row in rows]))
        return
    if not rows:
        console.print(f"{title}: nothing to do")
        return
    table = Table(title=title)
    for column in type(rows[0]).model_fields:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.model_dump().values()))
    console.print(table)


def _fail(command: str, err: Exception) -> typer.Exit:
    errors.print(f"ops {command}: {err}", markup=False, highlight=False)
    return typer.Exit(2)


def retry_command(
    operator: Operator,
    reason: Reason,
    code: Annotated[str | None, typer.Argument(help="the dossier code")] = None,
    query: Query = None,
    rate: Rate = DEFAULT_RATE,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Retry a dossier's failing activities now, as an audited operator action.

    The attempt count starts again and the next attempt runs at once; with --query, every
    dossier the query selects, in Temporal batch operations paced by --rate.
    """

    async def run() -> list[RetryRow]:
        config = settings()
        await migrate(config.database_url)
        client = await connect(config)
        if code is not None:
            return await retry_dossier(
                client,
                config.database_url,
                code,
                operator=operator,
                reason=reason,
                dry_run=dry_run,
            )
        assert query is not None
        with _bar() as bar:
            task = bar.add_task("retrying", total=None)
            return await retry_batch(
                client,
                config.database_url,
                query,
                operator=operator,
                reason=reason,
                rate=rate,
                dry_run=dry_run,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )

    _run_action("retry", code, query, operator, reason, run, as_json=as_json, dry_run=dry_run)


def reset_command(
    to: Annotated[Step, typer.Option("--to", help="the step to run again")],
    operator: Operator,
    reason: Reason,
    code: Annotated[str | None, typer.Argument(help="the dossier code")] = None,
    query: Query = None,
    rate: Rate = DEFAULT_RATE,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Run a dossier's step again (reset), as an audited operator action.

    STEP (intake, appraisal, approval, signing, return) and everything after it run again;
    with --query, every dossier the query selects, one at a time paced by --rate.
    """

    async def run() -> list[ResetRow]:
        config = settings()
        await migrate(config.database_url)
        client = await connect(config)
        if code is not None:
            return [
                await reset_to_step(
                    client,
                    config.database_url,
                    code,
                    to,
                    operator=operator,
                    reason=reason,
                    dry_run=dry_run,
                )
            ]
        assert query is not None
        with _bar() as bar:
            task = bar.add_task(f"resetting to {to.value}", total=None)
            return await reset_batch(
                client,
                config.database_url,
                query,
                to,
                operator=operator,
                reason=reason,
                rate=rate,
                dry_run=dry_run,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )

    _run_action("reset", code, query, operator, reason, run, as_json=as_json, dry_run=dry_run)
