"""Operators at 2 a.m. after a registry outage: `ops stuck` finds the dossiers that are not
moving and why, `ops retry` and `ops reset` get them moving, each an audited operator action
whose event sits in the dossier's chain, which still verifies."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

from activities.http import new_http_client
from bootstrap import build_workers, warm_up
from config import ROOT, SIMULATOR_PORTS, Settings, load_settings
from domain import lanes
from domain.calendar import HANOI
from domain.catalogue import default_catalogue
from embedded import start_dev_server
from ops import audit as audit_ops
from ops.errors import NotReached
from ops.reset import reset_to_step
from ops.reset_points import ResetPoint, Step, locate
from ops.stuck import Filters, find_stuck
from schemas.actions import Action, Appraisal, Approval, HandOver, Recommendation
from schemas.actions import Step as HumanStep
from schemas.dossier import DossierView
from schemas.lanes import DossierResult
from schemas.statuses import Role, Stage
from services import dossiers
from simulators.process import running_simulators
from simulators.seed import sample_civil_packages
from store import audit
from store.audit import AuditEvent
from store.db import engine_for
from store.startup import prepare_database
from tests.conftest import EngineStack, assert_replays
from tests.driver import officer, submission
from workflows import search_attributes as sa

BIRTH = "1.001193"
OPERATOR = "operator.tran"


# --- one stack of its own: the population registry in a process that can be stopped --------------
@dataclass
class Outage:
    client: Client
    settings: Settings
    population: subprocess.Popen[bytes]  # the population registry's process
    population_port: int
    tmp: Path
    started: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
async def outage(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Outage]:
    """A Temporal dev server, the population registry alone in one simulator process and the
    other services in another, workers for every lane and a fresh SQLite database."""
    tmp = tmp_path_factory.mktemp("outage")
    warm_up()
    database_url = f"sqlite+aiosqlite:///{tmp}/engine.db"
    await prepare_database(database_url)
    others = [name for name in SIMULATOR_PORTS if name != "population"]
    env = await start_dev_server(tmp)
    state: Outage | None = None
    try:
        with (
            running_simulators(tmp / "population", only=["population"]) as population,
            running_simulators(tmp / "registries", only=others) as registries,
        ):
            config = load_settings().model_copy(
                update={
                    "registry_urls": {**population.urls, **registries.urls},
                    "data_dir": tmp,
                    "database_url": database_url,
                }
            )
            async with new_http_client() as http:
                workers = build_workers(env.client, config, lanes.ALL_QUEUES, http)
                runs = [asyncio.create_task(w.run()) for w in workers]
                state = Outage(
                    client=env.client,
                    settings=config,
                    population=population.process,
                    population_port=int(population.url("population").rsplit(":", 1)[1]),
                    tmp=tmp,
                )
                try:
                    yield state
                finally:
                    await asyncio.gather(*(w.shutdown() for w in workers))
                    await asyncio.gather(*runs, return_exceptions=True)
    finally:
        if state is not None and state.population.poll() is None:
            state.population.terminate()  # the one the test started again
            state.population.wait(timeout=10)
        await env.shutdown()
        await engine_for(database_url).dispose()
        await engine_for(database_url, writer=True).dispose()


def spawn_population(port: int, tmp: Path) -> subprocess.Popen[bytes]:
    """The population registry again, on the port the workers were configured with."""
    env = {
        **os.environ,
        "SIM_HOST": "127.0.0.1",
        "SIM_POPULATION_PORT": str(port),
        "SIGNING_DATA_DIR": str(tmp / "signing"),
        "PYTHONUNBUFFERED": "1",
    }
    with open(tmp / "population.restarted.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "simulators", "--only", "population"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def until_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1.0) as http:
        while True:
            assert process.poll() is None, f"the population registry exited: {process.returncode}"
            try:
                if (await http.get(f"{url}/_sim/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{url} did not come back"
            await asyncio.sleep(0.1)


# --- driving dossiers ----------------------------------------------------------------------------
async def submit_birth(
    client: Client, database_url: str, started: list[str], unit: str, citizen: int, **extra: Any
) -> str:
    package = sample_civil_packages()[citizen].package_id
    receipt = await dossiers.submit(
        client,
        submission(BIRTH, unit, citizen=citizen, subject_reference=package, **extra),
        default_catalogue(),
        database_url,
    )
    started.append(receipt.code)
    return receipt.code


async def awaiting(client: Client, code: str, action: Action, timeout: float = 60) -> DossierView:
    deadline = time.monotonic() + timeout
    while True:
        view = await dossiers.live_status(client, code)
        if any(a.action == action.value for a in view.awaiting):
            return view
        if view.stage is Stage.CLOSED or time.monotonic() > deadline:
            raise AssertionError(
                f"{code} never awaited {action.value}: {view.status.value} at {view.stage.value}, "
                f"awaiting {[a.action for a in view.awaiting]}"
            )
        await asyncio.sleep(0.1)


async def act(
    client: Client, database_url: str, code: str, action: Action, step: HumanStep
) -> None:
    await awaiting(client, code, action)
    await dossiers.act(client, database_url, code, action, step)


async def appraise(client: Client, database_url: str, code: str, unit: str) -> None:
    step = Appraisal(officer=officer(Role.SPECIALIST, unit), recommendation=Recommendation.APPROVE)
    await act(client, database_url, code, Action.APPRAISE, step)


async def approve(client: Client, database_url: str, code: str, unit: str) -> None:
    await act(
        client, database_url, code, Action.APPROVE, Approval(officer=officer(Role.LEADER, unit))
    )


async def hand_over(client: Client, database_url: str, code: str, unit: str) -> DossierResult:
    await act(
        client,
        database_url,
        code,
        Action.HAND_OVER,
        HandOver(officer=officer(Role.COUNTER_OFFICER, unit)),
    )
    handle: WorkflowHandle[Any, DossierResult] = client.get_workflow_handle(
        code, result_type=DossierResult
    )
    return await asyncio.wait_for(handle.result(), 60)


async def projected(client: Client, database_url: str, code: str) -> int:
    """Until the read model holds every step of the timeline (the write follows the state the
    query shows by one local activity); returns the chain's length."""
    for _ in range(200):
        steps = await dossiers.timeline(client, database_url, code)
        chain = await chain_of(database_url, code)
        if len([e for e in chain if not e.event_key.startswith("operator:")]) >= len(steps):
            return len(chain)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{code}: read model behind the timeline")


async def chain_of(database_url: str, code: str) -> list[AuditEvent]:
    async with engine_for(database_url).connect() as conn:
        return await audit.events(conn, code)


async def verified(client: Client, database_url: str, code: str) -> int:
    """The dossier's chain verifies against its histories; returns its length."""
    async with engine_for(database_url).connect() as conn:
        report = await audit_ops.verify(conn, client, database_url, code)
    assert report.broken is None, report.broken
    return report.events


# --- the command line ----------------------------------------------------------------------------
@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str

    def rows(self) -> list[dict[str, Any]]:
        assert self.returncode == 0, self.stderr
        rows: list[dict[str, Any]] = json.loads(self.stdout)
        return rows


async def ops(client: Client, config: Settings, *args: str) -> Ran:
    """`python -m ops ...` as an operator runs it, against this stack (the workers in this
    process answer its queries meanwhile)."""
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "DATABASE_URL": config.database_url,
        "DATA_DIR": str(config.data_dir),
        "COLUMNS": "200",
        **{f"{name.upper()}_URL": url for name, url in config.registry_urls.items()},
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def next_attempt(client: Client, code: str) -> datetime:
    description = await client.get_workflow_handle(code).describe()
    [activity] = description.raw_description.pending_activities
    return activity.next_attempt_schedule_time.ToDatetime(tzinfo=UTC)


async def until_failing(client: Client, codes: list[str], attempts: int) -> None:
    """Until each dossier's identity check has failed `attempts` times."""
    deadline = time.monotonic() + 60
    pending = set(codes)
    while pending:
        for code in list(pending):
            description = await client.get_workflow_handle(code).describe()
            if any(
                a.activity_type.name == "check_identity" and a.attempt > attempts
                for a in description.raw_description.pending_activities
            ):
                pending.discard(code)
        assert time.monotonic() < deadline, f"identity checks not failing: {pending}"
        await asyncio.sleep(0.2)


# --- the outage ----------------------------------------------------------------------------------
async def test_after_the_population_registry_outage_stuck_lists_them_and_one_batch_retry_moves_them(
    outage: Outage,
) -> None:
    client, config = outage.client, outage.settings
    unit = "hoan-kiem"
    outage.population.terminate()  # the registry goes down with dossiers in flight
    outage.population.wait(timeout=10)
    codes = [
        await submit_birth(client, config.database_url, outage.started, unit, citizen)
        for citizen in range(80, 84)
    ]
    # Five failures: the next attempt is 16 s away, the backoff having doubled each time.
    await until_failing(client, codes, attempts=5)

    ran = await ops(client, config, "stuck", "--json")
    stuck = ran.rows()
    assert sorted(row["code"] for row in stuck) == sorted(codes), stuck
    for row in stuck:
        assert row["workflow_id"] == row["code"] and row["kind"] == "activity"
        assert row["activity"] == "check_identity" and row["attempts"] >= 2
        assert "population registry unreachable" in row["last_error"], row
        assert row["since"] is not None
    assert set(stuck[0]) == {
        "code", "workflow_id", "kind", "activity", "attempts", "last_error", "since",
    }  # fmt: skip
    table = await ops(client, config, "stuck", "--procedure", BIRTH, "--unit", unit)
    assert table.returncode == 0, table.stderr
    assert all(code in table.stdout for code in codes) and "check_identity" in table.stdout
    # The filters narrow it through the search attributes.
    async with engine_for(config.database_url).connect() as conn:
        for filters, expected in [
            (Filters(lane=lanes.CERTIFICATION), set()),
            (Filters(unit="ba-dinh"), set()),
            (Filters(procedure=BIRTH, lane=lanes.WARD_PROCESSING), set(codes)),
            (Filters(older_than=timedelta(hours=1)), set()),
            (Filters(older_than=timedelta(seconds=1)), set(codes)),
        ]:
            assert {r.code for r in await find_stuck(client, conn, filters)} == expected, filters
    next_attempts = {code: await next_attempt(client, code) for code in codes}

    # The registry is back on the same address; one batch retry by query.
    outage.population = spawn_population(outage.population_port, outage.tmp)
    await until_healthy(config.url("population"), outage.population)
    before = {code: await projected(client, config.database_url, code) for code in codes}
    ran = await ops(
        client,
        config,
        "retry",
        "--query",
        f"ReceivingUnit = '{unit}' AND DossierProcedure = '{BIRTH}'",
        "--operator",
        OPERATOR,
        "--reason",
        "population registry back after the outage",
        "--rate",
        "5",
        "--json",
    )
    retried = ran.rows()
    assert sorted(row["code"] for row in retried) == sorted(codes), ran.stderr
    assert all(row["outcome"].startswith("retried (batch ops-retry-") for row in retried)
    assert all(row["attempts"] >= 2 for row in retried)

    # They move on at once, not at their next attempt, and close.
    for code in codes:
        receipt = await awaiting(client, code, Action.APPRAISE)
        steps = await dossiers.timeline(client, config.database_url, code)
        assert steps[0].step == "receipt and appointment slip"
        assert steps[0].at < next_attempts[code], (steps[0].at, next_attempts[code])
        assert receipt.status.value == "in_processing"
    for code in codes:
        await appraise(client, config.database_url, code, unit)
        await approve(client, config.database_url, code, unit)
        result = await hand_over(client, config.database_url, code, unit)
        assert result.outcome.value == "approved"
    assert (await ops(client, config, "stuck", "--json")).rows() == []

    for code in codes:
        chain = await chain_of(config.database_url, code)
        operator_events = [e for e in chain if e.event_type == "operator_retry"]
        assert len(operator_events) == 1, [e.event_type for e in chain]
        [event] = operator_events
        assert event.actor == OPERATOR and event.event_key.startswith("operator:")
        assert event.seq > before[code]
        payload = json.loads(event.payload)
        assert payload["operator"] == OPERATOR
        assert payload["reason"] == "population registry back after the outage"
        assert payload["batch_job_id"].startswith("ops-retry-")
        [activity] = payload["activities"]
        assert activity["activity_type"] == "check_identity" and activity["attempts"] >= 2
        assert payload["before"]["status"] == "submitted"
        assert payload["before"]["runs"][code] == payload["after"]["runs"][code]
        assert chain[-1].event_type == "closed_approved"
        assert await verified(client, config.database_url, code) == len(chain)
    assert (await ops(client, config, "audit", "verify")).returncode == 0
    await assert_replays(client, outage.started, "outage")


@workflow.defn(name="Dossier", sandboxed=False)
class BrokenDossier:
    """A dossier workflow whose code fails on every workflow task, as after a bad deploy."""

    @workflow.run
    async def run(self, code: str) -> None:
        raise RuntimeError(f"simulated bug in the new deploy ({code})")


async def test_stuck_names_a_failing_workflow_task_and_a_human_step_past_due(
    outage: Outage,
) -> None:
    client, config = outage.client, outage.settings
    unit = "tay-ho"
    if outage.population.poll() is not None:  # still down (the outage test stopped early)
        outage.population = spawn_population(outage.population_port, outage.tmp)
        await until_healthy(config.url("population"), outage.population)
    # Filed ten days ago: its appointment has passed while it waits for the specialist.
    late = await submit_birth(
        client,
        config.database_url,
        outage.started,
        unit,
        84,
        received_at=datetime.now(HANOI) - timedelta(days=10),
    )
    await awaiting(client, late, Action.APPRAISE)
    broken_id = f"broken-{uuid.uuid4().hex[:8]}"
    queue = f"broken-{broken_id}"
    async with Worker(client, task_queue=queue, workflows=[BrokenDossier]):
        handle = await client.start_workflow(
            "Dossier",
            broken_id,
            id=broken_id,
            task_queue=queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.PROCEDURE, BIRTH),
                    SearchAttributePair(sa.RECEIVING_UNIT, unit),
                    SearchAttributePair(sa.COMPETENT_UNIT, unit),
                    SearchAttributePair(sa.LANE, lanes.WARD_PROCESSING),
                ]
            ),
        )
        try:
            deadline = time.monotonic() + 30
            while (await handle.describe()).raw_description.pending_workflow_task.attempt < 2:
                assert time.monotonic() < deadline, "the broken workflow task is not retried"
                await asyncio.sleep(0.2)
            rows = (await ops(client, config, "stuck", "--unit", unit, "--json")).rows()
            kinds = {row["code"]: row for row in rows}
            assert set(kinds) == {late, broken_id}, rows
            task = kinds[broken_id]
            assert task["kind"] == "workflow_task" and task["attempts"] >= 2
            assert "simulated bug in the new deploy" in task["last_error"]
            assert task["last_error"].startswith("WORKFLOW_WORKER_UNHANDLED_FAILURE")
            due = kinds[late]
            assert due["kind"] == "human_task" and due["activity"] == "appraise/request_supplement"
            assert due["workflow_id"] == late  # its lane runs inside it
            assert "awaits specialist at tay-ho" in due["last_error"]
            # Retry is for activities: the tool says what else to do, and changes nothing.
            ran = await ops(
                client, config, "retry", broken_id, "--operator", OPERATOR, "--reason", "deploy"
            )
            assert ran.returncode == 2
            assert "no failing activity; its workflow task fails" in ran.stderr
        finally:
            await handle.terminate("test over")
    await assert_replays(client, [late], "outage")


# --- resets on the session stack -----------------------------------------------------------------
async def settled(client: Client, code: str, step: Step, timeout: float = 15) -> ResetPoint:
    """The reset point once the lane has settled: the step an officer just took may still be
    in the lane's open workflow task, and the reset tool refuses to cut one in two."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await locate(client, code, step)
        except NotReached as err:
            if "right now" not in str(err) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def test_reset_a_running_lane_to_appraisal_inside_its_dossier_workflow(
    stack: EngineStack,
) -> None:
    """Resetting the dossier workflow its lane runs inside, to the lane's steps: they run
    again as new events of the new run; the dossier closes; the chain verifies."""
    client, url, unit = stack.client, stack.settings.database_url, "giang-vo"
    code = await submit_birth(client, url, stack.started, unit, 85)
    await appraise(client, url, code, unit)
    await awaiting(client, code, Action.APPROVE)
    lane_id = code
    lane_run = (await client.get_workflow_handle(lane_id).describe()).run_id
    before = await projected(client, url, code)

    reset = await reset_to_step(
        client,
        url,
        code,
        Step.APPRAISAL,
        operator=OPERATOR,
        reason="registry findings were wrong during the outage",
    )
    assert reset.workflow_id == lane_id and reset.run_id_before == lane_run
    assert reset.run_id_after not in (None, lane_run)
    # The lane consults the registries again and waits for the specialist again, in the new
    # run of the dossier workflow.
    view = await awaiting(client, code, Action.APPRAISE)
    assert view.handled_by == lane_id
    assert (await client.get_workflow_handle(code).describe()).run_id == reset.run_id_after
    await appraise(client, url, code, unit)
    await awaiting(client, code, Action.APPROVE)

    # Approval before any decision, nothing done since the appraisal: the dossier is in the
    # leader's inbox already, and there is nothing to reset.
    with pytest.raises(NotReached, match="already awaits approval"):
        await settled(client, code, Step.APPROVAL)
    await approve(client, url, code, unit)
    result = await hand_over(client, url, code, unit)
    assert result.outcome.value == "approved"

    chain = await chain_of(url, code)
    kinds = [e.event_type for e in chain]
    assert kinds[before] == "operator_reset"
    assert kinds.count("operator_reset") == 1
    assert kinds[before + 1 :].count("registries_consulted") == 1
    assert kinds.count("registries_consulted") == 2 and kinds.count("appraised") == 2
    payload = json.loads(chain[before].payload)
    assert payload["dossier_code"] == code and payload["workflow_id"] == lane_id
    assert payload["step"] == "appraisal" and payload["run_id_before"] == lane_run
    assert payload["run_id_after"] == reset.run_id_after
    assert payload["before"]["runs"][lane_id] == lane_run
    assert payload["after"]["runs"][lane_id] == reset.run_id_after
    assert payload["before"]["source"] == "status query"
    assert await verified(client, url, code) == len(chain)


async def test_reset_to_return_by_the_command_line_after_a_dry_run_that_changed_nothing(
    stack: EngineStack,
) -> None:
    client, url, unit = stack.client, stack.settings.database_url, "lang"
    config = stack.settings
    code = await submit_birth(client, url, stack.started, unit, 86)
    await appraise(client, config.database_url, code, unit)
    await approve(client, config.database_url, code, unit)
    await awaiting(client, code, Action.HAND_OVER)
    run_before = (await client.get_workflow_handle(code).describe()).run_id
    events_before = await projected(client, url, code)

    dry = await ops(
        client, config, "reset", code, "--to", "return", "--operator", OPERATOR,
        "--reason", "result slip misprinted", "--dry-run", "--json",
    )  # fmt: skip
    [row] = dry.rows()
    assert row["workflow_id"] == code and row["outcome"].startswith("would reset")
    assert row["run_id_before"] == run_before and row["run_id_after"] is None
    dry_batch = await ops(
        client, config, "reset", "--query", f"ReceivingUnit = '{unit}'", "--to", "return",
        "--operator", OPERATOR, "--reason", "result slip misprinted", "--dry-run", "--json",
    )  # fmt: skip
    assert [r["code"] for r in dry_batch.rows() if r["outcome"].startswith("would reset")] == [code]
    dry_retry = await ops(
        client, config, "retry", "--query", f"ReceivingUnit = '{unit}'",
        "--operator", OPERATOR, "--reason", "nothing is failing", "--dry-run", "--json",
    )  # fmt: skip
    assert dry_retry.rows() == []
    assert len(await chain_of(url, code)) == events_before
    assert (await client.get_workflow_handle(code).describe()).run_id == run_before

    ran = await ops(
        client, config, "reset", code, "--to", "return", "--operator", OPERATOR,
        "--reason", "result slip misprinted", "--json",
    )  # fmt: skip
    [row] = ran.rows()
    assert row["run_id_before"] == run_before and row["run_id_after"] != run_before
    assert row["status_before"] == "result_ready"
    result = await hand_over(client, config.database_url, code, unit)
    assert result.outcome.value == "approved"

    chain = await chain_of(url, code)
    kinds = [e.event_type for e in chain]
    assert kinds[events_before] == "operator_reset"
    assert kinds[events_before + 1 :] == [
        "result_at_the_receiving_unit",
        "result_returned",
        "closed_approved",
    ]
    payload = json.loads(chain[events_before].payload)
    assert payload["step"] == "return" and payload["operator"] == OPERATOR
    assert payload["run_id_before"] == run_before and payload["run_id_after"] == row["run_id_after"]
    assert payload["before"]["status"] == "result_ready"
    assert await verified(client, url, code) == len(chain)


async def test_refusals_are_clear_and_exit_2(stack: EngineStack) -> None:
    client, url, unit = stack.client, stack.settings.database_url, "lang"
    config = stack.settings
    code = await submit_birth(client, url, stack.started, unit, 87)
    await awaiting(client, code, Action.APPRAISE)

    async def refused(*args: str) -> str:
        ran = await ops(client, config, *args)
        assert ran.returncode == 2, (args, ran.stdout, ran.stderr)
        return " ".join(ran.stderr.split())

    assert "Missing option '--reason'" in await refused(
        "reset", code, "--to", "return", "--operator", OPERATOR
    )
    assert "give a reason" in await refused(
        "reset", code, "--to", "return", "--operator", OPERATOR, "--reason", "  "
    )
    assert "Invalid value for '--to'" in await refused(
        "reset", code, "--to", "appeal", "--operator", OPERATOR, "--reason", "x"
    )
    assert f"dossier {code} has not reached signing" in await refused(
        "reset", code, "--to", "signing", "--operator", OPERATOR, "--reason", "x"
    )
    assert f"dossier {code} has not reached return" in await refused(
        "reset", code, "--to", "return", "--operator", OPERATOR, "--reason", "x"
    )
    assert "either a dossier CODE or --query" in await refused(
        "retry", code, "--query", "ReceivingUnit = 'lang'", "--operator", OPERATOR, "--reason", "x"
    )
    assert f"dossier {code} has no failing activity to retry" in await refused(
        "retry", code, "--operator", OPERATOR, "--reason", "x"
    )

    # Approved, awaiting hand-over: the lane has finished, so approval cannot be reset alone.
    await appraise(client, config.database_url, code, unit)
    await approve(client, config.database_url, code, unit)
    await awaiting(client, code, Action.HAND_OVER)
    message = await refused(
        "reset", code, "--to", "approval", "--operator", OPERATOR, "--reason", "x"
    )
    assert "has finished" in message and "reset to `return`" in message
    assert not [e for e in await chain_of(url, code) if e.event_type.startswith("operator_")]
    await hand_over(client, config.database_url, code, unit)
    message = await refused(
        "reset", code, "--to", "return", "--operator", OPERATOR, "--reason", "x"
    )
    assert f"dossier {code} is closed" in message


async def test_a_batch_reset_to_intake_runs_each_dossier_and_its_lane_again(
    stack: EngineStack,
) -> None:
    """By query, paced: each dossier's workflow goes back to its first task (its lane, inside
    it, runs again); every step runs again as a new event and each chain verifies."""
    client, url, unit, config = stack.client, stack.settings.database_url, "ngoc-ha", stack.settings
    codes = [await submit_birth(client, url, stack.started, unit, c) for c in (88, 89)]
    runs: dict[str, str] = {}
    for code in codes:
        await awaiting(client, code, Action.APPRAISE)
        runs[code] = (await client.get_workflow_handle(code).describe()).run_id
        await projected(client, url, code)

    ran = await ops(
        client, config, "reset", "--query", f"ReceivingUnit = '{unit}'", "--to", "intake",
        "--operator", OPERATOR, "--reason", "identity checks ran against a stale registry",
        "--rate", "2", "--json",
    )  # fmt: skip
    rows = ran.rows()
    assert sorted(r["code"] for r in rows) == sorted(codes)
    assert all(r["outcome"].startswith("reset") and r["workflow_id"] == r["code"] for r in rows)
    for code in codes:
        await appraise(client, url, code, unit)
        # The lane runs inside the dossier workflow: its new run runs the lane again.
        assert (await client.get_workflow_handle(code).describe()).run_id != runs[code]
        await approve(client, url, code, unit)
        assert (await hand_over(client, url, code, unit)).outcome.value == "approved"
        chain = await chain_of(url, code)
        kinds = [e.event_type for e in chain]
        reset_at = kinds.index("operator_reset")
        # Intake, routing and the lane's first steps again, as new events of the new run.
        assert kinds[reset_at + 1 : reset_at + 3] == ["receipt_and_appointment_slip", "transferred"]
        assert kinds.count("registries_consulted") == 2
        payload = json.loads(chain[reset_at].payload)
        assert payload["step"] == "intake" and payload["terminated"] == []
        assert kinds[-1] == "closed_approved"
        assert await verified(client, url, code) == len(chain)
