"""Reset a dossier's workflow, or its lane child, to an earlier workflow task, as an audited
operator action.

Temporal's reset has no high-level client method in this SDK: this wraps the service call.
The reset is recorded in the dossier's audit chain, under the dossier's code whichever
workflow was reset (who, why, which workflow, from which run to which, the dossier's state
before and after); the steps that run again afterwards are written as new events of the new
run (a lane's steps reach the chain through its dossier workflow, as always).

Signals and updates that came after the reset point are not reapplied: the steps after it run
again, each by its own actor (an officer's approval is asked for again, not replayed), and a
lane's old progress reports do not reach a dossier that was reset past them. A lane the reset
workflow started after the point and that still runs is terminated right after the reset (a
reset leaves it running, and the new run starts the lane again under the same id).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import PendingWorkflowTaskState, ResetReapplyExcludeType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from domain import lanes
from ops.audit import OPERATOR_KEY_PREFIX
from schemas.dossier import DossierView
from store import audit
from workflows import search_attributes as sa

QUERY_TIMEOUT = timedelta(seconds=10)
# How long a reset waits, with the audit log held, for a workflow task in flight to finish.
BUSY_WAIT_SECONDS = 2.0
APPEND_ATTEMPTS = 5

# What a reset does not carry over from beyond its point.
NOT_REAPPLIED = (
    ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL,
    ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE,
)


class DossierState(BaseModel):
    """A dossier as an operator action found or left it."""

    model_config = ConfigDict(frozen=True)

    status: str | None = Field(description="the dossier's status")
    stage: str | None = None
    source: str = Field(
        description="`status query` (the workflow answered) or `search attribute` (the "
        "DossierStatus the workflow last set, read from the server)"
    )
    runs: dict[str, str] = Field(
        default_factory=dict, description="workflow id -> current run id, dossier and lane"
    )


class WorkflowBusy(RuntimeError):
    """The workflow to reset is in the middle of a workflow task (writing a step, say)."""


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


async def _describe(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return None
        raise


def _task_running(description: WorkflowExecutionDescription) -> bool:
    raw = description.raw_description
    return (
        raw.HasField("pending_workflow_task")
        and raw.pending_workflow_task.state
        == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED
    )


async def until_no_task_running(
    client: Client, workflow_id: str, timeout: float
) -> WorkflowExecutionDescription | None:
    """The workflow's description once no workflow task of it is in flight. A reset that cut
    one off could leave the step it was writing in the audit log but in no history (the
    receipt never recorded), which verification would then report as tampering."""
    deadline = time.monotonic() + timeout
    while True:
        described = await _describe(client, workflow_id)
        if described is None or not _task_running(described):
            return described
        if time.monotonic() > deadline:
            raise WorkflowBusy(
                f"{workflow_id} is in the middle of a workflow task (writing a step); "
                "try again in a moment"
            )
        await asyncio.sleep(0.05)


async def _runs(
    client: Client, code: str, parent: WorkflowExecutionDescription | None
) -> dict[str, str]:
    """Current run of the dossier workflow and of its lane (running or finished)."""
    if parent is None:
        return {}
    runs = {code: parent.run_id}
    lane = parent.typed_search_attributes.get(sa.LANE)
    lane_ids = [lanes.lane_workflow_id(code, lane)] if lane else []
    lane_ids += [c.workflow_id for c in parent.raw_description.pending_children]
    for lane_id in dict.fromkeys(lane_ids):
        described = await _describe(client, lane_id)
        if described is not None:
            runs[lane_id] = described.run_id
    return runs


async def server_state(client: Client, code: str) -> DossierState:
    """The dossier's state as the server holds it, without asking a worker: safe to read while
    a write transaction is open (a worker writing the dossier's next step waits on it)."""
    parent = await _describe(client, code)
    status = parent.typed_search_attributes.get(sa.STATUS) if parent else None
    return DossierState(
        status=status, source="search attribute", runs=await _runs(client, code, parent)
    )


async def snapshot(client: Client, code: str) -> DossierState:
    """The dossier's state from its `status` query; from the server's search attribute when
    the workflow cannot answer (a failing workflow task, say)."""
    parent = await _describe(client, code)
    runs = await _runs(client, code, parent)
    try:
        view: DossierView = await client.get_workflow_handle(code).query(
            "status",
            result_type=DossierView,
            rpc_timeout=QUERY_TIMEOUT,
        )
    except (RPCError, WorkflowQueryFailedError):  # no worker can answer: a failing task, say
        status = parent.typed_search_attributes.get(sa.STATUS) if parent else None
        return DossierState(status=status, source="search attribute", runs=runs)
    return DossierState(
        status=view.status.value, stage=view.stage.value, source="status query", runs=runs
    )


async def hold_audit_log(conn: AsyncConnection) -> None:
    """Until the caller's transaction ends, no dossier's step is written, so an operator event
    appended in it comes before every step its action sets going. SQLite's write transaction
    holds the database from its start already; PostgreSQL locks the audit table against
    inserts (reads go on), for the few milliseconds of one Temporal call."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("LOCK TABLE audit_events IN SHARE ROW EXCLUSIVE MODE"))


async def append_operator_event(
    conn: AsyncConnection, *, code: str, event_type: str, operator: str, payload: BaseModel
) -> audit.AuditEvent:
    """One operator event in the dossier's chain, keyed `operator:<uuid>`. In a savepoint, tried
    again when a step of the dossier took the same sequence number first (possible on
    PostgreSQL without `hold_audit_log`)."""
    key = f"{OPERATOR_KEY_PREFIX}{uuid.uuid4()}"
    text = audit.canonical(payload)
    at = datetime.now(UTC)
    for attempt in range(1, APPEND_ATTEMPTS + 1):
        try:
            async with conn.begin_nested():
                return await audit.append(
                    conn,
                    dossier_code=code,
                    event_key=key,
                    event_type=event_type,
                    actor=operator,
                    at=at,
                    payload=text,
                )
        except IntegrityError:
            if attempt == APPEND_ATTEMPTS:
                raise
            await asyncio.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


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
    if not operator.strip():
        raise ValueError("operator: a reset needs the operator's name for the audit log")
    if not reason.strip():
        raise ValueError("reason: a reset needs a reason for the audit log")
    target = workflow_id or code
    await hold_audit_log(conn)
    # A task in flight now either finishes without the audit log (its step is written), or
    # waits on it: then this reset gives up (WorkflowBusy) rather than cut the step off.
    described = await until_no_task_running(client, target, BUSY_WAIT_SECONDS)
    if described is None:
        raise ValueError(f"{target}: no such workflow")
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
