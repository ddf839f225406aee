"""What ops reads from Temporal and the few service calls it makes there: running dossiers by
visibility query, descriptions and histories, the dossier's state as an operator action finds
and leaves it, and waiting out a workflow task in flight. Every command connects through
`bootstrap.connect`, so payloads and failures decode as the workers wrote them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import PendingWorkflowTaskState
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowHistory,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from domain import lanes
from ops.errors import WorkflowBusy
from schemas.dossier import DossierView
from store import archive
from store.db import engine_for
from workflows import search_attributes as sa

DOSSIER_TYPE = "Dossier"
# Descriptions asked of the server at once, for a batch of dossiers.
DESCRIBE_CONCURRENCY = 16
QUERY_TIMEOUT = timedelta(seconds=10)

T = TypeVar("T")
# Called with (done, total) as a batch advances: the commands' progress bars.
Progressed = Callable[[int, int], None]


# --- which dossiers ---------------------------------------------------------------------------
def running_dossiers_query(selection: str | None) -> str:
    """An operator's visibility query narrowed to running dossier workflows: the query selects
    dossiers; their lanes are found from each dossier."""
    base = f"WorkflowType = '{DOSSIER_TYPE}' AND ExecutionStatus = 'Running'"
    return f"{base} AND ({selection})" if selection and selection.strip() else base


async def running_dossiers(client: Client, query: str) -> list[str]:
    """The codes of the dossiers a (full) visibility query selects, oldest first."""
    found: list[tuple[datetime, str]] = []
    async for execution in client.list_workflows(query):
        found.append((execution.start_time, execution.id))
    return [code for _, code in sorted(found)]


async def for_each(
    items: Sequence[str],
    work: Callable[[str], Awaitable[T]],
    *,
    concurrency: int = DESCRIBE_CONCURRENCY,
    progress: Progressed | None = None,
) -> list[T]:
    """`work` on every item, at most `concurrency` at a time, the results in the items' order."""
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(item: str) -> T:
        nonlocal done
        async with gate:
            result = await work(item)
        done += 1
        if progress is not None:
            progress(done, len(items))
        return result

    return list(await asyncio.gather(*(one(item) for item in items)))


# --- one workflow -----------------------------------------------------------------------------
async def describe_if_exists(
    client: Client, workflow_id: str
) -> WorkflowExecutionDescription | None:
    """The workflow's current run, described; None when the server has no such workflow."""
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return None
        raise


async def history(client: Client, workflow_id: str, run_id: str) -> list[HistoryEvent]:
    """A run's whole history, from Temporal only."""
    fetched = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return list(fetched.events)


# --- histories wherever they are --------------------------------------------------------------
class HistorySource(StrEnum):
    TEMPORAL = "temporal"
    # The namespace's retention has deleted it: the copy the archiver made.
    ARCHIVE = "archive"


@dataclass(frozen=True)
class RunHistory:
    history: WorkflowHistory
    source: HistorySource

    @property
    def run_id(self) -> str:
        return self.history.run_id


def from_archive(workflow_id: str, serialised: bytes) -> WorkflowHistory:
    return WorkflowHistory(workflow_id, list(History.FromString(serialised).events))


async def run_history(
    client: Client, database_url: str, workflow_id: str, run_id: str
) -> RunHistory | None:
    """A run's history from Temporal while it holds it, then from the archive; None when
    neither has it."""
    try:
        fetched = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        return RunHistory(fetched, HistorySource.TEMPORAL)
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            raise
    async with engine_for(database_url).connect() as conn:
        serialised = await archive.history_of(conn, workflow_id, run_id)
    if serialised is None:
        return None
    return RunHistory(from_archive(workflow_id, serialised), HistorySource.ARCHIVE)


def dossier_workflow_ids(code: str) -> list[str]:
    return [code, *(code + suffix for suffix in lanes.LANE_WORKFLOW_SUFFIXES)]


async def dossier_runs(client: Client, database_url: str, code: str) -> list[RunHistory]:
    """Every run of the dossier's workflows (its own, its lane's, earlier runs an operator
    reset), in the order they started: from Temporal where it still holds them, from the
    archive for the others."""
    ids = ", ".join(f"'{w}'" for w in dossier_workflow_ids(code))
    listed = [(e.id, e.run_id) async for e in client.list_workflows(f"WorkflowId IN ({ids})")]
    async with engine_for(database_url).connect() as conn:
        archived = await archive.runs_of(conn, code)
    runs: dict[str, RunHistory] = {}
    for workflow_id, run_id in [*listed, *((r.workflow_id, r.run_id) for r in archived)]:
        if run_id in runs:
            continue
        found = await run_history(client, database_url, workflow_id, run_id)
        if found is not None and found.history.events:
            runs[run_id] = found
    return sorted(runs.values(), key=lambda r: r.history.events[0].event_time.ToDatetime())


async def history_tail(client: Client, workflow_id: str, run_id: str) -> list[HistoryEvent]:
    """A run's last events, newest first."""
    response = await client.workflow_service.get_workflow_execution_history_reverse(
        GetWorkflowExecutionHistoryReverseRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
            maximum_page_size=50,
        )
    )
    return list(response.history.events)


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
        described = await describe_if_exists(client, workflow_id)
        if described is None or not _task_running(described):
            return described
        if time.monotonic() > deadline:
            raise WorkflowBusy(
                f"{workflow_id} is in the middle of a workflow task (writing a step); "
                "try again in a moment"
            )
        await asyncio.sleep(0.05)


# --- the dossier's state ----------------------------------------------------------------------
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
        described = await describe_if_exists(client, lane_id)
        if described is not None:
            runs[lane_id] = described.run_id
    return runs


async def server_state(client: Client, code: str) -> DossierState:
    """The dossier's state as the server holds it, without asking a worker: safe to read while
    a write transaction is open (a worker writing the dossier's next step waits on it)."""
    parent = await describe_if_exists(client, code)
    status = parent.typed_search_attributes.get(sa.STATUS) if parent else None
    return DossierState(
        status=status, source="search attribute", runs=await _runs(client, code, parent)
    )


async def snapshot(client: Client, code: str) -> DossierState:
    """The dossier's state from its `status` query; from the server's search attribute when
    the workflow cannot answer (a failing workflow task, say)."""
    parent = await describe_if_exists(client, code)
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
