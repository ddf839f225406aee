"""The archiver, started by a Temporal Schedule every ARCHIVE_EVERY: one activity copies the
histories of the dossier runs closed since its last pass into the database."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from schemas.exchanges import ArchivePass

SCHEDULE_ID = "archive-closed-dossiers"

# A pass after an outage may have thousands of runs to copy; it reports progress by heartbeat,
# and a pass cut off resumes from what it archived.
ARCHIVE_PASS = timedelta(hours=2)
ARCHIVE_HEARTBEAT = timedelta(minutes=2)


@workflow.defn(name="Archive")
class ArchiveWorkflow:
    @workflow.run
    async def run(self) -> ArchivePass:
        done: ArchivePass = await workflow.execute_activity(
            "archive_closed_runs",
            result_type=ArchivePass,
            start_to_close_timeout=ARCHIVE_PASS,
            heartbeat_timeout=ARCHIVE_HEARTBEAT,
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
        )
        return done
