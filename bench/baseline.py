"""Bare Temporal with a dossier's shape: the same server round trips, none of the engine's work.

The plan of each kind of dossier is read from a real dossier's histories (`plan_from_histories`):
the activities the dossier and its lane schedule, grouped as they were scheduled together, the
lane's reports to the dossier (and the portal syncs each report caused), the officers' updates
and the lane's clock timer. `BaselineDossier` and `BaselineLane` replay that shape with
activities that do nothing, so engine/baseline is what the engine's own work costs.

`legal_minimum` keeps of a plan only the round trips the law needs: the officers' steps and the
calls that decide or produce something (identity check, registries, e-signature, fee), in one
workflow with its legal clock; engine/legal minimum is what the engine's shape costs besides. It
is also the shape of a lane run inside the dossier workflow with lane-queue activities.
`informing_in_outbox` and `lane_reports_result_only` are the shapes between (`--shapes`).

`python -m bench.baseline --queues certification,intake` serves the baseline's queues.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PREFIX = "bench."
ACTIVITY_QUEUE = f"{PREFIX}activities"
CALL = timedelta(seconds=30)


def queue_of(lane: str) -> str:
    """The baseline's twin of an engine queue: `certification` -> `bench.certification`."""
    return f"{PREFIX}{lane}"


class OpKind(StrEnum):
    ACTIVITIES = "activities"  # `count` activities scheduled together
    REPORT = "report"  # the lane signals the dossier, which then runs `count` activities
    UPDATE = "update"  # an officer's step, sent by the driver
    CHILD = "child"  # the lane, as a child workflow


# The calls a dossier cannot do without: who the applicant is, what the registries say, the
# signed result and the fee. Portal syncs, notices, webhooks and post orders only inform.
LEGAL_ACTIVITIES = frozenset(
    {"check_identity", "consult_registry", "issue_document", "collect_fee"}
)


class Op(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: OpKind
    count: int = Field(default=1, ge=0)
    # The activity types behind `count`, as the histories scheduled them.
    activities: tuple[str, ...] = ()


class BaselinePlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str
    lane: str
    dossier: list[Op]
    lane_ops: list[Op]
    lane_timer: bool

    def has_lane(self) -> bool:
        return any(op.kind is OpKind.CHILD for op in self.dossier)

    def updates(self) -> tuple[int, int]:
        """Officers' updates the driver sends: to the dossier, to the lane."""
        return (
            sum(1 for op in self.dossier if op.kind is OpKind.UPDATE),
            sum(1 for op in self.lane_ops if op.kind is OpKind.UPDATE),
        )

    def round_trips(self) -> int:
        """Activity tasks the plan schedules (workflow tasks are counted from histories)."""
        reports = sum(op.count for op in self.lane_ops if op.kind is OpKind.REPORT)
        activities = sum(
            op.count for op in [*self.dossier, *self.lane_ops] if op.kind is OpKind.ACTIVITIES
        )
        return reports + activities


# --- the plan, from a real dossier's histories -------------------------------------------------
def _grouped_activities(events: Sequence[HistoryEvent]) -> dict[int, list[str]]:
    """Activity types per scheduling workflow task, keyed by that task's completion event id."""
    groups: dict[int, list[str]] = {}
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled = event.activity_task_scheduled_event_attributes
            key = scheduled.workflow_task_completed_event_id
            groups.setdefault(key, []).append(scheduled.activity_type.name)
    return groups


def _activities_op(kind: OpKind, names: Sequence[str]) -> Op:
    return Op(kind=kind, count=len(names), activities=tuple(names))


def plan_from_histories(
    kind: str, lane: str, dossier: Sequence[HistoryEvent], lane_events: Sequence[HistoryEvent]
) -> BaselinePlan:
    # The dossier: activities before the lane, the activities each report caused while the
    # lane ran, then what follows the lane (activities and the hand-over update).
    groups = _grouped_activities(dossier)
    seen: set[int] = set()
    ops: list[Op] = []
    reports: list[list[str]] = []
    in_lane = False
    for event in dossier:
        kind_of = event.event_type
        if kind_of == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            ops.append(Op(kind=OpKind.CHILD))
            in_lane = True
        elif kind_of in (
            EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED,
            EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED,
        ):
            in_lane = False
        elif kind_of == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED and in_lane:
            reports.append([])
        elif kind_of == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            ops.append(Op(kind=OpKind.UPDATE))
        elif kind_of == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled = event.activity_task_scheduled_event_attributes
            key = scheduled.workflow_task_completed_event_id
            if in_lane and reports:
                reports[-1].append(scheduled.activity_type.name)
            elif key not in seen:
                seen.add(key)
                ops.append(_activities_op(OpKind.ACTIVITIES, groups[key]))
    # The lane: its activities, reports and updates in order.
    lane_groups = _grouped_activities(lane_events)
    lane_seen: set[int] = set()
    lane_ops: list[Op] = []
    # A lane run inside the dossier workflow: the legal clock's timer is the dossier's.
    timer = not lane_events and any(
        e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in dossier
    )
    for event in lane_events:
        kind_of = event.event_type
        if kind_of == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
            index = sum(1 for op in lane_ops if op.kind is OpKind.REPORT)
            caused = reports[index] if index < len(reports) else []
            lane_ops.append(_activities_op(OpKind.REPORT, caused))
        elif kind_of == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            lane_ops.append(Op(kind=OpKind.UPDATE))
        elif kind_of == EventType.EVENT_TYPE_TIMER_STARTED:
            timer = True
        elif kind_of == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            key = event.activity_task_scheduled_event_attributes.workflow_task_completed_event_id
            if key not in lane_seen:
                lane_seen.add(key)
                lane_ops.append(_activities_op(OpKind.ACTIVITIES, lane_groups[key]))
    return BaselinePlan(kind=kind, lane=lane, dossier=ops, lane_ops=lane_ops, lane_timer=timer)


def _legal_only(op: Op) -> Op:
    if op.kind not in (OpKind.ACTIVITIES, OpKind.REPORT):
        return op
    return _activities_op(op.kind, [name for name in op.activities if name in LEGAL_ACTIVITIES])


def informing_in_outbox(plan: BaselinePlan) -> BaselinePlan:
    """The same shape with what only informs (portal syncs, notices, webhooks, post orders)
    delivered from an outbox, outside the dossier's history."""
    keep = [_legal_only(op) for op in plan.dossier]
    return plan.model_copy(
        update={
            "dossier": [op for op in keep if op.kind is not OpKind.ACTIVITIES or op.count],
            "lane_ops": [
                op
                for op in map(_legal_only, plan.lane_ops)
                if op.kind is not OpKind.ACTIVITIES or op.count
            ],
        }
    )


def lane_reports_result_only(plan: BaselinePlan) -> BaselinePlan:
    """That, and a lane that writes its own steps to the read model and tells the dossier only
    its result (its completion): no progress signals."""
    outboxed = informing_in_outbox(plan)
    return outboxed.model_copy(
        update={"lane_ops": [op for op in outboxed.lane_ops if op.kind is not OpKind.REPORT]}
    )


def legal_minimum(plan: BaselinePlan) -> BaselinePlan:
    """The plan's dossier in one workflow with only what the law needs: its officers' steps and
    its identity, registry, signing and fee calls, in the order the dossier made them (calls
    scheduled together stay together), and the legal clock's timer."""
    ops: list[Op] = []
    for op in plan.dossier:
        steps = plan.lane_ops if op.kind is OpKind.CHILD else [op]
        for step in steps:
            if step.kind is OpKind.UPDATE:
                ops.append(step)
                continue
            needed = [name for name in step.activities if name in LEGAL_ACTIVITIES]
            if needed:
                ops.append(_activities_op(OpKind.ACTIVITIES, needed))
    return BaselinePlan(
        kind=plan.kind, lane=plan.lane, dossier=ops, lane_ops=[], lane_timer=plan.lane_timer
    )


# --- activity and workflows --------------------------------------------------------------------
@activity.defn(name="bench_noop")
async def noop(index: int) -> int:
    return index


async def _activities(count: int) -> None:
    await asyncio.gather(
        *(
            workflow.execute_activity(
                noop, i, task_queue=ACTIVITY_QUEUE, start_to_close_timeout=CALL
            )
            for i in range(count)
        )
    )


class LaneInput(BaseModel):
    plan: BaselinePlan
    parent_id: str


@workflow.defn(name="BaselineLane")
class BaselineLane:
    def __init__(self) -> None:
        self._updates = 0

    @workflow.run
    async def run(self, job: LaneInput) -> int:
        clock: asyncio.Task[None] | None = None
        if job.plan.lane_timer:
            # The engine's legal clock: a timer far ahead, cancelled at the end.
            clock = asyncio.create_task(
                workflow.wait_condition(lambda: False, timeout=timedelta(days=30))
            )
        parent = workflow.get_external_workflow_handle(job.parent_id)
        taken = 0
        for op in job.plan.lane_ops:
            if op.kind is OpKind.ACTIVITIES:
                await _activities(op.count)
            elif op.kind is OpKind.REPORT:
                await parent.signal("report", op.count)
            elif op.kind is OpKind.UPDATE:
                taken += 1
                await workflow.wait_condition(self._taken(taken))
        if clock is not None:
            clock.cancel()
        return taken

    @workflow.update
    def step(self) -> int:
        self._updates += 1
        return self._updates

    def _taken(self, count: int) -> Callable[[], bool]:
        return lambda: self._updates >= count


@workflow.defn(name="BaselineDossier")
class BaselineDossier:
    def __init__(self) -> None:
        self._updates = 0
        self._lock = asyncio.Lock()

    @workflow.run
    async def run(self, plan: BaselinePlan) -> int:
        clock: asyncio.Task[None] | None = None
        if plan.lane_timer and not plan.has_lane():
            # The legal clock, in the dossier when it has no lane (the legal minimum).
            clock = asyncio.create_task(
                workflow.wait_condition(lambda: False, timeout=timedelta(days=30))
            )
        taken = 0
        for op in plan.dossier:
            if op.kind is OpKind.ACTIVITIES:
                await _activities(op.count)
            elif op.kind is OpKind.CHILD:
                await workflow.execute_child_workflow(
                    BaselineLane.run,
                    LaneInput(plan=plan, parent_id=workflow.info().workflow_id),
                    id=f"{workflow.info().workflow_id}.lane",
                    task_queue=queue_of(plan.lane),
                )
                async with self._lock:  # after the lane's last report
                    pass
            elif op.kind is OpKind.UPDATE:
                taken += 1
                await workflow.wait_condition(self._taken(taken))
        if clock is not None:
            clock.cancel()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return taken

    @workflow.signal
    async def report(self, activities: int) -> None:
        # Applied in order under a lock, as the engine's progress reports are.
        async with self._lock:
            for _ in range(activities):
                await _activities(1)

    @workflow.update
    def step(self) -> int:
        self._updates += 1
        return self._updates

    def _taken(self, count: int) -> Callable[[], bool]:
        return lambda: self._updates >= count


def build_baseline_workers(client: Client, queues: Sequence[str]) -> list[Worker]:
    """Workers for the baseline's twin of each engine queue named (workflow lanes and one
    activity queue for everything else)."""
    from domain import lanes  # not at the top: the sandbox imports this module for every run

    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("pydantic")
    )
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    workers: list[Worker] = []
    activity_served = False
    for queue in queues:
        if queue in lanes.WORKFLOW_LANES:
            workers.append(
                Worker(
                    client,
                    task_queue=queue_of(queue),
                    workflows=[BaselineDossier] if queue == lanes.INTAKE else [BaselineLane],
                    workflow_runner=runner,
                    activity_executor=executor,
                    max_concurrent_workflow_tasks=100,
                )
            )
        elif not activity_served:
            activity_served = True
            workers.append(
                Worker(
                    client,
                    task_queue=ACTIVITY_QUEUE,
                    activities=[noop],
                    activity_executor=executor,
                    max_concurrent_activities=100,
                )
            )
    return workers


async def main(argv: Sequence[str] | None = None) -> None:
    import signal

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--queues", required=True, help="engine queue names, comma-separated")
    args = parser.parse_args(argv)
    from bootstrap import cache_workflow_bytecode  # not at the top: the sandbox imports this

    # As the engine's workers do: the sandbox re-imports this module for every run.
    cache_workflow_bytecode(Path(__file__).parent)
    client = await Client.connect(args.address, data_converter=pydantic_data_converter)
    workers = build_baseline_workers(client, [q for q in args.queues.split(",") if q])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runs = [asyncio.create_task(w.run()) for w in workers]
    print(f"baseline worker: serving {args.queues}", flush=True)
    await stop.wait()
    await asyncio.gather(*(w.shutdown() for w in workers))
    await asyncio.gather(*runs, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
