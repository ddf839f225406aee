"""The read model and the audit log, written at each step of a dossier (a local activity,
no server round trip; steps of many dossiers share a commit)."""

from __future__ import annotations

from temporalio import activity

from codec.payload import load_keys
from config import Settings
from schemas.exchanges import ProjectionReceipt, ProjectionRecord
from store import outbox, projection


class ProjectionActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # The outbox's portal syncs and notices are kept encrypted, with the payload keys.
        self._seal = outbox.Seal(load_keys(data_dir=settings.data_dir))

    @activity.defn(name="project")
    async def project(self, record: ProjectionRecord) -> ProjectionReceipt:
        committer = projection.group_commit(self._settings.database_url, self._seal)
        return await committer.write(record)
