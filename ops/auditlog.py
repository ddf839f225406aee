"""`python -m ops audit checkpoint | bundle`, and the global log's part of `ops audit verify`.

`checkpoint` appends every audit event not yet in the global log and signs the new tree head
with the deployment's key (run it on a schedule: cron or a systemd timer, README). `bundle`
writes one self-contained file an auditor checks with auditlog/verify.py alone.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated

import typer

from auditlog import verify as logverify
from config import settings
from ops.cli import AsJson, console, errors, fail, print_json
from store import auditlog
from store.auditlog import AuditLogError, CheckpointResult, SigningKeyError
from store.db import dispose_all, engine_for, writing
from store.migrate import migrate


def log_lines(verdict: logverify.Verdict) -> tuple[list[str], list[str]]:
    """What `ops audit verify` says of the global log: (lines that hold, broken lines)."""
    if verdict.holds:
        keys = ", ".join(verdict.key_ids) or "none yet"
        return [
            f"audit log: {verdict.logged} events in the signed log (tree size "
            f"{verdict.tree_size}, {verdict.checkpoints} checkpoints, key id {keys}), "
            f"{verdict.unlogged} not yet checkpointed"
        ], []
    broken = verdict.broken_dossiers()
    head = (
        f"audit log: BROKEN: {len(verdict.findings)} findings in {len(broken)} dossiers"
        + (f" ({', '.join(broken)})" if broken else "")
        + f"; {verdict.unlogged} events not yet checkpointed"
    )
    return [], [head, *(f"audit log: BROKEN {f.line()}" for f in verdict.findings)]


def _day(value: str, option: str) -> datetime:
    """A period bound: a date (midnight UTC) or an instant with its offset."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"{option}: {value!r} is not a date (2026-11-01) nor an instant", 2) from None
    if instant.tzinfo is None:
        raise fail(f"{option}: {value!r} needs its offset (+07:00 or Z)", 2)
    return instant


def checkpoint_command(as_json: AsJson = False) -> None:
    """Append the audit events not yet in the global log and sign its new tree head."""

    async def run() -> CheckpointResult:
        config = settings()
        await migrate(config.database_url)
        key = auditlog.signing_key(
            config.audit_checkpoint_key,
            lambda notice: errors.print(notice, markup=False, highlight=False),
        )
        try:
            async with writing(config.database_url) as conn:
                return await auditlog.checkpoint(conn, key, datetime.now(UTC))
        finally:
            await dispose_all()

    try:
        result = asyncio.run(run())
    except (AuditLogError, SigningKeyError) as refused:
        raise fail(f"audit checkpoint: {refused}", 1) from None
    if as_json:
        print_json(result)
    elif result.signed_at is None:
        console.print(
            f"audit checkpoint: nothing new; tree size {result.tree_size}, root {result.root_hash}"
        )
    else:
        console.print(
            f"audit checkpoint: {result.appended} events appended; tree size {result.tree_size}, "
            f"root {result.root_hash}, signed at {result.signed_at.isoformat()} by key id "
            f"{result.key_id}"
        )


def bundle_command(
    start: Annotated[str, typer.Option("--from", help="first day (or instant) of the period")],
    end: Annotated[str, typer.Option("--to", help="day (or instant) after the period")],
    output: Annotated[Path, typer.Option("--output", help="the bundle file to write")],
) -> None:
    """Write one self-contained file of the period's audit events, their log entries, the
    checkpoints and the proofs: `python auditlog/verify.py FILE` checks it alone."""
    begin, until = _day(start, "--from"), _day(end, "--to")
    if until <= begin:
        raise fail(f"--to: {end} must come after --from {start}", 2)

    async def run() -> dict[str, object]:
        config = settings()
        await migrate(config.database_url)
        try:
            async with engine_for(config.database_url).connect() as conn:
                return await auditlog.bundle(conn, begin, until)
        finally:
            await dispose_all()

    try:
        document = asyncio.run(run())
    except AuditLogError as refused:
        raise fail(f"audit bundle: {refused}", 1) from None
    output.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
    log_range = document["range"]
    assert isinstance(log_range, dict)
    events = document["events"]
    assert isinstance(events, list)
    console.print(
        f"audit bundle: {output}: {len(events)} events, log positions {log_range['start']}.."
        f"{log_range['end'] - 1}, key id {document['key_id']}"
    )
