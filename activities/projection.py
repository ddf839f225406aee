"""The read model and the audit log, written at each step of a dossier (a local activity,
no server round trip; steps of many dossiers share a commit)."""

from __future__ import annotations

from temporalio import activity

from config import Settings
from schemas.exchanges import ProjectionReceipt, ProjectionRecord
from store import projection


class ProjectionActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="project")
    async def project(self, record: ProjectionRecord) -> ProjectionReceipt:
        return await projection.group_commit(self._settings.database_url).write(record)
