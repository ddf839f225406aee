"""The benchmark's processes: an in-memory dev server, the registry simulators, the API, the
engine's workers and the baseline's, each worker and the API a process of its own with its log
under `logs/`, and py-spy on them when asked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict
from temporalio.client import Client

from bench.baseline import ACTIVITY_QUEUE
from bench.baseline import queue_of as baseline_queue
from bootstrap import wait_pollers
from codec import generate_key
from config import ROOT
from domain import lanes
from embedded import start_dev_server
from simulators.process import free_ports, running_simulators
from store.startup import prepare_database


def parse_counts(text: str, what: str) -> dict[str, float]:
    """`certification=2,intake` as {"certification": 2.0, "intake": 1.0}."""
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


class WorkerProcess(BaseModel):
    model_config = ConfigDict(frozen=True)

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
        processes += [
            WorkerProcess(name=f"{name}-{i + 1}", queues=queues) for i in range(int(count))
        ]
    remaining = tuple(q for q in lanes.ALL_QUEUES if q not in named)
    if remaining:
        if rest < 1:
            raise SystemExit(f"--workers: nothing serves {', '.join(remaining)}; add rest=1")
        processes += [WorkerProcess(name=f"rest-{i + 1}", queues=remaining) for i in range(rest)]
    return processes


def worker_args(process: WorkerProcess, cached: int) -> list[str]:
    return [
        "worker.py",
        "--queues",
        ",".join(process.queues),
        "--max-cached-workflows",
        str(cached),
    ]


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


@dataclass
class Stack:
    """One run's server and simulators, and the processes started against them."""

    client: Client
    address: str
    database_url: str
    api_port: int
    simulator_urls: dict[str, str]
    processes: Processes

    async def start_api(self) -> None:
        self.processes.start("api", ["-m", "api"])
        await wait_http(f"http://127.0.0.1:{self.api_port}/readyz")

    async def start_engine_workers(self, spec: Sequence[WorkerProcess], cached: int) -> list[str]:
        """The engine's worker processes, once every queue has a poller."""
        for process in spec:
            self.processes.start(f"worker-{process.name}", worker_args(process, cached))
        await wait_pollers(self.client, lanes.ALL_QUEUES)
        return [f"worker-{p.name}" for p in spec]

    async def start_baseline_workers(
        self, client: Client, spec: Sequence[WorkerProcess]
    ) -> list[str]:
        """The baseline's worker processes, one for each engine worker process and serving the
        twins of its queues, once every twin has a poller."""
        names = []
        for process in spec:
            name = f"baseline-{process.name}"
            self.processes.start(
                name,
                [
                    "-m",
                    "bench.baseline",
                    "--address",
                    self.address,
                    "--queues",
                    ",".join(process.queues),
                ],
            )
            names.append(name)
        await wait_pollers(
            client, [baseline_queue(q) for q in lanes.WORKFLOW_LANES] + [ACTIVITY_QUEUE]
        )
        return names


@contextlib.asynccontextmanager
async def running_stack(out: Path, sim_latency_ms: int) -> AsyncIterator[Stack]:
    """The dev server in memory, the simulators and the engine's database, under `out`; every
    process started through the stack is stopped when the block ends."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    data_dir = out / "data"
    data_dir.mkdir()
    database_url = os.environ.get("DATABASE_URL", f"sqlite+aiosqlite:///{data_dir}/engine.db")
    # The driver, the API and every worker must encrypt and decrypt with the same keys.
    payload_keys = os.environ.get("PAYLOAD_KEYS") or generate_key()
    os.environ["PAYLOAD_KEYS"] = payload_keys
    env = await start_dev_server(data_dir)
    address = env.client.service_client.config.target_host
    try:
        with running_simulators(
            data_dir / "simulators", extra_env={"SIM_LATENCY_MS": str(sim_latency_ms)}
        ) as sims:
            await prepare_database(database_url)
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
                yield Stack(
                    client=env.client,
                    address=address,
                    database_url=database_url,
                    api_port=api_port,
                    simulator_urls=dict(sims.urls),
                    processes=processes,
                )
            finally:
                processes.stop()
    finally:
        await env.shutdown()


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
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)
    for profiler in profilers:
        try:
            profiler.wait(timeout=60)
        except subprocess.TimeoutExpired:
            profiler.kill()
