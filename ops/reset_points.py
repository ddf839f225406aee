"""Where `python -m ops reset --to STEP` goes: the workflow (the dossier's, or its lane
child's) and the workflow task event to reset it to, found in their histories.

A dossier whose lane runs inside its workflow (`lane-in-dossier`) has one history: each step
resets the dossier workflow, at the same events in it; its lane's first workflow task is the
one that moved the dossier in processing, and `return` is the workflow task that moved it to
its result (result ready, or refused), both read from its search attribute upserts.

Where each step resets to (`WFTC` = a WorkflowTaskCompleted event; resetting to it drops it
and everything after, and runs that workflow task again):

step       workflow  reset point
intake     dossier   its first WFTC (the identity check is scheduled again)
appraisal  lane      the WFTC right before the first `consult_registry` scheduled; the lane's
                     first WFTC when it consults no registry (certification)
approval   lane      the WFTC right before the leader's decision (`approve`, `refuse`,
                     `certify`) was accepted; before any decision, the first WFTC after the
                     `appraise` update was accepted (a certification lane: its first WFTC)
signing    lane      the WFTC right before the first `issue_document` scheduled after the
                     decision (an apology slip issued before it does not count)
return     dossier   the first WFTC after the lane child completed (with a decision)

A step the dossier has not reached is refused with the reason. A lane step is possible only
while the lane runs: once its result is back at the receiving unit the lane has completed,
and a new run of it could not report to the dossier any more (reset to `return` or `intake`
instead). A closed dossier is not reopened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.converter import decode_typed_search_attributes

from domain import lanes
from ops.errors import NotReached, OperatorError
from ops.temporal import describe_if_exists, history
from schemas.lanes import LaneResult
from schemas.lifecycle import DECISIONS
from schemas.statuses import DossierStatus, Outcome
from workflows import search_attributes as sa
from workflows.dossier import LANE_IN_DOSSIER


class Step(StrEnum):
    INTAKE = "intake"
    APPRAISAL = "appraisal"
    APPROVAL = "approval"
    SIGNING = "signing"
    RETURN = "return"


CHILD_CLOSED = frozenset(
    {
        EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED,
        EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT,
        EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED,
    }
)


class ResetPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    step: Step
    workflow_id: str
    run_id: str
    event_id: int
    note: str


def _wftc(events: Sequence[HistoryEvent]) -> list[int]:
    return [
        e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]


def _before(completed: Sequence[int], event_id: int) -> int | None:
    earlier = [c for c in completed if c < event_id]
    return earlier[-1] if earlier else None


def _after(completed: Sequence[int], event_id: int) -> int | None:
    return next((c for c in completed if c > event_id), None)


def _scheduled(events: Sequence[HistoryEvent], activity: str, after: int = 0) -> int | None:
    return next(
        (
            e.event_id
            for e in events
            if e.event_id > after
            and e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == activity
        ),
        None,
    )


def _accepted(events: Sequence[HistoryEvent]) -> list[tuple[int, str]]:
    return [
        (
            e.event_id,
            e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name,
        )
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]


def _patched(events: Sequence[HistoryEvent], patch: str) -> bool:
    """The run took the path behind `patch` (its marker is in the history)."""
    for e in events:
        if e.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        marker = e.marker_recorded_event_attributes
        if marker.marker_name != "core_patch":
            continue
        for payload in marker.details["patch-data"].payloads:
            if f'"id":"{patch}"'.encode() in payload.data.replace(b" ", b""):
                return True
    return False


def _status_set(events: Sequence[HistoryEvent], statuses: set[DossierStatus]) -> int | None:
    """The workflow task that first moved the dossier to one of `statuses` (its
    WorkflowTaskCompleted event), from the search attribute upserts."""
    for e in events:
        if e.event_type != EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            continue
        upsert = e.upsert_workflow_search_attributes_event_attributes
        status = decode_typed_search_attributes(upsert.search_attributes).get(sa.STATUS)
        if status in statuses:
            return upsert.workflow_task_completed_event_id
    return None


async def locate(client: Client, code: str, step: Step) -> ResetPoint:
    """Where resetting `code` to `step` goes: the workflow and its event (see the module's
    table). Raises NotReached with the reason when the dossier is not there."""
    parent = await describe_if_exists(client, code)
    if parent is None:
        raise OperatorError(f"dossier {code}: no such dossier workflow")
    if parent.status is WorkflowExecutionStatus.COMPLETED:
        raise NotReached(f"dossier {code} is closed; a reset does not reopen a closed dossier")
    events = await history(client, code, parent.run_id)
    completed = _wftc(events)

    def point(workflow_id: str, run_id: str, event_id: int | None, note: str) -> ResetPoint:
        if event_id is None:
            raise NotReached(
                f"dossier {code} is entering {step.value} right now; try again in a moment"
            )
        return ResetPoint(
            code=code,
            step=step,
            workflow_id=workflow_id,
            run_id=run_id,
            event_id=event_id,
            note=note,
        )

    if step is Step.INTAKE:
        return point(
            code, parent.run_id, completed[0] if completed else None, "first workflow task"
        )
    if _patched(events, LANE_IN_DOSSIER):
        return _inside(code, step, parent, events, point)

    if step is Step.RETURN:
        done = next(
            (
                e
                for e in events
                if e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED
            ),
            None,
        )
        if done is None:
            raise NotReached(
                f"dossier {code} has not reached return: its lane has not returned a result"
            )
        attributes = done.child_workflow_execution_completed_event_attributes
        try:
            [result] = await client.data_converter.decode(attributes.result.payloads, [LaneResult])
        except Exception:  # a result this converter cannot open: assume a decision
            result = None
        if isinstance(result, LaneResult) and result.outcome not in (
            Outcome.APPROVED,
            Outcome.REFUSED,
        ):
            raise NotReached(
                f"dossier {code} has no return step: its lane ended {result.outcome.value}"
            )
        return point(
            code,
            parent.run_id,
            _after(completed, done.event_id),
            f"after lane {attributes.workflow_execution.workflow_id} completed",
        )

    # A lane step: the lane child must be running.
    if parent.status is not WorkflowExecutionStatus.RUNNING:
        state = parent.status.name.lower() if parent.status else "not running"
        raise NotReached(f"dossier {code} is {state}; its lane is not running")
    started = next(
        (
            e
            for e in events
            if e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED
        ),
        None,
    )
    if started is None:
        raise NotReached(
            f"dossier {code} has not reached {step.value}: it is still at intake, no lane yet"
        )
    lane_id = started.child_workflow_execution_started_event_attributes.workflow_execution
    lane_id_text = lane_id.workflow_id
    if any(e.event_type in CHILD_CLOSED for e in events):
        raise NotReached(
            f"dossier {code}: lane {lane_id_text} has finished and its result is back at the "
            f"receiving unit, so {step.value} can no longer be reset on its own; reset to "
            "`return` (or `intake`) instead"
        )
    lane = await describe_if_exists(client, lane_id_text)
    if lane is None:
        raise NotReached(f"dossier {code}: lane {lane_id_text} not found")
    lane_events = await history(client, lane_id_text, lane.run_id)
    lane_completed = _wftc(lane_events)
    certification = lane.workflow_type == "Certification"
    accepted = _accepted(lane_events)
    decision = next(((i, name) for i, name in accepted if name in DECISIONS), None)

    if step is Step.APPRAISAL:
        consult = _scheduled(lane_events, "consult_registry")
        if consult is not None:
            return point(
                lane_id_text,
                lane.run_id,
                _before(lane_completed, consult),
                "before the registries are consulted",
            )
        return point(
            lane_id_text,
            lane.run_id,
            lane_completed[0] if lane_completed else None,
            "first workflow task of the lane",
        )

    if step is Step.APPROVAL:
        if decision is not None:
            event_id, name = decision
            return point(
                lane_id_text,
                lane.run_id,
                _before(lane_completed, event_id),
                f"before `{name}` was accepted",
            )
        if certification:
            return point(
                lane_id_text,
                lane.run_id,
                lane_completed[0] if lane_completed else None,
                "first workflow task of the lane (awaiting certification)",
            )
        appraised = next((i for i, name in accepted if name == "appraise"), None)
        if appraised is None:
            raise NotReached(
                f"dossier {code} has not reached approval: lane {lane_id_text} awaits appraisal"
            )
        return point(
            lane_id_text,
            lane.run_id,
            _after(lane_completed, appraised),
            "after `appraise` was accepted",
        )

    # Signing: the result document issued after the decision.
    issued = _scheduled(lane_events, "issue_document", after=decision[0]) if decision else None
    if issued is None:
        raise NotReached(
            f"dossier {code} has not reached signing: lane {lane_id_text} has "
            + ("not issued its result yet" if decision else "no decision yet")
        )
    return point(
        lane_id_text,
        lane.run_id,
        _before(lane_completed, issued),
        "before the result document is issued",
    )


def _inside(
    code: str,
    step: Step,
    parent: WorkflowExecutionDescription,
    events: Sequence[HistoryEvent],
    point: Callable[[str, str, int | None, str], ResetPoint],
) -> ResetPoint:
    """The reset point of a dossier whose lane runs inside its workflow (the module's table,
    on the dossier's own history)."""
    completed = _wftc(events)
    returned = _status_set(events, {DossierStatus.RESULT_READY, DossierStatus.REFUSED})
    if step is Step.RETURN:
        if returned is None:
            raise NotReached(
                f"dossier {code} has not reached return: its lane has not returned a result"
            )
        return point(code, parent.run_id, returned, "when the lane's result came back")
    if parent.status is not WorkflowExecutionStatus.RUNNING:
        state = parent.status.name.lower() if parent.status else "not running"
        raise NotReached(f"dossier {code} is {state}; its lane is not running")
    started = _status_set(events, {DossierStatus.IN_PROCESSING})
    if started is None:
        raise NotReached(
            f"dossier {code} has not reached {step.value}: it is still at intake, no lane yet"
        )
    if returned is not None:
        raise NotReached(
            f"dossier {code}: its lane has finished and its result is back at the receiving "
            f"unit, so {step.value} can no longer be reset on its own; reset to `return` (or "
            "`intake`) instead"
        )
    accepted = _accepted(events)
    decision = next(((i, name) for i, name in accepted if name in DECISIONS), None)
    certification = parent.typed_search_attributes.get(sa.LANE) == lanes.CERTIFICATION

    if step is Step.APPRAISAL:
        consult = _scheduled(events, "consult_registry")
        if consult is not None:
            return point(
                code,
                parent.run_id,
                _before(completed, consult),
                "before the registries are consulted",
            )
        return point(code, parent.run_id, started, "first workflow task of the lane")

    if step is Step.APPROVAL:
        if decision is not None:
            event_id, name = decision
            return point(
                code, parent.run_id, _before(completed, event_id), f"before `{name}` was accepted"
            )
        appraised = next((i for i, name in accepted if name == "appraise"), None)
        if appraised is not None:
            after = _after(completed, appraised)
            if after is None:
                # The appraisal's own workflow task is the last: the lane waits for the
                # leader, and resetting before it would undo the appraisal.
                raise NotReached(
                    f"dossier {code} already awaits approval and nothing happened since the "
                    "appraisal: there is nothing to reset"
                )
            return point(code, parent.run_id, after, "after `appraise` was accepted")
        if certification:
            return point(
                code,
                parent.run_id,
                started,
                "first workflow task of the lane (awaiting certification)",
            )
        raise NotReached(f"dossier {code} has not reached approval: its lane awaits appraisal")

    issued = _scheduled(events, "issue_document", after=decision[0]) if decision else None
    if issued is None:
        raise NotReached(
            f"dossier {code} has not reached signing: its lane has "
            + ("not issued its result yet" if decision else "no decision yet")
        )
    return point(
        code, parent.run_id, _before(completed, issued), "before the result document is issued"
    )
