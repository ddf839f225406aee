"""Writing one timeline step into the read model: the audit event, the dossier's row, its tasks.

The dossier row is a function of the dossier's current view and the tasks a function of its
timeline, so writing step by step and rebuilding from Temporal give the same tables.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from functools import partial
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.actions import Action
from schemas.dossier import DossierView, TimelineEntry
from schemas.exchanges import ProjectionReceipt, ProjectionRecord
from store import audit
from store import outbox as outbox_store
from store.db import run_write
from store.tables import (
    audit_events,
    dossier_snapshots,
    dossiers,
    tasks,
    webhook_subscriptions,
)

_TIMELINE = TypeAdapter(list[TimelineEntry])


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
        "intake_channel": view.intake_channel.value,
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
        escalated: dict[tuple[str, str, datetime], datetime] = {}
        for awaited in entry.awaiting:
            if awaited.action != Action.WITHDRAW.value:
                group = (awaited.unit, awaited.role.value, awaited.since)
                grouped.setdefault(group, []).append(awaited.action.value)
                if awaited.claimed_by:
                    claimed[group] = awaited.claimed_by
                if awaited.escalated_at:
                    escalated[group] = awaited.escalated_at
        current = {("/".join(actions), *key): key for key, actions in grouped.items()}
        for key in [k for k in open_rows if k not in current]:
            row = open_rows.pop(key)
            done.append({**row, "done_at": entry.at, "done_by": entry.actor})
        for key, group in current.items():
            if key in open_rows:
                open_rows[key]["claimed_by"] = claimed.get(group)
                open_rows[key]["escalated_at"] = escalated.get(group)
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
                    "escalated_at": escalated.get(group),
                    "done_at": None,
                    "done_by": None,
                }
    return [*done, *open_rows.values()]


async def write(
    conn: AsyncConnection, record: ProjectionRecord, seal: outbox_store.Seal = outbox_store.PLAIN
) -> ProjectionReceipt:
    [receipt] = await conn.run_sync(write_many, [record], seal)
    return receipt


def write_many(
    conn: Connection,
    records: list[ProjectionRecord],
    seal: outbox_store.Seal = outbox_store.PLAIN,
) -> list[ProjectionReceipt]:
    """Steps of many dossiers (in each dossier's order) in a handful of statements: the audit
    events chained on from each dossier's last one, then each dossier's row and tasks as its
    latest step says. An event's time is its timeline entry's (the workflow's clock).

    A step already written keeps its first event: written again by a retried or re-run
    workflow task, it may come with another time (the workflow's clock reads the task's
    start), and the receipt gives the workflow the time the audit log holds."""
    codes = sorted({r.view.code for r in records})
    existing = {
        (row.dossier_code, row.event_key): audit.AuditEvent.model_validate(row._asdict())
        for row in conn.execute(
            select(audit_events).where(
                audit_events.c.dossier_code.in_(codes),
                audit_events.c.event_key.in_([r.event_key for r in records]),
            )
        )
    }
    last_seq = (
        select(audit_events.c.dossier_code, func.max(audit_events.c.seq).label("seq"))
        .where(audit_events.c.dossier_code.in_(codes))
        .group_by(audit_events.c.dossier_code)
        .subquery()
    )
    heads: dict[str, tuple[int, str]] = {
        row.dossier_code: (row.seq, row.hash)
        for row in conn.execute(
            select(audit_events.c.dossier_code, audit_events.c.seq, audit_events.c.hash).join(
                last_seq,
                (audit_events.c.dossier_code == last_seq.c.dossier_code)
                & (audit_events.c.seq == last_seq.c.seq),
            )
        )
    }
    events: list[audit.AuditEvent] = []
    new_events: list[audit.AuditEvent] = []
    new_steps: list[tuple[ProjectionRecord, int, datetime]] = []
    for record in records:
        code = record.view.code
        event = existing.get((code, record.event_key))
        if event is None:
            entry = record.timeline[-1]
            seq, prev_hash = heads.get(code, (0, audit.GENESIS))
            event = audit.new_event(
                dossier_code=code,
                seq=seq + 1,
                prev_hash=prev_hash,
                event_key=record.event_key,
                event_type=record.event_type,
                actor=entry.actor,
                at=entry.at,
                payload=audit.canonical(entry),
            )
            heads[code] = (event.seq, event.hash)
            existing[(code, record.event_key)] = event
            new_events.append(event)
            new_steps.append((record, event.seq, event.at))
        events.append(event)
    # The primary key (dossier, seq) makes two concurrent writers collide instead of forking
    # a chain; the loser's transaction fails and its steps are written again.
    if new_events:
        conn.execute(audit_events.insert(), [e.model_dump() for e in new_events])
        # What the steps send out, in the same transaction: a step recorded has its messages.
        outbox_store.write_messages(conn, new_steps, seal)

    latest = {r.view.code: (r, e) for r, e in zip(records, events, strict=True)}
    _replace_dossiers(
        conn,
        [
            (r.view, _as_logged(r.timeline, e), heads[code][0])
            for code, (r, e) in latest.items()
            if code in heads
        ],
    )
    units = sorted({u for r in records for u in (r.view.receiving_unit, r.view.competent_unit)})
    watched: dict[str, int] = {
        row.unit: int(row[1])
        for row in conn.execute(
            select(webhook_subscriptions.c.unit, func.count().label("count"))
            .where(webhook_subscriptions.c.unit.in_(units), webhook_subscriptions.c.active)
            .group_by(webhook_subscriptions.c.unit)
        )
    }
    return [
        ProjectionReceipt(
            event_key=record.event_key,
            seq=event.seq,
            payload_digest=event.payload_digest,
            at=event.at,
            subscribers=sum(
                watched.get(u, 0) for u in {record.view.receiving_unit, record.view.competent_unit}
            ),
        )
        for record, event in zip(records, events, strict=True)
    ]


def _as_logged(timeline: list[TimelineEntry], event: audit.AuditEvent) -> list[TimelineEntry]:
    """The timeline as the workflow shows it once the receipt is in: its last step at the time
    the audit log holds (a step written again keeps its first time)."""
    if not timeline:
        return timeline
    return [*timeline[:-1], timeline[-1].model_copy(update={"at": event.at})]


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
    await conn.run_sync(_replace_dossiers, [(view, timeline, int(last_seq))])


def _replace_dossiers(
    conn: Connection, dossier_states: list[tuple[DossierView, list[TimelineEntry], int]]
) -> None:
    if not dossier_states:
        return
    rows = [
        dossier_values(view, last_seq, timeline[-1].at if timeline else view.received_at)
        for view, timeline, last_seq in dossier_states
    ]
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(dossiers)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[dossiers.c.code],
            set_={name: insert.excluded[name] for name in rows[0] if name != "code"},
        ),
        rows,
    )
    snapshots = [
        {
            "code": view.code,
            "view": view.model_dump_json(),
            "timeline": _TIMELINE.dump_json(timeline).decode(),
            "last_event_seq": last_seq,
            "closed": view.closed_at is not None,
        }
        for view, timeline, last_seq in dossier_states
    ]
    insert_snapshot = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
        dossier_snapshots
    )
    conn.execute(
        insert_snapshot.on_conflict_do_update(
            index_elements=[dossier_snapshots.c.code],
            set_={name: insert_snapshot.excluded[name] for name in snapshots[0] if name != "code"},
            # A step written again late never takes a dossier back to an earlier state.
            where=dossier_snapshots.c.last_event_seq <= insert_snapshot.excluded.last_event_seq,
        ),
        snapshots,
    )
    codes = [view.code for view, _, _ in dossier_states]
    conn.execute(delete(tasks).where(tasks.c.dossier_code.in_(codes)))
    task_list = [
        row for view, timeline, _ in dossier_states for row in task_rows(view.code, timeline)
    ]
    if task_list:
        conn.execute(tasks.insert(), task_list)


class GroupCommit:
    """Steps of many dossiers written in one transaction. In a surge each step would
    otherwise cost its own commit (an fsync, and on SQLite a turn at the one write lock)
    while its workflow task waits; here the steps that arrive during a commit share the next
    one. Each step still gets its own receipt, and a batch that fails is written again step
    by step, so one bad step fails alone."""

    def __init__(
        self, database_url: str, max_batch: int = 200, seal: outbox_store.Seal = outbox_store.PLAIN
    ) -> None:
        self._url = database_url
        self._seal = seal
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
            records = [record for record, _ in batch]
            try:
                receipts = await run_write(
                    self._url, partial(write_many, records=records, seal=self._seal)
                )
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
            [receipt] = await run_write(
                self._url, partial(write_many, records=[record], seal=self._seal)
            )
        except Exception as err:
            if not future.done():
                future.set_exception(err)
            return
        if not future.done():
            future.set_result(receipt)


_group_commits: dict[tuple[str, asyncio.AbstractEventLoop], GroupCommit] = {}


def group_commit(database_url: str, seal: outbox_store.Seal = outbox_store.PLAIN) -> GroupCommit:
    """This event loop's group commit for the database (the first caller's seal)."""
    key = (database_url, asyncio.get_running_loop())
    committer = _group_commits.get(key)
    if committer is None:
        committer = _group_commits[key] = GroupCommit(database_url, seal=seal)
    return committer
