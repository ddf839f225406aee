"""Start dossiers: one from a JSON file, a demo batch, or print the sample set.

    python starter.py submit dossier.json
    python starter.py demo --count 30
    python starter.py samples --count 3 > samples.json

With TEMPORAL_ADDRESS unset, `demo` starts an embedded stack (in-memory server, simulators,
workers) of its own; otherwise it uses the running one (`make run`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client

from config import settings
from domain.calendar import HANOI
from domain.catalogue import default_catalogue
from samples import sample_submission
from schemas.actions import (
    Action,
    Appraisal,
    Approval,
    Certification,
    HandOver,
    Recommendation,
    Refusal,
    Step,
    Supplement,
    SupplementRequest,
)
from schemas.dossier import (
    AwaitedAction,
    DossierSubmission,
    DossierView,
    Officer,
    SubmittedDocument,
)
from schemas.statuses import Stage
from services import dossiers

# How often the demo's officers look at their dossiers.
OFFICER_POLL_SECONDS = 0.5


# --- officers, played by the demo ----------------------------------------------------------------
def officer(role: str, unit: str) -> Officer:
    return Officer(officer_id=f"{unit}.{role}.1", full_name=f"{role} {unit}", role=role, unit=unit)


def demo_step(index: int, awaited: AwaitedAction, supplements_asked: bool) -> tuple[Action, Step]:
    """What the officer does: mostly approve; every 10th gets a supplement request first,
    every 9th is refused."""
    me = officer(awaited.role, awaited.unit)
    action = Action(awaited.action)
    if action is Action.APPRAISE and index % 10 == 4 and not supplements_asked:
        return Action.REQUEST_SUPPLEMENT, SupplementRequest(officer=me, missing=["identity_card"])
    if action is Action.APPRAISE:
        return action, Appraisal(officer=me, recommendation=Recommendation.APPROVE)
    if action in (Action.APPROVE, Action.CERTIFY) and index % 9 == 8:
        return Action.REFUSE, Refusal(officer=me, reason="Giấy tờ không hợp lệ theo quy định")
    if action is Action.APPROVE:
        return action, Approval(officer=me)
    if action is Action.CERTIFY:
        return action, Certification(officer=me)
    if action is Action.PROVIDE_SUPPLEMENT:
        return action, Supplement(
            officer=me, documents=[SubmittedDocument(kind="identity_card", title="CCCD")]
        )
    if action is Action.HAND_OVER:
        return action, HandOver(officer=me, rating=3)
    # The demo never withdraws; a step it does not know is a demo to extend, not a dossier
    # to give up.
    raise ValueError(f"the demo officer does not know the step {action.value}")


async def play_officers(client: Client, index: int, code: str, deadline: float) -> DossierView:
    asked = False
    while True:
        view = await dossiers.status(client, code)
        if view.stage is Stage.CLOSED or time.monotonic() > deadline:
            return view
        awaited = [a for a in view.awaiting if a.action != Action.WITHDRAW.value]
        if not awaited:
            await asyncio.sleep(OFFICER_POLL_SECONDS)
            continue
        action, step = demo_step(index, awaited[0], asked)
        asked = asked or action is Action.REQUEST_SUPPLEMENT
        try:
            await dossiers.act(client, code, action, step)
        except dossiers.ActionRefused:
            await asyncio.sleep(OFFICER_POLL_SECONDS)


# --- commands --------------------------------------------------------------------------------
def hanoi(value: datetime | None) -> str:
    return value.astimezone(HANOI).strftime("%Y-%m-%d %H:%M") if value else "-"


async def run_demo(client: Client, count: int, database_url: str, timeout: float) -> int:
    catalogue = default_catalogue()
    receipts = []
    for index in range(count):
        receipts.append(
            await dossiers.submit(
                client, sample_submission(index, catalogue), catalogue, database_url
            )
        )
    deadline = time.monotonic() + timeout
    views = await asyncio.gather(
        *(play_officers(client, i, r.code, deadline) for i, r in enumerate(receipts))
    )
    header = (
        "code",
        "procedure",
        "receiving",
        "competent",
        "lane",
        "status",
        "outcome",
        "due",
        "closed",
        "on time",
    )
    rows = [
        (
            v.code,
            v.procedure_code,
            v.receiving_unit,
            v.competent_unit,
            v.lane,
            v.status.value,
            v.outcome.value if v.outcome else "-",
            hanoi(v.clock.due_at if v.clock else None),
            hanoi(v.closed_at),
            {True: "yes", False: "no", None: "-"}[v.on_time],
        )
        for v in views
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    await check_read_model(client, database_url, views)
    closed = sum(1 for v in views if v.stage is Stage.CLOSED)
    print(f"demo: {count} submitted, {closed} closed, {count - closed} stuck")
    return 0 if closed == count else 1


def row_matches(row: Any, view: DossierView) -> bool:
    due_at = view.clock.due_at if view.clock else None
    return bool(
        row.status == view.status.value
        and row.closed_at == view.closed_at
        and row.on_time == view.on_time
        and row.due_at == due_at
    )


async def check_read_model(client: Client, database_url: str, views: list[DossierView]) -> None:
    """The `dossiers` table against the table above, and the audit chains against the
    histories: what a counter's list and an auditor would see of the same dossiers."""
    from sqlalchemy import select

    from ops.audit import verify
    from store.db import engine_for
    from store.tables import dossiers as dossier_rows

    by_code = {v.code: v for v in views}
    async with engine_for(database_url).connect() as conn:
        # The last step's write trails the state the query shows by one local activity.
        for _ in range(50):
            rows = (
                await conn.execute(
                    select(dossier_rows).where(dossier_rows.c.code.in_(list(by_code)))
                )
            ).all()
            matching = [r for r in rows if row_matches(r, by_code[r.code])]
            if len(matching) == len(views):
                break
            await asyncio.sleep(0.1)
            await conn.rollback()
        print(f"read model: {len(matching)} of {len(views)} dossier rows match the table")
        events = 0
        for code in by_code:
            report = await verify(conn, client, code)
            events += report.events
            if report.broken is not None:
                broken = report.broken
                print(f"audit: BROKEN at {broken.dossier_code} event {broken.seq}: {broken.reason}")
                return
        print(f"audit: {len(views)} dossiers and {events} events verified")


async def demo(count: int, timeout: float) -> int:
    config = settings()
    if config.temporal_address:
        from bootstrap import connect

        client = await connect(config)
        from store.startup import prepare_database

        await prepare_database(config.database_url)
        return await run_demo(client, count, config.database_url, timeout)
    from stack import embedded

    with tempfile.TemporaryDirectory(prefix="dossier-demo-") as tmp:
        async with embedded(Path(tmp)) as stack:
            return await run_demo(stack.client, count, stack.settings.database_url, timeout)


def read_submission(path: Path) -> DossierSubmission | None:
    """The submission in `path`, or None after printing each bad field and its rule."""
    try:
        return DossierSubmission.model_validate_json(path.read_bytes())
    except OSError as err:
        print(f"{path}: {err.strerror}", file=sys.stderr)
    except ValidationError as err:
        for error in err.errors():
            field = ".".join(str(part) for part in error["loc"])
            print(f"{path}: {field}: {error['msg']}", file=sys.stderr)
    return None


async def submit_file(path: Path, submission: DossierSubmission) -> int:
    config = settings()
    from bootstrap import connect
    from store.startup import prepare_database

    client = await connect(config)
    await prepare_database(config.database_url)
    try:
        receipt = await dossiers.submit(
            client, submission, default_catalogue(), config.database_url
        )
    except dossiers.FilingError as err:
        print(f"{path}: {err.field}: {err.rule}", file=sys.stderr)
        return 2
    print(receipt.model_dump_json(indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="file one dossier from a JSON submission")
    submit.add_argument("file", type=Path)
    run = commands.add_parser("demo", help="submit N dossiers, play the officers, print the table")
    run.add_argument("--count", type=int, default=30)
    run.add_argument(
        "--timeout", type=float, default=110.0, help="seconds before a dossier counts as stuck"
    )
    samples = commands.add_parser("samples", help="print sample submissions as JSON")
    samples.add_argument("--count", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "submit":
        submission = read_submission(args.file)
        return 2 if submission is None else asyncio.run(submit_file(args.file, submission))
    if args.command == "demo":
        if args.count < 1:
            parser.error("--count must be at least 1")
        return asyncio.run(demo(args.count, args.timeout))
    catalogue = default_catalogue()
    print(
        json.dumps(
            [
                sample_submission(i, catalogue).model_dump(mode="json", exclude_none=True)
                for i in range(args.count)
            ],
            ensure_ascii=False,
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
