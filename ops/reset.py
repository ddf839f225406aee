"""`python -m ops reset`: a dossier's step run again, as an audited operator action.

Temporal's reset of the workflow that holds the step (the dossier's, or its lane child's) to
the workflow task just before it (ops.reset_points): the step and everything after it run
again. Temporal's reset has no high-level client method in this SDK: this wraps the service
call. By query, one reset per dossier paced by `--rate` (a batch reset can only aim every
workflow at the same kind of point, and each dossier's point is its own event).

Signals and updates that came after the reset point are not reapplied: the steps after it run
again, each by its own actor (an officer's approval is asked for again, not replayed), and a
lane's old progress reports do not reach a dossier that was reset past them. A lane the reset
workflow started after the point and that still runs is terminated right after the reset (a
reset leaves it running, and the new run starts the lane again under the same id): so a reset
of the dossier to intake replaces its running lane.

The reset is one `operator_reset` event in the dossier's audit chain, under the dossier's code
whichever workflow was reset (who, why, which workflow, from which run to which, the
dossier's state before and after); the steps that run again are written as new events of the
new run (a lane's steps reach the chain through its dossier workflow, as always).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated

import typer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import ResetReapplyExcludeType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from bootstrap import connect
from config import settings
from ops.cli import (
    DEFAULT_RATE,
    AsJson,
    DryRun,
    Operator,
    Query,
    Rate,
    Reason,
    bar,
    run_action,
)
from ops.errors import OperatorError, WorkflowBusy, check_action, check_rate
from ops.reset_points import Step, locate
from ops.temporal import (
    DossierState,
    Progressed,
    running_dossiers,
    running_dossiers_query,
    server_state,
    snapshot,
    until_no_task_running,
)
from store.audit import append_operator_event, hold_audit_log
from store.db import writing
from store.migrate import migrate

RESET_ATTEMPTS = 3
IDLE_WAIT_SECONDS = 10.0
# How long a reset waits, with the audit log held, for a workflow task in flight to finish.
BUSY_WAIT_SECONDS = 2.0

# What a reset does not carry over from beyond its point.
NOT_REAPPLIED = (
    ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL,
    ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE,
)


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


class OperatorReset(BaseModel):
    """The audit payload of a reset."""

    model_config = ConfigDict(frozen=True)

    operator: str
    reason: str
    workflow_id: str
    run_id_before: str
    workflow_task_finish_event_id: int
    dossier_code: str | None = None
    step: str | None = None
    run_id_after: str | None = None
    before: DossierState | None = None
    after: DossierState | None = None
    terminated: list[str] = Field(
        default_factory=list, description="running lanes the reset replaced (terminated)"
    )


async def reset_workflow(
    client: Client,
    *,
    workflow_id: str,
    run_id: str,
    workflow_task_finish_event_id: int,
    reason: str,
    identity: str,
) -> str:
    """Temporal's reset of one workflow run (dossier or lane) to a workflow task event, signals
    and updates after it not reapplied. Returns the new run's id."""
    response = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
            reason=reason,
            workflow_task_finish_event_id=workflow_task_finish_event_id,
            request_id=str(uuid.uuid4()),
            reset_reapply_exclude_types=NOT_REAPPLIED,
            identity=identity,
        )
    )
    return response.run_id


async def reset_dossier(
    client: Client,
    conn: AsyncConnection,
    *,
    code: str,
    workflow_task_finish_event_id: int,
    operator: str,
    reason: str,
    workflow_id: str | None = None,
    run_id: str | None = None,
    step: str | None = None,
    before: DossierState | None = None,
) -> str:
    """Reset the dossier workflow, or `workflow_id` (its lane child), to the workflow task
    event `workflow_task_finish_event_id` of `run_id` (default: the current run); returns the
    new run's id.

    The event is written inside the caller's transaction once the server has reset (so it
    names the new run), with the audit log held from before the reset (`hold_audit_log`): no
    step of the new run is written before it, and a reset the server refuses leaves no event.
    The reset waits for a workflow task in flight to finish first, and raises WorkflowBusy
    when one does not within BUSY_WAIT_SECONDS (it may be waiting on this very transaction):
    roll back, wait (`until_no_task_running`) and try again.
    `before` is the dossier's state as the caller found it (its `status` query, read before the
    transaction); the state after is read from the server, since a worker answering a query
    might itself be waiting on this transaction to write the new run's first step.
    """
    check_action(operator, reason)
    target = workflow_id or code
    await hold_audit_log(conn)
    # A task in flight now either finishes without the audit log (its step is written), or
    # waits on it: then this reset gives up (WorkflowBusy) rather than cut the step off.
    described = await until_no_task_running(client, target, BUSY_WAIT_SECONDS)
    if described is None:
        raise OperatorError(f"{target}: no such workflow")
    run_id = run_id or described.run_id
    replaced = (
        [
            child.workflow_id
            for child in described.raw_description.pending_children
            if child.initiated_id > workflow_task_finish_event_id
        ]
        if described.run_id == run_id
        else []
    )
    new_run = await reset_workflow(
        client,
        workflow_id=target,
        run_id=run_id,
        workflow_task_finish_event_id=workflow_task_finish_event_id,
        reason=f"{operator}: {reason}",
        identity=f"ops:{operator}",
    )
    # Before the new run can start its own lane: it writes its first step (receipt) first,
    # which waits on the audit log this transaction holds.
    for lane_id in replaced:
        try:
            await client.get_workflow_handle(lane_id).terminate(
                reason=f"{operator}: {reason} (replaced by the reset of {target})"
            )
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
    action = OperatorReset(
        operator=operator,
        reason=reason,
        workflow_id=target,
        run_id_before=run_id,
        workflow_task_finish_event_id=workflow_task_finish_event_id,
        dossier_code=code,
        step=step,
        run_id_after=new_run,
        before=before,
        after=await server_state(client, code),
        terminated=replaced,
    )
    await append_operator_event(
        conn, code=code, event_type="operator_reset", operator=operator, payload=action
    )
    return new_run


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
    """Reset one dossier to `step` (where: ops.reset_points), as an audited operator action."""
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
    check_rate(rate)
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
        with bar() as progress:
            task = progress.add_task(f"resetting to {to.value}", total=None)
            return await reset_batch(
                client,
                config.database_url,
                query,
                to,
                operator=operator,
                reason=reason,
                rate=rate,
                dry_run=dry_run,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )

    run_action("reset", code, query, operator, reason, run, as_json=as_json, dry_run=dry_run)
