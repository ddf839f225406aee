"""The workflows' own rules, fast: the Update validators and the legal clock.

These tests are about orchestration only. The dossier workflow and its processing lane run on
a dev server of their own with per-workflow time skipping; every activity that reaches the
outside world (registries, signing, payment, portal, notifications, the read model) is a fake
of the same name, and the legal clock's local activities are the real ones. No simulators, no
database. Each dossier is received at the tests' stated instant (tests/instants.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import TimeSkippingConfig, WorkflowEnvironment
from temporalio.worker import Worker

from activities import clock
from bootstrap import sandbox_runner
from domain import lanes
from domain.calendar import HANOI, default_calendar
from domain.catalogue import default_catalogue
from domain.clock import apology_by, warn_at
from domain.codes import dossier_code
from embedded import temporal_cli
from schemas.actions import (
    Acknowledgement,
    Action,
    Appraisal,
    Approval,
    HandOver,
    Recommendation,
    Step,
    Supplement,
    SupplementRequest,
    Withdrawal,
)
from schemas.catalogue import DeliveryChannel, SupplementRule, WorkingDaysDeadline
from schemas.dossier import ClockState, DossierView, SubmittedDocument, TimelineEntry
from schemas.exchanges import (
    FeeReceipt,
    FeeRequest,
    IdentityCheck,
    IdentityResult,
    IssuedDocument,
    IssueRequest,
    Notification,
    PortalSync,
    PostOrder,
    PostReceipt,
    ProjectionReceipt,
    ProjectionRecord,
    RegistryConsultation,
    RegistryFinding,
    ResultKind,
)
from schemas.lanes import DossierResult
from schemas.lifecycle import TimelineStep
from schemas.statuses import DossierStatus, Outcome, Role
from services.dossiers import prepare_filing
from tests.conftest import assert_replays
from tests.driver import officer, submission
from tests.instants import scenario_start
from workflows import search_attributes as sa
from workflows.certification import CertificationWorkflow
from workflows.dossier import DossierWorkflow
from workflows.processing import ProcessingWorkflow

BUSINESS_HOUSEHOLD = "1.001612"  # 3 working days, the decree's restart rule, a fee
LAND_CERTIFICATE = "1.013979"  # 3 working days
# Supplement terms a procedure's own text may set (no shipped entry has one: catalogue note).
PAUSE_BY_ITS_TEXT = {
    "supplement_rule": SupplementRule.PAUSE,
    "supplement_text": "the procedure's own text (test entry)",
}
BIRTH = "1.001193"  # 1 working day, no fee
WORKING_HOUR = 3600
WORKING_DAY = 8 * WORKING_HOUR
WAIT = 20.0  # seconds of real time for a dossier to reach a state


# --- the outside world, faked: same names, recorded, answered at once -------------------------
@dataclass
class Outside:
    documents: list[tuple[str, ResultKind]] = field(default_factory=list)
    notices: list[Notification] = field(default_factory=list)
    # Dossiers whose fee the payment platform holds until the test lets it through.
    held_fees: dict[str, asyncio.Event] = field(default_factory=dict)
    projected: itertools.count[int] = field(default_factory=itertools.count)

    def documents_of(self, code: str) -> list[ResultKind]:
        return [kind for dossier, kind in self.documents if dossier == code]

    def notices_of(self, code: str) -> list[tuple[str, str]]:
        return [(n.template, n.recipient) for n in self.notices if n.dossier_code == code]


OUTSIDE = Outside()


@activity.defn(name="check_identity")
async def check_identity(check: IdentityCheck) -> IdentityResult:
    return IdentityResult(matched=True)


@activity.defn(name="consult_registry")
async def consult_registry(request: RegistryConsultation) -> RegistryFinding:
    return RegistryFinding(registry=request.registry, found=True, summary="on record")


@activity.defn(name="issue_document")
async def issue_document(request: IssueRequest) -> IssuedDocument:
    draft = request.draft
    OUTSIDE.documents.append((draft.dossier_code, draft.kind))
    return IssuedDocument(
        dossier_code=draft.dossier_code,
        kind=draft.kind,
        path=f"results/{draft.dossier_code}/{draft.kind.value}.pdf",
        sha256="0" * 64,
        signature=None,
    )


@activity.defn(name="collect_fee")
async def collect_fee(request: FeeRequest) -> FeeReceipt:
    held = OUTSIDE.held_fees.get(request.dossier_code)
    if held is not None:
        await held.wait()
    return FeeReceipt(
        payment_id=f"pay-{request.dossier_code}",
        amount_vnd=request.amount_vnd,
        paid_at=activity.info().started_time,
    )


@activity.defn(name="sync_portal")
async def sync_portal(sync: PortalSync) -> None:
    return None


@activity.defn(name="notify")
async def notify(notification: Notification) -> None:
    OUTSIDE.notices.append(notification)


@activity.defn(name="send_by_post")
async def send_by_post(order: PostOrder) -> PostReceipt:
    return PostReceipt(tracking_number=f"post-{order.dossier_code}")


@activity.defn(name="project")
async def project(record: ProjectionRecord) -> ProjectionReceipt:
    """No webhook subscribers: the dossier starts no delivery. The dossier's own notices come
    with its steps, for the outbox."""
    OUTSIDE.notices.extend(record.outbox.notifications)
    return ProjectionReceipt(
        event_key=record.event_key, seq=next(OUTSIDE.projected), payload_digest="0" * 64
    )


REMOTE: list[Callable[..., Any]] = [
    check_identity,
    consult_registry,
    issue_document,
    collect_fee,
    sync_portal,
    notify,
    send_by_post,
]
LOCAL: list[Callable[..., Any]] = [*clock.CLOCK_ACTIVITIES, project]


# --- the environment: a server of its own, workers with the fakes -----------------------------
@dataclass
class Rules:
    env: WorkflowEnvironment
    client: Client
    start_at: datetime
    started: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
async def rules() -> AsyncIterator[Rules]:
    env = await WorkflowEnvironment.start_time_skipping_v2(
        ts_config=TimeSkippingConfig(enabled=False),
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_cli(),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
        ],
        search_attributes=sa.ALL,
        dev_server_startup_timeout=timedelta(seconds=30),
    )
    runner = sandbox_runner()
    calendar_threads = ThreadPoolExecutor(max_workers=4)
    workflow_queues = (lanes.INTAKE, lanes.WARD_PROCESSING, lanes.CERTIFICATION)
    workers = [
        Worker(
            env.client,
            task_queue=queue,
            workflows=[DossierWorkflow, ProcessingWorkflow, CertificationWorkflow],
            activities=LOCAL,
            # The calendar's local activities are plain functions.
            activity_executor=calendar_threads,
            workflow_runner=runner,
        )
        for queue in workflow_queues
    ] + [Worker(env.client, task_queue=queue, activities=REMOTE) for queue in lanes.ACTIVITY_LANES]
    try:
        async with contextlib.AsyncExitStack() as running:
            for worker in workers:
                await running.enter_async_context(worker)
            yield Rules(env=env, client=env.client, start_at=scenario_start(datetime.now(UTC)))
    finally:
        await env.shutdown()
        calendar_threads.shutdown()


@pytest.fixture(autouse=True)
async def replayed(request: pytest.FixtureRequest, rules: Rules) -> AsyncIterator[None]:
    """Every history a test produced replays on the current workflow code."""
    yield
    codes, rules.started[:] = list(rules.started), []
    await assert_replays(rules.client, codes, request.node.name)


SEQUENCE = itertools.count(1)


async def file(
    rules: Rules,
    procedure_code: str,
    unit: str,
    *,
    citizen: int,
    competent_unit: str | None = None,
    delivery: DeliveryChannel = DeliveryChannel.ONLINE,
    terms: dict[str, Any] | None = None,
) -> str:
    """A dossier received at the tests' instant: its start is delayed to that instant and its
    clock fast-forwarded over the delay. `terms` changes the procedure's entry for this dossier
    (as a catalogue entry naming its own text would)."""
    filed = submission(
        procedure_code, unit, citizen=citizen, competent_unit=competent_unit, delivery=delivery
    )
    filing = prepare_filing(filed, default_catalogue(), rules.start_at)
    if terms:
        filing = filing.model_copy(update={"procedure": filing.procedure.model_copy(update=terms)})
    code = dossier_code(
        filing.receiving_unit.agency_code, filing.received_at.date(), next(SEQUENCE)
    )
    delay = rules.start_at - datetime.now(UTC)
    handle = await rules.client.start_workflow(
        DossierWorkflow.run,
        filing.model_copy(update={"code": code}),
        id=code,
        task_queue=lanes.INTAKE,
        start_delay=delay,
    )
    rules.started.append(code)
    assert await rules.env.fast_forward(handle, delay)
    return code


def lane_of(code: str) -> str:
    """The workflow that takes the lane's steps: the dossier's own, the lane runs inside it."""
    return code


async def view(rules: Rules, code: str) -> DossierView:
    return await rules.client.get_workflow_handle(code).query(DossierWorkflow.status)


async def timeline(rules: Rules, code: str) -> list[TimelineEntry]:
    return await rules.client.get_workflow_handle(code).query(DossierWorkflow.timeline)


async def until(
    rules: Rules, code: str, what: str, reached: Callable[[DossierView], bool]
) -> DossierView:
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        current = await view(rules, code)
        if reached(current):
            return current
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"{code} never {what}: {current.status.value} at {current.stage.value}, "
                f"awaiting {[a.action for a in current.awaiting]}, clock {current.clock}"
            )
        await asyncio.sleep(0.05)


async def awaiting(rules: Rules, code: str, action: Action) -> DossierView:
    return await until(rules, code, f"awaited {action.value}", lambda v: action.value in actions(v))


def actions(current: DossierView) -> list[str]:
    return [a.action for a in current.awaiting]


def clock_of(current: DossierView) -> ClockState:
    assert current.clock is not None
    return current.clock


async def take(rules: Rules, holder: str, action: Action, step: Step) -> Acknowledgement:
    acknowledgement: Acknowledgement = await rules.client.get_workflow_handle(
        holder
    ).execute_update(action.value, step, result_type=Acknowledgement)
    return acknowledgement


async def refusal(rules: Rules, holder: str, action: Action, step: Step) -> str:
    """The validator's reason for refusing the step."""
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await take(rules, holder, action, step)
    return str(getattr(refused.value.cause, "message", refused.value.cause))


async def accepted_updates(rules: Rules, workflow_id: str) -> list[str]:
    history = await rules.client.get_workflow_handle(workflow_id).fetch_history()
    return [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]


async def result(rules: Rules, code: str) -> DossierResult:
    handle = rules.client.get_workflow_handle(code, result_type=DossierResult)
    return await asyncio.wait_for(handle.result(), WAIT)


async def fast_forward_lane_to(rules: Rules, code: str, instant: datetime) -> None:
    lane = rules.client.get_workflow_handle(lane_of(code))
    now = await rules.env.get_current_time(lane)
    assert instant > now, f"{instant} is not ahead of the lane's clock {now}"
    assert await rules.env.fast_forward(lane, instant - now)


async def approve(rules: Rules, code: str, unit: str) -> None:
    await awaiting(rules, code, Action.APPRAISE)
    await take(
        rules,
        lane_of(code),
        Action.APPRAISE,
        Appraisal(officer=officer(Role.SPECIALIST, unit), recommendation=Recommendation.APPROVE),
    )
    await awaiting(rules, code, Action.APPROVE)
    await take(rules, lane_of(code), Action.APPROVE, Approval(officer=officer(Role.LEADER, unit)))


def withdrawal(unit: str) -> Withdrawal:
    return Withdrawal(officer=officer(Role.COUNTER_OFFICER, unit), reason="the citizen asks")


# --- the validators ----------------------------------------------------------------------------
async def test_a_wrong_step_is_refused_with_its_reason_and_leaves_no_trace(
    rules: Rules,
) -> None:
    code = await file(rules, BIRTH, "bach-mai", citizen=40, competent_unit="vinh-tuy")
    await awaiting(rules, code, Action.APPRAISE)
    lane = lane_of(code)
    clerk = officer(Role.COUNTER_OFFICER, "vinh-tuy")

    wrong_role = await refusal(
        rules,
        lane,
        Action.APPRAISE,
        Appraisal(officer=clerk, recommendation=Recommendation.APPROVE),
    )
    assert wrong_role == (
        f"appraise needs role specialist; officer {clerk.officer_id} acts as counter_officer"
    )
    stranger = officer(Role.SPECIALIST, "bach-mai")
    wrong_unit = await refusal(
        rules,
        lane,
        Action.APPRAISE,
        Appraisal(officer=stranger, recommendation=Recommendation.APPROVE),
    )
    assert wrong_unit == (
        f"appraise is taken at unit vinh-tuy; officer {stranger.officer_id} belongs to bach-mai"
    )
    not_awaited = await refusal(
        rules, lane, Action.APPROVE, Approval(officer=officer(Role.LEADER, "vinh-tuy"))
    )
    assert not_awaited == (
        f"approve is not possible now: dossier {code} is in_processing and awaits "
        "appraise by specialist at vinh-tuy, request_supplement by specialist at vinh-tuy"
    )
    hand_over = await refusal(
        rules, code, Action.HAND_OVER, HandOver(officer=officer(Role.COUNTER_OFFICER, "bach-mai"))
    )
    assert hand_over == (
        f"hand_over is not possible now: dossier {code} is in_processing at stage processing"
    )
    # The citizen withdraws at the counter that received the dossier, not the deciding one's.
    assert (await refusal(rules, lane, Action.WITHDRAW, withdrawal("vinh-tuy"))).startswith(
        "withdraw is taken at unit bach-mai"
    )
    assert (
        await refusal(
            rules,
            lane,
            Action.WITHDRAW,
            Withdrawal(officer=officer(Role.SPECIALIST, "vinh-tuy"), reason="not mine to ask"),
        )
    ).startswith("withdraw needs role counter_officer")

    await take(rules, lane, Action.WITHDRAW, withdrawal("bach-mai"))
    assert (await result(rules, code)).outcome is Outcome.WITHDRAWN
    # One history: the lane runs inside the dossier workflow.
    assert await accepted_updates(rules, code) == ["withdraw"]


async def test_withdrawal_is_refused_once_the_dossier_is_decided(rules: Rules) -> None:
    code = await file(
        rules, BUSINESS_HOUSEHOLD, "kim-lien", citizen=41, delivery=DeliveryChannel.COUNTER
    )
    OUTSIDE.held_fees[code] = asyncio.Event()
    await approve(rules, code, "kim-lien")
    # Decided, the fee still unpaid: the lane holds the dossier and refuses the withdrawal.
    await until(
        rules, code, "requested its fee", lambda v: v.status is DossierStatus.FEES_REQUESTED
    )
    in_lane = await refusal(rules, lane_of(code), Action.WITHDRAW, withdrawal("kim-lien"))
    assert in_lane == (
        f"withdrawal is possible only before the decision; dossier {code} has been decided"
    )
    OUTSIDE.held_fees.pop(code).set()
    # The result is back at the counter: the dossier workflow refuses it too.
    await awaiting(rules, code, Action.HAND_OVER)
    at_return = await refusal(rules, code, Action.WITHDRAW, withdrawal("kim-lien"))
    assert at_return.startswith(f"withdraw: dossier {code} is past intake")

    await take(
        rules, code, Action.HAND_OVER, HandOver(officer=officer(Role.COUNTER_OFFICER, "kim-lien"))
    )
    assert (await result(rules, code)).outcome is Outcome.APPROVED
    assert await accepted_updates(rules, code) == ["appraise", "approve", "hand_over"]


# --- the legal clock ---------------------------------------------------------------------------
async def test_warning_then_one_apology_slip_with_one_new_appointment_then_overdue(
    rules: Rules,
) -> None:
    code = await file(rules, BUSINESS_HOUSEHOLD, "thanh-xuan", citizen=42)
    first = await awaiting(rules, code, Action.APPRAISE)
    promised = clock_of(first).due_at
    calendar = default_calendar()

    deadline = WorkingDaysDeadline(days=3)
    apology_latest = apology_by(calendar, promised, deadline)
    # Hand computation at the default instant: received Mon 09:00, 3 working days -> due Thu
    # 17:00; the slip at the latest on Wed 17:00 (the last working day before Thursday, never
    # Thursday itself); the unit's warning one working day earlier, Tue 17:00.
    due_day = promised.astimezone(HANOI).date()
    assert apology_latest == calendar.closing_on(calendar.previous_working_day(due_day))
    assert apology_latest.date() < due_day

    # One working day before the apology the unit's leaders are warned.
    await fast_forward_lane_to(
        rules, code, warn_at(calendar, promised, deadline) + timedelta(minutes=1)
    )
    warned = await until(rules, code, "was warned", lambda v: clock_of(v).warned)
    assert not clock_of(warned).apologized
    assert ("near_due", "leaders@thanh-xuan") in OUTSIDE.notices_of(code)
    assert OUTSIDE.documents_of(code) == []

    # A minute before the latest moment: no slip yet.
    await fast_forward_lane_to(rules, code, apology_latest - timedelta(minutes=1))
    assert not clock_of(await view(rules, code)).apologized
    # At the latest one day before the due date (Decree 61/2018 art. 19(9)) the dossier,
    # still not appraised, gets its apology slip and a new appointment half the legal time
    # later; the slip is dated the day before the due date, not the due day.
    await fast_forward_lane_to(rules, code, apology_latest + timedelta(minutes=1))
    apologized = await until(rules, code, "sent its apology slip", lambda v: clock_of(v).apologized)
    slip = next(e for e in await timeline(rules, code) if e.step == TimelineStep.APOLOGY_SLIP)
    assert apology_latest <= slip.at <= apology_latest + timedelta(minutes=1)
    assert slip.at.astimezone(HANOI).date() < due_day
    new_due = calendar.due_at(promised, WorkingDaysDeadline(days=2))
    assert clock_of(apologized).due_at == new_due
    assert not clock_of(apologized).overdue
    assert OUTSIDE.documents_of(code) == [ResultKind.APOLOGY_SLIP]
    assert any(template == "apology_slip" for template, _ in OUTSIDE.notices_of(code))
    assert actions(apologized) == ["appraise", "request_supplement", "withdraw"]

    # Past the new appointment: overdue, and no second slip.
    await fast_forward_lane_to(rules, code, new_due + timedelta(days=1))
    overdue = await until(rules, code, "became overdue", lambda v: clock_of(v).overdue)
    assert clock_of(overdue).due_at == new_due
    steps = [e.step for e in await timeline(rules, code)]
    assert steps.count(TimelineStep.APOLOGY_SLIP) == 1
    assert steps.count(TimelineStep.NEAR_DUE_WARNING) == 1
    assert (
        steps.index(TimelineStep.NEAR_DUE_WARNING)
        < steps.index(TimelineStep.APOLOGY_SLIP)
        < steps.index(TimelineStep.OVERDUE)
    )
    assert OUTSIDE.documents_of(code) == [ResultKind.APOLOGY_SLIP]

    await approve(rules, code, "thanh-xuan")
    outcome = await result(rules, code)
    assert outcome.outcome is Outcome.APPROVED
    assert outcome.apologized is True and outcome.on_time is False
    assert outcome.due_at == new_due


async def supplement_round(rules: Rules, code: str, unit: str, waited: int) -> None:
    """A supplement requested now and handed in at the counter once `waited` working
    seconds have passed."""
    await awaiting(rules, code, Action.APPRAISE)
    await take(
        rules,
        lane_of(code),
        Action.REQUEST_SUPPLEMENT,
        SupplementRequest(officer=officer(Role.SPECIALIST, unit), missing=["identity_card"]),
    )
    stopped = await awaiting(rules, code, Action.PROVIDE_SUPPLEMENT)
    assert stopped.status is DossierStatus.SUPPLEMENT_REQUESTED
    assert clock_of(stopped).running is False
    lane = rules.client.get_workflow_handle(lane_of(code))
    now = await rules.env.get_current_time(lane)
    await fast_forward_lane_to(rules, code, default_calendar().add_working_seconds(now, waited))
    await take(
        rules,
        lane_of(code),
        Action.PROVIDE_SUPPLEMENT,
        Supplement(
            officer=officer(Role.COUNTER_OFFICER, unit),
            documents=[SubmittedDocument(kind="identity_card", title="Căn cước công dân")],
        ),
    )


async def test_restart_rule_counts_the_whole_time_again_from_the_complete_dossier(
    rules: Rules,
) -> None:
    code = await file(rules, BUSINESS_HOUSEHOLD, "nghia-do", citizen=43)
    before = await awaiting(rules, code, Action.APPRAISE)

    # The citizen comes back four working days later: past the first appointment, which
    # neither warns nor apologises while the clock waits for them.
    await supplement_round(rules, code, "nghia-do", waited=4 * WORKING_DAY)
    after = await until(
        rules, code, "counted again", lambda v: clock_of(v).running and "appraise" in actions(v)
    )
    entries = await timeline(rules, code)
    [received] = [e.at for e in entries if e.step == TimelineStep.SUPPLEMENT_RECEIVED]
    assert clock_of(after).due_at == default_calendar().due_at(
        received, WorkingDaysDeadline(days=3)
    )
    assert received > clock_of(before).due_at
    assert clock_of(after).paused_working_seconds == 0
    steps = {e.step for e in entries}
    assert not steps & {
        TimelineStep.NEAR_DUE_WARNING,
        TimelineStep.APOLOGY_SLIP,
        TimelineStep.OVERDUE,
    }

    await take(rules, lane_of(code), Action.WITHDRAW, withdrawal("nghia-do"))
    assert (await result(rules, code)).outcome is Outcome.WITHDRAWN


async def test_pause_rule_moves_the_appointment_back_by_the_working_time_waited(
    rules: Rules,
) -> None:
    code = await file(rules, LAND_CERTIFICATE, "nghia-do", citizen=44, terms=PAUSE_BY_ITS_TEXT)
    before = await awaiting(rules, code, Action.APPRAISE)

    # Two working days and five working hours with the citizen.
    await supplement_round(rules, code, "nghia-do", waited=2 * WORKING_DAY + 5 * WORKING_HOUR)
    after = await until(
        rules, code, "resumed", lambda v: clock_of(v).running and "appraise" in actions(v)
    )
    entries = await timeline(rules, code)
    [requested] = [e.at for e in entries if e.step == TimelineStep.SUPPLEMENT_REQUESTED]
    [received] = [e.at for e in entries if e.step == TimelineStep.SUPPLEMENT_RECEIVED]
    calendar = default_calendar()
    waited = calendar.working_seconds_between(requested, received)
    assert waited >= 2 * WORKING_DAY + 5 * WORKING_HOUR
    assert clock_of(after).paused_working_seconds == waited
    assert clock_of(after).due_at == calendar.add_working_seconds(clock_of(before).due_at, waited)

    await take(rules, lane_of(code), Action.WITHDRAW, withdrawal("nghia-do"))
    assert (await result(rules, code)).outcome is Outcome.WITHDRAWN


# --- one supplement request, early (Decree 61/2018 art. 19(4)) ------------------------------------
def supplement_request(unit: str) -> SupplementRequest:
    return SupplementRequest(officer=officer(Role.SPECIALIST, unit), missing=["identity_card"])


async def test_a_second_supplement_request_is_refused_with_the_reason(rules: Rules) -> None:
    code = await file(rules, BUSINESS_HOUSEHOLD, "nghia-do", citizen=45)
    await supplement_round(rules, code, "nghia-do", waited=WORKING_HOUR)
    back = await until(
        rules, code, "came back", lambda v: clock_of(v).running and "appraise" in actions(v)
    )
    # The one request is spent: the inbox no longer offers it, and the validator says why.
    assert actions(back) == ["appraise", "withdraw"]
    reason = await refusal(
        rules, lane_of(code), Action.REQUEST_SUPPLEMENT, supplement_request("nghia-do")
    )
    assert reason == (
        f"request_supplement: dossier {code} was already returned for a supplement; "
        "Decree 61/2018 art. 19(4) allows it once, listing everything missing at once"
    )
    assert await accepted_updates(rules, lane_of(code)) == [
        "request_supplement",
        "provide_supplement",
    ]
    await take(rules, lane_of(code), Action.WITHDRAW, withdrawal("nghia-do"))
    assert (await result(rules, code)).outcome is Outcome.WITHDRAWN


async def test_a_supplement_request_after_three_working_days_is_refused(rules: Rules) -> None:
    code = await file(rules, BUSINESS_HOUSEHOLD, "nghia-do", citizen=46)
    first = await awaiting(rules, code, Action.APPRAISE)
    received = first.received_at
    calendar = default_calendar()
    # Received Mon 09:00 (the default instant): the window closes at the close of the third
    # working day after receipt, Thu 17:00.
    window_end = calendar.due_at(received, WorkingDaysDeadline(days=3))
    assert window_end == calendar.closing_on(
        calendar.working_days_after(received.astimezone(HANOI).date(), 3)
    )
    await fast_forward_lane_to(rules, code, window_end + timedelta(minutes=1))
    reason = await refusal(
        rules, lane_of(code), Action.REQUEST_SUPPLEMENT, supplement_request("nghia-do")
    )
    assert reason == (
        f"request_supplement: too late for dossier {code}; Decree 61/2018 art. 19(4) allows it "
        f"within 3 working days of receipt, until {window_end.astimezone(HANOI):%d/%m/%Y %H:%M}"
    )
    assert "request_supplement" not in await accepted_updates(rules, lane_of(code))
    await take(rules, lane_of(code), Action.WITHDRAW, withdrawal("nghia-do"))
    assert (await result(rules, code)).outcome is Outcome.WITHDRAWN


async def test_a_procedure_text_allowing_two_requests_takes_a_second(rules: Rules) -> None:
    terms = {"supplement_requests": 2, "supplement_text": "the procedure's own text (test entry)"}
    code = await file(rules, BUSINESS_HOUSEHOLD, "nghia-do", citizen=47, terms=terms)
    await supplement_round(rules, code, "nghia-do", waited=WORKING_HOUR)
    await until(
        rules, code, "came back", lambda v: clock_of(v).running and "appraise" in actions(v)
    )
    await supplement_round(rules, code, "nghia-do", waited=WORKING_HOUR)
    back = await until(
        rules, code, "came back again", lambda v: clock_of(v).running and "appraise" in actions(v)
    )
    assert actions(back) == ["appraise", "withdraw"]
    reason = await refusal(
        rules, lane_of(code), Action.REQUEST_SUPPLEMENT, supplement_request("nghia-do")
    )
    assert "the procedure's own text (test entry) allows it 2 times" in reason
    await take(rules, lane_of(code), Action.WITHDRAW, withdrawal("nghia-do"))
    assert (await result(rules, code)).outcome is Outcome.WITHDRAWN
