"""`python -m ops retry`: a dossier's failing activities tried again now, as an audited
operator action.

Temporal's activity reset on every failing activity of the dossier (in the dossier workflow or
its lane child): the attempt count starts again at 1 and the next attempt is scheduled at once,
instead of after the backoff a long outage has grown (up to a minute). Heartbeat details are
dropped (these calls keep no progress); activity options an operator changed are kept. By
query, one Temporal batch operation per activity type, paced by `--rate`.

The retry is one `operator_retry` event in the dossier's audit chain (who, why, the activities,
the dossier's state before and after), written in the transaction that holds the audit log
from before the Temporal call: it precedes every step the retry lets the dossier write, and a
call the server refuses leaves no event. A batch retry writes its events once the batch has
run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Annotated

import typer
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.api.batch.v1 import BatchOperationResetActivities
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import BatchOperationState
from temporalio.api.workflowservice.v1 import (
    DescribeBatchOperationRequest,
    ResetActivityRequest,
    StartBatchOperationRequest,
)
from temporalio.client import Client

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
from ops.errors import OperatorError, check_action, check_rate
from ops.stuck import StuckKind, StuckRow, inspect_all, inspect_dossier
from ops.temporal import (
    DossierState,
    Progressed,
    describe_if_exists,
    for_each,
    running_dossiers,
    running_dossiers_query,
    server_state,
    snapshot,
)
from store.audit import append_operator_event, hold_audit_log
from store.db import writing
from store.migrate import migrate

BATCH_POLL_SECONDS = 0.25


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
        await _record_retry(conn, code, operator, reason, targets, before, after)
    return _retry_rows(targets, "retried", before, after)


async def _record_retry(
    conn: AsyncConnection,
    code: str,
    operator: str,
    reason: str,
    rows: Sequence[StuckRow],
    before: DossierState,
    after: DossierState,
    batch_job_id: str | None = None,
) -> None:
    """The retry in the dossier's audit chain: who, why, which steps, the state around it."""
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
            batch_job_id=batch_job_id,
            before=before,
            after=after,
        ),
    )


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
    check_rate(rate)
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
            await for_each(selected, lambda c: snapshot(client, c)),
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
            await _record_retry(
                conn, code, operator, reason, rows, befores[code], after, ", ".join(job_ids)
            )
        outcome = f"retried (batch {', '.join(job_ids)})"
        if failed:
            outcome += f"; the batch reported {failed} failed operations: see `ops stuck`"
        results += _retry_rows(rows, outcome, befores[code], after)
    return results


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
        with bar() as progress:
            task = progress.add_task("retrying", total=None)
            return await retry_batch(
                client,
                config.database_url,
                query,
                operator=operator,
                reason=reason,
                rate=rate,
                dry_run=dry_run,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )

    run_action("retry", code, query, operator, reason, run, as_json=as_json, dry_run=dry_run)
