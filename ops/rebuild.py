"""Rebuild `dossiers` and `tasks` from Temporal: each dossier's view and timeline, through the
same functions the step-by-step writes use."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.client import Client

from services import dossiers as dossier_service
from store import projection
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
        view = await dossier_service.status(client, execution.id)
        timeline = await dossier_service.timeline(client, execution.id)
        await projection.replace_dossier(conn, view, timeline)
        if progress is not None:
            progress(execution.id)
    return len(seen)
