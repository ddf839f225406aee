"""Recorded histories of real runs replay against the current workflow code; an incompatible
change to the dossier workflow is caught, per history, with its non-determinism error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from temporalio import workflow
from temporalio.worker import Replayer

from schemas.dossier import DossierFiling
from schemas.lanes import DossierResult
from workflows.certification import CertificationWorkflow
from workflows.dossier import DossierWorkflow
from workflows.processing import ProcessingWorkflow

with workflow.unsafe.imports_passed_through():
    import pytest

    from codec import KEYS_ENV, KeyRing, data_converter, generate_key
    from config import ROOT
    from ops.replay import (
        HistoryFileError,
        load_histories,
        parse_histories,
        replay,
    )
    from tests.record_histories import HISTORIES, SCENARIOS, histories_converter, payload_keys


@workflow.defn(name="Dossier")
class DossierWithAnExtraFirstStep(DossierWorkflow):
    """An incompatible change: intake now calls an extra activity before the identity check.
    Deployed as is, every dossier past that point would fail its next workflow task."""

    @workflow.run
    async def run(self, filing: DossierFiling) -> DossierResult:
        return await super().run(filing)

    async def _intake(self) -> str | None:
        await workflow.execute_activity(
            "check_blacklist", self.filing.code, start_to_close_timeout=timedelta(seconds=5)
        )
        return await super()._intake()


def expected_files() -> list[str]:
    files = []
    for scenario, lane in SCENARIOS.items():
        files.append(f"{scenario}.dossier.json")
        if lane is not None:
            files.append(f"{scenario}{lane}.json")
    return sorted(files)


def test_every_route_and_ending_has_recorded_histories() -> None:
    assert sorted(p.name for p in HISTORIES.glob("*.json")) == expected_files()
    for history in load_histories(HISTORIES):
        # Completed, or failed for a lane that could not go on (the stopped ending).
        last = history.history.events[-1]
        assert last.HasField("workflow_execution_completed_event_attributes") or (
            last.HasField("workflow_execution_failed_event_attributes")
            and history.workflow_type != "Dossier"
        ), f"{history.source}: recorded before its workflow closed"


async def test_recorded_histories_replay_against_the_current_code() -> None:
    report = await replay(load_histories(HISTORIES), data_converter=histories_converter())

    broken = [f"{r.source}: {r.error_type}: {r.error}" for r in report.results if not r.ok]
    assert broken == []
    assert report.histories == len(expected_files())
    types = {r.workflow_type for r in report.results}
    assert types == {"Dossier", "Processing", "Certification"}


async def test_a_plain_replayer_with_the_default_sandbox_replays_them() -> None:
    """What an auditor's own replay does: the SDK's Replayer, the workflow classes and the data
    converter, nothing of the workers' sandbox configuration."""
    replayer = Replayer(
        workflows=[DossierWorkflow, ProcessingWorkflow, CertificationWorkflow],
        data_converter=histories_converter(),
    )
    for item in load_histories(HISTORIES):
        result = await replayer.replay_workflow(item.history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{item.source}: {result.replay_failure}"


async def test_an_incompatible_workflow_change_is_reported_per_history() -> None:
    report = await replay(
        load_histories(HISTORIES),
        workflows=[DossierWithAnExtraFirstStep, ProcessingWorkflow, CertificationWorkflow],
        data_converter=histories_converter(),
    )

    dossiers = [r for r in report.results if r.workflow_type == "Dossier"]
    lanes = [r for r in report.results if r.workflow_type != "Dossier"]
    assert dossiers and lanes
    assert report.broken == len(dossiers)
    for outcome in dossiers:
        assert not outcome.ok and outcome.nondeterministic, outcome
        assert outcome.error is not None
        # An intake that begins with a patch marker (an incomplete dossier's supplement) meets
        # the extra activity at the marker: still a nondeterminism, named as such.
        assert "check_blacklist" in outcome.error or "Nondeterminism" in outcome.error
        assert outcome.workflow_id and outcome.source.endswith(".dossier.json")
    assert all(outcome.ok for outcome in lanes)
    assert report.summary == f"replay: {report.histories} histories, {len(dossiers)} broken"


async def test_histories_encrypted_with_a_key_not_held_are_reported_as_such() -> None:
    other = data_converter(KeyRing.parse(generate_key()))

    report = await replay(load_histories(HISTORIES), data_converter=other)

    assert report.broken == report.histories
    assert {r.error_type for r in report.results} == {"UnknownKeyError"}
    assert all("'test-histories'" in (r.error or "") for r in report.results)


def test_history_files_in_every_accepted_format(tmp_path: Path) -> None:
    one = json.loads((HISTORIES / "ward-withdrawn.dossier.json").read_text(encoding="utf-8"))
    lane = json.loads((HISTORIES / "ward-withdrawn.processing.json").read_text(encoding="utf-8"))
    (tmp_path / "bundle.json").write_text(
        json.dumps({"dossier_code": one["workflow_id"], "histories": [one, lane]})
    )
    (tmp_path / f"{one['workflow_id']}.json").write_text(json.dumps(one["history"]))

    loaded = load_histories(tmp_path)

    assert [(h.source, h.history.workflow_id) for h in loaded] == [
        (f"{one['workflow_id']}.json", one["workflow_id"]),
        ("bundle.json", one["workflow_id"]),
        ("bundle.json", lane["workflow_id"]),
    ]
    with pytest.raises(HistoryFileError, match="workflow_id"):
        parse_histories({"history": one["history"]}, "x.json", "x")
    with pytest.raises(HistoryFileError, match=r"no \*\.json"):
        load_histories(tmp_path / "empty")


def ops(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ops ...` with the recorded histories' payload key, no server needed."""
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        env={**os.environ, KEYS_ENV: payload_keys()},
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )


def test_replay_command_on_the_recorded_histories() -> None:
    count = len(expected_files())

    done = ops("replay", "--dir", "tests/histories")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"replay: {count} histories, 0 broken"
    assert done.stdout.count("\nok ") + done.stdout.startswith("ok ") == count

    as_json = ops("replay", "--dir", "tests/histories", "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert (report["histories"], report["broken"]) == (count, 0)
    assert {r["workflow_type"] for r in report["results"]} == {
        "Dossier",
        "Processing",
        "Certification",
    }


def test_replay_command_exits_1_on_a_broken_history(tmp_path: Path) -> None:
    """A history whose events were tampered with (a step removed) no longer replays."""
    document = json.loads((HISTORIES / "ward-withdrawn.dossier.json").read_text(encoding="utf-8"))
    events = document["history"]["events"]
    scheduled = next(
        i for i, e in enumerate(events) if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
    )
    for event in events[scheduled:]:
        if "activityTaskScheduledEventAttributes" in event:
            event["activityTaskScheduledEventAttributes"]["activityType"]["name"] = "something_else"
            break
    (tmp_path / "tampered.json").write_text(json.dumps(document))

    done = ops("replay", "--dir", str(tmp_path))

    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "replay: 1 histories, 1 broken"
    assert "BROKEN" in done.stdout and "NondeterminismError" in done.stdout
