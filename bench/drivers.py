"""The load: counter clients filing dossiers through the API, never more than so many open at
once, and officers at their desks reading their inboxes and acting at once; the same for the
baseline's workflows, straight on Temporal."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from bench.baseline import BaselineDossier, BaselineLane, BaselinePlan
from bench.baseline import queue_of as baseline_queue
from domain import lanes
from domain.catalogue import Catalogue
from samples import applicant_of, document_title
from schemas.actions import Action, Appraisal, Recommendation, Step
from schemas.catalogue import DeliveryChannel, Registry
from schemas.dossier import DossierSubmission, Officer, SubmittedDocument
from schemas.statuses import Role
from services.dossiers import prepare_filing
from simulators.seed import sample_citizens, sample_civil_packages
from workflows import search_attributes as sa

console = Console(stderr=True)

# The kinds of dossier in a surge: the certified copy that swamped the counters, a ward
# decision (birth registration) and a city decision.
KIND_PROCEDURES = {"certification": "2.000815", "ward": "1.001193", "city": "2.000488"}
KIND_LANES = {
    "certification": lanes.CERTIFICATION,
    "ward": lanes.WARD_PROCESSING,
    "city": lanes.CITY_PROCESSING,
}
# What an officer does with each task the inbox shows: the first of its alternatives that
# moves the dossier on.
TAKEN = (
    Action.CERTIFY,
    Action.APPRAISE,
    Action.APPROVE,
    Action.HAND_OVER,
    Action.PROVIDE_SUPPLEMENT,
)
# How often each desk refreshes its inbox: a second is "at once" for a person, and every
# refresh is a request the API and the database serve.
OFFICER_POLL_SECONDS = 1.0

Desk = tuple[str, str]  # unit, role


def completed_query(workflow_type: str) -> str:
    """The visibility query of a workflow type's completed runs."""
    return f"WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Completed'"


# --- what the counters file ---------------------------------------------------------------------
def kinds_of(mix: dict[str, float], count: int) -> list[str]:
    """`count` kinds in the proportions of `mix`, interleaved as a counter queue would be."""
    unknown = set(mix) - set(KIND_PROCEDURES)
    if unknown:
        raise SystemExit(f"--mix: unknown kind {sorted(unknown)}; known: {list(KIND_PROCEDURES)}")
    total = sum(mix.values())
    kinds: list[str] = []
    owed = dict.fromkeys(mix, 0.0)
    for _ in range(count):
        for kind in owed:
            owed[kind] += mix[kind] / total
        kind = max(owed, key=lambda k: owed[k])
        owed[kind] -= 1
        kinds.append(kind)
    return kinds


def submission(kind: str, index: int, ward: str, catalogue: Catalogue) -> DossierSubmission:
    procedure = catalogue.procedure(KIND_PROCEDURES[kind])
    citizen = sample_citizens()[index % len(sample_citizens())]
    reference = None
    if Registry.CIVIL_STATUS in procedure.registries:
        packages = sample_civil_packages()
        reference = packages[index % len(packages)].package_id
    # Certified copies are handed back at the counter; decisions go online.
    channel = DeliveryChannel.COUNTER if procedure.certification else DeliveryChannel.ONLINE
    return DossierSubmission(
        procedure_code=procedure.code,
        receiving_unit=ward,
        delivery_channel=channel,
        applicant=applicant_of(citizen),
        documents=[
            SubmittedDocument(kind=d.kind, title=document_title(d.name), pages=2)
            for d in procedure.required_documents
        ],
        subject_reference=reference,
    )


def desks_of(
    bodies: list[DossierSubmission], wards: list[str], catalogue: Catalogue
) -> tuple[set[Desk], set[str]]:
    """The desks the dossiers will need, and every unit they touch (the API key's units)."""
    now = datetime.now(UTC)
    desks: set[Desk] = set()
    units: set[str] = set(wards)
    for body in bodies[:50]:
        filing = prepare_filing(body, catalogue, now)
        competent = filing.competent_unit.code
        units.add(competent)
        if filing.procedure.certification:
            desks.add((competent, Role.CERTIFIER.value))
        else:
            desks |= {(competent, Role.SPECIALIST.value), (competent, Role.LEADER.value)}
        desks.add((body.receiving_unit, Role.COUNTER_OFFICER.value))
    return desks, units


# --- the progress display -----------------------------------------------------------------------
@contextlib.asynccontextmanager
async def progress_of(
    client: Client, workflow_type: str, total: int, submitted: list[int], label: str
) -> AsyncIterator[None]:
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        filed = bar.add_task(f"{label}: submitted", total=total)
        done = bar.add_task(f"{label}: completed", total=total)

        async def refresh() -> None:
            while True:
                bar.update(filed, completed=submitted[0])
                with contextlib.suppress(RPCError):
                    count = await client.count_workflows(completed_query(workflow_type))
                    bar.update(done, completed=count.count)
                await asyncio.sleep(1)

        task = asyncio.create_task(refresh())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def wait_completed(client: Client, workflow_type: str, total: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done = (await client.count_workflows(completed_query(workflow_type))).count
        if done >= total or time.monotonic() > deadline:
            return done
        await asyncio.sleep(1)


# --- the baseline ---------------------------------------------------------------------------------
async def run_baseline(
    client: Client,
    plans: dict[str, BaselinePlan],
    kinds: list[str],
    *,
    in_flight: int,
    concurrency: int,
) -> tuple[list[str], float]:
    """Start the baseline's dossiers (at most `in_flight` open) and play its officers: they
    find the lanes waiting for them in a list, as the engine's officers do in their inbox,
    twice a second, and act at once."""
    origin = time.time()
    run = datetime.now(UTC).strftime("%H%M%S")
    submitted = [0]
    ids: list[str] = []
    updates: dict[str, int] = {}  # lane workflow id -> the officers' steps it awaits
    gate = asyncio.Semaphore(in_flight)
    next_index = [0]
    stop = asyncio.Event()

    async def one(index: int) -> None:
        plan = plans[kinds[index]]
        workflow_id = f"baseline-{run}-{index}"
        handle = await client.start_workflow(
            BaselineDossier.run,
            plan,
            id=workflow_id,
            task_queue=baseline_queue(lanes.INTAKE),
            search_attributes=TypedSearchAttributes([SearchAttributePair(sa.LANE, plan.lane)]),
        )
        ids.append(workflow_id)
        submitted[0] += 1
        to_dossier, to_lane = plan.updates()
        updates[f"{workflow_id}.lane"] = to_lane
        for _ in range(to_dossier):
            await handle.execute_update(BaselineDossier.step)
        await handle.result()

    async def counter_client() -> None:
        while next_index[0] < len(kinds):
            index = next_index[0]
            next_index[0] += 1
            async with gate:
                await one(index)

    async def officers() -> None:
        seen: set[str] = set()
        pending: set[asyncio.Task[None]] = set()

        async def act(workflow_id: str, count: int) -> None:
            handle = client.get_workflow_handle(workflow_id)
            for _ in range(count):
                await handle.execute_update(BaselineLane.step)

        query = "WorkflowType = 'BaselineLane' AND ExecutionStatus = 'Running'"
        while not stop.is_set():
            with contextlib.suppress(RPCError):
                async for execution in client.list_workflows(query, page_size=1000):
                    if execution.id not in seen:
                        seen.add(execution.id)
                        task = asyncio.create_task(act(execution.id, updates[execution.id]))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
            await asyncio.sleep(0.5)
        await asyncio.gather(*pending, return_exceptions=True)

    desk = asyncio.create_task(officers())
    async with progress_of(client, "BaselineDossier", len(kinds), submitted, "baseline"):
        await asyncio.gather(*(counter_client() for _ in range(concurrency)))
    stop.set()
    await desk
    return ids, origin


# --- the engine -----------------------------------------------------------------------------------
def step_taken(awaited: str) -> Action | None:
    """The step an officer takes on a task of the inbox (`approve/refuse` awaits either)."""
    return next((Action(a) for a in awaited.split("/") if a in TAKEN), None)


@dataclass
class EngineDriver:
    api: httpx.AsyncClient
    catalogue: Catalogue
    intake_ms: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    acted: set[tuple[str, str, str]] = field(default_factory=set)
    actions: Counter[Action] = field(default_factory=Counter)
    inbox_ms: list[float] = field(default_factory=list)

    async def submit(self, run: str, index: int, body: DossierSubmission) -> str | None:
        started = time.perf_counter()
        try:
            response = await self.api.post(
                "/v1/dossiers",
                content=body.model_dump_json(exclude_none=True),
                headers={
                    "Idempotency-Key": f"surge-{run}-{index}",
                    "Content-Type": "application/json",
                },
            )
        except httpx.TransportError as err:
            self.failures[f"submit: {type(err).__name__}"] += 1
            return None
        self.intake_ms.append((time.perf_counter() - started) * 1000)
        if response.status_code not in (200, 201):
            self.failures[f"submit: HTTP {response.status_code}"] += 1
            return None
        code: str = response.json()["code"]
        return code

    async def officer(self, unit: str, role: str, stop: asyncio.Event, poll: float) -> None:
        """One desk: reads its inbox and acts at once on every task, a few at a time."""
        me = Officer(
            officer_id=f"{unit}.{role}.bench", full_name=f"Cán bộ {role}", role=role, unit=unit
        )
        desk = asyncio.Semaphore(8)
        pending: set[asyncio.Task[None]] = set()

        async def act(key: tuple[str, str, str], action: Action) -> None:
            code = key[0]
            # Every appraisal recommends approval: the surge measures the way through.
            step = (
                Appraisal(officer=me, recommendation=Recommendation.APPROVE)
                if action is Action.APPRAISE
                else Step(officer=me)
            )
            failure: str | None
            async with desk:
                try:
                    response = await self.api.post(
                        f"/v1/dossiers/{code}/actions/{action.value}",
                        json=step.model_dump(mode="json", exclude_defaults=True),
                    )
                    status = response.status_code
                    failure = None if status == 200 else f"HTTP {status}"
                except httpx.TransportError as err:
                    failure = type(err).__name__
            if failure is None:
                self.actions[action] += 1
                return
            # As an officer would: the task stays in the inbox, so it is tried again.
            self.failures[f"{action.value}: {failure}"] += 1
            await asyncio.sleep(1)
            self.acted.discard(key)

        while not stop.is_set():
            started = time.perf_counter()
            try:
                reply = await self.api.get(
                    "/v1/inbox", params={"unit": unit, "role": role, "limit": 200}
                )
            except httpx.TransportError:
                await asyncio.sleep(poll)
                continue
            self.inbox_ms.append((time.perf_counter() - started) * 1000)
            if reply.status_code == 200:
                for item in reply.json()["items"]:
                    action = step_taken(item["action"])
                    key = (item["dossier_code"], item["action"], item["since"])
                    if action is None or key in self.acted:
                        continue
                    self.acted.add(key)
                    task = asyncio.create_task(act(key, action))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            await asyncio.sleep(poll)
        await asyncio.gather(*pending, return_exceptions=True)


async def run_engine(
    client: Client,
    driver: EngineDriver,
    submissions: list[DossierSubmission],
    desks: set[Desk],
    *,
    in_flight: int,
    concurrency: int,
    act: bool = True,
    settled: Callable[[], Awaitable[int]] | None = None,
) -> float:
    """File the dossiers, at most `in_flight` ahead of the settled ones (closed, or with
    `settled` given, whatever it counts), and play the officers when `act`."""
    origin = time.time()
    run = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    submitted = [0]
    closed_seen = [0]
    next_index = [0]
    stop = asyncio.Event()
    query = completed_query("Dossier")

    async def counter_client() -> None:
        while next_index[0] < len(submissions):
            index = next_index[0]
            next_index[0] += 1
            while index - closed_seen[0] >= in_flight:  # noqa: ASYNC110
                await asyncio.sleep(0.2)  # the window reopens as the server closes dossiers
            if await driver.submit(run, index, submissions[index]) is not None:
                submitted[0] += 1

    async def watch_closed() -> None:
        while not stop.is_set():
            with contextlib.suppress(RPCError):
                if settled is not None:
                    closed_seen[0] = await settled()
                else:
                    count = (await client.count_workflows(query)).count
                    closed_seen[0] = count - baseline_closed
            await asyncio.sleep(0.5)

    baseline_closed = (await client.count_workflows(query)).count
    officers = (
        [
            asyncio.create_task(driver.officer(u, r, stop, OFFICER_POLL_SECONDS))
            for u, r in sorted(desks)
        ]
        if act
        else []
    )
    watcher = asyncio.create_task(watch_closed())
    label = "engine" if act else "open dossiers"
    async with progress_of(client, "Dossier", len(submissions), submitted, label):
        await asyncio.gather(*(counter_client() for _ in range(concurrency)))
        if act:
            target = baseline_closed + submitted[0]
            await wait_completed(client, "Dossier", target, timeout=3600)
    stop.set()
    await asyncio.gather(*officers, watcher, return_exceptions=True)
    return origin
