"""`python -m ops rebuild`: `dossiers` and `tasks` again from Temporal, each dossier's view and
timeline written through the same functions the step-by-step writes use. A closed dossier
Temporal no longer holds (its retention ended) is rebuilt from its record in the read model
(`dossier_snapshots`), which the archive's history backs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.client import Client

from bootstrap import connect
from config import settings
from ops.cli import AsJson, console, spinner
from services import dossiers as dossier_service
from store import projection, views
from store.db import engine_for
from store.migrate import migrate
from store.tables import dossiers, tasks


async def rebuild(
    conn: AsyncConnection, client: Client, progress: Callable[[str], None] | None = None
) -> int:
    await conn.execute(delete(tasks))
    await conn.execute(delete(dossiers))
    seen: set[str] = set()
    async for execution in client.list_workflows("WorkflowType = 'Dossier'"):
        # A reset leaves the earlier run listed beside the current one: rebuild each dossier
        # once, from its current run.
        if execution.id in seen:
            continue
        seen.add(execution.id)
        view = await dossier_service.live_status(client, execution.id)
        timeline = await dossier_service.live_timeline(client, execution.id)
        await projection.replace_dossier(conn, view, timeline)
        if progress is not None:
            progress(execution.id)
    for code in await views.recorded_codes(conn):
        if code in seen:
            continue
        recorded = await views.snapshot(conn, code)
        if recorded is None or not recorded.closed:
            continue  # an open dossier Temporal does not know is no dossier any more
        seen.add(code)
        await projection.replace_dossier(conn, recorded.view, recorded.timeline)
        if progress is not None:
            progress(code)
    return len(seen)


def rebuild_command(as_json: AsJson = False) -> None:
    """Rebuild the `dossiers` and `tasks` tables from the Temporal histories."""

    async def run() -> int:
        config = settings()
        await migrate(config.database_url)
        client = await connect(config)
        with spinner() as progress:
            task = progress.add_task("rebuilding", total=None)
            async with engine_for(config.database_url, writer=True).begin() as conn:
                return await rebuild(
                    conn, client, lambda c: progress.update(task, description=f"rebuilt {c}")
                )

    count = asyncio.run(run())
    if as_json:
        console.print(json.dumps({"rebuilt": count}))
    else:
        console.print(f"rebuild: {count} dossiers")
