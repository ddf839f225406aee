"""Records tests/histories: one dossier per route and ending, driven through the real stack,
each workflow's history exported as stored (encoded payloads) into its own pretty JSON file.

    RECORD_HISTORIES=1 .venv/bin/python -m pytest tests/record_histories.py

Not collected by `make test` (the name does not start with `test_`) and skipped unless
RECORD_HISTORIES=1. Payloads are stored encrypted, as the workers write them: while recording,
the stack encrypts with the test-only key in tests/histories/payload.keys, so CI replays the
files with that key. Re-record after a deliberate, versioned change to the workflows (or to the
data converter), review the diff, commit. tests/test_replay.py replays every file against the
current code, so a change that would break a running dossier fails CI.

File names: `<scenario>.dossier.json` for the dossier workflow, `<scenario>.processing.json`
or `<scenario>.certification.json` for its lane; each `{"workflow_id": ..., "history": ...}`.
Dossiers begun since `lane-in-dossier` run their lane inside the dossier workflow: one file. The
scenarios recorded with a lane child keep replaying the dossiers begun before; their recorders
now skip instead of writing (a new run has no child to record).
"""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter

from codec import KEY_ID_KEY, KEYS_ENV, KeyRing, data_converter
from domain.calendar import default_calendar
from domain.clock import apology_by
from ops.replay import dump_json, history_document
from ops.temporal import dossier_runs
from schemas.actions import (
    Action,
    Appraisal,
    Approval,
    Certification,
    HandOver,
    Recommendation,
    Refusal,
    Supplement,
    SupplementRequest,
    WetSignature,
    Withdrawal,
)
from schemas.catalogue import DeliveryChannel, WorkingDaysDeadline
from schemas.dossier import SubmittedDocument
from schemas.statuses import DossierStatus, Outcome, Role
from simulators.seed import sample_civil_packages, sample_enterprises
from tests.conftest import EngineStack
from tests.driver import act, officer, result, submission, submit, wait_for
from tests.test_lifecycle import approve_through

HISTORIES = Path(__file__).resolve().parent / "histories"
KEYS_FILE = HISTORIES / "payload.keys"
BIRTH = "1.001193"  # ward tier, 1 working day, restart rule, no fee
BUSINESS_HOUSEHOLD = "1.001612"  # ward tier, 3 working days, fee
PRIVATE_ENTERPRISE = "2.001610"  # city tier (Sở Tài chính), fee
CERTIFIED_COPY = "2.000815"  # certification, same day, per-page fee

# Scenario -> the lane child's workflow id suffix (None: the dossier never reached a lane).
SCENARIOS: dict[str, str | None] = {
    "ward-approved-supplement-counter": ".processing",
    "city-approved-fees-post": ".processing",
    "certification-approved-online": ".certification",
    "ward-refused-online": ".processing",
    "ward-withdrawn": ".processing",
    "rejected-at-intake": None,
    "ward-apology-overdue": ".processing",
    # Recorded before a refused e-signature was signed on paper: it keeps replaying the
    # dossiers that stopped then (its recorder is gone; the paper path replaced it).
    "ward-stopped-signing-refused": ".processing",
    "ward-signed-on-paper": ".processing",
    "intake-supplement-withdrawn": None,
    # The lane inside the dossier workflow.
    "lane-inside-ward-supplement-counter": None,
    "lane-inside-certification-online": None,
    "lane-inside-ward-withdrawn": None,
}


def payload_keys() -> str:
    """The test-only key ring of the recorded histories, as PAYLOAD_KEYS spells it."""
    return KEYS_FILE.read_text(encoding="utf-8")


def histories_converter() -> DataConverter:
    """The workers' converter, with the key the recorded histories were encrypted with."""
    return data_converter(KeyRing.parse(payload_keys(), source=str(KEYS_FILE)))


RECORDING = os.environ.get("RECORD_HISTORIES") == "1"
if RECORDING:
    # At collection, after conftest picked a session key and before the stack starts: the
    # stack's workers encrypt with the histories' key instead.
    os.environ[KEYS_ENV] = payload_keys()

pytestmark = pytest.mark.skipif(
    not RECORDING, reason="records tests/histories only with RECORD_HISTORIES=1"
)


def encrypted_with(history: WorkflowHistory) -> str | None:
    """The key id of the workflow input's payload, or None when not encrypted."""
    started = history.events[0].workflow_execution_started_event_attributes
    payload = started.input.payloads[0]
    key_id = payload.metadata.get(KEY_ID_KEY)
    return None if key_id is None else key_id.decode()


async def record(stack: EngineStack, scenario: str, code: str) -> None:
    """Write the dossier's history and its lane's, as the server stores them."""
    lane = SCENARIOS[scenario]
    if lane is not None:
        pytest.skip(f"{scenario}: recorded with a lane child; new dossiers run their lane inside")
    histories = [
        run.history for run in await dossier_runs(stack.client, stack.settings.database_url, code)
    ]
    names = {code: "dossier", **({code + lane: lane.lstrip(".")} if lane else {})}
    assert sorted(h.workflow_id for h in histories) == sorted(names), "unexpected workflows"
    expected = KeyRing.parse(payload_keys()).active_id
    for history in histories:
        assert encrypted_with(history) == expected, (
            f"{history.workflow_id}: payloads not encrypted with the key of {KEYS_FILE.name}"
        )
    HISTORIES.mkdir(exist_ok=True)
    for history in histories:
        path = HISTORIES / f"{scenario}.{names[history.workflow_id]}.json"
        path.write_text(dump_json(history_document(history)), encoding="utf-8")


async def test_ward_approved_after_a_supplement_round_handed_over_at_the_counter(
    stack: EngineStack,
) -> None:
    """Filed at one ward, decided at another; one supplement round; counter, rated."""
    package = sample_civil_packages()[30].package_id
    code = await submit(
        stack,
        submission(
            BIRTH, "hoan-kiem", citizen=30, competent_unit="ba-dinh", subject_reference=package
        ),
    )
    await act(
        stack,
        code,
        Action.REQUEST_SUPPLEMENT,
        SupplementRequest(
            officer=officer(Role.SPECIALIST, "ba-dinh"),
            missing=["identity_card"],
            note="bản chụp không đọc được",
        ),
    )
    await act(
        stack,
        code,
        Action.PROVIDE_SUPPLEMENT,
        Supplement(
            officer=officer(Role.COUNTER_OFFICER, "hoan-kiem"),
            documents=[SubmittedDocument(kind="identity_card", title="Căn cước công dân")],
        ),
    )
    await approve_through(stack, code, "ba-dinh")
    await act(
        stack,
        code,
        Action.HAND_OVER,
        HandOver(officer=officer(Role.COUNTER_OFFICER, "hoan-kiem"), rating=3),
    )
    assert (await result(stack, code)).outcome is Outcome.APPROVED
    await record(stack, "ward-approved-supplement-counter", code)


async def test_city_approved_with_fees_sent_by_post(stack: EngineStack) -> None:
    enterprise = sample_enterprises()[30].enterprise_code
    code = await submit(
        stack,
        submission(
            PRIVATE_ENTERPRISE,
            "ha-dong",
            citizen=31,
            subject_reference=enterprise,
            delivery=DeliveryChannel.POST,
        ),
    )
    await approve_through(stack, code, "so-tai-chinh")
    outcome = await result(stack, code)
    assert outcome.outcome is Outcome.APPROVED and outcome.status is DossierStatus.RETURNED
    await record(stack, "city-approved-fees-post", code)


async def test_certification_approved_online(stack: EngineStack) -> None:
    code = await submit(
        stack, submission(CERTIFIED_COPY, "cua-nam", citizen=32, delivery=DeliveryChannel.ONLINE)
    )
    await act(
        stack, code, Action.CERTIFY, Certification(officer=officer(Role.CERTIFIER, "cua-nam"))
    )
    assert (await result(stack, code)).outcome is Outcome.APPROVED
    await record(stack, "certification-approved-online", code)


async def test_refused_by_the_leader(stack: EngineStack) -> None:
    enterprise = sample_enterprises()[31].enterprise_code
    code = await submit(
        stack,
        submission(
            BUSINESS_HOUSEHOLD,
            "dong-da",
            citizen=33,
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
    assert (await result(stack, code)).outcome is Outcome.REFUSED
    await record(stack, "ward-refused-online", code)


async def test_withdrawn_before_the_decision(stack: EngineStack) -> None:
    package = sample_civil_packages()[34].package_id
    code = await submit(stack, submission(BIRTH, "tay-ho", citizen=34, subject_reference=package))
    await act(
        stack,
        code,
        Action.WITHDRAW,
        Withdrawal(officer=officer(Role.COUNTER_OFFICER, "tay-ho"), reason="công dân rút hồ sơ"),
    )
    assert (await result(stack, code)).outcome is Outcome.WITHDRAWN
    await record(stack, "ward-withdrawn", code)


async def test_rejected_at_intake(stack: EngineStack) -> None:
    code = await submit(
        stack, submission(BIRTH, "cau-giay", citizen=35, full_name="Người Khác Tên")
    )
    assert (await result(stack, code)).outcome is Outcome.REJECTED_AT_INTAKE
    await record(stack, "rejected-at-intake", code)


async def test_apology_slip_then_overdue(stack: EngineStack) -> None:
    """Nobody appraises: near-due warning, one apology slip, overdue; approved late."""
    if not stack.time_skipping:
        pytest.skip("needs TEMPORAL_TEST_SERVER=time-skipping")
    enterprise = sample_enterprises()[32].enterprise_code
    code = await submit(
        stack,
        submission(
            BUSINESS_HOUSEHOLD,
            "kim-lien",
            citizen=36,
            subject_reference=enterprise,
            delivery=DeliveryChannel.ONLINE,
        ),
    )
    first = await wait_for(stack, code, Action.APPRAISE)
    assert first.clock is not None
    calendar = default_calendar()
    promised = first.clock.due_at
    # At the latest one day before the due date (Decree 61/2018 art. 19(9)).
    apology_mark = apology_by(calendar, promised, WorkingDaysDeadline(days=3))
    lane = stack.client.get_workflow_handle(f"{code}.processing")
    now = await stack.env.get_current_time(lane)
    assert await stack.env.fast_forward(lane, apology_mark - now + timedelta(hours=1))
    apologized = await wait_for(stack, code, Action.APPRAISE)
    assert apologized.clock is not None and apologized.clock.apologized
    assert await stack.env.fast_forward(
        lane, apologized.clock.due_at - promised + timedelta(days=1)
    )
    overdue = await wait_for(stack, code, Action.APPRAISE)
    assert overdue.clock is not None and overdue.clock.overdue
    await approve_through(stack, code, "kim-lien")
    outcome = await result(stack, code)
    assert outcome.outcome is Outcome.APPROVED and outcome.on_time is False
    await record(stack, "ward-apology-overdue", code)


async def test_signed_on_paper_when_the_signing_service_refuses(stack: EngineStack) -> None:
    package = sample_civil_packages()[37].package_id
    code = await submit(stack, submission(BIRTH, "yen-hoa", citizen=37, subject_reference=package))
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
    await act(
        stack,
        code,
        Action.RECORD_WET_SIGNATURE,
        WetSignature(
            officer=leader,
            signed_at=waiting.awaiting[0].since,
            scan_sha256=hashlib.sha256(b"scan").hexdigest(),
        ),
    )
    await act(
        stack, code, Action.HAND_OVER, HandOver(officer=officer(Role.COUNTER_OFFICER, "yen-hoa"))
    )
    assert (await result(stack, code)).outcome is Outcome.APPROVED
    await record(stack, "ward-signed-on-paper", code)


async def test_intake_supplement_then_withdrawn(stack: EngineStack) -> None:
    code = await submit(
        stack, submission(BUSINESS_HOUSEHOLD, "cau-giay", citizen=38, skip_documents=1)
    )
    await wait_for(stack, code, Action.PROVIDE_SUPPLEMENT)
    await act(
        stack,
        code,
        Action.WITHDRAW,
        Withdrawal(officer=officer(Role.COUNTER_OFFICER, "cau-giay"), reason="không bổ sung"),
    )
    assert (await result(stack, code)).outcome is Outcome.WITHDRAWN
    await record(stack, "intake-supplement-withdrawn", code)


async def test_lane_inside_ward_approved_after_a_supplement_round(stack: EngineStack) -> None:
    """As the first scenario, the lane inside the dossier workflow: it takes the lane's steps,
    the counter's supplement among them."""
    package = sample_civil_packages()[39].package_id
    code = await submit(
        stack,
        submission(
            BIRTH, "hoan-kiem", citizen=39, competent_unit="ba-dinh", subject_reference=package
        ),
    )
    await act(
        stack,
        code,
        Action.REQUEST_SUPPLEMENT,
        SupplementRequest(officer=officer(Role.SPECIALIST, "ba-dinh"), missing=["identity_card"]),
    )
    await act(
        stack,
        code,
        Action.PROVIDE_SUPPLEMENT,
        Supplement(
            officer=officer(Role.COUNTER_OFFICER, "hoan-kiem"),
            documents=[SubmittedDocument(kind="identity_card", title="Căn cước công dân")],
        ),
    )
    await approve_through(stack, code, "ba-dinh")
    await act(
        stack, code, Action.HAND_OVER, HandOver(officer=officer(Role.COUNTER_OFFICER, "hoan-kiem"))
    )
    assert (await result(stack, code)).outcome is Outcome.APPROVED
    await record(stack, "lane-inside-ward-supplement-counter", code)


async def test_lane_inside_certification_approved_online(stack: EngineStack) -> None:
    code = await submit(
        stack, submission(CERTIFIED_COPY, "cua-nam", citizen=40, delivery=DeliveryChannel.ONLINE)
    )
    await act(
        stack, code, Action.CERTIFY, Certification(officer=officer(Role.CERTIFIER, "cua-nam"))
    )
    assert (await result(stack, code)).outcome is Outcome.APPROVED
    await record(stack, "lane-inside-certification-online", code)


async def test_lane_inside_withdrawn_before_the_decision(stack: EngineStack) -> None:
    package = sample_civil_packages()[41].package_id
    code = await submit(stack, submission(BIRTH, "tay-ho", citizen=41, subject_reference=package))
    await wait_for(stack, code, Action.APPRAISE)
    await act(
        stack,
        code,
        Action.WITHDRAW,
        Withdrawal(officer=officer(Role.COUNTER_OFFICER, "tay-ho"), reason="công dân rút hồ sơ"),
    )
    assert (await result(stack, code)).outcome is Outcome.WITHDRAWN
    await record(stack, "lane-inside-ward-withdrawn", code)
