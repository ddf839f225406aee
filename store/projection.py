"""Writing one timeline step into the read model: the audit event, the dossier's row, its tasks.

The dossier row is a function of the dossier's current view and the tasks a function of its
timeline, so writing step by step and rebuilding from Temporal give the same tables.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.actions import Action
from schemas.dossier import DossierView, TimelineEntry
from schemas.exchanges import ProjectionReceipt, ProjectionRecord
from store import audit
from store.db import writing
from store.tables import audit_events, dossiers, tasks, webhook_subscriptions


def dossier_values(view: DossierView, last_event_seq: int, updated_at: datetime) -> dict[str, Any]:
    clock = view.clock
    return {
        "code": view.code,
        "procedure_code": view.procedure_code,
        "procedure_version": view.procedure_version,
        "receiving_unit": view.receiving_unit,
        "competent_unit": view.competent_unit,
        "tier": view.tier,
        "lane": view.lane,
        "stage": view.stage.value,
        "status": view.status.value,
        "portal_status_code": view.portal_status_code,
        "outcome": view.outcome.value if view.outcome else None,
        "received_at": view.received_at,
        "due_at": clock.due_at if clock else None,
        "paused_working_seconds": clock.paused_working_seconds if clock else 0,
        "overdue": clock.overdue if clock else False,
        "apologized": clock.apologized if clock else False,
        "result_ready_at": view.result_ready_at,
        "closed_at": view.closed_at,
        "on_time": view.on_time,
        "applicant_ref": view.applicant_ref,
        "last_event_seq": last_event_seq,
        "updated_at": updated_at,
    }


def task_rows(code: str, timeline: list[TimelineEntry]) -> list[dict[str, Any]]:
    """The inbox rows a timeline implies: each awaited step, open until a later step no longer
    awaits it. Alternatives awaited from the same role at once (approve or refuse) are one
    task, `approve/refuse`. Withdrawal is the citizen's right, not an officer's task."""
    open_rows: dict[tuple[str, str, str, datetime], dict[str, Any]] = {}
    done: list[dict[str, Any]] = []
    for entry in timeline:
        grouped: dict[tuple[str, str, datetime], list[str]] = {}
        claimed: dict[tuple[str, str, datetime], str] = {}
        for awaited in entry.awaiting:
            if awaited.action != Action.WITHDRAW.value:
                group = (awaited.unit, awaited.role, awaited.since)
                grouped.setdefault(group, []).append(awaited.action)
                if awaited.claimed_by:
                    claimed[group] = awaited.claimed_by
        current = {("/".join(actions), *key): key for key, actions in grouped.items()}
        for key in [k for k in open_rows if k not in current]:
            row = open_rows.pop(key)
            done.append({**row, "done_at": entry.at, "done_by": entry.actor})
        for key, group in current.items():
            if key in open_rows:
                open_rows[key]["claimed_by"] = claimed.get(group)
            else:
                action, unit, role, since = key
                open_rows[key] = {
                    "dossier_code": code,
                    "action": action,
                    "unit": unit,
                    "role": role,
                    "since": since,
                    "due_at": entry.due_at,
                    "claimed_by": claimed.get(group),
                    "done_at": None,
                    "done_by": None,
                }
    return [*done, *open_rows.values()]


async def write(conn: AsyncConnection, record: ProjectionRecord) -> ProjectionReceipt:
    entry = record.timeline[-1]
    code = record.view.code
    event = await audit.append(
        conn,
        dossier_code=code,
        event_key=record.event_key,
        event_type=record.event_type,
        actor=entry.actor,
        at=entry.at,
        payload=audit.canonical(entry),
    )
    await replace_dossier(conn, record.view, record.timeline)
    units = {record.view.receiving_unit, record.view.competent_unit}
    subscribers = (
        await conn.execute(
            select(func.count())
            .select_from(webhook_subscriptions)
            .where(webhook_subscriptions.c.unit.in_(units), webhook_subscriptions.c.active)
        )
    ).scalar_one()
    return ProjectionReceipt(
        event_key=record.event_key,
        seq=event.seq,
        payload_digest=event.payload_digest,
        subscribers=int(subscribers),
    )


async def replace_dossier(
    conn: AsyncConnection, view: DossierView, timeline: list[TimelineEntry]
) -> None:
    """The dossier's row and tasks as its view and timeline say, whatever was there before."""
    last_seq = (
        await conn.execute(
            select(func.coalesce(func.max(audit_events.c.seq), 0)).where(
                audit_events.c.dossier_code == view.code
            )
        )
    ).scalar_one()
    values = dossier_values(view, int(last_seq), timeline[-1].at if timeline else view.received_at)
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(dossiers)
    await conn.execute(
        insert.values(**values).on_conflict_do_update(
            index_elements=[dossiers.c.code],
            set_={k: v for k, v in values.items() if k != "code"},
        )
    )
    await conn.execute(delete(tasks).where(tasks.c.dossier_code == view.code))
    rows = task_rows(view.code, timeline)
    if rows:
        await conn.execute(tasks.insert(), rows)


class GroupCommit:
    """Steps of many dossiers written in one transaction. In a surge each step would
    otherwise cost its own commit (an fsync, and on SQLite a turn at the one write lock)
    while its workflow task waits; here the steps that arrive during a commit share the next
    one. Each step still gets its own receipt, and a batch that fails is written again step
    by step, so one bad step fails alone."""

    def __init__(self, database_url: str, max_batch: int = 200) -> None:
        self._url = database_url
        self._max_batch = max_batch
        self._queue: list[tuple[ProjectionRecord, asyncio.Future[ProjectionReceipt]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, record: ProjectionRecord) -> ProjectionReceipt:
        future: asyncio.Future[ProjectionReceipt] = asyncio.get_running_loop().create_future()
        self._queue.append((record, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                async with writing(self._url) as conn:
                    receipts = [await write(conn, record) for record, _ in batch]
            except Exception:
                for record, future in batch:
                    await self._write_alone(record, future)
                continue
            for (_, future), receipt in zip(batch, receipts, strict=True):
                if not future.done():  # a cancelled step was written all the same
                    future.set_result(receipt)

    async def _write_alone(
        self, record: ProjectionRecord, future: asyncio.Future[ProjectionReceipt]
    ) -> None:
        try:
            async with writing(self._url) as conn:
                receipt = await write(conn, record)
        except Exception as err:
            if not future.done():
                future.set_exception(err)
            return
        if not future.done():
            future.set_result(receipt)


_group_commits: dict[tuple[str, asyncio.AbstractEventLoop], GroupCommit] = {}


def group_commit(database_url: str) -> GroupCommit:
    """This event loop's group commit for the database."""
    key = (database_url, asyncio.get_running_loop())
    committer = _group_commits.get(key)
    if committer is None:
        committer = _group_commits[key] = GroupCommit(database_url)
    return committer
