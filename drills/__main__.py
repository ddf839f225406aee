"""`python -m drills`: fault drills on the production shape (README, Reliability).

Each drill starts the engine with each part in its own process (drills/shape.py), files
dossiers through the HTTP API with Idempotency-Keys while officers work their inboxes,
injects one fault mid-flight, waits for every dossier to close, and checks: nothing lost,
nothing done twice (a second workflow for one submission, or a side effect that must happen
once done twice), every audit chain verifying, the read model equal to its rebuild; it prints
how long the engine took to move again once the fault was over.

    python -m drills                        every drill, 200 dossiers each, 60 s outages
    python -m drills --short                what CI runs: 40 dossiers, 15 s outages
    python -m drills --only kill-worker,kill-server --database sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict
from temporalio.client import Client
from temporalio.service import RPCError

from bench.drivers import EngineDriver
from codec import generate_key
from config import ROOT
from domain.catalogue import Catalogue, default_catalogue
from drills.checks import (
    Findings,
    audit,
    closed_codes,
    effects_done_twice,
    read_model_against_rebuild,
)
from drills.shape import REGISTRY_ALONE, WORKERS, Database, Shape
from ops.stuck import inspect_all
from samples import sample_submission
from schemas.dossier import DossierSubmission
from schemas.statuses import DossierStatus, Role
from services.dossiers import prepare_filing
from store import api_keys
from store.startup import prepare_database

# The registry a slow-registry drill slows down past its activity timeout (REGISTRY_CALL).
SLOW_REGISTRY = "civil_status"
SLOW_LATENCY_MS = 35_000
COUNTER_CLIENTS = 8
OFFICER_POLL_SECONDS = 1.0


@dataclass
class Timing:
    outage: float  # seconds a component stays down
    restart_after: float  # seconds before a killed process is started again
    drain: float  # seconds after the fault to let every dossier close


@dataclass
class Run:
    """One drill's load: what each Idempotency-Key was answered with."""

    shape: Shape
    catalogue: Catalogue
    bodies: list[DossierSubmission]
    label: str
    answered: dict[str, set[str]] = field(default_factory=dict)  # key -> codes
    submitted: int = 0
    fault_over_at: float | None = None
    # A third filed: the fault comes then; all filed: the load is done.
    third_filed: asyncio.Event = field(default_factory=asyncio.Event)
    all_filed: asyncio.Event = field(default_factory=asyncio.Event)

    def filed(self) -> None:
        self.submitted += 1
        if self.submitted >= len(self.bodies) // 3:
            self.third_filed.set()
        if self.submitted == len(self.bodies):
            self.all_filed.set()

    def key(self, index: int) -> str:
        return f"drill-{self.label}-{index}"


Fault = Callable[[Run, Timing], Awaitable[None]]


# --- the faults ---------------------------------------------------------------------------
async def kill_workers(run: Run, timing: Timing) -> None:
    """kill -9 of every worker process, started again 10 s later."""
    for name in WORKERS:
        run.shape.kill(name)
    await asyncio.sleep(timing.restart_after)
    for name in WORKERS:
        run.shape.start(name)


async def kill_server(run: Run, timing: Timing) -> None:
    """kill -9 of the Temporal server, started again on its file; workers and the API
    reconnect by themselves."""
    run.shape.kill("temporal")
    await asyncio.sleep(timing.restart_after)
    run.shape.start("temporal")
    await run.shape.wait_temporal()


async def registry_down(run: Run, timing: Timing) -> None:
    """The population registry gone (connection refused) for the outage."""
    run.shape.kill(REGISTRY_ALONE)
    await asyncio.sleep(timing.outage)
    run.shape.start(REGISTRY_ALONE)


async def registry_slow(run: Run, timing: Timing) -> None:
    """The civil-status registry answering slower than its activity timeout."""
    url = run.shape.registry_url(SLOW_REGISTRY)
    async with httpx.AsyncClient(timeout=10) as http:
        await http.post(f"{url}/_sim/faults", json={"latency_ms": SLOW_LATENCY_MS})
        await asyncio.sleep(timing.outage)
        await http.post(f"{url}/_sim/faults", json={"latency_ms": 5})


async def flaky_registries(run: Run, timing: Timing) -> None:
    """Every registry failing 30 % of its calls until the load is done."""
    async with httpx.AsyncClient(timeout=10) as http:
        for name in run.shape.registry_ports:
            url = run.shape.registry_url(name)
            await http.post(f"{url}/_sim/faults", json={"failure_rate": 0.3})
        await run.all_filed.wait()
        await asyncio.sleep(timing.outage)
        for name in run.shape.registry_ports:
            url = run.shape.registry_url(name)
            await http.post(f"{url}/_sim/faults", json={"failure_rate": 0.0})


async def database_down(run: Run, timing: Timing) -> None:
    """The engine's database refusing connections for the outage: on PostgreSQL every
    connection dropped and new ones forbidden; on SQLite the file locked."""
    database = run.shape.database
    if database.admin_url is not None:
        await database.refuse_connections()
        await asyncio.sleep(timing.outage)
        await database.accept_connections()
        return
    path = database.url.split("///", 1)[1]
    lock = sqlite3.connect(path, timeout=1)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        await asyncio.sleep(timing.outage)
    finally:
        lock.rollback()
        lock.close()


async def kill_api(run: Run, timing: Timing) -> None:
    """kill -9 of the API while counters file; they retry with the same keys."""
    run.shape.kill("api")
    await asyncio.sleep(timing.restart_after / 2)
    run.shape.start("api")


FAULTS: dict[str, Fault] = {
    "kill-worker": kill_workers,
    "kill-server": kill_server,
    "registry-down": registry_down,
    "registry-slow": registry_slow,
    "flaky-registries": flaky_registries,
    "database-down": database_down,
    "kill-api": kill_api,
}
DRILLS = (*FAULTS, "bad-deploy")


# --- the load -----------------------------------------------------------------------------
async def file_all(run: Run, api: httpx.AsyncClient, stop: asyncio.Event) -> None:
    """Counter clients filing every dossier; a request that gets no answer, or a 5xx, is
    sent again with the same Idempotency-Key, as a counter would."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(run.bodies)):
        queue.put_nowait(index)

    async def answer(key: str, body: str) -> str | None:
        while not stop.is_set():
            try:
                response = await api.post(
                    "/v1/dossiers",
                    content=body,
                    headers={"Idempotency-Key": key, "Content-Type": "application/json"},
                )
            except httpx.TransportError:
                await asyncio.sleep(1)
                continue
            if response.status_code in (200, 201):
                return str(response.json()["code"])
            if response.status_code < 500:
                raise RuntimeError(f"{key}: refused {response.status_code} {response.text}")
            await asyncio.sleep(1)
        return None

    async def counter() -> None:
        while not queue.empty() and not stop.is_set():
            index = queue.get_nowait()
            body = run.bodies[index].model_dump_json(exclude_none=True)
            key = run.key(index)
            # Every tenth is asked twice: a retry must get the same code.
            for _ in range(2 if index % 10 == 0 else 1):
                code = await answer(key, body)
                if code is not None:
                    run.answered.setdefault(key, set()).add(code)
            if key in run.answered:
                run.filed()

    await asyncio.gather(*(counter() for _ in range(COUNTER_CLIENTS)))


def desks_of(run: Run) -> set[tuple[str, str]]:
    now = datetime.now(UTC)
    desks: set[tuple[str, str]] = set()
    for body in run.bodies:
        filing = prepare_filing(body, run.catalogue, now)
        competent = filing.competent_unit.code
        if filing.procedure.certification:
            desks.add((competent, Role.CERTIFIER.value))
        else:
            desks |= {(competent, Role.SPECIALIST.value), (competent, Role.LEADER.value)}
        desks.add((body.receiving_unit, Role.COUNTER_OFFICER.value))
    return desks


class DrillResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    drill: str
    findings: Findings | None
    recovered_s: float | None  # fault over -> first dossier closed after it
    drained_s: float | None  # fault over -> every dossier closed
    wall_s: float
    note: str = ""
    # Why each lost dossier was not moving, as `ops stuck` says it.
    stuck: list[str] = []

    @property
    def passed(self) -> bool:
        return self.findings.passed if self.findings is not None else self.note.startswith("ok")


async def watch_closes(client: Client, run: Run, codes_closed: list[float]) -> None:
    """Records when dossiers close, from the server's own close times."""
    seen: set[str] = set()
    while True:
        try:
            async for execution in client.list_workflows(
                "WorkflowType = 'Dossier' AND ExecutionStatus = 'Completed'"
            ):
                if execution.id not in seen and execution.close_time is not None:
                    seen.add(execution.id)
                    codes_closed.append(execution.close_time.timestamp())
        except RPCError:
            pass  # the server is down in this drill
        await asyncio.sleep(1)


async def run_fault_drill(
    name: str, dossiers: int, timing: Timing, database_kind: str, out: Path
) -> DrillResult:
    started = time.monotonic()
    folder = out / name
    folder.mkdir(parents=True)
    database = await Database.create(database_kind, folder, name.replace("-", "_"))
    shape = Shape(folder=folder, database=database, payload_keys=os.environ["PAYLOAD_KEYS"])
    catalogue = default_catalogue()
    run = Run(
        shape=shape,
        catalogue=catalogue,
        bodies=[sample_submission(i, catalogue) for i in range(dossiers)],
        label=f"{name}-{int(time.time())}",
    )
    try:
        await prepare_database(database.url)
        client = await shape.up()
        desks = desks_of(run)
        units = sorted({unit for unit, _ in desks})
        issued = await api_keys.issue(database.url, "drills", units, [r.value for r in Role])
        closes: list[float] = []
        async with httpx.AsyncClient(
            base_url=shape.api_url,
            headers={"Authorization": f"Bearer {issued.key}"},
            timeout=httpx.Timeout(30, connect=5),
        ) as api:
            driver = EngineDriver(api=api, catalogue=catalogue)
            stop = asyncio.Event()
            officers = [
                asyncio.create_task(driver.officer(unit, role, stop, OFFICER_POLL_SECONDS))
                for unit, role in sorted(desks)
            ]
            watcher = asyncio.create_task(watch_closes(client, run, closes))
            filing = asyncio.create_task(file_all(run, api, stop))
            await asyncio.wait(
                [asyncio.ensure_future(run.third_filed.wait()), filing],
                return_when=asyncio.FIRST_COMPLETED,
            )
            await FAULTS[name](run, timing)
            run.fault_over_at = time.time()
            await filing
            codes = {code for answered in run.answered.values() for code in answered}
            deadline = time.monotonic() + timing.drain
            while time.monotonic() < deadline:
                done, _ = await closed_codes(client, codes)
                if done == codes:
                    break
                await asyncio.sleep(2)
            stop.set()
            await asyncio.gather(*officers, return_exceptions=True)
            watcher.cancel()
        done, second_runs = await closed_codes(client, codes)
        held = await inspect_all(client, sorted(codes - done))
        stuck = [
            f"{row.workflow_id}: {row.kind.value} {row.activity or ''} {row.last_error or ''}"
            for rows in held.values()
            for row in rows
        ]
        after = sorted(t - run.fault_over_at for t in closes if t >= run.fault_over_at)
        audited, broken = await audit(client, database.url)
        findings = Findings(
            submitted=len(run.answered),
            closed=len(done),
            lost=sorted(codes - done),
            second_workflows=second_runs,
            second_codes=sorted(k for k, c in run.answered.items() if len(c) > 1),
            effects_twice=await effects_done_twice(
                {n: shape.registry_url(n) for n in shape.registry_ports}
            ),
            audit_dossiers=audited,
            audit_broken=broken,
            read_model_differences=await read_model_against_rebuild(client, database.url),
        )
        return DrillResult(
            drill=name,
            findings=findings,
            recovered_s=round(after[0], 1) if after else None,
            drained_s=round(after[-1], 1) if after and done == codes else None,
            wall_s=round(time.monotonic() - started, 1),
            stuck=stuck,
        )
    finally:
        shape.stop_all()
        await database.drop()


# --- the deploy gate ------------------------------------------------------------------------
# The lane's run method, up to its first statement: the release adds a timer there.
LANE_RUN = re.compile(r"(    @workflow\.run\n    async def run\(.*?\) -> \w+:\n)", re.DOTALL)
BREAKING_LINE = "        await workflow.sleep(1)  # a timer the running dossiers never scheduled\n"


async def bad_deploy(dossiers: int, timing: Timing, database_kind: str, out: Path) -> DrillResult:
    """A release whose processing lane schedules a timer the running dossiers never did:
    the replay gate of the README, run against the running dossiers, must refuse it."""
    started = time.monotonic()
    folder = out / "bad-deploy"
    folder.mkdir(parents=True)
    database = await Database.create(database_kind, folder, "bad_deploy")
    shape = Shape(folder=folder, database=database, payload_keys=os.environ["PAYLOAD_KEYS"])
    catalogue = default_catalogue()
    run = Run(
        shape=shape,
        catalogue=catalogue,
        bodies=[sample_submission(i, catalogue) for i in range(min(dossiers, 12))],
        label=f"deploy-{int(time.time())}",
    )
    release = folder / "release"
    try:
        await prepare_database(database.url)
        await shape.up()
        async with httpx.AsyncClient(base_url=shape.api_url, timeout=30) as api:
            issued = await api_keys.issue(
                database.url, "drills", sorted({u for u, _ in desks_of(run)}), ["counter_officer"]
            )
            api.headers["Authorization"] = f"Bearer {issued.key}"
            await file_all(run, api, asyncio.Event())
        # Every dossier reaches its lane (inside its workflow), where it waits for an officer:
        # the running workflows the release must not break.
        client = await shape.wait_temporal()
        lanes_query = (
            "WorkflowType = 'Dossier' AND ExecutionStatus = 'Running' "
            f"AND DossierStatus = '{DossierStatus.IN_PROCESSING.value}'"
        )
        deadline = time.monotonic() + 120
        while (await client.count_workflows(lanes_query)).count < len(run.answered):
            if time.monotonic() > deadline:
                raise TimeoutError("drills: the dossiers never reached their lanes")
            await asyncio.sleep(1)
        shutil.copytree(
            ROOT, release, ignore=shutil.ignore_patterns(".venv", "data", ".git", "*_cache")
        )
        lane = release / "workflows" / "processing.py"
        changed, found = LANE_RUN.subn(
            lambda m: m.group(1) + BREAKING_LINE, lane.read_text(encoding="utf-8"), count=1
        )
        if not found:
            raise RuntimeError(f"drills: no @workflow.run method found in {lane}")
        lane.write_text(changed, encoding="utf-8")
        gate = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "ops", "replay", "--query", "ExecutionStatus = 'Running'"),
            cwd=release,
            env=shape.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out_bytes, err_bytes = await asyncio.wait_for(gate.communicate(), timeout=300)
        stdout, stderr = out_bytes.decode(), err_bytes.decode()
        broken = [line for line in stdout.splitlines() if line.startswith("BROKEN")]
        # The processing lane runs inside its dossier: the dossiers it holds are what break.
        caught = gate.returncode == 1 and any("Dossier" in line for line in broken)
        note = (
            f"ok: the gate refused the release ({len(broken)} running workflows would break)"
            if caught
            else f"MISSED: exit {gate.returncode}\n{stdout[-2000:]}\n{stderr[-2000:]}"
        )
        return DrillResult(
            drill="bad-deploy",
            findings=None,
            recovered_s=None,
            drained_s=None,
            wall_s=round(time.monotonic() - started, 1),
            note=note,
        )
    finally:
        shape.stop_all()
        await database.drop()


# --- the command ----------------------------------------------------------------------------
def _seconds(value: float | None, findings: Findings) -> str:
    if value is not None:
        return f"{value} s"
    # Every dossier closed while the fault lasted (30 % failures end after the load).
    return "during the fault" if findings.closed == findings.submitted else "-"


def table(results: Sequence[DrillResult]) -> str:
    head = (
        "| drill | submitted | closed | lost | duplicated | audit | read model = rebuild "
        "| moving again after | all closed after | result |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in results:
        f = r.findings
        if f is None:
            lines.append(f"| {r.drill} | | | | | | | | | {r.note.splitlines()[0]} |")
            continue
        audited = "verified" if f.audit_broken is None else "BROKEN"
        rebuilt = "yes" if f.read_model_differences == 0 else f"{f.read_model_differences} differ"
        lines.append(
            f"| {r.drill} | {f.submitted} | {f.closed} | {len(f.lost)} | {f.duplicated} "
            f"| {audited} ({f.audit_dossiers}) | {rebuilt} "
            f"| {_seconds(r.recovered_s, f)} | {_seconds(r.drained_s, f)} "
            f"| {'pass' if r.passed else 'FAIL'} |"
        )
    return "\n".join(lines)


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dossiers", type=int, default=200)
    parser.add_argument("--short", action="store_true", help="CI: 40 dossiers, 15 s outages")
    parser.add_argument("--only", default="", help=f"comma-separated, of: {', '.join(DRILLS)}")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "drills")
    args = parser.parse_args(argv)
    chosen = [d.strip() for d in args.only.split(",") if d.strip()] or list(DRILLS)
    unknown = [d for d in chosen if d not in DRILLS]
    if unknown:
        parser.error(f"--only: unknown drill {unknown}; known: {', '.join(DRILLS)}")
    dossiers = 40 if args.short else args.dossiers
    timing = (
        Timing(outage=15, restart_after=10, drain=240)
        if args.short
        else Timing(outage=60, restart_after=10, drain=600)
    )
    os.environ.setdefault("PAYLOAD_KEYS", generate_key())
    out: Path = args.out / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    results: list[DrillResult] = []
    for name in chosen:
        print(f"drill {name}: {dossiers} dossiers ...", flush=True)
        if name == "bad-deploy":
            result = await bad_deploy(dossiers, timing, args.database, out)
        else:
            result = await run_fault_drill(name, dossiers, timing, args.database, out)
        results.append(result)
        print(table([result]).splitlines()[-1], flush=True)
        if not result.passed:
            print(result.model_dump_json(indent=2), flush=True)
    report = table(results)
    print()
    print(report)
    (out / "drills.json").write_text(
        json.dumps([r.model_dump(mode="json") for r in results], indent=2, ensure_ascii=False)
    )
    (out / "drills.md").write_text(report + "\n")
    failed = [r.drill for r in results if not r.passed]
    print(f"drills: {len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        print(f"failed: {', '.join(failed)}; logs under {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
