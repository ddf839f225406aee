"""Dossier lists from the read model (`dossiers` table): newest received first, keyset pages.

The cursor is opaque to callers: base64url of the last row's received_at and code. Paging on
(received_at, code) rather than OFFSET keeps every page one index range, however deep, and a
dossier filed while someone pages is neither skipped nor shown twice.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.codes import is_dossier_code
from schemas.statuses import DossierStatus, Outcome, Stage
from store.tables import dossiers


class DossierSummary(BaseModel):
    """One dossier in a list. The applicant appears only as the masked citizen ID."""

    model_config = ConfigDict(frozen=True)

    code: str
    procedure_code: str
    procedure_version: int
    receiving_unit: str
    competent_unit: str
    tier: str
    lane: str
    stage: Stage
    status: DossierStatus
    portal_status_code: int
    outcome: Outcome | None
    received_at: AwareDatetime
    due_at: AwareDatetime | None
    overdue: bool
    closed_at: AwareDatetime | None
    on_time: bool | None
    applicant_ref: str = Field(description="The citizen ID, masked")


class DossierPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    items: list[DossierSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )


class Filters(BaseModel):
    model_config = ConfigDict(frozen=True)

    units: tuple[str, ...]  # the dossier's receiving or competent unit is one of these
    status: DossierStatus | None = None
    procedure: str | None = None
    overdue: bool | None = None


class BadCursor(ValueError):
    pass


def encode_cursor(received_at: datetime, code: str) -> str:
    raw = json.dumps([received_at.astimezone(UTC).isoformat(), code], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        received, code = json.loads(raw)
        when = datetime.fromisoformat(received)
        if when.tzinfo is None or not isinstance(code, str) or not is_dossier_code(code):
            raise ValueError("not a (received_at, code) pair")
        # A forged offset on year 1 or 9999 would overflow only when bound to the query.
        when = when.astimezone(UTC)
    except (binascii.Error, ValueError, TypeError, OverflowError) as err:
        raise BadCursor("not a cursor this API issued") from err
    return when, code


async def page(
    conn: AsyncConnection, filters: Filters, limit: int, cursor: str | None
) -> DossierPage:
    d = dossiers.c
    statement = (
        select(dossiers)
        .where(or_(d.receiving_unit.in_(filters.units), d.competent_unit.in_(filters.units)))
        .order_by(d.received_at.desc(), d.code.desc())
        .limit(limit + 1)
    )
    if filters.status is not None:
        statement = statement.where(d.status == filters.status.value)
    if filters.procedure is not None:
        statement = statement.where(d.procedure_code == filters.procedure)
    if filters.overdue is not None:
        statement = statement.where(d.overdue == filters.overdue)
    if cursor is not None:
        after_received, after_code = decode_cursor(cursor)
        # The <= bound keeps the scan a range on received_at; the OR only trims ties.
        statement = statement.where(
            d.received_at <= after_received,
            or_(
                d.received_at < after_received,
                and_(d.received_at == after_received, d.code < after_code),
            ),
        )
    rows: Sequence[Row[Any]] = (await conn.execute(statement)).all()
    items = [_summary(row) for row in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return DossierPage(
        items=items,
        next_cursor=encode_cursor(last.received_at, last.code) if last is not None else None,
    )


def _summary(row: Row[Any]) -> DossierSummary:
    # The UTCDateTime columns hand back aware UTC instants on every backend.
    values = row._mapping
    return DossierSummary.model_validate(
        {name: values[name] for name in DossierSummary.model_fields}
    )
