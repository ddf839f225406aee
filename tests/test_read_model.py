"""The read model and the audit log: one event per step, rows that match the dossier, a
rebuild from Temporal equal to the step-by-step writes, tampering named, resets audited."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from config import ROOT
from ops import audit as audit_ops
from ops.rebuild import rebuild
from ops.reset import reset_dossier
from ops.reset_points import Step, locate
from schemas.actions import Action, HandOver, Supplement, SupplementRequest
from schemas.dossier import DossierView, SubmittedDocument, TimelineEntry
from schemas.exchanges import ProjectionRecord
from schemas.lifecycle import event_type_of
from schemas.statuses import DossierStatus, Role, Stage
from services import dossiers as dossier_service
from simulators.seed import sample_civil_packages
from store import audit, projection, views
from store.db import engine_for
from store.tables import audit_events, dossiers, tasks
from tests.conftest import EngineStack
from tests.driver import (
    act,
    officer,
    procedure,
    result,
    submission,
    submit,
    timeline,
    view,
    wait_for,
)
from tests.test_lifecycle import approve_through

BIRTH = "1.001193"


@pytest.fixture
async def conn(stack: EngineStack) -> AsyncIterator[AsyncConnection]:
    async with engine_for(stack.settings.database_url).connect() as connection:
        yield connection


async def full_dossier(stack: EngineStack, citizen: int, unit: str) -> str:
    package = sample_civil_packages()[citizen].package_id
    code = await submit(stack, submission(BIRTH, unit, citizen=citizen, subject_reference=package))
    await act(
        stack,
        code,
        Action.REQUEST_SUPPLEMENT,
        SupplementRequest(officer=officer(Role.SPECIALIST, unit), missing=["identity_card"]),
    )
    await act(
        stack,
        code,
        Action.PROVIDE_SUPPLEMENT,
        Supplement(
            officer=officer(Role.COUNTER_OFFICER, unit),
            documents=[SubmittedDocument(kind="identity_card", title="CCCD")],
        ),
    )
    await approve_through(stack, code, unit)
    await act(stack, code, Action.HAND_OVER, HandOver(officer=officer(Role.COUNTER_OFFICER, unit)))
    await result(stack, code)
    return code


async def test_each_step_is_one_chained_audit_event_and_the_rows_match_the_dossier(
    stack: EngineStack, conn: AsyncConnection
) -> None:
    code = await full_dossier(stack, 50, "hong-ha")
    steps = await timeline(stack, code)
    final = await view(stack, code)

    chain = await audit.events(conn, code)
    assert [e.event_type for e in chain] == [event_type_of(s.step) for s in steps]
    assert [e.seq for e in chain] == list(range(1, len(steps) + 1))
    # The audit log tells the history's time: each event at its step's workflow time.
    assert [e.at for e in chain] == [s.at for s in steps]
    assert audit.first_break(chain) is None

    row = (await conn.execute(select(dossiers).where(dossiers.c.code == code))).one()
    assert final.clock is not None
    assert (row.status, row.portal_status_code, row.stage, row.outcome) == (
        DossierStatus.RETURNED.value,
        10,
        Stage.CLOSED.value,
        "approved",
    )
    assert row.on_time is True and row.last_event_seq == len(chain)
    assert row.applicant_ref == final.applicant_ref and "*" in row.applicant_ref
    inbox = (
        await conn.execute(
            select(tasks).where(tasks.c.dossier_code == code).order_by(tasks.c.since)
        )
    ).all()
    # Every awaited step became a task at its unit and role, and each is done now. After the
    # one supplement request (Decree 61/2018 art. 19(4)) the specialist may only appraise.
    assert [(t.action, t.role, t.done_by) for t in inbox] == [
        ("appraise/request_supplement", "specialist", "hong-ha.specialist.1"),
        ("provide_supplement", "counter_officer", "hong-ha.counter_officer.1"),
        ("appraise", "specialist", "hong-ha.specialist.1"),
        ("approve/refuse", "leader", "hong-ha.leader.1"),
        ("hand_over", "counter_officer", "hong-ha.counter_officer.1"),
    ]
    assert all(t.done_at is not None for t in inbox)

    report = await audit_ops.verify(conn, stack.client, stack.settings.database_url, code)
    assert report.broken is None and report.events == len(chain)
    cli = await ops_cli(stack, "audit", "verify", code)
    assert cli.returncode == 0, cli.stderr
    said = cli.stdout.strip().splitlines()
    assert said[0] == f"audit: 1 dossiers and {len(chain)} events verified"
    assert said[1].startswith("audit log: ")  # the global log's part


async def test_a_retried_write_writes_nothing_twice(stack: EngineStack) -> None:
    code = await full_dossier(stack, 51, "hong-ha")
    steps = await timeline(stack, code)
    record = ProjectionRecord(
        event_key=f"{(await stack.client.get_workflow_handle(code).describe()).run_id}:3",
        event_type=event_type_of(steps[3].step),
        view=await view(stack, code),
        timeline=steps[:4],
    )
    engine = engine_for(stack.settings.database_url, writer=True)
    async with engine.begin() as c:
        before = (await c.execute(select(func.count()).select_from(audit_events))).scalar_one()
        receipt = await projection.write(c, record)
        after = (await c.execute(select(func.count()).select_from(audit_events))).scalar_one()
    assert after == before and receipt.seq == 4
    # The row follows the view it was given; the next step's write brings it back.
    async with engine.begin() as c:
        await projection.replace_dossier(c, await view(stack, code), steps)


async def projected(stack: EngineStack, code: str) -> None:
    """Until the read model holds every step of the timeline (the write follows the state the
    query shows by one local activity)."""
    for _ in range(100):
        steps = await dossier_service.live_timeline(stack.client, code)
        async with engine_for(stack.settings.database_url).connect() as c:
            if len(await audit.events(c, code)) == len(steps):
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{code}: read model behind the timeline")


async def snapshot(conn: AsyncConnection) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    rows = {tuple(r) for r in await conn.execute(select(dossiers))}
    task_columns = [c for c in tasks.c if c.name != "id"]
    inbox = {tuple(r) for r in await conn.execute(select(*task_columns))}
    return rows, inbox


async def test_rebuild_from_temporal_equals_the_step_by_step_tables(stack: EngineStack) -> None:
    await full_dossier(stack, 52, "bo-de")
    # One left open, waiting on an officer, so open tasks are compared too.
    open_code = await submit(
        stack,
        submission(
            BIRTH, "bo-de", citizen=53, subject_reference=sample_civil_packages()[53].package_id
        ),
    )
    await wait_for(stack, open_code, Action.APPRAISE)
    engine = engine_for(stack.settings.database_url, writer=True)
    await projected(stack, open_code)
    async with engine.connect() as c:
        before = await snapshot(c)
    async with engine.begin() as c:
        count = await rebuild(c, stack.client)
    async with engine.connect() as c:
        after = await snapshot(c)
    assert count == len(before[0])
    # Which columns of which dossier differ, step by step against rebuilt.
    assert not (differ := differences([c.name for c in dossiers.c], before[0], after[0])), differ
    assert after == before


Row = tuple[Any, ...]


def differences(
    columns: Sequence[str], before: set[Row], after: set[Row]
) -> list[tuple[Any, list[tuple[str, Any, Any]]]]:
    """Which columns differ, for each row of `before` whose key (first column) is in `after`
    with other values."""
    return [
        (row[0], [(n, a, b) for n, a, b in zip(columns, row, other, strict=True) if a != b])
        for row in before - after
        for other in after - before
        if row[0] == other[0]
    ]


def answer_rows(code: str, answer: DossierView | list[TimelineEntry]) -> set[Row]:
    """An answer as the API sends it, one row per model, each field its JSON."""
    models: list[DossierView] | list[TimelineEntry] = (
        [answer] if isinstance(answer, DossierView) else answer
    )
    return {
        (f"{code} #{n}", *(json.dumps(v) for v in m.model_dump(mode="json").values()))
        for n, m in enumerate(models)
    }


async def read_model_against_workflow(stack: EngineStack, code: str) -> list[Any]:
    """The dossier's `status` and `timeline` as the API answers them (the read model) against
    its workflow's queries, field by field, once the step under way is written."""
    url = stack.settings.database_url
    differ: list[Any] = []
    for _ in range(100):
        async with engine_for(url).connect() as c:
            assert await views.snapshot(c, code) is not None, f"{code}: no record to read"
        recorded = (
            await dossier_service.status(stack.client, url, code),
            await timeline(stack, code),
        )
        live = (
            await dossier_service.live_status(stack.client, code),
            await dossier_service.live_timeline(stack.client, code),
        )
        differ = [
            *differences(
                ["", *DossierView.model_fields],
                answer_rows(code, recorded[0]),
                answer_rows(code, live[0]),
            ),
            *differences(
                ["", *TimelineEntry.model_fields],
                answer_rows(code, recorded[1]),
                answer_rows(code, live[1]),
            ),
            *([("steps", len(recorded[1]), len(live[1]))] if recorded[1] != live[1] else []),
        ]
        if not differ:
            assert recorded[0].model_dump_json() == live[0].model_dump_json()
            return []
        await asyncio.sleep(0.1)
    return differ


async def test_an_open_dossier_reads_from_the_read_model_as_its_workflow_answers(
    stack: EngineStack,
) -> None:
    """At each point of its life where a dossier rests, the read model answers what its
    workflow would: at intake, awaiting an officer, with a supplement asked, its result
    ready at the counter, and closed."""
    unit = "hong-ha"
    counter, specialist = officer(Role.COUNTER_OFFICER, unit), officer(Role.SPECIALIST, unit)
    filed = submission(
        BIRTH,
        unit,
        citizen=54,
        skip_documents=1,
        subject_reference=sample_civil_packages()[54].package_id,
    )
    code = await submit(stack, filed)
    at_intake = await wait_for(stack, code, Action.PROVIDE_SUPPLEMENT)
    assert at_intake.stage is Stage.INTAKE
    assert await read_model_against_workflow(stack, code) == []

    missing = procedure(BIRTH).required_documents[0]
    await act(
        stack,
        code,
        Action.PROVIDE_SUPPLEMENT,
        Supplement(
            officer=counter, documents=[SubmittedDocument(kind=missing.kind, title=missing.name)]
        ),
    )
    awaiting = await wait_for(stack, code, Action.APPRAISE)
    assert awaiting.stage is Stage.PROCESSING and awaiting.handled_by == code  # lane inside
    assert await read_model_against_workflow(stack, code) == []

    await act(
        stack,
        code,
        Action.REQUEST_SUPPLEMENT,
        SupplementRequest(officer=specialist, missing=["identity_card"]),
    )
    asked = await wait_for(stack, code, Action.PROVIDE_SUPPLEMENT)
    assert asked.stage is Stage.PROCESSING and asked.clock is not None
    assert await read_model_against_workflow(stack, code) == []

    await act(
        stack,
        code,
        Action.PROVIDE_SUPPLEMENT,
        Supplement(
            officer=counter, documents=[SubmittedDocument(kind="identity_card", title="CCCD")]
        ),
    )
    await approve_through(stack, code, unit)
    ready = await wait_for(stack, code, Action.HAND_OVER)
    assert ready.status is DossierStatus.RESULT_READY and ready.handled_by == code
    assert await read_model_against_workflow(stack, code) == []

    await act(stack, code, Action.HAND_OVER, HandOver(officer=counter))
    await result(stack, code)
    closed = await view(stack, code)
    assert closed.stage is Stage.CLOSED
    assert await read_model_against_workflow(stack, code) == []


async def test_a_reset_is_an_operator_event_and_the_steps_run_again_are_new_events(
    stack: EngineStack, conn: AsyncConnection
) -> None:
    package = sample_civil_packages()[54].package_id
    code = await submit(
        stack, submission(BIRTH, "viet-hung", citizen=54, subject_reference=package)
    )
    await approve_through(stack, code, "viet-hung")
    await wait_for(stack, code, Action.HAND_OVER)
    # The workflow task in which the lane's result came back, as `ops reset --to return` finds it.
    returned = await locate(stack.client, code, Step.RETURN)
    task_completed = returned.event_id
    await projected(stack, code)
    before = len(await audit.events(conn, code))

    engine = engine_for(stack.settings.database_url, writer=True)
    async with engine.begin() as c:
        await reset_dossier(
            stack.client,
            c,
            code=code,
            workflow_task_finish_event_id=task_completed,
            operator="operator.nguyen",
            reason="portal sync replayed after the portal's outage",
        )
    await act(
        stack, code, Action.HAND_OVER, HandOver(officer=officer(Role.COUNTER_OFFICER, "viet-hung"))
    )
    await result(stack, code)

    async with engine.connect() as c:
        chain = await audit.events(c, code)
    kinds = [e.event_type for e in chain]
    assert kinds[before] == "operator_reset" and chain[before].actor == "operator.nguyen"
    assert kinds[before + 1 :].count("result_at_the_receiving_unit") == 1
    assert kinds[-1] == "closed_approved"
    assert audit.first_break(chain) is None
    async with engine.connect() as c:
        report = await audit_ops.verify(c, stack.client, stack.settings.database_url, code)
    assert report.broken is None, report.broken


async def test_an_event_altered_behind_the_systems_back_is_named(
    stack: EngineStack,
) -> None:
    code = await full_dossier(stack, 55, "phuc-loi")
    engine = engine_for(stack.settings.database_url, writer=True)
    async with engine.begin() as c:
        original = (
            await c.execute(
                select(audit_events.c.actor).where(
                    audit_events.c.dossier_code == code, audit_events.c.seq == 3
                )
            )
        ).scalar_one()
        restore = await disable_append_only_guard(c)
        await c.execute(
            audit_events.update()
            .where(audit_events.c.dossier_code == code, audit_events.c.seq == 3)
            .values(actor="someone.else")
        )
    try:
        async with engine.connect() as c:
            report = await audit_ops.verify(c, stack.client, stack.settings.database_url)
        assert report.broken is not None
        assert (report.broken.dossier_code, report.broken.seq) == (code, 3)
        assert "hash does not match" in report.broken.reason
        cli = await ops_cli(stack, "audit", "verify", code)
        assert cli.returncode == 1
        assert f"BROKEN at dossier {code}, event 3" in cli.stderr
    finally:
        async with engine.begin() as c:
            await c.execute(
                audit_events.update()
                .where(audit_events.c.dossier_code == code, audit_events.c.seq == 3)
                .values(actor=original)
            )
            for statement in restore:
                await c.execute(text(statement))


async def ops_cli(stack: EngineStack, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ops ...` against the test stack, as an operator would run it (in a thread:
    the stack's workers run on this event loop and must keep answering)."""
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "DATABASE_URL": stack.settings.database_url,
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ops", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


async def disable_append_only_guard(conn: AsyncConnection) -> list[str]:
    """What someone with database access could do: take the triggers off. Returns the
    statements that put them back."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        return ["ALTER TABLE audit_events ENABLE TRIGGER USER"]
    triggers = (
        await conn.execute(
            text(
                "SELECT name, sql FROM sqlite_master "
                "WHERE type = 'trigger' AND tbl_name = 'audit_events'"
            )
        )
    ).all()
    for name, _ in triggers:
        await conn.execute(text(f"DROP TRIGGER {name}"))
    return [sql for _, sql in triggers]
