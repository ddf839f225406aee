"""`ops stuck` sees a dossier that stalls without failing, and says in one line when the
database or Temporal does not answer."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflow.v1 import PendingActivityInfo

from config import ROOT
from ops.cli import console
from ops.stuck import SILENT_AFTER, StuckKind, StuckRow, show_stuck, silence

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


def stamp(at: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(at)
    return value


def started(minutes_ago: float, heartbeat_minutes_ago: float | None = None) -> PendingActivityInfo:
    activity = PendingActivityInfo(
        activity_id="7",
        state=PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
        attempt=1,
        last_started_time=stamp(NOW - timedelta(minutes=minutes_ago)),
        last_worker_identity="4242@worker-lanes",
    )
    if heartbeat_minutes_ago is not None:
        activity.last_heartbeat_time.CopyFrom(stamp(NOW - timedelta(minutes=heartbeat_minutes_ago)))
    return activity


def test_an_attempt_silent_past_the_limit_is_stuck_and_names_its_worker() -> None:
    why = silence(started(minutes_ago=9), NOW)
    assert why is not None
    assert "silent for 9 min" in why and "4242@worker-lanes" in why


def test_a_running_attempt_within_the_limit_or_heartbeating_is_not_stuck() -> None:
    assert SILENT_AFTER < timedelta(minutes=9)
    assert silence(started(minutes_ago=1), NOW) is None
    # Signing waits minutes for the signer, heartbeating: heard from, so not stuck.
    assert silence(started(minutes_ago=9, heartbeat_minutes_ago=0.5), NOW) is None


def test_an_activity_no_worker_takes_is_stuck() -> None:
    waiting = PendingActivityInfo(
        activity_id="3",
        state=PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED,
        attempt=1,
        scheduled_time=stamp(NOW - timedelta(minutes=6)),
    )
    why = silence(waiting, NOW)
    assert why is not None and "taken by no worker for 6 min" in why
    waiting.scheduled_time.CopyFrom(stamp(NOW - timedelta(seconds=20)))
    assert silence(waiting, NOW) is None


def ops(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_database_that_refuses_connections_is_said_in_one_line() -> None:
    ran = ops("stuck", DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:1/engine")
    assert ran.returncode == 3, ran.stderr
    assert "Traceback" not in ran.stderr
    [line] = ran.stderr.strip().splitlines()
    assert line.startswith("ops: the engine's database does not answer: ")


def test_a_temporal_server_that_does_not_answer_is_said_in_one_line(tmp_path: Path) -> None:
    ran = ops(
        "stuck",
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/engine.db",
        TEMPORAL_ADDRESS="127.0.0.1:1",
    )
    assert ran.returncode == 3, ran.stderr
    [line] = ran.stderr.strip().splitlines()
    assert line.startswith("ops: Temporal does not answer: ")


def test_stuck_reads_at_80_columns() -> None:
    """An operator's terminal over SSH: every line fits, each dossier says what and why."""
    rows = [
        StuckRow(
            code="000.01.01.H26-261127-0001",
            workflow_id="000.01.01.H26-261127-0001.processing",
            kind=StuckKind.ACTIVITY,
            activity="consult_registry",
            attempts=14,
            last_error="population registry POST /v1/citizens/verify: no answer within 10 s",
            since=datetime(2026, 11, 27, 2, 0, tzinfo=UTC),
        ),
        StuckRow(
            code="000.01.01.H26-261127-0002",
            workflow_id="000.01.01.H26-261127-0002",
            kind=StuckKind.HUMAN_TASK,
            activity="appraise",
            last_error="awaits specialist at hoan-kiem, due 2026-11-27 17:00",
            since=datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
        ),
    ]
    with console.capture() as captured:
        width = console.width
        console.width = 80
        try:
            show_stuck(rows, as_json=False)
        finally:
            console.width = width
    lines = captured.get().splitlines()
    assert max(len(line) for line in lines) <= 80, lines
    assert lines[1] == "000.01.01.H26-261127-0001  activity consult_registry x14  since 11-27 09:00"
    assert "processing: population registry POST /v1/citizens/verify" in lines[2]
    assert lines[4] == "000.01.01.H26-261127-0002  human_task appraise  since 11-27 17:00"
