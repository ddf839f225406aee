"""The audit log: append-only, hash-chained per dossier.

Each event's hash covers the previous event's hash, so changing, removing or reordering any
event breaks every hash after it. The database refuses UPDATE and DELETE on the table
(migration 0001); this chain catches what is done behind its back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from auditlog import verify
from store.tables import audit_events, dossiers

GENESIS = "0" * 64


class AuditEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    dossier_code: str
    seq: int
    event_key: str
    event_type: str
    actor: str
    at: datetime
    payload: str
    payload_digest: str
    prev_hash: str
    hash: str


class ChainBreak(BaseModel):
    model_config = ConfigDict(frozen=True)

    dossier_code: str
    seq: int
    reason: str


def canonical(payload: BaseModel) -> str:
    return json.dumps(payload.model_dump(mode="json"), ensure_ascii=False, sort_keys=True)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def utc_text(value: datetime) -> str:
    """An instant as the chain and the global log hash it: UTC ISO text. SQLite hands
    timestamps back naive; every stored instant is UTC."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def chain_hash(
    prev_hash: str,
    dossier_code: str,
    seq: int,
    event_key: str,
    event_type: str,
    actor: str,
    at: datetime,
    payload_digest: str,
) -> str:
    # One implementation with the auditor's standalone verifier.
    return verify.chain_hash(
        prev_hash, dossier_code, seq, event_key, event_type, actor, utc_text(at), payload_digest
    )


def new_event(
    *,
    dossier_code: str,
    seq: int,
    prev_hash: str,
    event_key: str,
    event_type: str,
    actor: str,
    at: datetime,
    payload: str,
) -> AuditEvent:
    """The event after `prev_hash` in a dossier's chain."""
    payload_digest = digest(payload)
    return AuditEvent(
        dossier_code=dossier_code,
        seq=seq,
        event_key=event_key,
        event_type=event_type,
        actor=actor,
        at=at,
        payload=payload,
        payload_digest=payload_digest,
        prev_hash=prev_hash,
        hash=chain_hash(
            prev_hash, dossier_code, seq, event_key, event_type, actor, at, payload_digest
        ),
    )


async def append(
    conn: AsyncConnection,
    *,
    dossier_code: str,
    event_key: str,
    event_type: str,
    actor: str,
    at: datetime,
    payload: str,
) -> AuditEvent:
    """Append one event, or return the one already written under `event_key`: a retried
    activity or a worker that crashed after the commit never writes it twice."""
    existing = (
        await conn.execute(
            select(audit_events).where(
                audit_events.c.dossier_code == dossier_code, audit_events.c.event_key == event_key
            )
        )
    ).first()
    if existing is not None:
        return AuditEvent.model_validate(existing._asdict())
    last = (
        await conn.execute(
            select(audit_events.c.seq, audit_events.c.hash)
            .where(audit_events.c.dossier_code == dossier_code)
            .order_by(audit_events.c.seq.desc())
            .limit(1)
        )
    ).first()
    seq, prev_hash = (last.seq + 1, last.hash) if last is not None else (1, GENESIS)
    event = new_event(
        dossier_code=dossier_code,
        seq=seq,
        prev_hash=prev_hash,
        event_key=event_key,
        event_type=event_type,
        actor=actor,
        at=at,
        payload=payload,
    )
    # The primary key (dossier, seq) makes two concurrent writers collide instead of forking
    # the chain; the loser's transaction fails and its activity retries.
    await conn.execute(audit_events.insert().values(**event.model_dump()))
    return event


async def events(conn: AsyncConnection, dossier_code: str) -> list[AuditEvent]:
    rows = await conn.execute(
        select(audit_events)
        .where(audit_events.c.dossier_code == dossier_code)
        .order_by(audit_events.c.seq)
    )
    return [AuditEvent.model_validate(row._asdict()) for row in rows]


class Logged(Protocol):
    """An audit event as stored: a row of `audit_events` or an `AuditEvent` read from one."""

    @property
    def dossier_code(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def event_key(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def payload_digest(self) -> str: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...
    @property
    def payload(self) -> str: ...


def as_logged(event: Logged, *, with_payload: bool = False) -> verify.Event:
    """The event as the standalone verifier reads it (the bundle's and the log's leaf)."""
    return verify.Event(
        dossier_code=event.dossier_code,
        seq=event.seq,
        event_key=event.event_key,
        event_type=event.event_type,
        actor=event.actor,
        at=utc_text(event.at),
        payload_digest=event.payload_digest,
        prev_hash=event.prev_hash,
        hash=event.hash,
        payload=event.payload if with_payload else None,
    )


def first_break(chain: Sequence[AuditEvent]) -> ChainBreak | None:
    """The first event whose content, hash or link does not hold: the standalone verifier's
    own check (auditlog.verify), on a chain that must start at the dossier's first event."""
    if not chain:
        return None
    if chain[0].seq != 1:
        first = chain[0]
        return ChainBreak(
            dossier_code=first.dossier_code,
            seq=first.seq,
            reason=f"sequence jumps from 0 to {first.seq}",
        )
    findings = verify.chain_findings([as_logged(e, with_payload=True) for e in chain])
    if not findings:
        return None
    found = findings[0]
    return ChainBreak(
        dossier_code=found.dossier_code or chain[0].dossier_code,
        seq=found.seq if found.seq is not None else 0,
        reason=found.reason,
    )


OPERATOR_KEY_PREFIX = "operator:"
APPEND_ATTEMPTS = 5


# --- operator events ----------------------------------------------------------------------------
async def hold_audit_log(conn: AsyncConnection) -> None:
    """Until the caller's transaction ends, no dossier's step is written, so an operator event
    appended in it comes before every step its action sets going. SQLite's write transaction
    holds the database from its start already; PostgreSQL locks the audit table against
    inserts (reads go on), for the few milliseconds of one Temporal call."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("LOCK TABLE audit_events IN SHARE ROW EXCLUSIVE MODE"))


async def append_operator_event(
    conn: AsyncConnection, *, code: str, event_type: str, operator: str, payload: BaseModel
) -> AuditEvent:
    """One operator event in the dossier's chain, keyed `operator:<uuid>`. In a savepoint, tried
    again when a step of the dossier took the same sequence number first (possible on
    PostgreSQL without `hold_audit_log`)."""
    key = f"{OPERATOR_KEY_PREFIX}{uuid.uuid4()}"
    content = canonical(payload)
    at = datetime.now(UTC)
    for attempt in range(1, APPEND_ATTEMPTS + 1):
        try:
            async with conn.begin_nested():
                event = await append(
                    conn,
                    dossier_code=code,
                    event_key=key,
                    event_type=event_type,
                    actor=operator,
                    at=at,
                    payload=content,
                )
                # The dossier's row names the head of its chain, as a rebuild from it would.
                await conn.execute(
                    update(dossiers)
                    .where(dossiers.c.code == code, dossiers.c.last_event_seq < event.seq)
                    .values(last_event_seq=event.seq)
                )
                return event
        except IntegrityError:
            if attempt == APPEND_ATTEMPTS:
                raise
            await asyncio.sleep(0.05 * attempt)
    raise AssertionError("unreachable")
