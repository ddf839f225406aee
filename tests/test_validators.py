"""Wrong officer actions are refused by the Update validators with a reason, and never enter
the history."""

from __future__ import annotations

import pytest
from temporalio.api.enums.v1 import EventType

from schemas.actions import (
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
from schemas.dossier import SubmittedDocument
from schemas.statuses import Role
from services import dossiers
from services.dossiers import ActionRefused
from simulators.seed import sample_civil_packages
from tests.conftest import EngineStack
from tests.driver import act, officer, result, submission, submit, wait_for

BIRTH = "1.001193"


async def accepted_updates(stack: EngineStack, workflow_id: str) -> list[str]:
    history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
    return [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]


async def test_wrong_role_unit_or_state_is_refused_with_a_reason(stack: EngineStack) -> None:
    package = sample_civil_packages()[30].package_id
    code = await submit(
        stack,
        submission(
            BIRTH, "bach-mai", citizen=30, competent_unit="vinh-tuy", subject_reference=package
        ),
    )
    await wait_for(stack, code, Action.APPRAISE)
    specialist = officer(Role.SPECIALIST, "vinh-tuy")

    refusals = {
        "needs role specialist": (
            Action.APPRAISE,
            Appraisal(
                officer=officer(Role.COUNTER_OFFICER, "vinh-tuy"),
                recommendation=Recommendation.APPROVE,
            ),
        ),
        "is taken at unit vinh-tuy": (
            Action.APPRAISE,
            Appraisal(
                officer=officer(Role.SPECIALIST, "bach-mai"), recommendation=Recommendation.APPROVE
            ),
        ),
        "approve is not possible now": (
            Action.APPROVE,
            Approval(officer=officer(Role.LEADER, "vinh-tuy")),
        ),
        "withdraw needs role counter_officer": (
            Action.WITHDRAW,
            Withdrawal(officer=specialist, reason="not mine to ask"),
        ),
    }
    for reason, (action, step) in refusals.items():
        with pytest.raises(ActionRefused, match=reason):
            await stack_act(stack, code, action, step)

    # A supplement that leaves out a requested document is refused, naming it.
    await act(
        stack,
        code,
        Action.REQUEST_SUPPLEMENT,
        SupplementRequest(
            officer=specialist, missing=["identity_card", "birth_certificate_medical"]
        ),
    )
    await wait_for(stack, code, Action.PROVIDE_SUPPLEMENT)
    partial = Supplement(
        officer=officer(Role.COUNTER_OFFICER, "bach-mai"),
        documents=[SubmittedDocument(kind="identity_card", title="CCCD")],
    )
    with pytest.raises(ActionRefused, match="missing birth_certificate_medical"):
        await stack_act(stack, code, Action.PROVIDE_SUPPLEMENT, partial)
    # The counter of the ward that received it takes the supplement, not the deciding ward's.
    complete_docs = [
        SubmittedDocument(kind=k, title=k) for k in ("identity_card", "birth_certificate_medical")
    ]
    with pytest.raises(ActionRefused, match="is taken at unit bach-mai"):
        await stack_act(
            stack,
            code,
            Action.PROVIDE_SUPPLEMENT,
            Supplement(officer=officer(Role.COUNTER_OFFICER, "vinh-tuy"), documents=complete_docs),
        )
    await act(
        stack,
        code,
        Action.PROVIDE_SUPPLEMENT,
        Supplement(officer=officer(Role.COUNTER_OFFICER, "bach-mai"), documents=complete_docs),
    )

    await act(
        stack,
        code,
        Action.APPRAISE,
        Appraisal(officer=specialist, recommendation=Recommendation.APPROVE),
    )
    await act(stack, code, Action.APPROVE, Approval(officer=officer(Role.LEADER, "vinh-tuy")))
    # After the decision, withdrawal is refused.
    await wait_for(stack, code, Action.HAND_OVER)
    with pytest.raises(ActionRefused, match="past intake"):
        await stack_act(
            stack,
            code,
            Action.WITHDRAW,
            Withdrawal(officer=officer(Role.COUNTER_OFFICER, "bach-mai"), reason="too late"),
        )
    # The result goes back to the receiving ward's counter, not the deciding ward's.
    with pytest.raises(ActionRefused, match="is taken at unit bach-mai"):
        await stack_act(
            stack,
            code,
            Action.HAND_OVER,
            HandOver(officer=officer(Role.COUNTER_OFFICER, "vinh-tuy")),
        )
    await act(
        stack, code, Action.HAND_OVER, HandOver(officer=officer(Role.COUNTER_OFFICER, "bach-mai"))
    )
    await result(stack, code)

    # Only the accepted steps are in the history (the lane's too: it runs inside the dossier
    # workflow); the refused ones left no trace.
    assert await accepted_updates(stack, code) == [
        "request_supplement",
        "provide_supplement",
        "appraise",
        "approve",
        "hand_over",
    ]


async def stack_act(stack: EngineStack, code: str, action: Action, step: Step) -> None:
    """Straight to the service, without waiting for the step to be awaited: the point is
    that the workflow refuses it."""
    await dossiers.act(stack.client, stack.settings.database_url, code, action, step)
