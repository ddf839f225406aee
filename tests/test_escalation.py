"""A task waiting past its unit's threshold goes up to the unit's leader, on a real server with
per-workflow time skipping: not a minute before the threshold in working hours, then a timeline
step, a notice to the leaders, and the leader moves the task."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest

from domain import escalation
from domain.calendar import HANOI, default_calendar
from domain.catalogue import default_catalogue
from schemas.actions import (
    Acknowledgement,
    Action,
    Appraisal,
    Claim,
    Reassignment,
    ReassignReason,
    Recommendation,
    Step,
)
from schemas.dossier import TimelineEntry
from schemas.statuses import Role
from services import dossiers
from simulators.seed import sample_enterprises
from store import views
from store.db import engine_for
from tests.api.conftest import eventually
from tests.conftest import EngineStack
from tests.driver import act, officer, submission, submit, timeline, view, wait_for

BUSINESS_HOUSEHOLD = "1.001612"  # 3 working days: the threshold falls well before the warning
UNIT = "hai-ba-trung"

pytestmark = pytest.mark.usefixtures("time_skipping")


@pytest.fixture
def time_skipping(stack: EngineStack) -> None:
    if not stack.time_skipping:
        pytest.skip("needs TEMPORAL_TEST_SERVER=time-skipping")


def escalations(entries: list[TimelineEntry]) -> list[TimelineEntry]:
    return [e for e in entries if e.step == "escalated"]


async def take(stack: EngineStack, code: str, action: Action, step: Step) -> Acknowledgement:
    """A step about the task (claim, reassign), not one the dossier awaits by name."""
    return await dossiers.act(stack.client, stack.settings.database_url, code, action, step)


def leader_notices(stack: EngineStack, code: str) -> list[str]:
    reply = httpx.get(
        f"{stack.simulators.url('notify')}/_sim/notifications", params={"dossier_code": code}
    )
    reply.raise_for_status()
    return [n["recipient"] for n in reply.json() if n["template"] == "task_escalated"]


async def test_a_task_waiting_past_the_threshold_goes_to_the_leader(stack: EngineStack) -> None:
    enterprise = sample_enterprises()[12].enterprise_code
    code = await submit(
        stack, submission(BUSINESS_HOUSEHOLD, UNIT, citizen=63, subject_reference=enterprise)
    )
    waiting = await wait_for(stack, code, Action.APPRAISE)
    [task] = [a for a in waiting.awaiting if a.action == Action.APPRAISE.value]
    holder = officer(Role.SPECIALIST, UNIT, 4)
    await take(stack, code, Action.CLAIM, Claim(officer=holder))

    hours = escalation.threshold_hours(default_catalogue().unit(UNIT))
    assert hours == escalation.DEFAULT_WORKING_HOURS
    due = default_calendar().add_working_seconds(task.since, hours * 3600)
    # The lane, and its escalation timers, run inside the dossier workflow.
    lane = stack.client.get_workflow_handle(code)

    # Five minutes short of the threshold (in working time: across a night or a weekend),
    # nothing goes up.
    now = await stack.env.get_current_time(lane)
    assert await stack.env.fast_forward(lane, due - timedelta(minutes=5) - now)
    await wait_for(stack, code, Action.APPRAISE)
    assert escalations(await timeline(stack, code)) == []

    now = await stack.env.get_current_time(lane)
    assert await stack.env.fast_forward(lane, due + timedelta(minutes=5) - now)
    for _ in range(100):
        found = escalations(await timeline(stack, code))
        if found:
            break
        await wait_for(stack, code, Action.APPRAISE)
    [step] = found
    assert due <= step.at <= due + timedelta(minutes=5)
    assert step.actor == "system"
    assert f"appraise by specialist at {UNIT} (held by {holder.officer_id})" in step.note
    assert f"over {hours} working hours" in step.note
    assert f"since {task.since.astimezone(HANOI):%d/%m/%Y %H:%M}" in step.note
    current = await view(stack, code)
    assert all(a.escalated_at == step.at for a in current.awaiting if a.action != "withdraw")
    assert leader_notices(stack, code) == [f"leaders@{UNIT}"]

    # The leader finds it among the unit's escalated tasks (the inbox's `escalated=true`).
    async def escalated_in_inbox() -> list[views.TaskRecord]:
        async with engine_for(stack.settings.database_url).connect() as conn:
            rows = await views.inbox(conn, unit=UNIT, limit=500, escalated=True)
        return [r for r in rows if r.dossier_code == code]

    [listed] = await eventually(escalated_in_inbox)
    assert (listed.action, listed.escalated_at) == ("appraise/request_supplement", step.at)

    # The leader takes it from the holder who let it wait; the holder is refused from then on.
    leader = officer(Role.LEADER, UNIT)
    await take(
        stack,
        code,
        Action.REASSIGN,
        Reassignment(
            officer=leader,
            task=Action.APPRAISE,
            to=officer(Role.SPECIALIST, UNIT, 5).officer_id,
            reason=ReassignReason.ESCALATED,
        ),
    )
    appraisal = Appraisal(officer=holder, recommendation=Recommendation.APPROVE)
    with pytest.raises(ValueError, match=re.escape("held by hai-ba-trung.specialist.5")):
        await act(stack, code, Action.APPRAISE, appraisal)
    await act(
        stack,
        code,
        Action.APPRAISE,
        appraisal.model_copy(update={"officer": officer(Role.SPECIALIST, UNIT, 5)}),
    )
    await wait_for(stack, code, Action.APPROVE)
    # Once: the next task has its own timer, not the escalation of the last one.
    assert len(escalations(await timeline(stack, code))) == 1
