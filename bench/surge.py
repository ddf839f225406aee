"""A surge at a few wards' counters, against bare Temporal on the same server.

    python -m bench.surge --dossiers 5000 --workers certification=2

One run, one in-memory dev server:
1. the engine's workers and API start; one dossier of each kind goes through it, and its
   histories give the baseline its plan (bench/baseline.py): the same server round trips
   with activities that do nothing;
2. the baseline runs N dossiers-shaped workflows, driven by officers who act at once; then the
   legal-minimum baseline runs N workflows with only the round trips the law needs
   (`bench.baseline.legal_minimum`);
3. the engine runs N dossiers through the API: 50 counter clients file them (at most
   `--in-flight` open at once), officers poll their inboxes and act at once, the registry
   simulators answer with a small latency.
It prints completed dossiers per second (from the server's close times), p50/p95 from submit
to close, intake API p50/p99, the workers' peak memory, the engine's ratio to each baseline,
server round trips and CPU per dossier per process for all three, and the simulators' peak
calls per second; it writes `surge.json` and `surge.png` (completions per second per lane)
under `--out`.

`--open 10000` instead files that many dossiers and leaves them waiting on officers: it
reports the workers' memory and the inbox's latency with all of them open.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from bench.baseline import (
    BaselinePlan,
    informing_in_outbox,
    lane_reports_result_only,
    legal_minimum,
    plan_from_histories,
)
from bench.drivers import (
    KIND_LANES,
    Desk,
    EngineDriver,
    console,
    desks_of,
    kinds_of,
    run_baseline,
    run_engine,
    submission,
)
from bench.figures import (
    Closed,
    EngineFigures,
    Machine,
    OpenFigures,
    PhaseFigures,
    Report,
    Settings,
    awaiting_officers,
    closed_workflows,
    cpu_between,
    cpu_seconds,
    inbox_latency,
    latency,
    megabytes,
    memory_sampler,
    open_count,
    per_bucket,
    phase_figures,
    recent_codes,
    simulator_stats,
    tasks_per_workflow,
)
from bench.plots import plot
from bench.processes import (
    Stack,
    WorkerProcess,
    parse_counts,
    running_stack,
    start_profilers,
    stop_profilers,
    worker_processes,
)
from config import ROOT
from domain import lanes
from domain.catalogue import default_catalogue
from schemas.dossier import DossierSubmission
from schemas.statuses import Role
from store import api_keys
from workflows import search_attributes as sa


@dataclass
class Run:
    """One run of the command: its settings, its stack and its load."""

    args: argparse.Namespace
    stack: Stack
    spec: list[WorkerProcess]
    workers: list[str]  # the engine's worker processes running now
    driver: EngineDriver
    bodies: list[DossierSubmission]
    kinds: list[str]
    desks: set[Desk]
    out: Path

    async def surge(self, report: Report) -> int:
        """Warm-up, baseline (unless skipped), engine; `surge.json` and `surge.png`."""
        report.plans = await self.warm_up()
        baseline_closed: list[Closed] = []
        legal_closed: list[Closed] = []
        if not self.args.skip_baseline:
            baseline_closed, legal_closed = await self.baselines(report.plans, report)
        report.engine, engine_closed = await self.engine()
        report.simulators = await simulator_stats(self.stack.simulator_urls)
        if report.baseline is not None:
            report.engine_over_baseline = ratio(report.engine, report.baseline)
        if report.legal_minimum is not None:
            report.engine_over_legal_minimum = ratio(report.engine, report.legal_minimum)
        plot(self.out / "surge.png", engine_closed, baseline_closed)
        report.completions_per_10s = {
            "engine": per_bucket(engine_closed),
            "baseline": per_bucket(baseline_closed),
            "legal_minimum": per_bucket(legal_closed),
        }
        report.write(self.out / "surge.json")
        print_summary(report, self.out)
        return 0 if report.engine.completed == len(self.bodies) else 1

    async def warm_up(self) -> dict[str, BaselinePlan]:
        """One dossier of each kind, through the whole engine: warms it up and gives the
        baseline its plans."""
        client = self.stack.client
        console.print("warm-up: one dossier of each kind")
        samples: dict[str, str] = {}
        kinds_seen = list(dict.fromkeys(self.kinds))
        warm = [self.bodies[self.kinds.index(kind)] for kind in kinds_seen]
        await run_engine(client, self.driver, warm, self.desks, in_flight=10, concurrency=len(warm))
        async for execution in client.list_workflows("WorkflowType = 'Dossier'"):
            lane = execution.typed_search_attributes.get(sa.LANE)
            kind = next((k for k, v in KIND_LANES.items() if v == lane), None)
            if kind and kind not in samples:
                samples[kind] = execution.id
        plans: dict[str, BaselinePlan] = {}
        for kind, code in samples.items():
            dossier_history = await client.get_workflow_handle(code).fetch_history()
            lane_id = lanes.lane_workflow_id(code, KIND_LANES[kind])
            try:
                lane_events = (await client.get_workflow_handle(lane_id).fetch_history()).events
            except RPCError as err:
                # The lane ran inside the dossier workflow: its steps are in the dossier's.
                if err.status is not RPCStatusCode.NOT_FOUND:
                    raise
                lane_events = []
            plans[kind] = plan_from_histories(
                kind, KIND_LANES[kind], dossier_history.events, lane_events
            )
        return plans

    async def baselines(
        self, plans: dict[str, BaselinePlan], report: Report
    ) -> tuple[list[Closed], list[Closed]]:
        """Bare Temporal runs the plans, then their legal minimum (and with `--shapes` the
        shapes between), on worker processes of its own in place of the engine's."""
        processes = self.stack.processes
        processes.stop(self.workers)
        client = await Client.connect(self.stack.address, data_converter=pydantic_data_converter)
        names = await self.stack.start_baseline_workers(client, self.spec)
        report.baseline, same_shape = await self.baseline(client, names, plans, "baseline")
        if self.args.shapes:
            report.shapes = {}
            for label, shape in SHAPES.items():
                shaped = {kind: shape(plan) for kind, plan in plans.items()}
                report.shapes[label], _ = await self.baseline(client, names, shaped, label)
        legal = {kind: legal_minimum(plan) for kind, plan in plans.items()}
        report.legal_minimum, minimum = await self.baseline(client, names, legal, "legal minimum")
        processes.stop(names)
        self.workers = await self.stack.start_engine_workers(
            self.spec, self.args.max_cached_workflows
        )
        return same_shape, minimum

    async def baseline(
        self, client: Client, names: list[str], plans: dict[str, BaselinePlan], label: str
    ) -> tuple[PhaseFigures, list[Closed]]:
        args, processes = self.args, self.stack.processes
        kinds = self.kinds[: args.baseline_dossiers] if args.baseline_dossiers else self.kinds
        console.print(f"{label}: {len(kinds)} workflows")
        cpu_before = cpu_seconds(processes)
        ids, origin = await run_baseline(
            client, plans, kinds, in_flight=args.in_flight, concurrency=args.concurrency
        )
        cpu = cpu_between(cpu_before, cpu_seconds(processes))
        closed = [
            c for c in await closed_workflows(client, "BaselineDossier", origin) if c.started >= 0
        ]
        sample = ids[:30]
        with_lanes = any(plan.has_lane() for plan in plans.values())
        lane_ids = [f"{i}.lane" for i in sample] if with_lanes else []
        tasks = await tasks_per_workflow(client, [*sample, *lane_ids], len(sample))
        # The peak since the baseline's workers started: the legal minimum's is at most this.
        peaks = {n: processes.peak_kb(n) for n in names}
        figures = phase_figures(closed, len(kinds), tasks, cpu, peaks)
        console.print(f"{label}: {figures.completed_per_second} completed/s")
        return figures, closed

    async def engine(self) -> tuple[EngineFigures, list[Closed]]:
        """The engine runs every dossier through the API."""
        args, client, processes = self.args, self.stack.client, self.stack.processes
        console.print(f"engine: {len(self.bodies)} dossiers through the API")
        self.driver.intake_ms.clear()
        with memory_sampler(processes, self.workers) as rss:
            profiled = [*self.workers, "api"]
            profilers = start_profilers(processes, profiled, self.out) if args.profile else []
            cpu_before = cpu_seconds(processes)
            origin = await run_engine(
                client,
                self.driver,
                self.bodies,
                self.desks,
                in_flight=args.in_flight,
                concurrency=args.concurrency,
            )
            cpu = cpu_between(cpu_before, cpu_seconds(processes))
            stop_profilers(profilers)
        closed = [c for c in await closed_workflows(client, "Dossier", origin) if c.started >= 0]
        codes = await recent_codes(client, origin, 30)
        lane_ids = [lanes.lane_workflow_id(c, lane) for c, lane in codes]
        tasks = await tasks_per_workflow(client, [c for c, _ in codes] + lane_ids, len(codes))
        figures = phase_figures(closed, len(self.bodies), tasks, cpu, rss)
        engine = EngineFigures(
            **figures.model_dump(),
            intake_api_ms=latency(self.driver.intake_ms, clients=args.concurrency),
            inbox_api_ms=latency(self.driver.inbox_ms),
            officer_actions=dict(self.driver.actions),
            failures=dict(self.driver.failures),
        )
        return engine, closed

    async def open(self, report: Report) -> int:
        """File them all; nobody acts. Then the memory of the workers and the inbox's
        latency; `open.json`."""
        args, processes = self.args, self.stack.processes
        database_url = self.stack.database_url
        already = await awaiting_officers(database_url)

        async def settled() -> int:
            return await awaiting_officers(database_url) - already

        with memory_sampler(processes, self.workers) as rss:
            await run_engine(
                self.stack.client,
                self.driver,
                self.bodies,
                self.desks,
                in_flight=args.in_flight,
                concurrency=args.concurrency,
                act=False,
                settled=settled,
            )
            # Until every dossier has reached its first officer's step.
            deadline = time.monotonic() + 3600
            while True:
                waiting = await settled()
                console.print(f"open dossiers awaiting an officer: {waiting}/{len(self.bodies)}")
                if waiting >= len(self.bodies) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(10)
            await asyncio.sleep(5)
            inbox = await inbox_latency(self.driver.api, self.desks)
        running = 0
        for workflow_type in ("Dossier", "Certification", "Processing"):
            running += await open_count(self.stack.client, workflow_type)
        report.open = OpenFigures(
            dossiers=len(self.bodies),
            running_workflows=running,
            awaiting_officers=waiting,
            worker_peak_rss_mb=megabytes(rss),
            worker_rss_now_mb=megabytes({n: processes.rss_kb(n) for n in self.workers}),
            inbox_api_ms=inbox,
            intake_api_ms=latency(self.driver.intake_ms, clients=args.concurrency),
            failures=dict(self.driver.failures),
        )
        report.write(self.out / "open.json")
        print_summary(report, self.out)
        return 0


# The lane options of a dossier with fewer round trips, each measured on bare Temporal.
SHAPES = {
    "informing calls in an outbox": informing_in_outbox,
    "and lanes that report only their result": lane_reports_result_only,
}


def ratio(engine: PhaseFigures, baseline: PhaseFigures) -> float:
    return round(engine.completed_per_second / max(baseline.completed_per_second, 1e-9), 2)


def print_summary(report: Report, out: Path) -> None:
    console.print_json(report.summary())
    console.print(f"figures: {out}")


def parser() -> argparse.ArgumentParser:
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
        "--shapes",
        action="store_true",
        help="also run the shapes between the baseline and the legal minimum",
    )
    parser.add_argument(
        "--open", type=int, default=0, help="file this many and leave them open instead"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy each worker process")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "bench")
    return parser


async def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    spec = worker_processes(args.workers)
    mix = parse_counts(args.mix, "--mix")
    catalogue = default_catalogue()
    wards = [u.code for u in catalogue.wards()[: args.wards]]
    kinds = kinds_of(mix, args.open or args.dossiers)
    bodies = [submission(kind, i, wards[i % len(wards)], catalogue) for i, kind in enumerate(kinds)]
    desks, units = desks_of(bodies, wards, catalogue)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out: Path = args.out / stamp
    console.print(f"[bold]surge[/]: {out}")
    async with running_stack(out, args.sim_latency_ms) as stack:
        issued = await api_keys.issue(
            stack.database_url, f"surge-{stamp.lower()}", sorted(units), [r.value for r in Role]
        )
        await stack.start_api()
        workers = await stack.start_engine_workers(spec, args.max_cached_workflows)
        api = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{stack.api_port}",
            headers={"Authorization": f"Bearer {issued.key}"},
            timeout=120,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
        )
        report = Report(
            started_at=datetime.now(UTC).isoformat(),
            machine=Machine(cpus=os.cpu_count(), python=sys.version.split()[0]),
            settings=Settings(
                dossiers=args.open or args.dossiers,
                mix=args.mix,
                workers=spec,
                wards=args.wards,
                concurrency=args.concurrency,
                in_flight=args.in_flight,
                sim_latency_ms=args.sim_latency_ms,
                max_cached_workflows=args.max_cached_workflows,
                database=os.environ.get("DATABASE_URL", "sqlite (embedded)").split("@")[-1],
            ),
        )
        async with api:
            run = Run(
                args=args,
                stack=stack,
                spec=spec,
                workers=workers,
                driver=EngineDriver(api=api, catalogue=catalogue),
                bodies=bodies,
                kinds=kinds,
                desks=desks,
                out=out,
            )
            return await (run.open(report) if args.open else run.surge(report))


if __name__ == "__main__":
    code = asyncio.run(main())
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal runtime's threads can outlive the interpreter's shutdown and abort it;
    # the figures are written, so leave at once with the run's own exit code.
    os._exit(code)
