"""The composition root: how every process of the engine is put together.

The Temporal client (one address policy, one data converter), the workers of each lane with
their activities, the workflow sandbox, the checks made before the first dossier, and the
run of a worker process. Settings come from `config`, the environment's only reader. Entry
points (`worker.py`, `stack.py`, `starter.py`, `python -m api`, `python -m ops`) only parse
their arguments and call in here, or into `embedded` (the stack of `make run` and the demo),
`demo` and `filing`, which build on this module.
"""

from __future__ import annotations

import asyncio
import compileall
import concurrent.futures
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from google.protobuf.duration_pb2 import Duration
from pydantic import BaseModel, ConfigDict
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    DescribeTaskQueueRequest,
    UpdateNamespaceRequest,
)
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    TLSConfig,
)
from temporalio.runtime import Runtime
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import logs
from activities import clock
from activities.archive import ArchiveActivities
from activities.books import BookActivities
from activities.documents import DocumentActivities
from activities.http import new_http_client
from activities.notify import NotifyActivities
from activities.outbox import OutboxDrainer
from activities.payment import PaymentActivities
from activities.portal import PortalActivities
from activities.projection import ProjectionActivities
from activities.registries import RegistryActivities
from activities.webhooks import WebhookActivities
from codec import project_converter
from config import DEFAULT_TEMPORAL_ADDRESS, ROOT, Settings, TemporalTls
from domain import lanes
from domain.calendar import CalendarDataError, default_calendar
from domain.catalogue import CatalogueError, default_catalogue
from metrics import runtime_with_metrics
from schemas.catalogue import Registry
from store.startup import prepare_database
from workflows.archive import SCHEDULE_ID as ARCHIVE_SCHEDULE_ID
from workflows.archive import ArchiveWorkflow
from workflows.certification import CertificationWorkflow
from workflows.dossier import DossierWorkflow
from workflows.processing import ProcessingWorkflow

# The workflows' helpers: retry policies, notices, result documents, search attributes and
# the legal clock. Deterministic by construction (tests/test_sandbox.py reads their source).
WORKFLOW_HELPERS = (
    "workflows.clock",
    "workflows.documents",
    "workflows.notices",
    "workflows.policies",
    "workflows.search_attributes",
)
# Deterministic modules the workflows import, loaded once per process instead of once per
# workflow run: the contracts, the pure rules, the third-party libraries they use and the
# workflows' helpers. The modules that hold workflow code (the workflow definitions, their
# lane base class and human steps) stay sandboxed: imported afresh for each run, each of
# their calls checked (datetime.now, random, open ...), which a passed-through module escapes.
PASSTHROUGH = (
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "holidays",
    "schemas",
    "domain",
    *WORKFLOW_HELPERS,
)


def sandbox_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )


# A new dossier runs on its lane's queue with the lane inside it; `intake` and the lanes'
# child workflows serve the dossiers begun before.
WORKFLOWS: dict[str, list[type]] = {
    lanes.INTAKE: [DossierWorkflow],
    lanes.CERTIFICATION: [DossierWorkflow, CertificationWorkflow],
    lanes.WARD_PROCESSING: [DossierWorkflow, ProcessingWorkflow],
    lanes.CITY_PROCESSING: [DossierWorkflow, ProcessingWorkflow],
    lanes.ARCHIVE: [ArchiveWorkflow],
}


def activities_for(
    queue: str, config: Settings, http: httpx.AsyncClient, client: Client
) -> list[Callable[..., Any]]:
    if queue == lanes.ARCHIVE:
        return [ArchiveActivities(config, client).archive_closed_runs]
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


class WorkerLimits(BaseModel):
    """What one worker process takes on at once, per lane (`worker.py --max-...`)."""

    model_config = ConfigDict(frozen=True)

    max_concurrent_activities: int = 100
    max_concurrent_workflow_tasks: int = 100
    # Open dossiers beyond the cache are evicted and replayed from history when they move
    # again: memory stays bounded however many wait on officers. The total for the process,
    # shared by the workflow queues it serves (`cache_share`).
    max_cached_workflows: int = 1000

    def cache_share(self, queues: Sequence[str]) -> int:
        """Each workflow queue's worker keeps its own cache: a process serving several gives
        each an equal part of the total, so its memory is the total's, not a multiple."""
        served = [q for q in queues if WORKFLOWS.get(q)]
        return max(1, self.max_cached_workflows // max(1, len(served)))


DEFAULT_LIMITS = WorkerLimits()


def build_workers(
    client: Client,
    config: Settings,
    queues: Sequence[str],
    http: httpx.AsyncClient,
    *,
    limits: WorkerLimits = DEFAULT_LIMITS,
    executor: concurrent.futures.Executor | None = None,
    workflow_runner: Any = None,
) -> list[Worker]:
    executor = executor or concurrent.futures.ThreadPoolExecutor(
        max_workers=limits.max_concurrent_activities
    )
    runner = workflow_runner or sandbox_runner()
    cached = limits.cache_share(queues)
    return [
        Worker(
            client,
            task_queue=queue,
            workflows=WORKFLOWS.get(queue, []),
            activities=activities_for(queue, config, http, client),
            activity_executor=executor,
            workflow_runner=runner,
            max_concurrent_activities=limits.max_concurrent_activities,
            max_concurrent_workflow_tasks=limits.max_concurrent_workflow_tasks,
            max_cached_workflows=cached,
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
    """The one way every process reaches Temporal: TEMPORAL_ADDRESS (or the server `make run`
    starts), the namespace, and the project's data converter, so payloads are encrypted with
    PAYLOAD_KEYS and decode as the workers wrote them."""
    target = address or config.temporal_address or DEFAULT_TEMPORAL_ADDRESS
    # A deployment's frontend (TEMPORAL_ADDRESS) requires mTLS; the embedded dev servers
    # speak plaintext on their own addresses.
    deployed = config.temporal_tls is not None and target == config.temporal_address
    tls = tls_config(config.temporal_tls) if config.temporal_tls and deployed else False
    return await Client.connect(
        target,
        namespace=config.temporal_namespace,
        data_converter=project_converter(config.data_dir),
        runtime=runtime,
        tls=tls,
    )


def tls_config(tls: TemporalTls) -> TLSConfig:
    """The client side of mutual TLS: the frontend proves itself with a certificate of the
    deployment's CA, and this process with its own."""
    try:
        return TLSConfig(
            server_root_ca_cert=tls.server_ca_cert_path.read_bytes(),
            client_cert=tls.client_cert_path.read_bytes(),
            client_private_key=tls.client_key_path.read_bytes(),
            domain=tls.server_name,
        )
    except OSError as err:
        raise SystemExit(f"cannot read a TLS file for Temporal: {err}") from err


# --- the record that outlives Temporal -----------------------------------------------------------
async def apply_retention(client: Client, retention: timedelta) -> None:
    """Set how long the namespace keeps closed histories (TEMPORAL_RETENTION). The servers the
    engine starts itself get it here; the compose file's gives it at namespace creation."""
    await client.workflow_service.update_namespace(
        UpdateNamespaceRequest(
            namespace=client.namespace,
            config=NamespaceConfig(
                workflow_execution_retention_ttl=Duration(seconds=int(retention.total_seconds()))
            ),
        )
    )


async def namespace_retention(client: Client) -> timedelta:
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace)
    )
    return timedelta(seconds=described.config.workflow_execution_retention_ttl.ToSeconds())


def archive_schedule(config: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ArchiveWorkflow.run, id=ARCHIVE_SCHEDULE_ID, task_queue=lanes.ARCHIVE
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=config.archive_every)]),
        # A pass still copying after an outage is not doubled by the next one.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def schedule_archive(client: Client, config: Settings) -> None:
    """The archiver's schedule, created once and kept at ARCHIVE_EVERY by every process that
    serves the archive queue."""
    schedule = archive_schedule(config)
    try:
        await client.create_schedule(ARCHIVE_SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:
        await client.get_schedule_handle(ARCHIVE_SCHEDULE_ID).update(
            lambda _: ScheduleUpdate(schedule=schedule)
        )


async def wait_pollers(client: Client, queues: Sequence[str], timeout: float = 60) -> None:
    """Until every queue has a poller: the stack is ready, a benchmark times no start-up."""
    deadline = time.monotonic() + timeout
    kinds = [TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY]
    for queue in queues:
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


@contextlib.asynccontextmanager
async def running(workers: Sequence[Worker]) -> AsyncIterator[None]:
    """The workers polling their queues for the block; at its end each finishes the tasks it
    holds before the block is left."""
    runs = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield
    finally:
        await asyncio.gather(*(w.shutdown() for w in workers))
        await asyncio.gather(*runs, return_exceptions=True)


def outbox_drainer(
    client: Client, config: Settings, queues: Sequence[str], http: httpx.AsyncClient
) -> OutboxDrainer | None:
    """The outbox's drainer runs where the notify lane is served: whoever scales notify
    scales the delivery of portal syncs, notices and webhooks with it."""
    if lanes.NOTIFY not in queues:
        return None
    return OutboxDrainer(config, http, runtime=client.service_client.config.runtime)


@contextlib.asynccontextmanager
async def draining(drainer: OutboxDrainer | None) -> AsyncIterator[None]:
    """The drainer at work for the block; at its end it finishes the pass under way."""
    if drainer is None:
        yield
        return
    task = asyncio.create_task(drainer.run())
    try:
        yield
    finally:
        drainer.stop()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def serving(
    client: Client,
    config: Settings,
    queues: Sequence[str],
    http: httpx.AsyncClient,
    *,
    limits: WorkerLimits = DEFAULT_LIMITS,
) -> AsyncIterator[None]:
    """The workers of `queues` and, with the notify lane, the outbox's drainer."""
    async with (
        running(build_workers(client, config, queues, http, limits=limits)),
        draining(outbox_drainer(client, config, queues, http)),
    ):
        yield


async def serve_lanes(
    config: Settings,
    queues: Sequence[str],
    limits: WorkerLimits,
    *,
    metrics_port: int | None = None,
) -> None:
    """A worker process: the checks before the first dossier, the database migrated, then
    the workers of `queues` until SIGINT or SIGTERM."""
    logs.configure(config.log_level)
    warm_up()
    await prepare_database(config.database_url)
    runtime = runtime_with_metrics(metrics_port) if metrics_port else None
    client = await connect(config, runtime=runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with new_http_client(config.registry_urls.values()) as http:
        if lanes.ARCHIVE in queues:
            await schedule_archive(client, config)
        async with serving(client, config, queues, http, limits=limits):
            address = client.service_client.config.target_host
            print(f"worker: serving {', '.join(queues)} on {address}", flush=True)
            await stop.wait()
