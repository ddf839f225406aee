"""What a run measures, and its report (`surge.json`, or `open.json`): completions from the
server's own start and close times, tasks per dossier from the histories, CPU seconds per
process, the workers' memory, the API's latencies and the simulators' peaks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict
from sqlalchemy import distinct, func, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from bench.baseline import BaselinePlan
from bench.drivers import Desk, completed_query
from bench.processes import Processes, WorkerProcess
from domain import lanes
from schemas.actions import Action
from store.db import engine_for
from store.tables import tasks
from workflows import search_attributes as sa


# --- the report -----------------------------------------------------------------------------------
class Closed(BaseModel):
    model_config = ConfigDict(frozen=True)

    lane: str
    started: float  # seconds since the phase began
    closed: float


class Latency(BaseModel):
    """Milliseconds from request to answer."""

    clients: int | None = None  # counter clients sending them at once
    items: int | None = None  # tasks in the last answer of an inbox
    requests: int
    p50: float
    p99: float


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
    # Workflow plus activity tasks: each is a poll, a dispatch and a completion on the server.
    round_trips_per_dossier: float
    cpu_seconds: dict[str, float]
    cpu_ms_per_dossier: dict[str, float]
    worker_peak_rss_mb: dict[str, float]


class EngineFigures(PhaseFigures):
    intake_api_ms: Latency
    inbox_api_ms: Latency
    officer_actions: dict[Action, int]
    failures: dict[str, int]


class OpenFigures(BaseModel):
    """Dossiers filed and left waiting on officers."""

    dossiers: int
    running_workflows: int
    awaiting_officers: int
    worker_peak_rss_mb: dict[str, float]
    worker_rss_now_mb: dict[str, float]
    inbox_api_ms: dict[str, Latency]  # per desk, `unit/role`
    intake_api_ms: Latency
    failures: dict[str, int]


class SimulatorCalls(BaseModel):
    calls: int
    peak_calls_per_second: int


class Machine(BaseModel):
    cpus: int | None
    python: str


class Settings(BaseModel):
    dossiers: int
    mix: str
    workers: list[WorkerProcess]
    wards: int
    concurrency: int
    in_flight: int
    sim_latency_ms: int
    max_cached_workflows: int
    database: str


class Report(BaseModel):
    """One run: a surge has plans, baseline (unless skipped), engine and what follows; a run
    with `--open` has `open`."""

    started_at: str
    machine: Machine
    settings: Settings
    plans: dict[str, BaselinePlan] | None = None
    baseline: PhaseFigures | None = None
    legal_minimum: PhaseFigures | None = None
    shapes: dict[str, PhaseFigures] | None = None
    engine: EngineFigures | None = None
    simulators: dict[str, SimulatorCalls] | None = None
    engine_over_baseline: float | None = None
    engine_over_legal_minimum: float | None = None
    completions_per_10s: dict[str, dict[str, list[int]]] | None = None
    open: OpenFigures | None = None

    def summary(self) -> str:
        """The report without the plans, for the terminal."""
        return json.dumps(self.model_dump(mode="json", exclude_none=True, exclude={"plans"}))

    def write(self, path: Path) -> None:
        content = self.model_dump(mode="json", exclude_none=True)
        path.write_text(json.dumps(content, indent=2, ensure_ascii=False))


# --- completions and latencies --------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latency(
    milliseconds: Sequence[float], *, clients: int | None = None, items: int | None = None
) -> Latency:
    return Latency(
        clients=clients,
        items=items,
        requests=len(milliseconds),
        p50=round(percentile(milliseconds, 50), 1),
        p99=round(percentile(milliseconds, 99), 1),
    )


async def closed_workflows(client: Client, workflow_type: str, origin: float) -> list[Closed]:
    """Every completed workflow of the type, from the server's own start and close times."""
    closed: list[Closed] = []
    async for execution in client.list_workflows(completed_query(workflow_type), page_size=1000):
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


async def recent_codes(client: Client, origin: float, count: int) -> list[tuple[str, str]]:
    """Up to `count` dossiers completed since `origin`, with their lanes."""
    codes: list[tuple[str, str]] = []
    async for execution in client.list_workflows(completed_query("Dossier")):
        if execution.start_time.timestamp() >= origin:
            lane = execution.typed_search_attributes.get(sa.LANE) or lanes.INTAKE
            codes.append((execution.id, lane))
        if len(codes) >= count:
            break
    return codes


async def tasks_per_workflow(
    client: Client, ids: Sequence[str], dossiers: int
) -> tuple[float, float]:
    """Workflow and activity tasks per dossier: `ids` are `dossiers` dossiers' workflows and
    their lanes' (a lane run inside its dossier workflow has none of its own)."""
    from temporalio.api.enums.v1 import EventType

    workflow_tasks = activity_tasks = 0
    for workflow_id in ids:
        try:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
            continue
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                workflow_tasks += 1
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                activity_tasks += 1
    return workflow_tasks / max(dossiers, 1), activity_tasks / max(dossiers, 1)


def phase_figures(
    closed: list[Closed],
    dossiers: int,
    tasks: tuple[float, float],
    cpu: dict[str, float],
    peak_kb: dict[str, int],
) -> PhaseFigures:
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
        round_trips_per_dossier=round(tasks[0] + tasks[1], 1),
        cpu_seconds=cpu,
        cpu_ms_per_dossier={
            name: round(seconds * 1000 / max(len(closed), 1), 1) for name, seconds in cpu.items()
        },
        worker_peak_rss_mb=megabytes(peak_kb),
    )


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


async def open_count(client: Client, workflow_type: str) -> int:
    query = f"WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Running'"
    return (await client.count_workflows(query)).count


async def awaiting_officers(database_url: str) -> int:
    """Dossiers with a task in an inbox: read straight from the read model's table."""
    async with engine_for(database_url).connect() as conn:
        statement = select(func.count(distinct(tasks.c.dossier_code))).where(
            tasks.c.done_at.is_(None)
        )
        return int((await conn.execute(statement)).scalar_one())


async def inbox_latency(api: httpx.AsyncClient, desks: set[Desk]) -> dict[str, Latency]:
    """GET /v1/inbox, 200 times per desk, with every dossier open."""
    figures: dict[str, Latency] = {}
    for unit, role in sorted(desks):
        timings: list[float] = []
        items = 0
        for _ in range(200):
            started = time.perf_counter()
            reply = await api.get("/v1/inbox", params={"unit": unit, "role": role, "limit": 100})
            timings.append((time.perf_counter() - started) * 1000)
            items = len(reply.json()["items"])
        figures[f"{unit}/{role}"] = latency(timings, items=items)
    return figures


async def simulator_stats(urls: dict[str, str]) -> dict[str, SimulatorCalls]:
    stats: dict[str, SimulatorCalls] = {}
    async with httpx.AsyncClient() as http:
        for name, url in urls.items():
            reply = (await http.get(f"{url}/_sim/stats")).json()
            stats[name] = SimulatorCalls(
                calls=int(reply["calls"]),
                peak_calls_per_second=int(reply["peak_calls_per_second"]),
            )
    return stats


# --- the processes' CPU and memory ----------------------------------------------------------------
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


def megabytes(kilobytes: dict[str, int]) -> dict[str, float]:
    return {name: round(max(kb, 0) / 1024, 1) for name, kb in kilobytes.items()}


@contextlib.contextmanager
def memory_sampler(processes: Processes, names: Sequence[str]) -> Iterator[dict[str, int]]:
    """The workers' RSS in kB, sampled twice a second: the peak of each while the block runs."""
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
