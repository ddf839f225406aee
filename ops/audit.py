"""Audit verification: every dossier's hash chain, and each event against the workflow history
that produced it (the projection's receipt recorded in that history)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.client import Client
from temporalio.service import RPCError

from schemas.exchanges import ProjectionReceipt
from store import audit
from store.audit import AuditEvent, ChainBreak
from store.tables import audit_events

OPERATOR_KEY_PREFIX = "operator:"


class VerifyReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    dossiers: int
    events: int
    broken: ChainBreak | None = None


async def dossier_codes(conn: AsyncConnection, code: str | None) -> AsyncIterator[str]:
    if code is not None:
        yield code
        return
    result = await conn.stream(
        select(audit_events.c.dossier_code).distinct().order_by(audit_events.c.dossier_code)
    )
    async for row in result:
        yield str(row[0])


async def receipts_in_history(
    client: Client, code: str, run_id: str
) -> dict[str, ProjectionReceipt]:
    """The projection receipts a run's history recorded, by event key."""
    history = await client.get_workflow_handle(code, run_id=run_id).fetch_history()
    converter = client.data_converter
    found: dict[str, ProjectionReceipt] = {}
    for event in history.events:
        if not event.HasField("marker_recorded_event_attributes"):
            continue
        marker = event.marker_recorded_event_attributes
        data = marker.details.get("data")
        result = marker.details.get("result")
        if data is None or result is None or not data.payloads or not result.payloads:
            continue
        if json.loads(data.payloads[0].data).get("activity_type") != "project":
            continue
        [receipt] = await converter.decode(result.payloads, [ProjectionReceipt])
        found[receipt.event_key] = receipt
    return found


async def verify_dossier(
    conn: AsyncConnection, client: Client, code: str
) -> tuple[int, ChainBreak | None]:
    chain = await audit.events(conn, code)
    if not chain:
        return 0, ChainBreak(dossier_code=code, seq=0, reason="no audit events for this dossier")
    broken = audit.first_break(chain)
    if broken is not None:
        return len(chain), broken
    histories: dict[str, dict[str, ProjectionReceipt]] = {}
    for event in chain:
        if event.event_key.startswith(OPERATOR_KEY_PREFIX):
            continue
        run_id = event.event_key.split(":", 1)[0]
        if run_id not in histories:
            try:
                histories[run_id] = await receipts_in_history(client, code, run_id)
            except RPCError as err:
                return len(chain), _break(event, f"workflow run {run_id} not found: {err.message}")
        receipt = histories[run_id].get(event.event_key)
        if receipt is None:
            return len(chain), _break(event, "event is not in the workflow's history")
        if receipt.payload_digest != event.payload_digest or receipt.seq != event.seq:
            return len(chain), _break(event, "event differs from the one the history recorded")
    return len(chain), None


def _break(event: AuditEvent, reason: str) -> ChainBreak:
    return ChainBreak(dossier_code=event.dossier_code, seq=event.seq, reason=reason)


async def verify(
    conn: AsyncConnection,
    client: Client,
    code: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> VerifyReport:
    dossiers = events = 0
    async for dossier in dossier_codes(conn, code):
        count, broken = await verify_dossier(conn, client, dossier)
        dossiers += 1
        events += count
        if progress is not None:
            progress(dossier)
        if broken is not None:
            return VerifyReport(dossiers=dossiers, events=events, broken=broken)
    return VerifyReport(dossiers=dossiers, events=events)
