"""A surge at a few wards' counters, against bare Temporal on the same server.

    python -m bench.surge --dossiers 5000 --workers certification=2

One run, one in-memory dev server:
1. the engine's workers and API start; one dossier of each kind goes through it, and its
   histories give the baseline its plan (bench/baseline.py): the same server round trips
   with activities that do nothing;
2. the baseline runs N dossiers-shaped workflows, driven by officers who act at once;
3. the engine runs N dossiers through the API: 50 counter clients file them (at most
   `--in-flight` open at once), officers poll their inboxes and act at once, the registry
   simulators answer with a small latency.
It prints completed dossiers per second (from the server's close times), p50/p95 from submit
to close, intake API p50/p99, the workers' peak memory, engine/baseline, and the simulators'
peak calls per second; it writes `surge.json` and `surge.png` (completions per second per
lane) under `--out`.

`--open 10000` instead files that many dossiers and leaves them waiting on officers: it
reports the workers' memory and the inbox's latency with all of them open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import distinct, func, select
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from bench.baseline import BaselineDossier, BaselineLane, BaselinePlan, plan_from_histories
from bench.baseline import queue_of as baseline_queue
from codec import generate_key
from config import ROOT
from domain import lanes
from domain.catalogue import Catalogue, default_catalogue
from embedded import start_dev_server
from samples import applicant_of
from schemas.catalogue import DeliveryChannel, Registry
from schemas.dossier import DossierSubmission, SubmittedDocument
from schemas.statuses import Role
from services.dossiers import prepare_filing
from simulators.process import free_ports, running_simulators
from simulators.seed import sample_citizens, sample_civil_packages
from store import api_keys
from store.db import engine_for
from store.startup import prepare_database
from store.tables import tasks
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
TAKEN = ("certify", "appraise", "approve", "hand_over", "provide_supplement")
# How often each desk refreshes its inbox: a second is "at once" for a person, and every
# refresh is a request the API and the database serve.
OFFICER_POLL_SECONDS = 1.0


# --- the run's settings ----------------------------------------------------------------------
def parse_counts(text: str, what: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        try:
            counts[name.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise SystemExit(f"{what}: {part!r} is not name=number") from None
    return counts


@dataclass(frozen=True)
class WorkerProcess:
    name: str
    queues: tuple[str, ...]


def worker_processes(spec: str) -> list[WorkerProcess]:
    """`certification=2,intake=1`: two processes for certification, one for intake, and one
    (`rest=1` unless given) for every queue not named."""
    counts = parse_counts(spec, "--workers")
    rest = int(counts.pop("rest", 1))
    processes: list[WorkerProcess] = []
    named: set[str] = set()
    for name, count in counts.items():
        try:
            queues = tuple(lanes.expand(name))
        except ValueError as err:
            raise SystemExit(str(err)) from None
        named.update(queues)
        processes += [WorkerProcess(f"{name}-{i + 1}", queues) for i in range(int(count))]
    remaining = tuple(q for q in lanes.ALL_QUEUES if q not in named)
    if remaining:
        if rest < 1:
            raise SystemExit(f"--workers: nothing serves {', '.join(remaining)}; add rest=1")
        processes += [WorkerProcess(f"rest-{i + 1}", remaining) for i in range(rest)]
    return processes


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
            SubmittedDocument(kind=d.kind, title=d.name, pages=2)
            for d in procedure.required_documents
        ],
        subject_reference=reference,
    )


# --- processes -------------------------------------------------------------------------------
@dataclass
class Processes:
    logs: Path
    env: dict[str, str]
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)  # kB, VmHWM when stopped

    def start(self, name: str, args: list[str], extra: dict[str, str] | None = None) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.running[name] = subprocess.Popen(
            [sys.executable, *args],
            env={**self.env, **(extra or {})},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def peak_kb(self, name: str) -> int:
        process = self.running.get(name)
        if process is None:
            return self.peaks.get(name, 0)
        return _status_kb(process.pid, "VmHWM")

    def rss_kb(self, name: str) -> int:
        process = self.running.get(name)
        return _status_kb(process.pid, "VmRSS") if process else 0

    def stop(self, names: Sequence[str] | None = None) -> None:
        for name in list(names if names is not None else self.running):
            process = self.running.pop(name, None)
            if process is None:
                continue
            self.peaks[name] = _status_kb(process.pid, "VmHWM")
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cpu_seconds(processes: Processes) -> dict[str, float]:
    """CPU time so far of this benchmark's processes: the server, the simulators, the
    workers, the API and the driver itself (the benchmark's own process)."""
    names = {p.pid: name for name, p in processes.running.items()}
    children: dict[int, list[int]] = defaultdict(list)
    stats: dict[int, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        children[int(fields[1])].append(int(entry.name))
        stats[int(entry.name)] = (command, (int(fields[11]) + int(fields[12])) / tick)
    totals: dict[str, float] = defaultdict(float)
    me = os.getpid()
    todo = [me]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        command, seconds = stats.get(pid, ("", 0.0))
        if pid == me:
            label = "driver (this benchmark)"
        elif pid in names:
            label = names[pid]
        elif "temporal" in command and "server" in command:
            label = "temporal server"
        elif "simulators" in command:
            label = "simulators"
        else:
            label = "other"
        totals[label] += seconds
    return {k: round(v, 1) for k, v in totals.items()}


def cpu_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        k: round(v - before.get(k, 0.0), 1) for k, v in after.items() if v - before.get(k, 0.0) > 0
    }


def _status_kb(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


async def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as probe:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await probe.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer within {timeout:.0f} s")
            await asyncio.sleep(0.2)


async def wait_pollers(client: Client, queues: Sequence[str], timeout: float = 60) -> None:
    """Until every queue has a poller: a benchmark must not time the workers' start-up."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    deadline = time.monotonic() + timeout
    for queue in queues:
        kinds = [TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY]
        while True:
            pollers = 0
            for kind in kinds:
                reply = await client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=client.namespace,
                        task_queue=TaskQueue(name=queue),
                        task_queue_type=kind,
                    )
                )
                pollers += len(reply.pollers)
            if pollers:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"no worker polls {queue} after {timeout:.0f} s")
            await asyncio.sleep(0.2)


# --- figures -----------------------------------------------------------------------------------
class Closed(BaseModel):
    model_config = ConfigDict(frozen=True)

    lane: str
    started: float  # seconds since the phase began
    closed: float


class PhaseFigures(BaseModel):
    dossiers: int
    completed: int
    seconds: float
    completed_per_second: float
    submit_to_close_p50_s: float
    submit_to_close_p95_s: float
    per_lane: dict[str, int]
    workflow_tasks_per_dossier: float
    activity_tasks_per_dossier: float


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latency(milliseconds: Sequence[float]) -> dict[str, float]:
    return {
        "requests": len(milliseconds),
        "p50": round(percentile(milliseconds, 50), 1),
        "p99": round(percentile(milliseconds, 99), 1),
    }


async def closed_workflows(client: Client, workflow_type: str, origin: float) -> list[Closed]:
    """Every completed workflow of the type, from the server's own start and close times."""
    closed: list[Closed] = []
    query = f"WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Completed'"
    async for execution in client.list_workflows(query, page_size=1000):
        if execution.close_time is None:
            continue
        lane = execution.typed_search_attributes.get(sa.LANE) or "?"
        closed.append(
            Closed(
                lane=lane,
                started=execution.start_time.timestamp() - origin,
                closed=execution.close_time.timestamp() - origin,
            )
        )
    return closed


async def tasks_per_workflow(
    client: Client, ids: Sequence[str], dossiers: int
) -> tuple[float, float]:
    """Workflow and activity tasks per dossier: `ids` are `dossiers` dossiers' workflows and
    their lanes'."""
    from temporalio.api.enums.v1 import EventType

    workflow_tasks = activity_tasks = 0
    for workflow_id in ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                workflow_tasks += 1
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                activity_tasks += 1
    return workflow_tasks / max(dossiers, 1), activity_tasks / max(dossiers, 1)


def phase_figures(closed: list[Closed], dossiers: int, tasks: tuple[float, float]) -> PhaseFigures:
    first = min((c.started for c in closed), default=0.0)
    last = max((c.closed for c in closed), default=0.0)
    seconds = max(last - first, 1e-9)
    latencies = [c.closed - c.started for c in closed]
    return PhaseFigures(
        dossiers=dossiers,
        completed=len(closed),
        seconds=round(seconds, 1),
        completed_per_second=round(len(closed) / seconds, 2),
        submit_to_close_p50_s=round(percentile(latencies, 50), 2),
        submit_to_close_p95_s=round(percentile(latencies, 95), 2),
        per_lane=dict(Counter(c.lane for c in closed)),
        workflow_tasks_per_dossier=round(tasks[0], 1),
        activity_tasks_per_dossier=round(tasks[1], 1),
    )


# --- the progress display ------------------------------------------------------------------------
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
            query = f"WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Completed'"
            while True:
                bar.update(filed, completed=submitted[0])
                with contextlib.suppress(RPCError):
                    bar.update(done, completed=(await client.count_workflows(query)).count)
                await asyncio.sleep(1)

        task = asyncio.create_task(refresh())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def wait_completed(client: Client, workflow_type: str, total: int, timeout: float) -> int:
    query = f"WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Completed'"
    deadline = time.monotonic() + timeout
    while True:
        done = (await client.count_workflows(query)).count
        if done >= total or time.monotonic() > deadline:
            return done
        await asyncio.sleep(1)


async def open_count(client: Client, workflow_type: str) -> int:
    query = f"WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Running'"
    return (await client.count_workflows(query)).count


# --- the baseline --------------------------------------------------------------------------------
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


# --- the engine ----------------------------------------------------------------------------------
@dataclass
class EngineDriver:
    api: httpx.AsyncClient
    catalogue: Catalogue
    intake_ms: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    acted: set[tuple[str, str, str]] = field(default_factory=set)
    actions: Counter[str] = field(default_factory=Counter)
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
        me = {
            "officer_id": f"{unit}.{role}.bench",
            "full_name": f"Cán bộ {role}",
            "role": role,
            "unit": unit,
        }
        desk = asyncio.Semaphore(8)
        pending: set[asyncio.Task[None]] = set()

        async def act(key: tuple[str, str, str], action: str) -> None:
            code = key[0]
            body: dict[str, Any] = {"officer": me}
            if action == "appraise":
                body["recommendation"] = "approve"
            failure: str | None
            async with desk:
                try:
                    response = await self.api.post(
                        f"/v1/dossiers/{code}/actions/{action}", json=body
                    )
                    status = response.status_code
                    failure = None if status == 200 else f"HTTP {status}"
                except httpx.TransportError as err:
                    failure = type(err).__name__
            if failure is None:
                self.actions[action] += 1
                return
            # As an officer would: the task stays in the inbox, so it is tried again.
            self.failures[f"{action}: {failure}"] += 1
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
                    action = next((a for a in item["action"].split("/") if a in TAKEN), None)
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
    desks: set[tuple[str, str]],
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
    query = "WorkflowType = 'Dossier' AND ExecutionStatus = 'Completed'"

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


def per_bucket(closed: list[Closed], seconds: int = 10) -> dict[str, list[int]]:
    """Completions per lane in each `seconds` since the first start: the plot's data."""
    if not closed:
        return {}
    start = min(c.started for c in closed)
    end = int((max(c.closed for c in closed) - start) // seconds)
    series: dict[str, list[int]] = defaultdict(lambda: [0] * (end + 1))
    for c in closed:
        series[c.lane][int((c.closed - start) // seconds)] += 1
    return dict(series)


# --- the plot ------------------------------------------------------------------------------------
def plot(path: Path, engine: list[Closed], baseline: list[Closed], window: int = 30) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 5))

    def series(closed: list[Closed]) -> tuple[list[float], list[float]]:
        if not closed:
            return [], []
        start = min(c.started for c in closed)
        per_second = Counter(int(c.closed - start) for c in closed)
        end = max(per_second)
        xs = list(range(end + 1))
        ys = [sum(per_second.get(s, 0) for s in range(x - window + 1, x + 1)) / window for x in xs]
        return [float(x) for x in xs], ys

    by_lane: dict[str, list[Closed]] = defaultdict(list)
    for c in engine:
        by_lane[c.lane].append(c)
    start = min((c.started for c in engine), default=0.0)
    for lane, closed in sorted(by_lane.items()):
        shifted = [Closed(lane=lane, started=start, closed=c.closed) for c in closed]
        xs, ys = series(shifted)
        axis.plot(xs, ys, label=f"engine: {lane}")
    xs, ys = series([Closed(lane="all", started=start, closed=c.closed) for c in engine])
    axis.plot(xs, ys, label="engine: all lanes", linewidth=2, color="black")
    if baseline:
        xs, ys = series(baseline)
        axis.plot(xs, ys, label="bare Temporal baseline: all", linestyle="--", color="grey")
    axis.set_xlabel("seconds since the first submission")
    axis.set_ylabel(f"dossiers completed per second ({window} s average)")
    axis.set_title("Surge: completions per lane")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --- the run -------------------------------------------------------------------------------------
async def simulator_stats(urls: dict[str, str]) -> dict[str, dict[str, int]]:
    stats: dict[str, dict[str, int]] = {}
    async with httpx.AsyncClient() as http:
        for name, url in urls.items():
            reply = (await http.get(f"{url}/_sim/stats")).json()
            stats[name] = {
                "calls": int(reply["calls"]),
                "peak_calls_per_second": int(reply["peak_calls_per_second"]),
            }
    return stats


@contextlib.contextmanager
def memory_sampler(processes: Processes, names: Sequence[str]) -> Iterator[dict[str, int]]:
    """The workers' RSS, sampled twice a second: the peak of each while the block runs."""
    peaks: dict[str, int] = dict.fromkeys(names, 0)
    stop = False

    async def sample() -> None:
        while not stop:
            for name in names:
                peaks[name] = max(peaks[name], processes.rss_kb(name))
            await asyncio.sleep(0.5)

    task = asyncio.get_running_loop().create_task(sample())
    try:
        yield peaks
    finally:
        stop = True
        task.cancel()


def worker_args(process: WorkerProcess, cached: int) -> list[str]:
    return [
        "worker.py",
        "--queues",
        ",".join(process.queues),
        "--max-cached-workflows",
        str(cached),
    ]


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dossiers", type=int, default=5000)
    parser.add_argument(
        "--mix", default="certification=0.7,ward=0.2,city=0.1", help="kinds and proportions"
    )
    parser.add_argument(
        "--workers", default="", help="processes per lane, e.g. certification=2,intake=1,rest=1"
    )
    parser.add_argument("--wards", type=int, default=3, help="wards the surge hits")
    parser.add_argument("--concurrency", type=int, default=50, help="counter clients filing")
    parser.add_argument("--in-flight", type=int, default=400, help="open dossiers at most")
    parser.add_argument("--sim-latency-ms", type=int, default=5)
    parser.add_argument("--max-cached-workflows", type=int, default=1000)
    parser.add_argument(
        "--baseline-dossiers", type=int, default=0, help="baseline size (default: --dossiers)"
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--open", type=int, default=0, help="file this many and leave them open instead"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy each worker process")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "bench")
    args = parser.parse_args(argv)

    processes_spec = worker_processes(args.workers)
    mix = parse_counts(args.mix, "--mix")
    catalogue = default_catalogue()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out: Path = args.out / stamp
    (out / "logs").mkdir(parents=True, exist_ok=True)
    data_dir = out / "data"
    data_dir.mkdir()
    database_url = os.environ.get("DATABASE_URL", f"sqlite+aiosqlite:///{data_dir}/engine.db")
    payload_keys = os.environ.get("PAYLOAD_KEYS") or generate_key()
    os.environ["PAYLOAD_KEYS"] = payload_keys

    console.print(f"[bold]surge[/]: {out}")
    env = await start_dev_server(data_dir)
    address = env.client.service_client.config.target_host
    sim_env = {"SIM_LATENCY_MS": str(args.sim_latency_ms)}
    old_env = {k: os.environ.get(k) for k in sim_env}
    os.environ.update(sim_env)
    try:
        with running_simulators(data_dir / "simulators") as sims:
            for key, value in old_env.items():
                if value is None:
                    os.environ.pop(key, None)
            await prepare_database(database_url)
            wards = [u.code for u in catalogue.wards()[: args.wards]]
            kinds = kinds_of(mix, args.open or args.dossiers)
            bodies = [
                submission(kind, i, wards[i % len(wards)], catalogue)
                for i, kind in enumerate(kinds)
            ]
            now = datetime.now(UTC)
            desks: set[tuple[str, str]] = set()
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
            issued = await api_keys.issue(
                database_url, f"surge-{stamp.lower()}", sorted(units), [r.value for r in Role]
            )
            [api_port] = free_ports(1)
            processes = Processes(
                logs=out / "logs",
                env={
                    **os.environ,
                    "TEMPORAL_ADDRESS": address,
                    "DATABASE_URL": database_url,
                    "DATA_DIR": str(data_dir),
                    "PAYLOAD_KEYS": payload_keys,
                    "LOG_LEVEL": "WARNING",
                    "API_PORT": str(api_port),
                    **{f"{name.upper()}_URL": url for name, url in sims.urls.items()},
                },
            )
            try:
                return await run_all(
                    args,
                    env.client,
                    address,
                    processes,
                    processes_spec,
                    bodies,
                    kinds,
                    desks,
                    issued.key,
                    api_port,
                    dict(sims.urls),
                    out,
                )
            finally:
                processes.stop()
    finally:
        await env.shutdown()


async def run_all(
    args: argparse.Namespace,
    client: Client,
    address: str,
    processes: Processes,
    spec: list[WorkerProcess],
    bodies: list[DossierSubmission],
    kinds: list[str],
    desks: set[tuple[str, str]],
    key: str,
    api_port: int,
    sim_urls: dict[str, str],
    out: Path,
) -> int:
    catalogue = default_catalogue()
    processes.start("api", ["-m", "api"])
    await wait_http(f"http://127.0.0.1:{api_port}/readyz")

    def start_engine_workers() -> list[str]:
        for process in spec:
            processes.start(
                f"worker-{process.name}", worker_args(process, args.max_cached_workflows)
            )
        return [f"worker-{p.name}" for p in spec]

    names = start_engine_workers()
    await wait_pollers(client, lanes.ALL_QUEUES)
    api = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{api_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
    )
    driver = EngineDriver(api=api, catalogue=catalogue)
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": {
            "dossiers": args.open or args.dossiers,
            "mix": args.mix,
            "workers": [{"name": p.name, "queues": list(p.queues)} for p in spec],
            "wards": args.wards,
            "concurrency": args.concurrency,
            "in_flight": args.in_flight,
            "sim_latency_ms": args.sim_latency_ms,
            "max_cached_workflows": args.max_cached_workflows,
            "database": os.environ.get("DATABASE_URL", "sqlite (embedded)").split("@")[-1],
        },
    }
    async with api:
        if args.open:
            return await open_dossiers(
                args,
                client,
                processes,
                names,
                driver,
                bodies,
                desks,
                report,
                out,
                processes.env["DATABASE_URL"],
            )
        # One dossier of each kind, through the whole engine: warms it up and gives the plan.
        console.print("warm-up: one dossier of each kind")
        plans: dict[str, BaselinePlan] = {}
        samples: dict[str, str] = {}
        kinds_seen = list(dict.fromkeys(kinds))
        warm = [bodies[kinds.index(kind)] for kind in kinds_seen]
        await run_engine(client, driver, warm, desks, in_flight=10, concurrency=len(warm))
        async for execution in client.list_workflows("WorkflowType = 'Dossier'"):
            lane = execution.typed_search_attributes.get(sa.LANE)
            kind = next((k for k, v in KIND_LANES.items() if v == lane), None)
            if kind and kind not in samples:
                samples[kind] = execution.id
        for kind, code in samples.items():
            dossier_history = await client.get_workflow_handle(code).fetch_history()
            lane_id = lanes.lane_workflow_id(code, KIND_LANES[kind])
            lane_history = await client.get_workflow_handle(lane_id).fetch_history()
            plans[kind] = plan_from_histories(
                kind, KIND_LANES[kind], dossier_history.events, lane_history.events
            )
        report["plans"] = {k: p.model_dump(mode="json") for k, p in plans.items()}

        baseline_closed: list[Closed] = []
        if not args.skip_baseline:
            processes.stop(names)
            base_client = await Client.connect(address, data_converter=pydantic_data_converter)
            base_names = []
            for process in spec:
                name = f"baseline-{process.name}"
                processes.start(
                    name,
                    [
                        "-m",
                        "bench.baseline",
                        "--address",
                        address,
                        "--queues",
                        ",".join(process.queues),
                    ],
                )
                base_names.append(name)
            await wait_pollers(
                base_client,
                [baseline_queue(q) for q in lanes.WORKFLOW_LANES] + ["bench.activities"],
            )
            base_kinds = kinds[: args.baseline_dossiers] if args.baseline_dossiers else kinds
            console.print(f"baseline: {len(base_kinds)} workflows shaped like the dossiers")
            cpu_before = cpu_seconds(processes)
            ids, origin = await run_baseline(
                base_client,
                plans,
                base_kinds,
                in_flight=args.in_flight,
                concurrency=args.concurrency,
            )
            baseline_cpu = cpu_between(cpu_before, cpu_seconds(processes))
            baseline_closed = await closed_workflows(base_client, "BaselineDossier", origin)
            sample = ids[:30]
            tasks = await tasks_per_workflow(
                base_client, [*sample, *(f"{i}.lane" for i in sample)], len(sample)
            )
            baseline = phase_figures(baseline_closed, len(base_kinds), tasks)
            report["baseline"] = baseline.model_dump()
            report["baseline"]["cpu_seconds"] = baseline_cpu
            report["baseline"]["worker_peak_rss_mb"] = {
                n: round(processes.peak_kb(n) / 1024, 1) for n in base_names
            }
            processes.stop(base_names)
            console.print(f"baseline: {baseline.completed_per_second} completed/s")
            names = start_engine_workers()
            await wait_pollers(client, lanes.ALL_QUEUES)

        console.print(f"engine: {len(bodies)} dossiers through the API")
        driver.intake_ms.clear()
        with memory_sampler(processes, names) as rss:
            profiled = [*names, "api"]
            profilers = start_profilers(processes, profiled, out) if args.profile else []
            cpu_before = cpu_seconds(processes)
            origin = await run_engine(
                client,
                driver,
                bodies,
                desks,
                in_flight=args.in_flight,
                concurrency=args.concurrency,
            )
            engine_cpu = cpu_between(cpu_before, cpu_seconds(processes))
            stop_profilers(profilers)
        engine_closed = [
            c for c in await closed_workflows(client, "Dossier", origin) if c.started >= 0
        ]
        codes = await recent_codes(client, origin, 30)
        lane_ids = [lanes.lane_workflow_id(c, lane) for c, lane in codes]
        tasks = await tasks_per_workflow(client, [c for c, _ in codes] + lane_ids, len(codes))
        engine = phase_figures(engine_closed, len(bodies), tasks)
        report["engine"] = engine.model_dump()
        report["engine"]["cpu_seconds"] = engine_cpu
        report["engine"]["worker_peak_rss_mb"] = {n: round(max(rss[n], 0) / 1024, 1) for n in names}
        report["engine"]["intake_api_ms"] = {
            "clients": args.concurrency,
            **latency(driver.intake_ms),
        }
        report["engine"]["inbox_api_ms"] = latency(driver.inbox_ms)
        report["engine"]["officer_actions"] = dict(driver.actions)
        report["engine"]["failures"] = dict(driver.failures)
        report["simulators"] = await simulator_stats(sim_urls)
        if "baseline" in report:
            report["engine_over_baseline"] = round(
                engine.completed_per_second / max(report["baseline"]["completed_per_second"], 1e-9),
                2,
            )
        plot(out / "surge.png", engine_closed, baseline_closed)
        report["completions_per_10s"] = {
            "engine": per_bucket(engine_closed),
            "baseline": per_bucket(baseline_closed),
        }
        (out / "surge.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
        print_summary(report, out)
        return 0 if engine.completed == len(bodies) else 1


async def recent_codes(client: Client, origin: float, count: int) -> list[tuple[str, str]]:
    codes: list[tuple[str, str]] = []
    async for execution in client.list_workflows(
        "WorkflowType = 'Dossier' AND ExecutionStatus = 'Completed'"
    ):
        if execution.start_time.timestamp() >= origin:
            lane = execution.typed_search_attributes.get(sa.LANE) or lanes.INTAKE
            codes.append((execution.id, lane))
        if len(codes) >= count:
            break
    return codes


def start_profilers(
    processes: Processes, names: Sequence[str], out: Path
) -> list[subprocess.Popen[bytes]]:
    spy = Path(sys.executable).parent / "py-spy"
    profilers = []
    for name in names:
        process = processes.running[name]
        profilers.append(
            subprocess.Popen(
                [
                    str(spy),
                    "record",
                    "--pid",
                    str(process.pid),
                    "--rate",
                    "25",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(out / f"profile-{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return profilers


def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    import signal

    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)
    for profiler in profilers:
        try:
            profiler.wait(timeout=60)
        except subprocess.TimeoutExpired:
            profiler.kill()


async def open_dossiers(
    args: argparse.Namespace,
    client: Client,
    processes: Processes,
    names: list[str],
    driver: EngineDriver,
    bodies: list[DossierSubmission],
    desks: set[tuple[str, str]],
    report: dict[str, Any],
    out: Path,
    database_url: str,
) -> int:
    """File them all; nobody acts. Then the memory of the workers and the inbox's latency."""
    engine = engine_for(database_url)

    async def awaiting_officers() -> int:
        # Dossiers with a task in an inbox: read straight from the read model's table.
        async with engine.connect() as conn:
            statement = select(func.count(distinct(tasks.c.dossier_code))).where(
                tasks.c.done_at.is_(None)
            )
            return int((await conn.execute(statement)).scalar_one())

    already = await awaiting_officers()

    async def settled() -> int:
        return await awaiting_officers() - already

    with memory_sampler(processes, names) as rss:
        await run_engine(
            client,
            driver,
            bodies,
            desks,
            in_flight=args.in_flight,
            concurrency=args.concurrency,
            act=False,
            settled=settled,
        )
        # Until every dossier has reached its first officer's step.
        deadline = time.monotonic() + 3600
        while True:
            waiting = await settled()
            console.print(f"open dossiers awaiting an officer: {waiting}/{len(bodies)}")
            if waiting >= len(bodies) or time.monotonic() > deadline:
                break
            await asyncio.sleep(10)
        await asyncio.sleep(5)
        inbox = await inbox_latency(driver, desks)
    report["open"] = {
        "dossiers": len(bodies),
        "running_workflows": await open_count(client, "Dossier")
        + await open_count(client, "Certification")
        + await open_count(client, "Processing"),
        "awaiting_officers": waiting,
        "worker_peak_rss_mb": {n: round(rss[n] / 1024, 1) for n in names},
        "worker_rss_now_mb": {n: round(processes.rss_kb(n) / 1024, 1) for n in names},
        "inbox_api_ms": inbox,
        "intake_api_ms": {"clients": args.concurrency, **latency(driver.intake_ms)},
        "failures": dict(driver.failures),
    }
    (out / "open.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print_summary(report, out)
    return 0


async def inbox_latency(driver: EngineDriver, desks: set[tuple[str, str]]) -> dict[str, Any]:
    """GET /v1/inbox, 200 times per desk, with every dossier open."""
    figures: dict[str, Any] = {}
    for unit, role in sorted(desks):
        timings: list[float] = []
        items = 0
        for _ in range(200):
            started = time.perf_counter()
            reply = await driver.api.get(
                "/v1/inbox", params={"unit": unit, "role": role, "limit": 100}
            )
            timings.append((time.perf_counter() - started) * 1000)
            items = len(reply.json()["items"])
        figures[f"{unit}/{role}"] = {"items": items, **latency(timings)}
    return figures


def print_summary(report: dict[str, Any], out: Path) -> None:
    console.print_json(json.dumps({k: v for k, v in report.items() if k != "plans"}))
    console.print(f"figures: {out}")


if __name__ == "__main__":
    code = asyncio.run(main())
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal runtime's threads can outlive the interpreter's shutdown and abort it;
    # the figures are written, so leave at once with the run's own exit code.
    os._exit(code)
