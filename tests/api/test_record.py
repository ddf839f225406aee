"""The record outlives Temporal: dossiers closed on every route are archived, then deleted
from Temporal as the namespace's retention would; everything an integrator or an auditor
reads of them stays the same, from the read model and the archive."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import TypeAdapter
from sqlalchemy import select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from bootstrap import namespace_retention, schedule_archive
from ops import audit as audit_ops
from ops.export import dossier_timeline, write_histories
from ops.rebuild import rebuild
from ops.signatures import verify_dossier
from ops.stuck import StuckKind, unarchived
from ops.temporal import HistorySource, dossier_runs
from schemas.actions import (
    Action,
    Appraisal,
    Certification,
    HandOver,
    Recommendation,
    Refusal,
    Supplement,
    SupplementRequest,
    Withdrawal,
)
from schemas.catalogue import DeliveryChannel
from schemas.dossier import DossierView, SubmittedDocument
from schemas.statuses import Outcome, Role
from simulators.seed import sample_civil_packages, sample_enterprises
from store import archive, views
from store.db import engine_for
from store.tables import dossiers
from tests.api.conftest import ApiServer, issue_key
from tests.conftest import EngineStack
from tests.driver import act, officer, result, submission, submit
from tests.test_export import ops_cli
from tests.test_lifecycle import approve_through
from workflows.archive import SCHEDULE_ID
from workflows.certification import CertificationWorkflow
from workflows.dossier import DossierWorkflow
from workflows.processing import ProcessingWorkflow

BIRTH = "1.001193"  # ward tier
BUSINESS_HOUSEHOLD = "1.001612"  # ward tier, fee
PRIVATE_ENTERPRISE = "2.001610"  # city tier (Sở Tài chính), fee
CERTIFIED_COPY = "2.000815"  # certification lane
UNITS = ["hoan-kiem", "ba-dinh", "ha-dong", "so-tai-chinh", "cua-nam", "dong-da", "tay-ho"]
UNITS += ["cau-giay"]


async def close_on_every_route(stack: EngineStack) -> dict[str, Outcome]:
    """One dossier per route and ending, each driven to its close."""
    codes: dict[str, Outcome] = {}

    # Ward, filed at one ward and decided at another, one supplement round, counter hand-over.
    ward = await submit(
        stack,
        submission(
            BIRTH,
            "hoan-kiem",
            citizen=70,
            competent_unit="ba-dinh",
            subject_reference=sample_civil_packages()[70].package_id,
        ),
    )
    await act(
        stack,
        ward,
        Action.REQUEST_SUPPLEMENT,
        SupplementRequest(officer=officer(Role.SPECIALIST, "ba-dinh"), missing=["identity_card"]),
    )
    await act(
        stack,
        ward,
        Action.PROVIDE_SUPPLEMENT,
        Supplement(
            officer=officer(Role.COUNTER_OFFICER, "hoan-kiem"),
            documents=[SubmittedDocument(kind="identity_card", title="Căn cước công dân")],
        ),
    )
    await approve_through(stack, ward, "ba-dinh")
    await act(
        stack,
        ward,
        Action.HAND_OVER,
        HandOver(officer=officer(Role.COUNTER_OFFICER, "hoan-kiem"), rating=3),
    )
    codes[ward] = Outcome.APPROVED

    # City tier, fees, result by post.
    city = await submit(
        stack,
        submission(
            PRIVATE_ENTERPRISE,
            "ha-dong",
            citizen=71,
            subject_reference=sample_enterprises()[45].enterprise_code,
            delivery=DeliveryChannel.POST,
        ),
    )
    await approve_through(stack, city, "so-tai-chinh")
    codes[city] = Outcome.APPROVED

    # Certification lane, online.
    certified = await submit(
        stack, submission(CERTIFIED_COPY, "cua-nam", citizen=72, delivery=DeliveryChannel.ONLINE)
    )
    await act(
        stack,
        certified,
        Action.CERTIFY,
        Certification(officer=officer(Role.CERTIFIER, "cua-nam")),
    )
    codes[certified] = Outcome.APPROVED

    # Refused by the leader.
    refused = await submit(
        stack,
        submission(
            BUSINESS_HOUSEHOLD,
            "dong-da",
            citizen=73,
            subject_reference=sample_enterprises()[46].enterprise_code,
            delivery=DeliveryChannel.ONLINE,
        ),
    )
    await act(
        stack,
        refused,
        Action.APPRAISE,
        Appraisal(
            officer=officer(Role.SPECIALIST, "dong-da"), recommendation=Recommendation.REFUSE
        ),
    )
    await act(
        stack,
        refused,
        Action.REFUSE,
        Refusal(officer=officer(Role.LEADER, "dong-da"), reason="Ngành nghề kinh doanh bị cấm"),
    )
    codes[refused] = Outcome.REFUSED

    # Withdrawn by the citizen.
    withdrawn = await submit(
        stack,
        submission(
            BIRTH,
            "tay-ho",
            citizen=74,
            subject_reference=sample_civil_packages()[74].package_id,
        ),
    )
    await act(
        stack,
        withdrawn,
        Action.WITHDRAW,
        Withdrawal(officer=officer(Role.COUNTER_OFFICER, "tay-ho"), reason="công dân rút hồ sơ"),
    )
    codes[withdrawn] = Outcome.WITHDRAWN

    # Rejected at intake: the population registry does not know the name.
    rejected = await submit(
        stack, submission(BIRTH, "cau-giay", citizen=75, full_name="Người Khác Tên")
    )
    codes[rejected] = Outcome.REJECTED_AT_INTAKE

    for code, outcome in codes.items():
        assert (await result(stack, code)).outcome is outcome, code
    return codes


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.2)


async def read_all(client: httpx.AsyncClient, codes: list[str]) -> dict[str, tuple[Any, Any]]:
    answers: dict[str, tuple[Any, Any]] = {}
    for code in codes:
        status = await client.get(f"/v1/dossiers/{code}")
        timeline = await client.get(f"/v1/dossiers/{code}/timeline")
        assert status.status_code == 200, status.text
        assert timeline.status_code == 200, timeline.text
        answers[code] = (status.json(), timeline.json())
    return answers


async def delete_from_temporal(stack: EngineStack, workflow_id: str, run_id: str) -> None:
    """What the namespace's retention does to a closed run."""
    client = stack.client
    await client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
        )
    )

    async def gone() -> bool:
        try:
            await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
        except RPCError as err:
            return err.status is RPCStatusCode.NOT_FOUND
        return False

    await until(gone, f"{workflow_id} is deleted")


async def test_closed_dossiers_outlive_their_temporal_histories(
    api: ApiServer, tmp_path: Path
) -> None:
    stack = api.stack
    database_url = stack.settings.database_url
    codes = await close_on_every_route(stack)
    key = await issue_key(database_url, "record-auditor", UNITS, [r.value for r in Role])
    engine = engine_for(database_url)

    # The last step is written a local activity after the workflow shows it.
    async def all_closed_in_read_model() -> bool:
        async with engine.connect() as conn:
            found = [await views.snapshot(conn, code) for code in codes]
        return all(s is not None and s.closed for s in found)

    await until(all_closed_in_read_model, "the read model holds every dossier closed")

    async with api.client(key) as client:
        before = await read_all(client, list(codes))
    # A closed dossier's clock is not running.
    assert all(b[0]["clock"] is None or b[0]["clock"]["running"] is False for b in before.values())
    # The read model answers as the workflow does.
    for code in codes:
        live = await stack.client.get_workflow_handle(code).query(DossierWorkflow.status)
        # The same instants: the API gives them in UTC, the workflow as it keeps them.
        assert DossierView.model_validate(before[code][0]) == live, code
    timelines = {c: await dossier_timeline(stack.client, database_url, c) for c in codes}
    approved = [c for c, o in codes.items() if o is Outcome.APPROVED]
    signatures = {
        c: await verify_dossier(stack.client, database_url, c, stack.settings.url("signing"))
        for c in approved
    }
    assert all(r.invalid == 0 and r.documents for r in signatures.values())
    runs_before = {c: await dossier_runs(stack.client, database_url, c) for c in codes}
    assert all(r.source is HistorySource.TEMPORAL for runs in runs_before.values() for r in runs)

    # Closed and not archived: what `ops stuck` shows once a quarter of the retention passed.
    async with engine.connect() as conn:
        latest_close = max(
            s.view.closed_at
            for s in [await views.snapshot(conn, c) for c in codes]
            if s is not None and s.view.closed_at is not None
        )
        waiting = await unarchived(conn, latest_close + timedelta(seconds=1), timedelta(0))
    assert set(codes) <= {row.code for row in waiting if row.kind is StuckKind.UNARCHIVED}

    # The archiver's schedule, triggered now rather than at its next interval.
    await schedule_archive(stack.client, stack.settings)
    await stack.client.get_schedule_handle(SCHEDULE_ID).trigger()
    expected = {c: {(r.history.workflow_id, r.run_id) for r in runs_before[c]} for c in codes}

    async def archived() -> bool:
        async with engine.connect() as conn:
            for code in codes:
                kept = {(r.workflow_id, r.run_id) for r in await archive.runs_of(conn, code)}
                if kept != expected[code]:
                    return False
        return True

    await until(archived, "the archiver copied every run", timeout=120)
    async with engine.connect() as conn:
        waiting = await unarchived(conn, latest_close + timedelta(seconds=1), timedelta(0))
    assert not set(codes) & {row.code for row in waiting}

    for runs in runs_before.values():
        for run in runs:
            await delete_from_temporal(stack, run.history.workflow_id, run.run_id)

    # GET and timeline: the same JSON, from the read model.
    async with api.client(key) as client:
        after = await read_all(client, list(codes))
    assert after == before

    # A counter retrying its hand-over after a timeout learns the dossier closed, and when.
    ward = next(iter(codes))
    step = HandOver(officer=officer(Role.COUNTER_OFFICER, "hoan-kiem"), rating=3)
    async with api.client(key) as client:
        retried = await client.post(
            f"/v1/dossiers/{ward}/actions/hand_over", json=step.model_dump(mode="json")
        )
    assert retried.status_code == 409, retried.text
    assert f"dossier {ward} closed on " in retried.json()["detail"]
    assert "(approved)" in retried.json()["detail"]

    # A rebuild of the read model keeps the dossiers Temporal no longer holds.
    async with engine_for(database_url, writer=True).begin() as conn:
        await rebuild(conn, stack.client)
    async with engine.connect() as conn:
        rows = await conn.execute(select(dossiers.c.code).where(dossiers.c.code.in_(list(codes))))
        assert {row.code for row in rows} == set(codes)
    async with api.client(key) as client:
        assert await read_all(client, list(codes)) == before

    # Histories from the archive, as stored, in Temporal's JSON; a plain Replayer replays them.
    replayer = Replayer(
        workflows=[DossierWorkflow, ProcessingWorkflow, CertificationWorkflow],
        data_converter=stack.client.data_converter,
    )
    for code in codes:
        runs = await dossier_runs(stack.client, database_url, code)
        assert {(r.history.workflow_id, r.run_id) for r in runs} == expected[code]
        assert all(r.source is HistorySource.ARCHIVE for r in runs)
        for path in write_histories(runs, tmp_path / code):
            workflow_id, run_id = path.stem.split("@", 1)
            history = WorkflowHistory.from_json(workflow_id, json.loads(path.read_text()))
            [earlier] = [r for r in runs_before[code] if r.run_id == run_id]
            assert list(history.events) == list(earlier.history.events)
            replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
            assert replayed.replay_failure is None, f"{path.name}: {replayed.replay_failure}"

    # The auditor's exports and checks hold as before.
    for code in codes:
        assert await dossier_timeline(stack.client, database_url, code) == timelines[code]
    for code in approved:
        signing = stack.settings.url("signing")
        assert await verify_dossier(stack.client, database_url, code, signing) == signatures[code]
    async with engine.connect() as conn:
        for code in codes:
            report = await audit_ops.verify(conn, stack.client, database_url, code)
            assert report.broken is None, report.broken
            assert report.checked_against_archive == 1

    assert await namespace_retention(stack.client) > timedelta(0)
    shown = await ops_cli(stack, "archive", "status", "--json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["archived_dossiers"] >= len(codes)
    retention = TypeAdapter(timedelta).validate_python(status["retention"])
    assert retention == await namespace_retention(stack.client)
    replay = await ops_cli(stack, "replay", "--dossier", next(iter(codes)))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "(archive)" in replay.stdout
