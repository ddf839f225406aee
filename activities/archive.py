"""The archiver's one activity: copy the histories of closed dossier runs into the database
(store.archive) before the namespace's retention deletes them, and say what is still waiting.

Histories are fetched raw from the frontend, never decoded: the archive holds them as Temporal
stored them, payloads encrypted with the deployment's keys.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.history.v1 import History
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client
from temporalio.client import WorkflowExecution as ListedExecution

from config import Settings
from domain import lanes
from schemas.exchanges import ArchivePass
from store import archive
from store.archive import ArchivedRun
from store.db import engine_for

# The workflow types that make up a dossier's record; the archiver's own runs are not part.
ARCHIVED_TYPES = ("Dossier", "Processing", "Certification")
# Visibility may list a run a little after it closed: each pass lists the runs closed since
# this long before the previous pass copied its last run.
VISIBILITY_LAG = timedelta(hours=1)
FETCH_CONCURRENCY = 8
BATCH = 50
HISTORY_PAGE = 1000


def closed_runs_query(after: datetime | None) -> str:
    types = ", ".join(f"'{t}'" for t in ARCHIVED_TYPES)
    query = f"WorkflowType IN ({types}) AND ExecutionStatus != 'Running'"
    if after is not None:
        query += f" AND CloseTime > '{after.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}'"
    return query


async def raw_history(client: Client, workflow_id: str, run_id: str) -> History:
    """The run's whole history as the server stores it: payloads left encoded."""
    events = History()
    token = b""
    while True:
        response = await client.workflow_service.get_workflow_execution_history(
            GetWorkflowExecutionHistoryRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                next_page_token=token,
                maximum_page_size=HISTORY_PAGE,
            )
        )
        events.events.extend(response.history.events)
        token = response.next_page_token
        if not token:
            return events


class ArchiveActivities:
    def __init__(self, settings: Settings, client: Client) -> None:
        self._settings = settings
        self._client = client

    @activity.defn(name="archive_closed_runs")
    async def archive_closed_runs(self) -> ArchivePass:
        engine = engine_for(self._settings.database_url)
        async with engine.connect() as conn:
            last = await archive.last_pass(conn)
        after = None if last is None else last - VISIBILITY_LAG
        archived = already = 0
        batch: list[ListedExecution] = []
        async for execution in self._client.list_workflows(closed_runs_query(after)):
            batch.append(execution)
            if len(batch) >= BATCH:
                copied, skipped = await self._archive(batch)
                archived, already = archived + copied, already + skipped
                batch = []
                activity.heartbeat(archived)
        copied, skipped = await self._archive(batch)
        archived, already = archived + copied, already + skipped
        async with engine.connect() as conn:
            waiting = await archive.pending(conn)
        self._report(waiting)
        return ArchivePass(
            archived=archived,
            already_archived=already,
            pending_dossiers=waiting.dossiers,
            oldest_pending_closed_at=waiting.oldest_closed_at,
        )

    async def _archive(self, executions: list[ListedExecution]) -> tuple[int, int]:
        if not executions:
            return 0, 0
        engine = engine_for(self._settings.database_url)
        async with engine.connect() as conn:
            done = await archive.archived_among(conn, [e.run_id for e in executions])
        todo = [e for e in executions if e.run_id not in done]
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def row(execution: ListedExecution) -> dict[str, object]:
            async with gate:
                history = await raw_history(self._client, execution.id, execution.run_id)
            serialised = history.SerializeToString()
            closed_at = execution.close_time or datetime.now(UTC)
            run = ArchivedRun(
                workflow_id=execution.id,
                run_id=execution.run_id,
                dossier_code=lanes.dossier_code_of(execution.id),
                workflow_type=execution.workflow_type,
                execution_status=execution.status.name.lower() if execution.status else "",
                closed_at=closed_at,
                archived_at=datetime.now(UTC),
                event_count=len(history.events),
                history_bytes=len(serialised),
                sha256=hashlib.sha256(serialised).hexdigest(),
            )
            return archive.packed(run, serialised)

        rows = await asyncio.gather(*(row(e) for e in todo))
        async with engine_for(self._settings.database_url, writer=True).begin() as conn:
            await archive.add(conn, list(rows))
        return len(rows), len(executions) - len(rows)

    def _report(self, waiting: archive.PendingArchive) -> None:
        meter = activity.metric_meter()
        meter.create_gauge(
            "dossier_archive_pending", "Closed dossiers whose history is not archived yet"
        ).set(waiting.dossiers)
        lag = (
            0
            if waiting.oldest_closed_at is None
            else int((datetime.now(UTC) - waiting.oldest_closed_at).total_seconds())
        )
        meter.create_gauge(
            "dossier_archive_lag_seconds",
            "Time since the oldest closed dossier still waiting for the archive closed",
            "s",
        ).set(max(0, lag))
