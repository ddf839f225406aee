"""One real stack for the session: a Temporal dev server, the registry simulators over HTTP,
a real database (SQLite, or PostgreSQL when DATABASE_URL says so) and the workers of every lane.

TEMPORAL_TEST_SERVER picks the server kind, samples-python style:
- `time-skipping` (default): the dev server with per-workflow time skipping, which, unlike
  the Java test server, skips while a client waits on an Update; workflows start without
  skipping and a test fast-forwards the one whose deadline it tests.
- `local`: a plain dev server (no time skipping; deadline tests skip).
- `existing`: the server at TEMPORAL_ADDRESS.
After every test, each history it produced is replayed against the current workflow code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import TimeSkippingConfig, WorkflowEnvironment

from activities.http import new_http_client
from activities.outbox import Backoff, OutboxDrainer
from bootstrap import build_workers, warm_up
from codec import generate_key, project_converter
from config import ROOT, Settings, load_settings
from domain import lanes
from embedded import serving_api as embedded_api
from embedded import start_dev_server, temporal_cli
from metrics import runtime_with_metrics
from ops.replay import SourcedHistory, replay
from simulators.process import SimulatorsProcess, free_ports, running_simulators
from store.db import dispose_all
from store.startup import prepare_database
from tests.instants import START_AT, ArriveAtScenarioInstant, scenario_start
from workflows import search_attributes as sa

# One payload key for the session, inherited by the commands the tests run (ops, starter), as
# a deployment shares PAYLOAD_KEYS between its workers, API and tools.
os.environ.setdefault("PAYLOAD_KEYS", generate_key())


@dataclass
class EngineStack:
    env: WorkflowEnvironment
    client: Client
    settings: Settings
    simulators: SimulatorsProcess
    metrics_url: str
    # The instant the tests' dossiers are received at (tests/instants.py); None without time
    # skipping, where they are received at the real present.
    start_at: datetime | None
    # The outbox's drainer, as the notify lane's worker runs it; a test may stop it (a
    # drainer's restart) and start it again.
    drainer: OutboxDrainer | None = None
    http: httpx.AsyncClient | None = None
    draining: asyncio.Task[None] | None = None
    started: list[str] = field(default_factory=list)

    async def stop_drainer(self) -> None:
        if self.drainer is not None and self.draining is not None:
            self.drainer.stop()
            await self.draining
        self.draining = None

    def start_drainer(self, drainer: OutboxDrainer) -> None:
        self.drainer = drainer
        self.draining = asyncio.create_task(drainer.run())

    @property
    def time_skipping(self) -> bool:
        return self.env.supports_time_skipping_v2


async def _environment(
    runtime: Runtime, converter: DataConverter, data_dir: Path
) -> WorkflowEnvironment:
    kind = os.environ.get("TEMPORAL_TEST_SERVER", "time-skipping")
    if kind == "existing":
        address = os.environ["TEMPORAL_ADDRESS"]
        client = await Client.connect(address, data_converter=converter, runtime=runtime)
        return WorkflowEnvironment.from_client(client)
    if kind == "local":
        return await start_dev_server(data_dir, runtime=runtime)
    return await WorkflowEnvironment.start_time_skipping_v2(
        runtime=runtime,
        ts_config=TimeSkippingConfig(enabled=False),
        data_converter=converter,
        dev_server_existing_path=temporal_cli(),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
        ],
        search_attributes=sa.ALL,
        dev_server_startup_timeout=timedelta(seconds=30),
    )


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engine")


@pytest.fixture(scope="session")
def simulators(data_dir: Path) -> Iterator[SimulatorsProcess]:
    with running_simulators(data_dir / "simulators") as sims:
        yield sims


@pytest.fixture(scope="session")
async def stack(data_dir: Path, simulators: SimulatorsProcess) -> AsyncIterator[EngineStack]:
    warm_up()
    database_url = os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir}/engine.db"
    config = load_settings().model_copy(
        update={
            "registry_urls": dict(simulators.urls),
            "data_dir": data_dir,
            "database_url": database_url,
            # The tests' webhook receivers listen on this machine.
            "webhook_allowed_hosts": ("127.0.0.1", "localhost"),
        }
    )
    await prepare_database(database_url)
    [metrics_port] = free_ports(1)
    env = await _environment(
        runtime_with_metrics(metrics_port), project_converter(data_dir), data_dir
    )
    client = env.client
    start_at: datetime | None = None
    if env.supports_time_skipping_v2:
        start_at = scenario_start(datetime.now(UTC))
        options = client.config()
        options["interceptors"] = [*options["interceptors"], ArriveAtScenarioInstant()]
        client = Client(**options)
    async with new_http_client(config.registry_urls.values()) as http:
        workers = build_workers(client, config, lanes.ALL_QUEUES, http)
        runs = [asyncio.create_task(w.run()) for w in workers]
        engine = EngineStack(
            env=env,
            client=client,
            settings=config,
            simulators=simulators,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
            start_at=start_at,
        )
        engine.http = http
        engine.start_drainer(session_drainer(engine, http))
        try:
            yield engine
        finally:
            await engine.stop_drainer()
            await asyncio.gather(*(w.shutdown() for w in workers))
            await asyncio.gather(*runs, return_exceptions=True)
            await env.shutdown()
            await dispose_all()


def session_drainer(stack: EngineStack, http: httpx.AsyncClient) -> OutboxDrainer:
    """The drainer bootstrap.outbox_drainer builds, retrying every 2 s at most: a test's
    receiver that comes back is served within seconds, not the production 5 minutes."""
    return OutboxDrainer(
        stack.settings,
        http,
        runtime=stack.client.service_client.config.runtime,
        backoff=Backoff(longest=timedelta(seconds=2)),
        idle_poll=0.2,
    )


REPLAY_LIMIT = 120  # seconds for the replay of one test's histories
ARTIFACTS = ROOT / "test-artifacts"


async def assert_replays(client: Client, codes: list[str], source: str) -> None:
    """Every history of these dossiers (each lane too) replays on the current workflow code."""
    histories: list[SourcedHistory] = []
    for code in codes:
        for suffix in ("", *lanes.LANE_WORKFLOW_SUFFIXES):
            handle = client.get_workflow_handle(code + suffix)
            try:
                # Bounded: a server call that never answers must fail the test, not hang CI.
                history = await handle.fetch_history(rpc_timeout=timedelta(seconds=30))
            except RPCError as err:
                if err.status is RPCStatusCode.NOT_FOUND:
                    continue  # this dossier had no such lane
                raise
            histories.append(SourcedHistory(source=source, history=history))
    # A replay that does not finish is abandoned, not cancelled: the SDK's replayer waits for
    # its worker to stop when cancelled, and a stuck worker never does.
    replaying = asyncio.ensure_future(replay(histories, data_converter=client.data_converter))
    done, _ = await asyncio.wait({replaying}, timeout=REPLAY_LIMIT)
    if not done:
        pytest.fail(f"the replay of {[h.history.workflow_id for h in histories]} did not finish")
    broken = [r for r in replaying.result().results if not r.ok]
    if broken:
        # Kept for whoever reads CI's output: the history that did not replay, as exported.
        ARTIFACTS.mkdir(exist_ok=True)
        for outcome in broken:
            for sourced in histories:
                if sourced.history.workflow_id == outcome.workflow_id:
                    path = ARTIFACTS / f"unreplayable-{outcome.workflow_id}.json"
                    path.write_text(sourced.history.to_json(), encoding="utf-8")
    assert not broken, "\n".join(f"{r.workflow_id}: {r.error_type}: {r.error}" for r in broken)


@pytest.fixture(autouse=True)
async def replay_histories(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Replay every history the test produced against the current workflow code, so a change
    that would break a running dossier fails here."""
    yield
    if "stack" not in request.fixturenames:
        return
    stack: EngineStack = request.getfixturevalue("stack")
    codes, stack.started[:] = list(stack.started), []
    await assert_replays(stack.client, codes, request.node.name)


def pytest_report_header() -> str:
    start = scenario_start(datetime.now(UTC))
    return f"dossiers received at: {start.isoformat()} ({os.environ.get(START_AT) or 'default'})"


@contextlib.asynccontextmanager
async def serving_api(stack: EngineStack) -> AsyncIterator[str]:
    """The HTTP API (and the console it mounts) on the session's stack, as the demo serves it."""
    async with embedded_api(stack.client, stack.settings) as url:
        yield url
