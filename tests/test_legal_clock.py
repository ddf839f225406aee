"""The legal clock on a real server with per-workflow time skipping: supplement rules move
the appointment exactly as the law (or the province's practice) says; a dossier that will be
late gets one apology slip with one new appointment, then counts as late."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from domain.calendar import HANOI, default_calendar
from domain.clock import apology_by
from schemas.actions import Action, HandOver, Supplement, SupplementRequest
from schemas.catalogue import DeliveryChannel, WorkingDaysDeadline
from schemas.dossier import SubmittedDocument, TimelineEntry
from schemas.statuses import DossierStatus, Outcome, Role
from simulators.seed import sample_enterprises, sample_parcels
from tests.conftest import EngineStack
from tests.driver import (
    act,
    officer,
    portal_statuses,
    result,
    submission,
    submit,
    timeline,
    wait_for,
)
from tests.test_lifecycle import approve_through

BUSINESS_HOUSEHOLD = "1.001612"  # 3 working days, the decree's restart rule
LAND_CERTIFICATE = "1.013979"  # 3 working days, the decree's restart rule

pytestmark = pytest.mark.usefixtures("time_skipping")


@pytest.fixture
def time_skipping(stack: EngineStack) -> None:
    if not stack.time_skipping:
        pytest.skip("needs TEMPORAL_TEST_SERVER=time-skipping")


def entry(entries: list[TimelineEntry], step: str) -> TimelineEntry:
    [found] = [e for e in entries if e.step == step]
    return found


async def supplement_round(stack: EngineStack, code: str, unit: str, working_seconds: int) -> None:
    """A supplement requested now and handed in once `working_seconds` of working time have
    passed: a span of the calendar, so it holds working time whatever the hour of request."""
    await act(
        stack,
        code,
        Action.REQUEST_SUPPLEMENT,
        SupplementRequest(officer=officer(Role.SPECIALIST, unit), missing=["identity_card"]),
    )
    waiting = await wait_for(stack, code, Action.PROVIDE_SUPPLEMENT)
    assert waiting.status is DossierStatus.SUPPLEMENT_REQUESTED
    assert waiting.clock is not None and waiting.clock.running is False
    # The lane, and its clock, run inside the dossier workflow.
    lane = stack.client.get_workflow_handle(code)
    now = (await stack.env.get_current_time(lane)).astimezone(HANOI)
    back = default_calendar().add_working_seconds(now, working_seconds)
    assert await stack.env.fast_forward(lane, back - now)
    await act(
        stack,
        code,
        Action.PROVIDE_SUPPLEMENT,
        Supplement(
            officer=officer(Role.COUNTER_OFFICER, unit),
            documents=[SubmittedDocument(kind="identity_card", title="Căn cước công dân")],
        ),
    )


async def test_decree_rule_restarts_the_processing_time_from_the_complete_dossier(
    stack: EngineStack,
) -> None:
    enterprise = sample_enterprises()[10].enterprise_code
    code = await submit(
        stack,
        submission(BUSINESS_HOUSEHOLD, "thanh-xuan", citizen=20, subject_reference=enterprise),
    )
    before = await wait_for(stack, code, Action.APPRAISE)
    assert before.clock is not None

    # The citizen comes back a working day and three working hours later.
    await supplement_round(stack, code, "thanh-xuan", working_seconds=11 * 3600)
    after = await wait_for(stack, code, Action.APPRAISE)
    entries = await timeline(stack, code)
    requested = entry(entries, "supplement requested").at
    received = entry(entries, "supplement received").at

    assert default_calendar().working_seconds_between(requested, received) >= 11 * 3600
    assert after.clock is not None and after.clock.running
    expected = default_calendar().due_at(received, WorkingDaysDeadline(days=3))
    assert after.clock.due_at == expected
    assert after.clock.due_at > before.clock.due_at
    await approve_through(stack, code, "thanh-xuan")
    await act(
        stack,
        code,
        Action.HAND_OVER,
        HandOver(officer=officer(Role.COUNTER_OFFICER, "thanh-xuan")),
    )
    outcome = await result(stack, code)
    assert outcome.outcome is Outcome.APPROVED and outcome.on_time is True
    assert portal_statuses(stack, code) == [2, 4, 5, 4, 6, 4, 9, 10]


async def test_land_certificate_follows_the_decree_and_counts_again_from_the_complete_dossier(
    stack: EngineStack,
) -> None:
    """The land procedures' entries name no text of their own for a paused clock, so Decree
    61/2018 art. 19(4) holds: the processing time counts again from the complete dossier (the
    pause rule itself is covered, with a procedure naming its text, in test_workflow_rules)."""
    parcel = sample_parcels()[3].parcel_id
    code = await submit(
        stack,
        submission(
            LAND_CERTIFICATE,
            "nghia-do",
            citizen=21,
            subject_reference=parcel,
            delivery=DeliveryChannel.ONLINE,
        ),
    )
    before = await wait_for(stack, code, Action.APPRAISE)
    assert before.clock is not None

    # The citizen comes back two working days and five working hours later.
    await supplement_round(stack, code, "nghia-do", working_seconds=(2 * 8 + 5) * 3600)
    after = await wait_for(stack, code, Action.APPRAISE)
    entries = await timeline(stack, code)
    requested = entry(entries, "supplement requested").at
    received = entry(entries, "supplement received").at

    calendar = default_calendar()
    assert calendar.working_seconds_between(requested, received) >= (2 * 8 + 5) * 3600
    assert after.clock is not None
    assert after.clock.paused_working_seconds == 0
    # E.g. received Mon 09:00, supplement requested at once, back Wed 14:00: due three working
    # days after Wednesday, on Mon 17:00.
    assert after.clock.due_at == calendar.due_at(received, WorkingDaysDeadline(days=3))


async def test_one_apology_slip_with_one_new_appointment_then_overdue_and_late(
    stack: EngineStack,
) -> None:
    enterprise = sample_enterprises()[11].enterprise_code
    code = await submit(
        stack,
        submission(
            BUSINESS_HOUSEHOLD,
            "kim-lien",
            citizen=22,
            subject_reference=enterprise,
            delivery=DeliveryChannel.ONLINE,
        ),
    )
    first = await wait_for(stack, code, Action.APPRAISE)
    assert first.clock is not None
    promised = first.clock.due_at
    calendar = default_calendar()
    # Decree 61/2018 art. 19(9): at the latest one day before the due date. Received Mon
    # 09:00 (the default instant), 3 working days: due Thu 17:00, slip by Wed 17:00.
    apology_mark = apology_by(calendar, promised, WorkingDaysDeadline(days=3))
    due_day = promised.astimezone(HANOI).date()
    assert apology_mark == calendar.closing_on(calendar.previous_working_day(due_day))
    # The lane, and its clock, run inside the dossier workflow.
    lane = stack.client.get_workflow_handle(code)

    # Nobody appraises: past the apology mark, the day before the appointment.
    now = await stack.env.get_current_time(lane)
    assert await stack.env.fast_forward(lane, apology_mark - now + timedelta(minutes=30))
    view = await wait_for(
        stack, code, Action.APPRAISE, until=lambda v: v.clock is not None and v.clock.apologized
    )
    slip = next(e for e in await timeline(stack, code) if e.step == "apology slip")
    assert apology_mark <= slip.at <= apology_mark + timedelta(minutes=30)
    assert slip.at.astimezone(HANOI).date() < due_day
    new_due = calendar.due_at(promised, WorkingDaysDeadline(days=2))
    assert view.clock is not None and view.clock.apologized and view.clock.warned
    assert view.clock.due_at == new_due
    assert not view.clock.overdue

    # Still nobody: past the new appointment. Overdue, and no second slip. From the lane's own
    # time: the slip may come days before the appointment (the Tết break between them).
    now = await stack.env.get_current_time(lane)
    assert await stack.env.fast_forward(lane, new_due - now + timedelta(days=1))
    view = await wait_for(
        stack, code, Action.APPRAISE, until=lambda v: v.clock is not None and v.clock.overdue
    )
    assert view.clock is not None and view.clock.overdue and view.clock.due_at == new_due
    steps = [e.step for e in await timeline(stack, code)]
    assert steps.count("apology slip") == 1
    assert steps.index("near-due warning") < steps.index("apology slip") < steps.index("overdue")
    assert await overdue_in_visibility(stack, code)

    await approve_through(stack, code, "kim-lien")
    outcome = await result(stack, code)
    assert outcome.outcome is Outcome.APPROVED
    assert outcome.apologized is True and outcome.on_time is False
    assert outcome.due_at == new_due


async def overdue_in_visibility(stack: EngineStack, code: str) -> bool:
    """The UI's `DossierOverdue = true` filter finds the dossier (visibility is eventual)."""
    query = f"WorkflowId = '{code}' AND DossierOverdue = true"
    for _ in range(50):
        if [w async for w in stack.client.list_workflows(query)]:
            return True
        await asyncio.sleep(0.1)
    return False
