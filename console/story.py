"""A dossier's whole story for its console page: the timeline with the legal clock, the marks
of the clock's chart, its documents' signatures and its audit chain, each verified by the
operators' own tools (ops.export, ops.signatures, ops.audit), and its downloads."""

from __future__ import annotations

import io
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client
from temporalio.service import RPCError

from ops import audit as audit_ops
from ops import signatures as signature_ops
from ops.export import DossierTimeline, build_timeline, pauses, write_histories
from ops.temporal import dossier_runs
from schemas.dossier import DossierView, TimelineEntry
from schemas.lifecycle import TimelineStep
from store.db import engine_for


class ClockMarks(BaseModel):
    """What the legal clock's chart draws, as instants."""

    model_config = ConfigDict(frozen=True)

    received: datetime
    appointments: list[datetime]  # every appointment the dossier had, in order
    pauses: list[tuple[datetime, datetime | None]]  # waiting for a supplement
    apologies: list[datetime]
    result_ready: datetime | None
    closed: datetime | None
    now: datetime | None  # the present, while the dossier is open


class Story(BaseModel):
    model_config = ConfigDict(frozen=True)

    timeline: DossierTimeline
    marks: ClockMarks
    signatures: signature_ops.SignatureReport | None
    signatures_note: str | None
    audit: audit_ops.VerifyReport | None
    audit_note: str | None


def clock_marks(
    view: DossierView, entries: list[TimelineEntry], now: datetime | None = None
) -> ClockMarks:
    appointments: list[datetime] = []
    for entry in entries:
        if entry.due_at is not None and entry.due_at not in appointments:
            appointments.append(entry.due_at)
    return ClockMarks(
        received=view.received_at,
        appointments=appointments,
        pauses=pauses(entries),
        apologies=[e.at for e in entries if e.step == TimelineStep.APOLOGY_SLIP.value],
        result_ready=view.result_ready_at,
        closed=view.closed_at,
        now=None if view.closed_at is not None else (now or datetime.now(UTC)),
    )


async def story(
    client: Client,
    database_url: str,
    signing_url: str,
    view: DossierView,
    entries: list[TimelineEntry],
) -> Story:
    signatures: signature_ops.SignatureReport | None = None
    signatures_note: str | None = None
    if view.closed_at is None:
        signatures_note = "documents_later"
    else:
        try:
            signatures = await signature_ops.verify_dossier(
                client, database_url, view.code, signing_url
            )
        except (signature_ops.SignatureUnavailable, RPCError) as err:
            signatures_note = str(err)
    report: audit_ops.VerifyReport | None = None
    audit_note: str | None = None
    try:
        async with engine_for(database_url).connect() as conn:
            report = await audit_ops.verify(conn, client, database_url, view.code)
    except (RPCError, SQLAlchemyError) as err:
        audit_note = str(err)
    return Story(
        timeline=build_timeline(view, entries),
        marks=clock_marks(view, entries),
        signatures=signatures,
        signatures_note=signatures_note,
        audit=report,
        audit_note=audit_note,
    )


async def history_zip(client: Client, database_url: str, code: str) -> bytes | None:
    """Every run of the dossier's workflows, as `ops export history` writes them, in a zip;
    None when neither Temporal nor the archive holds any."""
    runs = await dossier_runs(client, database_url, code)
    if not runs:
        return None
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as folder:
        written = write_histories(runs, Path(folder))
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in written:
                archive.write(path, f"{code}-histories/{path.name}")
    return buffer.getvalue()
