"""The production shape on one machine, each part its own process, so a drill can kill one.

The Temporal dev server keeps its state in a file (it can be killed and started again on it),
the population registry runs apart from the other registries (it can go down alone), the
workflow lanes and the activity lanes have their own worker processes, the API its own; the
engine's database is a fresh PostgreSQL database (or a SQLite file).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.client import Client

from bench.processes import wait_http
from bootstrap import connect
from config import ROOT, SIMULATOR_PORTS, load_settings
from embedded import temporal_cli
from simulators.process import free_ports
from workflows import search_attributes as sa

REGISTRY_ALONE = "population"  # the registry a drill takes down by itself
WORKERS: dict[str, str] = {
    "worker-workflows": "workflows",
    "worker-activities": "registries,signing,notify",
}
_CLI_TYPES = {"KEYWORD": "Keyword", "DATETIME": "Datetime", "BOOL": "Bool"}


def _search_attribute_args() -> list[str]:
    args: list[str] = []
    for key in sa.ALL:
        args += ["--search-attribute", f"{key.name}={_CLI_TYPES[key.indexed_value_type.name]}"]
    return args


@dataclass
class Database:
    """The engine's database for one drill: a fresh PostgreSQL database dropped afterwards,
    or a SQLite file."""

    url: str
    admin_url: str | None = None  # PostgreSQL: the server's maintenance database
    name: str = ""

    @classmethod
    async def create(cls, kind: str, folder: Path, label: str) -> Database:
        if kind == "sqlite":
            return cls(url=f"sqlite+aiosqlite:///{folder}/engine.db")
        admin = os.environ.get(
            "DRILL_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
        )
        name = f"dossier_drill_{label}_{os.getpid()}_{int(time.time())}"
        engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            await engine.dispose()
        return cls(url=admin.rsplit("/", 1)[0] + f"/{name}", admin_url=admin, name=name)

    async def _admin(self, *statements: str) -> None:
        assert self.admin_url is not None
        engine = create_async_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                for statement in statements:
                    await conn.execute(text(statement))
        finally:
            await engine.dispose()

    async def refuse_connections(self) -> None:
        """What an outage of the database server looks like to the engine: every open
        connection dropped, every new one refused."""
        await self._admin(
            f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false',
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()",
        )

    async def accept_connections(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    async def drop(self) -> None:
        if self.admin_url is not None:
            await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@dataclass
class Shape:
    """The processes of one drill, with the ports fixed up front so a restarted part comes
    back where the others look for it."""

    folder: Path
    database: Database
    payload_keys: str
    temporal_port: int = 0
    api_port: int = 0
    registry_ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ports = free_ports(2 + len(SIMULATOR_PORTS))
        self.temporal_port, self.api_port = ports[0], ports[1]
        self.registry_ports = dict(zip(SIMULATOR_PORTS, ports[2:], strict=True))
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def registry_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.registry_ports[name]}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "DATABASE_URL": self.database.url,
            "DATA_DIR": str(self.folder),
            "PAYLOAD_KEYS": self.payload_keys,
            "SIGNING_DATA_DIR": str(self.folder / "signing"),
            "API_PORT": str(self.api_port),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            "SIM_HOST": "127.0.0.1",
            **{f"SIM_{name.upper()}_PORT": str(port) for name, port in self.registry_ports.items()},
            **{f"{name.upper()}_URL": self.registry_url(name) for name in self.registry_ports},
        }

    def _commands(self) -> dict[str, list[str]]:
        others = ",".join(n for n in SIMULATOR_PORTS if n != REGISTRY_ALONE)
        python = sys.executable
        return {
            "temporal": [
                temporal_cli(),
                "server",
                "start-dev",
                "--headless",
                "--ip",
                "127.0.0.1",
                "--port",
                str(self.temporal_port),
                "--db-filename",
                str(self.folder / "temporal.db"),
                "--log-level",
                "error",
                *_search_attribute_args(),
            ],
            REGISTRY_ALONE: [python, "-m", "simulators", "--only", REGISTRY_ALONE],
            "registries": [python, "-m", "simulators", "--only", others],
            **{name: [python, "worker.py", "--queues", queues] for name, queues in WORKERS.items()},
            "api": [python, "-m", "api"],
        }

    def start(self, name: str) -> None:
        log = (self.folder / "logs" / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            self._commands()[name], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def kill(self, name: str) -> None:
        """kill -9: no shutdown, no goodbye, as a crashed machine."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def dead(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is not None]

    async def up(self) -> Client:
        """Every part started and answering; returns a client of the server."""
        self.start("temporal")
        client = await self.wait_temporal()
        for name in (REGISTRY_ALONE, "registries"):
            self.start(name)
        for name in SIMULATOR_PORTS:
            await wait_http(f"{self.registry_url(name)}/_sim/health", timeout=90)
        for name in (*WORKERS, "api"):
            self.start(name)
        await wait_http(f"{self.api_url}/readyz", timeout=90)
        return client

    async def wait_temporal(self, timeout: float = 60) -> Client:
        deadline = time.monotonic() + timeout
        config = load_settings().model_copy(update={"data_dir": self.folder})
        while True:
            try:
                client = await connect(config, address=self.temporal_address)
                await client.count_workflows()
                return client
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
