"""Workers for the lanes you name: `python worker.py --queues certification,intake`.

Each task queue is a lane that scales alone: in a surge at the certification counters,
start more `--queues certification` processes and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import concurrent.futures
import os
import signal
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import logs
from activities import clock
from activities.books import BookActivities
from activities.documents import DocumentActivities
from activities.http import new_http_client
from activities.notify import NotifyActivities
from activities.payment import PaymentActivities
from activities.portal import PortalActivities
from activities.projection import ProjectionActivities
from activities.registries import RegistryActivities
from activities.webhooks import WebhookActivities
from codec import project_converter
from config import ROOT, Settings, settings
from domain import lanes
from domain.calendar import CalendarDataError, default_calendar
from domain.catalogue import CatalogueError, default_catalogue
from metrics import runtime_with_metrics
from schemas.catalogue import Registry
from store.startup import prepare_database
from workflows.certification import CertificationWorkflow
from workflows.dossier import DossierWorkflow
from workflows.processing import ProcessingWorkflow

# Pure modules the workflows import: loaded once per process instead of once per workflow run.
PASSTHROUGH = ("pydantic", "pydantic_core", "annotated_types", "schemas", "domain", "holidays")


def sandbox_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )


WORKFLOWS: dict[str, list[type]] = {
    lanes.INTAKE: [DossierWorkflow],
    lanes.CERTIFICATION: [CertificationWorkflow],
    lanes.WARD_PROCESSING: [ProcessingWorkflow],
    lanes.CITY_PROCESSING: [ProcessingWorkflow],
}


def activities_for(
    queue: str, config: Settings, http: httpx.AsyncClient
) -> list[Callable[..., Any]]:
    registries = RegistryActivities(config, http)
    if queue == lanes.REGISTRY_QUEUES[Registry.POPULATION]:
        return [registries.check_identity, registries.consult_registry]
    if queue in lanes.REGISTRY_QUEUES.values():
        return [registries.consult_registry]
    if queue == lanes.PAYMENT:
        return [PaymentActivities(config, http).collect_fee]
    if queue == lanes.PORTAL:
        return [PortalActivities(config, http).sync_portal]
    if queue == lanes.SIGNING:
        return [DocumentActivities(config, http).issue_document]
    if queue == lanes.NOTIFY:
        notify = NotifyActivities(config, http)
        webhooks = WebhookActivities(config, http)
        return [notify.notify, notify.send_by_post, webhooks.deliver_webhooks]
    if queue in WORKFLOWS:
        # Local activities run in the workflow's own worker.
        return [
            *clock.CLOCK_ACTIVITIES,
            BookActivities(config).next_book_number,
            ProjectionActivities(config).project,
        ]
    raise ValueError(f"no activities for queue {queue}")


def build_workers(
    client: Client,
    config: Settings,
    queues: Sequence[str],
    http: httpx.AsyncClient,
    *,
    max_concurrent_activities: int = 100,
    max_concurrent_workflow_tasks: int = 100,
    max_cached_workflows: int = 1000,
    executor: concurrent.futures.Executor | None = None,
    workflow_runner: Any = None,
) -> list[Worker]:
    executor = executor or concurrent.futures.ThreadPoolExecutor(
        max_workers=max_concurrent_activities
    )
    runner = workflow_runner or sandbox_runner()
    return [
        Worker(
            client,
            task_queue=queue,
            workflows=WORKFLOWS.get(queue, []),
            activities=activities_for(queue, config, http),
            activity_executor=executor,
            workflow_runner=runner,
            max_concurrent_activities=max_concurrent_activities,
            max_concurrent_workflow_tasks=max_concurrent_workflow_tasks,
            # Open dossiers beyond the cache are evicted and replayed from history when
            # they move again: memory stays bounded however many wait on officers.
            max_cached_workflows=max_cached_workflows,
            max_task_queue_activities_per_second=registry_rate(queue, config),
        )
        for queue in queues
    ]


def registry_rate(queue: str, config: Settings) -> float | None:
    """The calls per second a registry's queue may dispatch, for all workers together."""
    for registry, registry_queue in lanes.REGISTRY_QUEUES.items():
        if queue == registry_queue:
            return config.registry_rate_limits[registry.value]
    return None


def warm_up() -> None:
    """Load the calendar and the catalogue before the first dossier, not during it; a bad
    catalogue entry or official day stops the start here, naming the entry and the field."""
    try:
        default_catalogue()
        default_calendar().is_working_day(date.today())
    except (CatalogueError, CalendarDataError) as err:
        raise SystemExit(f"cannot start: {err}") from err
    cache_workflow_bytecode()


def cache_workflow_bytecode(*packages: Path) -> None:
    """The sandbox imports the workflow modules afresh for every dossier it runs. Without
    bytecode on disk (PYTHONDONTWRITEBYTECODE, usual in containers) each import compiles the
    source again, which cost a sixth of a worker's CPU in a surge: write it once at start.
    A read-only checkout only loses that saving."""
    for package in packages or (ROOT / "workflows",):
        compileall.compile_dir(package, quiet=2)


async def connect(
    config: Settings, address: str | None = None, runtime: Runtime | None = None
) -> Client:
    target = address or config.temporal_address
    if target is None:
        raise SystemExit("TEMPORAL_ADDRESS is not set: start `make run` or point it at a server")
    return await Client.connect(
        target,
        namespace=config.temporal_namespace,
        data_converter=project_converter(config.data_dir),
        runtime=runtime,
    )


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--queues",
        default="all",
        help="comma-separated lanes or groups (all, workflows, registries), "
        "e.g. certification,intake",
    )
    parser.add_argument("--max-concurrent-activities", type=int, default=100)
    parser.add_argument("--max-concurrent-workflow-tasks", type=int, default=100)
    parser.add_argument(
        "--max-cached-workflows",
        type=int,
        default=int(os.environ.get("WORKER_MAX_CACHED_WORKFLOWS", "1000")),
        help="open dossiers kept in memory; others are replayed from history when they move "
        "(env WORKER_MAX_CACHED_WORKFLOWS)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ["WORKER_METRICS_PORT"])
        if "WORKER_METRICS_PORT" in os.environ
        else None,
        help="serve Prometheus metrics on this port (env WORKER_METRICS_PORT)",
    )
    args = parser.parse_args(argv)
    try:
        queues = lanes.expand(args.queues)
    except ValueError as err:
        parser.error(str(err))
    config = settings()
    logs.configure(config.log_level)
    warm_up()
    await prepare_database(config.database_url)
    runtime = runtime_with_metrics(args.metrics_port) if args.metrics_port else None
    client = await connect(config, runtime=runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with new_http_client(config.registry_urls.values()) as http:
        workers = build_workers(
            client,
            config,
            queues,
            http,
            max_concurrent_activities=args.max_concurrent_activities,
            max_concurrent_workflow_tasks=args.max_concurrent_workflow_tasks,
            max_cached_workflows=args.max_cached_workflows,
        )
        runs = [asyncio.create_task(w.run()) for w in workers]
        print(f"worker: serving {', '.join(queues)} on {config.temporal_address}", flush=True)
        await stop.wait()
        await asyncio.gather(*(w.shutdown() for w in workers))
        await asyncio.gather(*runs, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
