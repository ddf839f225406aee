"""The read model and the audit log, written at each step of a dossier (a local activity:
one database transaction, no server round trip)."""

from __future__ import annotations

from temporalio import activity

from config import Settings
from schemas.exchanges import ProjectionReceipt, ProjectionRecord
from store import projection
from store.db import writing


class ProjectionActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="project")
    async def project(self, record: ProjectionRecord) -> ProjectionReceipt:
        async with writing(self._settings.database_url) as conn:
            return await projection.write(conn, record)
