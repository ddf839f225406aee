"""The outbox: what only informs the outside world (portal syncs, notifications, webhooks).

Rows are written by the projection, in the transaction of the step that causes them, so a
step is never recorded without its messages nor a message sent for a step that was not
recorded. The drainer (activities/outbox.py) claims them here: only the oldest undelivered
row of each dossier and destination, so a dossier's messages reach each destination in the
order of its steps; a claim is a lease, so two drainers never hold the same row.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from codec.payload import KeyRing
from schemas.exchanges import ProjectionRecord, WebhookEvent
from schemas.statuses import portal_code
from store.tables import outbox, webhook_subscriptions

PORTAL = "portal"
NOTIFY = "notify"
WEBHOOK_PREFIX = "webhook:"


SEALED = "sealed:"


class Seal:
    """Portal syncs and notices carry personal data (the applicant's name, ID number, phone):
    at rest they are encrypted with the payload keys, as they are in Temporal's histories.
    Webhook events carry none, and stay readable for the deliveries' listing."""

    def __init__(self, keys: KeyRing | None) -> None:
        self._keys = keys

    def close(self, text: str) -> str:
        if self._keys is None:
            return text
        key_id, data = self._keys.encrypt(text.encode())
        return f"{SEALED}{key_id.decode()}:{base64.b64encode(data).decode()}"

    def open(self, stored: str) -> str:
        if not stored.startswith(SEALED):
            return stored
        if self._keys is None:
            raise ValueError("an encrypted outbox message, and no payload keys to open it")
        key_id, _, data = stored.removeprefix(SEALED).partition(":")
        return self._keys.decrypt(key_id, base64.b64decode(data)).decode()


# Rows written without keys (tests of the read model alone) stay in clear.
PLAIN = Seal(None)


class MessageKind(StrEnum):
    PORTAL_SYNC = "portal_sync"
    NOTIFICATION = "notification"
    WEBHOOK = "webhook"


class MessageState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    # The destination refused the message itself (a 4xx): retrying cannot help.
    REFUSED = "refused"
    # Given up after the kind's window (a webhook receiver down for a day); redeliverable.
    FAILED = "failed"


class OutboxMessage(BaseModel):
    """One row of the outbox."""

    model_config = ConfigDict(frozen=True)

    id: int
    message_key: str
    dossier_code: str
    sequence: int
    event_key: str
    kind: MessageKind
    destination: str
    subscription_id: str | None
    payload: str
    state: MessageState
    attempts: int
    last_error: str | None
    status_code: int | None
    created_at: AwareDatetime
    event_at: AwareDatetime
    next_attempt_at: AwareDatetime
    delivered_at: AwareDatetime | None


_COLUMNS = [outbox.c[name] for name in OutboxMessage.model_fields]


def _message(row: Any) -> OutboxMessage:
    return OutboxMessage.model_validate(row._asdict())


# --- written with the step ------------------------------------------------------------------------
def write_messages(
    conn: Connection,
    steps: Sequence[tuple[ProjectionRecord, int, datetime]],
    seal: Seal = PLAIN,
) -> None:
    """The messages of newly recorded steps: (record, the step's seq in the dossier's audit
    chain, the step's time as the audit event holds it). Webhooks go to the subscriptions
    active now; a retried step's messages are already there and are not written twice."""
    units = sorted(
        {
            unit
            for record, _, _ in steps
            if record.outbox.webhooks
            for unit in (record.view.receiving_unit, record.view.competent_unit)
        }
    )
    subscriptions: dict[str, list[str]] = {}
    if units:
        w = webhook_subscriptions.c
        for row in conn.execute(
            select(w.id, w.unit).where(w.unit.in_(units), w.active).order_by(w.created_at, w.id)
        ):
            subscriptions.setdefault(row.unit, []).append(row.id)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for record, seq, at in steps:
        code = record.view.code
        base = {
            "dossier_code": code,
            "sequence": seq,
            "event_key": record.event_key,
            "state": MessageState.PENDING.value,
            "attempts": 0,
            "created_at": now,
            "event_at": at,
            "next_attempt_at": now,
        }
        sync = record.outbox.portal_sync
        if sync is not None:
            rows.append(
                {
                    **base,
                    "message_key": f"{code}:{record.event_key}:portal",
                    "kind": MessageKind.PORTAL_SYNC.value,
                    "destination": PORTAL,
                    "payload": seal.close(sync.model_dump_json()),
                }
            )
        for index, notification in enumerate(record.outbox.notifications):
            rows.append(
                {
                    **base,
                    "message_key": f"{code}:{record.event_key}:notify:{index}",
                    "kind": MessageKind.NOTIFICATION.value,
                    "destination": NOTIFY,
                    "payload": seal.close(notification.model_dump_json()),
                }
            )
        if record.outbox.webhooks:
            entry = record.timeline[-1]
            view = record.view
            event = WebhookEvent(
                event_id=record.event_key,
                sequence=seq,
                dossier_code=code,
                procedure_code=view.procedure_code,
                status=entry.status.value,
                portal_status_code=portal_code(entry.status),
                step=entry.step,
                at=at,
                due_at=entry.due_at,
                receiving_unit=view.receiving_unit,
                competent_unit=view.competent_unit,
            )
            watching = dict.fromkeys(
                [
                    *subscriptions.get(view.receiving_unit, []),
                    *subscriptions.get(view.competent_unit, []),
                ]
            )
            for subscription in watching:
                rows.append(
                    {
                        **base,
                        "message_key": f"{code}:{record.event_key}:webhook:{subscription}",
                        "kind": MessageKind.WEBHOOK.value,
                        "destination": WEBHOOK_PREFIX + subscription,
                        "subscription_id": subscription,
                        "payload": event.model_dump_json(),
                    }
                )
    if not rows:
        return
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(outbox)
    for message in rows:
        message.setdefault("subscription_id", None)
    conn.execute(insert.on_conflict_do_nothing(index_elements=[outbox.c.message_key]), rows)


# --- the drainer's side ------------------------------------------------------------------------
def _pending_head(now: datetime) -> Any:
    """Due, unleased, and first of its dossier and destination among the undelivered."""
    earlier = outbox.alias("earlier")
    return and_(
        outbox.c.state == MessageState.PENDING.value,
        outbox.c.next_attempt_at <= now,
        or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now),
        ~exists().where(
            earlier.c.dossier_code == outbox.c.dossier_code,
            earlier.c.destination == outbox.c.destination,
            earlier.c.state == MessageState.PENDING.value,
            earlier.c.id < outbox.c.id,
        ),
    )


async def claim(
    conn: AsyncConnection, lease_token: str, now: datetime, lease: timedelta, limit: int
) -> list[OutboxMessage]:
    """Lease up to `limit` deliverable messages to `lease_token` (one write transaction);
    PostgreSQL skips rows another drainer is claiming at the same moment."""
    candidates = select(outbox.c.id).where(_pending_head(now)).order_by(outbox.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True, of=outbox)
    ids = [row.id for row in await conn.execute(candidates)]
    if not ids:
        return []
    await conn.execute(
        update(outbox)
        .where(
            outbox.c.id.in_(ids),
            or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now),
        )
        .values(lease_until=now + lease, leased_by=lease_token)
    )
    rows = await conn.execute(
        select(*_COLUMNS).where(outbox.c.leased_by == lease_token).order_by(outbox.c.id)
    )
    return [_message(row) for row in rows]


async def delivered(conn: AsyncConnection, message_id: int, status_code: int) -> None:
    await conn.execute(
        update(outbox)
        .where(outbox.c.id == message_id)
        .values(
            state=MessageState.DELIVERED.value,
            attempts=outbox.c.attempts + 1,
            status_code=status_code,
            last_error=None,
            delivered_at=datetime.now(UTC),
            lease_until=None,
            leased_by=None,
        )
    )


async def not_delivered(
    conn: AsyncConnection,
    message_id: int,
    error: str,
    status_code: int | None,
    *,
    state: MessageState,
    next_attempt_at: datetime,
) -> None:
    """An attempt that failed: to try again at `next_attempt_at` (PENDING), or ended (REFUSED,
    FAILED), with why."""
    await conn.execute(
        update(outbox)
        .where(outbox.c.id == message_id)
        .values(
            state=state.value,
            attempts=outbox.c.attempts + 1,
            last_error=error[:2000],
            status_code=status_code,
            next_attempt_at=next_attempt_at,
            lease_until=None,
            leased_by=None,
        )
    )


class Backlog(BaseModel):
    model_config = ConfigDict(frozen=True)

    pending: int
    oldest_created_at: AwareDatetime | None


async def backlog(conn: AsyncConnection) -> Backlog:
    """Messages not delivered yet, and since when the oldest waits."""
    row = (
        await conn.execute(
            select(func.count(), func.min(outbox.c.created_at)).where(
                outbox.c.state == MessageState.PENDING.value
            )
        )
    ).one()
    oldest = row[1]
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return Backlog(pending=int(row[0]), oldest_created_at=oldest)


async def pending_of(
    conn: AsyncConnection, dossier_code: str, kinds: Sequence[MessageKind] = tuple(MessageKind)
) -> int:
    """The dossier's messages of these kinds not delivered, refused or given up yet."""
    return int(
        (
            await conn.execute(
                select(func.count()).where(
                    outbox.c.dossier_code == dossier_code,
                    outbox.c.state == MessageState.PENDING.value,
                    outbox.c.kind.in_([k.value for k in kinds]),
                )
            )
        ).scalar_one()
    )


async def undelivered(
    conn: AsyncConnection, now: datetime, failing_for: timedelta
) -> list[OutboxMessage]:
    """Messages refused or given up, and those still failing `failing_for` after they were
    written: what an operator should look at."""
    rows = await conn.execute(
        select(*_COLUMNS)
        .where(
            or_(
                outbox.c.state.in_([MessageState.REFUSED.value, MessageState.FAILED.value]),
                and_(
                    outbox.c.state == MessageState.PENDING.value,
                    outbox.c.attempts > 0,
                    outbox.c.created_at < now - failing_for,
                ),
            )
        )
        .order_by(outbox.c.dossier_code, outbox.c.id)
    )
    return [_message(row) for row in rows]


# --- a subscriber's deliveries -------------------------------------------------------------------
async def deliveries(
    conn: AsyncConnection, subscription_id: str, after_id: int, limit: int
) -> list[OutboxMessage]:
    rows = await conn.execute(
        select(*_COLUMNS)
        .where(outbox.c.subscription_id == subscription_id, outbox.c.id > after_id)
        .order_by(outbox.c.id)
        .limit(limit)
    )
    return [_message(row) for row in rows]


class RedeliveryRange(BaseModel):
    """Which of a subscription's events to send again; every bound is optional."""

    model_config = ConfigDict(frozen=True)

    dossier_code: str | None = None
    from_sequence: int | None = None
    to_sequence: int | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None


async def redeliver(
    conn: AsyncConnection, subscription_id: str, scope: RedeliveryRange, now: datetime
) -> dict[str, int]:
    """Queue the subscription's events in `scope` again (delivered, refused or given up
    alike); they go out in their original order. Returns how many, per dossier."""
    c = outbox.c
    conditions = [
        c.subscription_id == subscription_id,
        or_(c.lease_until.is_(None), c.lease_until < now),
    ]
    if scope.dossier_code is not None:
        conditions.append(c.dossier_code == scope.dossier_code)
    if scope.from_sequence is not None:
        conditions.append(c.sequence >= scope.from_sequence)
    if scope.to_sequence is not None:
        conditions.append(c.sequence <= scope.to_sequence)
    if scope.since is not None:
        conditions.append(c.event_at >= scope.since)
    if scope.until is not None:
        conditions.append(c.event_at <= scope.until)
    counts: dict[str, int] = {
        row.dossier_code: int(row[1])
        for row in await conn.execute(
            select(c.dossier_code, func.count()).where(*conditions).group_by(c.dossier_code)
        )
    }
    if counts:
        await conn.execute(
            update(outbox)
            .where(*conditions)
            .values(
                state=MessageState.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                delivered_at=None,
                last_error=None,
            )
        )
    return counts


def webhook_event(message: OutboxMessage) -> WebhookEvent:
    return WebhookEvent.model_validate(json.loads(message.payload))
