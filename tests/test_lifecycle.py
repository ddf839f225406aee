"""Every ending and every route of a dossier, on the real stack."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, time, timedelta
from pathlib import Path

import httpx
import pytest

from domain.calendar import HANOI, default_calendar
from domain.signatures import verify_signature
from schemas.actions import (
    Action,
    Appraisal,
    Approval,
    Certification,
    HandOver,
    Recommendation,
    Refusal,
    Supplement,
    WetSignature,
    Withdrawal,
)
from schemas.catalogue import DeliveryChannel, RequiredDocument
from schemas.dossier import SubmittedDocument
from schemas.statuses import DossierStatus, Outcome, Role
from services import dossiers
from simulators.seed import sample_civil_packages, sample_enterprises, unknown_citizen_id
from tests.conftest import EngineStack
from tests.driver import (
    act,
    officer,
    portal_statuses,
    procedure,
    result,
    sent_out,
    submission,
    submit,
    timeline,
    view,
    wait_for,
)

BIRTH = "1.001193"  # khai sinh: ward tier, 1 working day, no fee
BUSINESS_HOUSEHOLD = "1.001612"  # hộ kinh doanh: ward tier, 3 wd, fee
PRIVATE_ENTERPRISE = "2.001610"  # doanh nghiệp tư nhân: city tier, Sở Tài chính, fee
CERTIFIED_COPY = "2.000815"  # chứng thực bản sao: same day, per-page fee


async def approve_through(stack: EngineStack, code: str, unit: str) -> None:
    await act(
        stack,
        code,
        Action.APPRAISE,
        Appraisal(officer=officer(Role.SPECIALIST, unit), recommendation=Recommendation.APPROVE),
    )
    await act(stack, code, Action.APPROVE, Approval(officer=officer(Role.LEADER, unit)))


def ca_pem(stack: EngineStack) -> str:
    response = httpx.get(f"{stack.simulators.url('signing')}/v1/ca")
    response.raise_for_status()
    return str(response.json()["certificate_pem"])


async def test_ward_tier_dossier_filed_at_another_ward_is_decided_there_and_returned_at_the_counter(
    stack: EngineStack,
) -> None:
    package = sample_civil_packages()[0].package_id
    code = await submit(
        stack,
        submission(BIRTH, "hoan-kiem", competent_unit="ba-dinh", subject_reference=package),
    )
    received_at = (await view(stack, code)).received_at.astimezone(HANOI)
    assert code.startswith("000.01.") and code.split("-")[1] == received_at.strftime("%y%m%d")
    await approve_through(stack, code, "ba-dinh")
    # The result comes back to the counter that took the dossier.
    await act(
        stack,
        code,
        Action.HAND_OVER,
        HandOver(officer=officer(Role.COUNTER_OFFICER, "hoan-kiem"), rating=3),
    )
    outcome = await result(stack, code)

    assert outcome.outcome is Outcome.APPROVED
    assert outcome.status is DossierStatus.RETURNED
    assert outcome.on_time is True and outcome.apologized is False
    assert portal_statuses(stack, code) == [2, 4, 9, 10]
    final = await view(stack, code)
    assert (final.receiving_unit, final.competent_unit, final.lane) == (
        "hoan-kiem",
        "ba-dinh",
        "ward-processing",
    )
    steps = [entry.step for entry in await timeline(stack, code)]
    assert steps[0] == "receipt and appointment slip" and steps[-2:] == [
        "result returned",
        "closed: approved",
    ]
    # The decision is e-signed by the leader over the SHA-256 of the document.
    [decision] = outcome.documents
    assert decision.signature is not None
    check = verify_signature(
        Path(decision.path).read_bytes(),
        decision.signature.signature_b64,
        decision.signature.certificate_pem,
        ca_pem(stack),
    )
    assert check.valid and check.signer_id == "ba-dinh.leader.1"


async def test_city_tier_dossier_goes_to_the_department_and_comes_back_to_the_ward(
    stack: EngineStack,
) -> None:
    enterprise = sample_enterprises()[0].enterprise_code
    code = await submit(
        stack,
        submission(
            PRIVATE_ENTERPRISE,
            "ha-dong",
            citizen=1,
            subject_reference=enterprise,
            delivery=DeliveryChannel.POST,
        ),
    )
    current = await view(stack, code)
    assert current.competent_unit == "so-tai-chinh"
    await approve_through(stack, code, "so-tai-chinh")
    outcome = await result(stack, code)

    assert outcome.outcome is Outcome.APPROVED and outcome.on_time is True
    final = await view(stack, code)
    assert final.lane == "city-processing" and final.receiving_unit == "ha-dong"
    # Fees requested (6) before the result is ready; sent back by post.
    assert portal_statuses(stack, code) == [2, 4, 6, 4, 9, 10]
    notes = [entry.note for entry in await timeline(stack, code)]
    assert any(note.startswith("sent by post, tracking") for note in notes)
    # The city lane runs inside the dossier workflow: no child workflow, and its registry
    # consultations and its fee on their own queues.
    history = await stack.client.get_workflow_handle(code).fetch_history()
    assert not any(
        e.HasField("start_child_workflow_execution_initiated_event_attributes")
        for e in history.events
    )
    queues = {
        e.activity_task_scheduled_event_attributes.task_queue.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    assert {"registry-business", "payment"} <= queues


async def test_certification_runs_on_its_own_lane_and_is_returned_online(
    stack: EngineStack,
) -> None:
    code = await submit(
        stack, submission(CERTIFIED_COPY, "cua-nam", citizen=2, delivery=DeliveryChannel.ONLINE)
    )
    await act(
        stack, code, Action.CERTIFY, Certification(officer=officer(Role.CERTIFIER, "cua-nam"))
    )
    outcome = await result(stack, code)

    assert outcome.outcome is Outcome.APPROVED
    assert (await view(stack, code)).lane == "certification"
    [copy] = outcome.documents
    assert copy.kind.value == "certified_copy" and copy.signature is not None
    assert "Số chứng thực" in Path(copy.path).read_text(encoding="utf-8")
    # The copy to certify has 2 pages: 2 x 2,000 VND, paid on the payment platform.
    payments = httpx.get(f"{stack.simulators.url('payment')}/_sim/calls").json()
    [paid] = [c["body"] for c in payments if c["body"] and c["body"]["dossier_code"] == code]
    assert paid["amount_vnd"] == 4000
    assert portal_statuses(stack, code)[-1] == 10


def last_working_day_before(stack: EngineStack) -> datetime:
    calendar = default_calendar()
    day = (stack.start_at or datetime.now(HANOI)).date() - timedelta(days=1)
    while not calendar.is_working_day(day):
        day -= timedelta(days=1)
    return datetime.combine(day, time(0, 0), HANOI)


@pytest.mark.parametrize(("hour", "same_day"), [(10, True), (15, False)])
async def test_certification_received_after_15h_is_due_the_next_working_day(
    stack: EngineStack, hour: int, same_day: bool
) -> None:
    received = last_working_day_before(stack).replace(hour=hour, minute=30)
    code = await submit(
        stack, submission(CERTIFIED_COPY, "giang-vo", citizen=3, received_at=received)
    )
    current = await wait_for(stack, code, Action.CERTIFY)
    assert current.clock is not None
    due_day = received.date() if same_day else default_calendar().next_working_day(received.date())
    assert current.clock.due_at == datetime.combine(due_day, time(17, 0), HANOI)
    await act(
        stack,
        code,
        Action.WITHDRAW,
        Withdrawal(officer=officer(Role.COUNTER_OFFICER, "giang-vo"), reason="citizen withdraws"),
    )
    assert (await result(stack, code)).outcome is Outcome.WITHDRAWN


async def test_refusal_by_the_leader_returns_a_signed_refusal_notice(stack: EngineStack) -> None:
    enterprise = sample_enterprises()[1].enterprise_code
    code = await submit(
        stack,
        submission(
            BUSINESS_HOUSEHOLD,
            "dong-da",
            citizen=4,
            subject_reference=enterprise,
            delivery=DeliveryChannel.ONLINE,
        ),
    )
    await act(
        stack,
        code,
        Action.APPRAISE,
        Appraisal(
            officer=officer(Role.SPECIALIST, "dong-da"),
            recommendation=Recommendation.REFUSE,
            note="ngành nghề cấm",
        ),
    )
    await act(
        stack,
        code,
        Action.REFUSE,
        Refusal(
            officer=officer(Role.LEADER, "dong-da"),
            reason="Ngành nghề kinh doanh bị cấm theo Luật Đầu tư",
        ),
    )
    outcome = await result(stack, code)

    assert outcome.outcome is Outcome.REFUSED
    assert outcome.status is DossierStatus.RETURNED
    assert outcome.reason == "Ngành nghề kinh doanh bị cấm theo Luật Đầu tư"
    assert [d.kind.value for d in outcome.documents] == ["refusal_notice"]
    assert portal_statuses(stack, code) == [2, 4, 9, 10]


async def test_withdrawal_before_the_decision_stops_the_dossier(stack: EngineStack) -> None:
    code = await submit(
        stack,
        submission(
            BIRTH, "tay-ho", citizen=5, subject_reference=sample_civil_packages()[5].package_id
        ),
    )
    await act(
        stack,
        code,
        Action.WITHDRAW,
        Withdrawal(officer=officer(Role.COUNTER_OFFICER, "tay-ho"), reason="công dân rút hồ sơ"),
    )
    outcome = await result(stack, code)

    assert outcome.outcome is Outcome.WITHDRAWN and outcome.status is DossierStatus.WITHDRAWN
    assert outcome.on_time is None
    assert portal_statuses(stack, code) == [2, 4, 7]


async def test_identity_mismatch_is_rejected_at_intake(stack: EngineStack) -> None:
    code = await submit(stack, submission(BIRTH, "cau-giay", citizen=6, full_name="Người Khác Tên"))
    outcome = await result(stack, code)

    assert outcome.outcome is Outcome.REJECTED_AT_INTAKE
    assert outcome.reason == "identity does not match the population registry: full_name"
    assert portal_statuses(stack, code) == [3]


async def test_incomplete_dossier_gets_one_supplement_request_and_is_received_when_complete(
    stack: EngineStack,
) -> None:
    """Circular 01/2018 form 02: an incomplete dossier is not refused. The counter asks for
    everything missing at once; the dossier waits without a receipt and without a clock, and
    is received, with its appointment, when complete."""
    filed = submission(
        BIRTH,
        "cau-giay",
        citizen=7,
        skip_documents=2,
        subject_reference=sample_civil_packages()[7].package_id,
        delivery=DeliveryChannel.ONLINE,
    )
    required = procedure(BIRTH).required_documents
    missing = list(required[:2])
    code = await submit(stack, filed)
    waiting = await wait_for(stack, code, Action.PROVIDE_SUPPLEMENT)
    assert waiting.status is DossierStatus.SUPPLEMENT_REQUESTED
    assert waiting.clock is None and waiting.stage.value == "intake"
    assert waiting.handled_by == code
    [asked] = [e for e in await timeline(stack, code) if e.step == "intake supplement requested"]
    assert asked.note == "form 02, missing: " + ", ".join(d.name for d in missing)
    assert "receipt and appointment slip" not in [e.step for e in await timeline(stack, code)]
    await sent_out(stack, code)  # the step's sync and notice leave through the outbox
    assert portal_statuses(stack, code) == [5]
    # Online filing: the citizen hears of it by notice (sent just after the step is recorded).
    assert await notice_sent(stack, code, "intake_supplement")

    # A supplement without everything form 02 listed is refused, naming what is still missing.
    counter = officer(Role.COUNTER_OFFICER, "cau-giay")
    with pytest.raises(dossiers.ActionRefused) as refused:
        await act(
            stack,
            code,
            Action.PROVIDE_SUPPLEMENT,
            Supplement(officer=counter, documents=[document(missing[0])]),
        )
    assert str(refused.value) == (
        "documents: the supplement must include every document form 02 asked for; "
        f"missing {missing[1].kind}"
    )
    await act(
        stack,
        code,
        Action.PROVIDE_SUPPLEMENT,
        Supplement(officer=counter, documents=[document(d) for d in missing]),
    )
    received = await wait_for(stack, code, Action.APPRAISE)
    entries = await timeline(stack, code)
    steps = [e.step for e in entries]
    assert steps[:3] == [
        "intake supplement requested",
        "intake supplement received",
        "receipt and appointment slip",
    ]
    [complete] = [e.at for e in entries if e.step == "intake supplement received"]
    # Received when complete: the dossier's receipt instant is the supplement's, and the one
    # working day counts from it (e.g. complete Mon 09:05 -> due Tue 17:00).
    assert received.received_at == complete
    assert received.received_at > waiting.received_at
    assert received.clock is not None
    assert received.clock.due_at == default_calendar().due_at(complete, procedure(BIRTH).deadline)
    await sent_out(stack, code)
    assert portal_statuses(stack, code)[:3] == [5, 2, 4]
    await act(
        stack,
        code,
        Action.WITHDRAW,
        Withdrawal(officer=counter, reason="công dân rút hồ sơ"),
    )
    assert (await result(stack, code)).outcome is Outcome.WITHDRAWN


async def test_a_dossier_waiting_for_its_intake_supplement_can_be_withdrawn(
    stack: EngineStack,
) -> None:
    code = await submit(
        stack, submission(BUSINESS_HOUSEHOLD, "cau-giay", citizen=10, skip_documents=1)
    )
    await wait_for(stack, code, Action.PROVIDE_SUPPLEMENT)
    await act(
        stack,
        code,
        Action.WITHDRAW,
        Withdrawal(officer=officer(Role.COUNTER_OFFICER, "cau-giay"), reason="không bổ sung"),
    )
    outcome = await result(stack, code)
    assert outcome.outcome is Outcome.WITHDRAWN and outcome.due_at is None
    assert portal_statuses(stack, code) == [5, 7]


def document(required: RequiredDocument) -> SubmittedDocument:
    return SubmittedDocument(kind=required.kind, title=required.name, pages=2)


async def notice_sent(stack: EngineStack, code: str, template: str) -> bool:
    for _ in range(100):
        calls = httpx.get(f"{stack.simulators.url('notify')}/_sim/calls").json()
        if any(
            c["body"]
            and c["body"].get("dossier_code") == code
            and c["body"].get("template") == template
            for c in calls
        ):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_registry_refusal_ends_in_a_clear_state_without_retrying(
    stack: EngineStack,
) -> None:
    """Permanent fault: the population registry answers 404 for an unknown citizen ID."""
    unknown = unknown_citizen_id()
    code = await submit(stack, submission(BIRTH, "long-bien", citizen=8, citizen_id=unknown))
    outcome = await result(stack, code)

    assert outcome.outcome is Outcome.REJECTED_AT_INTAKE
    assert outcome.reason is not None
    assert outcome.reason.startswith("identity check refused: population registry refused")
    assert "404" in outcome.reason
    calls = httpx.get(f"{stack.simulators.url('population')}/_sim/calls").json()
    assert sum(1 for c in calls if c["body"] and c["body"].get("citizen_id") == unknown) == 1


async def test_a_transient_registry_fault_is_retried_to_success(stack: EngineStack) -> None:
    population = stack.simulators.url("population")
    httpx.post(f"{population}/_sim/faults", json={"fail_next": 2, "status": 503}).raise_for_status()
    code = await submit(
        stack,
        submission(
            BIRTH,
            "hoang-mai",
            citizen=9,
            subject_reference=sample_civil_packages()[9].package_id,
            delivery=DeliveryChannel.ONLINE,
        ),
    )
    await approve_through(stack, code, "hoang-mai")
    outcome = await result(stack, code)

    assert outcome.outcome is Outcome.APPROVED
    history = await stack.client.get_workflow_handle(code).fetch_history()
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert attempts[0] == 3  # the identity check: two 503s, then success
    failures = [c for c in httpx.get(f"{population}/_sim/calls").json() if c["status"] == 503]
    assert len(failures) >= 2


async def test_a_refused_e_signature_is_signed_on_paper_and_the_dossier_goes_on(
    stack: EngineStack,
) -> None:
    """The signing service refuses the signature (4xx, as for an officer without a usable
    certificate): the leader signs on paper and records it (who, when, the scan's SHA-256);
    the dossier goes on to its return, flagged, and is never stopped for this."""
    package = sample_civil_packages()[40].package_id
    code = await submit(stack, submission(BIRTH, "yen-hoa", citizen=40, subject_reference=package))
    await act(
        stack,
        code,
        Action.APPRAISE,
        Appraisal(
            officer=officer(Role.SPECIALIST, "yen-hoa"), recommendation=Recommendation.APPROVE
        ),
    )
    await wait_for(stack, code, Action.APPROVE)
    signing = stack.simulators.url("signing")
    httpx.post(f"{signing}/_sim/faults", json={"fail_next": 1, "status": 403}).raise_for_status()
    leader = officer(Role.LEADER, "yen-hoa")
    await act(stack, code, Action.APPROVE, Approval(officer=leader))
    waiting = await wait_for(stack, code, Action.RECORD_WET_SIGNATURE)
    assert waiting.status is DossierStatus.IN_PROCESSING
    [refused] = [e for e in await timeline(stack, code) if e.step == "e-signature refused"]
    assert "signing service refused POST /v1/sign: 403" in refused.note

    scan = hashlib.sha256(b"the decision, signed in ink and scanned").hexdigest()
    now = refused.at  # signed in ink as soon as the e-signature was refused
    specialist = officer(Role.SPECIALIST, "yen-hoa")
    with pytest.raises(dossiers.ActionRefused) as wrong_role:
        await act(
            stack,
            code,
            Action.RECORD_WET_SIGNATURE,
            WetSignature(officer=specialist, signed_at=now, scan_sha256=scan),
        )
    assert str(wrong_role.value).startswith("record_wet_signature needs role leader")
    await act(
        stack,
        code,
        Action.RECORD_WET_SIGNATURE,
        WetSignature(officer=leader, signed_at=now, scan_sha256=scan),
    )
    await act(
        stack, code, Action.HAND_OVER, HandOver(officer=officer(Role.COUNTER_OFFICER, "yen-hoa"))
    )
    outcome = await result(stack, code)

    assert outcome.outcome is Outcome.APPROVED and outcome.status is DossierStatus.RETURNED
    [decision] = outcome.documents
    assert decision.signature is None and decision.wet_ink is not None
    assert decision.wet_ink.signed_by.officer_id == leader.officer_id
    assert decision.wet_ink.scan_sha256 == scan and decision.wet_ink.signed_at == now
    steps = [e.step for e in await timeline(stack, code)]
    assert steps.index("e-signature refused") < steps.index("signed on paper")
    assert "closed: stopped" not in steps
    assert 8 not in portal_statuses(stack, code)
