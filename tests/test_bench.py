"""The surge benchmark's own rules: the baseline has a dossier's shape, worker processes cover
every queue, the mix is what was asked for."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from bench.baseline import (
    LEGAL_ACTIVITIES,
    OpKind,
    informing_in_outbox,
    lane_reports_result_only,
    legal_minimum,
    plan_from_histories,
)
from bench.drivers import kinds_of
from bench.processes import worker_processes
from domain import lanes
from ops.replay import load_file

HISTORIES = Path(__file__).parent / "histories"


def events(name: str) -> list[HistoryEvent]:
    [recorded] = load_file(HISTORIES / f"{name}.json")
    return list(recorded.history.events)


def count(history: list[HistoryEvent], kind: EventType.ValueType) -> int:
    return sum(1 for e in history if e.event_type == kind)


@pytest.mark.parametrize(
    ("name", "lane_suffix", "lane", "updates"),
    [
        ("certification-approved-online", "certification", lanes.CERTIFICATION, (0, 1)),
        # Supplement asked and given, appraised, approved; handed over at the counter.
        ("ward-approved-supplement-counter", "processing", lanes.WARD_PROCESSING, (1, 4)),
        ("city-approved-fees-post", "processing", lanes.CITY_PROCESSING, (0, 2)),
    ],
)
def test_the_baseline_plan_has_the_round_trips_of_the_dossier_it_was_read_from(
    name: str, lane_suffix: str, lane: str, updates: tuple[int, int]
) -> None:
    dossier = events(f"{name}.dossier")
    lane_events = events(f"{name}.{lane_suffix}")
    plan = plan_from_histories("kind", lane, dossier, lane_events)
    scheduled = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    assert plan.round_trips() == count(dossier, scheduled) + count(lane_events, scheduled)
    assert plan.updates() == updates
    reports = [op for op in plan.lane_ops if op.kind is OpKind.REPORT]
    assert len(reports) == count(dossier, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    assert [op.kind for op in plan.dossier].count(OpKind.CHILD) == 1
    assert plan.lane_timer


def scheduled_types(history: list[HistoryEvent]) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


@pytest.mark.parametrize(
    ("name", "lane_suffix", "lane"),
    [
        ("certification-approved-online", "certification", lanes.CERTIFICATION),
        ("ward-approved-supplement-counter", "processing", lanes.WARD_PROCESSING),
        ("city-approved-fees-post", "processing", lanes.CITY_PROCESSING),
    ],
)
def test_the_legal_minimum_keeps_the_officers_steps_and_the_calls_that_decide(
    name: str, lane_suffix: str, lane: str
) -> None:
    dossier = events(f"{name}.dossier")
    lane_events = events(f"{name}.{lane_suffix}")
    plan = plan_from_histories("kind", lane, dossier, lane_events)
    minimum = legal_minimum(plan)
    # One workflow: no lane, no reports; every officer's step, sent to it.
    assert not minimum.has_lane() and not minimum.lane_ops
    assert {op.kind for op in minimum.dossier} <= {OpKind.ACTIVITIES, OpKind.UPDATE}
    assert minimum.updates() == (sum(plan.updates()), 0)
    # The identity, registry, signing and fee calls the dossier and its lane made; nothing
    # that only informs.
    made = scheduled_types(dossier) + scheduled_types(lane_events)
    kept = [a for op in minimum.dossier for a in op.activities]
    assert sorted(kept) == sorted(t for t in made if t in LEGAL_ACTIVITIES)
    assert "sync_portal" in made and "sync_portal" not in kept
    assert minimum.round_trips() < plan.round_trips()
    assert minimum.lane_timer == plan.lane_timer


def test_the_shapes_between_drop_the_informing_calls_then_the_progress_reports() -> None:
    dossier = events("ward-approved-supplement-counter.dossier")
    lane_events = events("ward-approved-supplement-counter.processing")
    plan = plan_from_histories("ward", lanes.WARD_PROCESSING, dossier, lane_events)
    outboxed = informing_in_outbox(plan)
    steps = [*outboxed.dossier, *outboxed.lane_ops]
    assert {a for op in steps for a in op.activities} <= LEGAL_ACTIVITIES
    # The same shape otherwise: the lane, its reports, the officers' steps.
    assert outboxed.has_lane() and outboxed.updates() == plan.updates()
    reports = [op for op in plan.lane_ops if op.kind is OpKind.REPORT]
    assert [op for op in outboxed.lane_ops if op.kind is OpKind.REPORT] == [
        op.model_copy(update={"count": 0, "activities": ()}) for op in reports
    ]
    result_only = lane_reports_result_only(plan)
    assert result_only.has_lane() and result_only.updates() == plan.updates()
    assert all(op.kind is not OpKind.REPORT for op in result_only.lane_ops)
    trips = [legal_minimum(plan).round_trips(), result_only.round_trips(), outboxed.round_trips()]
    assert trips == sorted(trips) and outboxed.round_trips() < plan.round_trips()


def test_worker_processes_serve_every_queue_once_per_process_kind() -> None:
    processes = worker_processes("certification=2,intake=1")
    assert [p.name for p in processes] == [
        "certification-1",
        "certification-2",
        "intake-1",
        "rest-1",
    ]
    rest = processes[-1].queues
    assert lanes.CERTIFICATION not in rest and lanes.INTAKE not in rest
    served = {q for p in processes for q in p.queues}
    assert served == set(lanes.ALL_QUEUES)


def test_worker_processes_refuse_an_unknown_lane_and_an_unserved_queue() -> None:
    with pytest.raises(SystemExit, match="unknown lane 'certfication'"):
        worker_processes("certfication=2")
    with pytest.raises(SystemExit, match="nothing serves"):
        worker_processes("certification=1,rest=0")


def test_the_mix_is_kept_and_interleaved() -> None:
    kinds = kinds_of({"certification": 0.7, "ward": 0.2, "city": 0.1}, 1000)
    assert Counter(kinds) == {"certification": 700, "ward": 200, "city": 100}
    assert set(kinds[:10]) == {"certification", "ward", "city"}
    with pytest.raises(SystemExit, match="unknown kind"):
        kinds_of({"land": 1.0}, 10)
