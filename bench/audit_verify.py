"""How long the audit checks take on 10,000 dossiers' worth of audit events.

    python -m bench.audit_verify                       # a fresh SQLite file in a temporary folder
    python -m bench.audit_verify --database-url postgresql+asyncpg://postgres@127.0.0.1/bench_audit

It writes the events straight into a fresh database (each dossier 12 to 15 events, chained as
the projection chains them, a minute to a few hours apart over a month), signs a checkpoint of
the global log, then times:
- `ops audit verify`'s database side (`store.auditlog.check`: every chain, every event against
  the log, the log against every signed checkpoint), which is what runs without Temporal;
- `ops audit bundle` over the whole month;
- the standalone verifier (`python -I auditlog/verify.py`, a process of its own) on that bundle.
The target is under a minute each on the 2-core development machine. The database must be
empty (a PostgreSQL database named by --database-url is used as it is: create it first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from config import ROOT
from store import audit, auditlog
from store.db import dispose_all, engine_for, writing
from store.migrate import migrate
from store.tables import audit_events

MONTH_START = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
STEPS = [
    ("received", "in_processing", "counter.officer"),
    ("identity_checked", "in_processing", "system"),
    ("portal_synced", "in_processing", "system"),
    ("routed", "in_processing", "system"),
    ("registry_consulted", "in_processing", "system"),
    ("appraised", "in_processing", "ward.specialist"),
    ("supplement_requested", "supplement_requested", "ward.specialist"),
    ("supplement_provided", "in_processing", "counter.officer"),
    ("approved", "result_ready", "ward.leader"),
    ("signed", "result_ready", "system"),
    ("fees_collected", "result_ready", "system"),
    ("result_at_the_receiving_unit", "result_ready", "system"),
    ("handed_over", "returned", "counter.officer"),
    ("portal_synced_closed", "returned", "system"),
    ("closed_approved", "returned", "system"),
]
BATCH = 2000


def payload(step: str, status: str, actor: str, at: datetime, due: datetime) -> str:
    """About the size of a real step's timeline entry."""
    return json.dumps(
        {
            "actor": actor,
            "at": at.isoformat(),
            "awaiting": [{"action": "appraise", "role": "specialist", "unit": "hoan-kiem"}],
            "due_at": due.isoformat(),
            "note": f"{step} theo Nghị định 61/2018",
            "status": status,
            "step": step,
        },
        ensure_ascii=False,
        sort_keys=True,
    )


async def fill(database_url: str, dossiers: int, seed: int) -> int:
    draw = random.Random(seed)
    rows: list[dict[str, object]] = []
    total = 0
    for n in range(dossiers):
        code = f"000.01.01.H26-{261102 + n // 2000:06d}-{n % 2000 + 1:04d}"
        at = MONTH_START + timedelta(minutes=draw.randrange(0, 30 * 24 * 60))
        due = at + timedelta(days=5)
        prev = audit.GENESIS
        for seq, (step, status, actor) in enumerate(STEPS[: draw.randint(12, 15)], start=1):
            at += timedelta(minutes=draw.randint(1, 240))
            event = audit.new_event(
                dossier_code=code,
                seq=seq,
                prev_hash=prev,
                event_key=f"run-{n}:{seq}",
                event_type=step,
                actor=actor,
                at=at,
                payload=payload(step, status, actor, at, due),
            )
            prev = event.hash
            rows.append(event.model_dump())
        if len(rows) >= BATCH or n == dossiers - 1:
            async with writing(database_url) as conn:
                await conn.execute(audit_events.insert(), rows)
            total += len(rows)
            rows = []
    return total


async def run(database_url: str, dossiers: int, work: Path) -> int:
    await migrate(database_url)
    async with engine_for(database_url).connect() as conn:
        existing = (await conn.execute(select(func.count()).select_from(audit_events))).scalar()
    if existing:
        print(f"bench: {database_url} already holds {existing} audit events; give an empty one")
        return 2
    started = time.perf_counter()
    events = await fill(database_url, dossiers, seed=2025)
    print(f"filled: {dossiers} dossiers, {events} events in {time.perf_counter() - started:.1f} s")

    key = auditlog.signing_key(work / "checkpoint.key", print)
    started = time.perf_counter()
    async with writing(database_url) as conn:
        signed = await auditlog.checkpoint(conn, key, datetime.now(UTC))
    checkpoint_s = time.perf_counter() - started
    print(f"ops audit checkpoint: {signed.appended} events appended in {checkpoint_s:.1f} s")

    started = time.perf_counter()
    async with engine_for(database_url).connect() as conn:
        verdict = await auditlog.check(conn)
    verify_s = time.perf_counter() - started
    print(
        f"ops audit verify (database side): {verdict.dossiers} dossiers, {verdict.events} "
        f"events, {verdict.logged} in the signed log, {len(verdict.findings)} findings, "
        f"in {verify_s:.1f} s"
    )

    started = time.perf_counter()
    async with engine_for(database_url).connect() as conn:
        document = await auditlog.bundle(conn, MONTH_START, MONTH_START + timedelta(days=40))
    path = work / "bundle.json"
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    bundle_s = time.perf_counter() - started
    size_mb = path.stat().st_size / 1e6
    count = len(document["events"])
    print(f"ops audit bundle: {count} events, {size_mb:.0f} MB in {bundle_s:.1f} s")

    started = time.perf_counter()
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-I", str(ROOT / "auditlog" / "verify.py"), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    standalone_s = time.perf_counter() - started
    print(f"verify.py on the bundle: exit {done.returncode} in {standalone_s:.1f} s")
    print("  " + "\n  ".join(done.stdout.strip().splitlines()[-3:]))
    worst = max(verify_s, standalone_s)
    print(
        f"audit verification of {dossiers} dossiers: database side {verify_s:.1f} s, "
        f"standalone verifier {standalone_s:.1f} s (target under 60 s: "
        f"{'met' if worst < 60 else 'NOT met'})"
    )
    return 0 if verdict.holds and done.returncode == 0 and worst < 60 else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dossiers", type=int, default=10_000)
    parser.add_argument("--database-url", help="an empty database; default a fresh SQLite file")
    args = parser.parse_args()

    async def go(work: Path) -> int:
        url = args.database_url or f"sqlite+aiosqlite:///{work}/engine.db"
        try:
            return await run(url, args.dossiers, work)
        finally:
            await dispose_all()

    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        return asyncio.run(go(Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
