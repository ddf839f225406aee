"""The population registry cannot answer: at the counter, the chip ID card checked in person
receives the dossier, the registry's check runs when it is back, and a mismatch goes to the
receiving unit's leader instead of blocking the citizen; online filings keep waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest

from schemas.actions import (
    Action,
    HandOver,
    IdentityCheckMethod,
    InPersonIdentityCheck,
)
from schemas.dossier import IntakeChannel, TimelineEntry
from schemas.lifecycle import TimelineStep
from schemas.statuses import DossierStatus, Outcome, Role, Stage
from services import dossiers
from simulators.process import SimulatorsProcess
from simulators.seed import sample_civil_packages
from tests.conftest import EngineStack
from tests.driver import act, officer, result, submission, submit, timeline, view, wait_for
from tests.test_lifecycle import approve_through
from workflows.policies import IDENTITY_PATIENCE

BIRTH = "1.001193"  # khai sinh: ward tier, 1 working day


@asynccontextmanager
async def registry_down(sims: SimulatorsProcess) -> AsyncIterator[None]:
    """Every call to the population registry answers 503 for the block."""
    faults = f"{sims.url('population')}/_sim/faults"
    before = httpx.get(faults).json()["failure_rate"]
    httpx.post(faults, json={"failure_rate": 1.0}).raise_for_status()
    try:
        yield
    finally:
        httpx.post(faults, json={"failure_rate": before}).raise_for_status()


def unit_notices(stack: EngineStack, code: str, template: str) -> list[str]:
    reply = httpx.get(
        f"{stack.simulators.url('notify')}/_sim/notifications", params={"dossier_code": code}
    )
    reply.raise_for_status()
    return [n["recipient"] for n in reply.json() if n["template"] == template]


async def past_patience(stack: EngineStack, code: str) -> None:
    """The registry has failed at least once, then the dossier's clock passes the patience."""
    handle = stack.client.get_workflow_handle(code)
    deadline = time.monotonic() + 30
    while not any(
        p.activity_type.name == "check_identity" and p.attempt > 1
        for p in (await handle.describe()).raw_description.pending_activities
    ):
        assert time.monotonic() < deadline, "the identity check never failed"
        await asyncio.sleep(0.2)
    assert await stack.env.fast_forward(handle, IDENTITY_PATIENCE + timedelta(seconds=5))


async def registry_back(stack: EngineStack, code: str, step: TimelineStep) -> None:
    """The registry is back: its retry comes within the backoff's one minute."""
    handle = stack.client.get_workflow_handle(code)
    deadline = time.monotonic() + 60
    while step not in [e.step for e in await timeline(stack, code)]:
        assert time.monotonic() < deadline, f"{code} never reached {step}"
        await stack.env.fast_forward(handle, timedelta(minutes=1))
        await asyncio.sleep(0.5)


async def reached(stack: EngineStack, code: str, step: TimelineStep) -> list[TimelineEntry]:
    deadline = time.monotonic() + 30
    while True:
        steps = await timeline(stack, code)
        if step in [e.step for e in steps]:
            return steps
        assert time.monotonic() < deadline, f"{code} never reached {step}"
        await asyncio.sleep(0.2)


@pytest.fixture
def skipping(stack: EngineStack) -> EngineStack:
    if not stack.time_skipping:
        pytest.skip("needs the time-skipping server: the patience is minutes of workflow time")
    return stack


async def test_a_counter_officer_receives_on_the_chip_card_and_a_mismatch_goes_to_the_leader(
    skipping: EngineStack,
) -> None:
    stack = skipping
    unit = "tay-ho"
    package = sample_civil_packages()[3].package_id
    # The name on the form is not the registry's: only the registry can tell, once it is back.
    sub = submission(BIRTH, unit, citizen=3, subject_reference=package, full_name="Trần Thị Sai")
    async with registry_down(stack.simulators):
        code = await submit(stack, sub)
        await past_patience(stack, code)
        waiting = await wait_for(stack, code, Action.CHECK_IDENTITY_IN_PERSON)
        assert waiting.status is DossierStatus.SUBMITTED and waiting.stage is Stage.INTAKE
        [awaited] = [a for a in waiting.awaiting if a.action == "check_identity_in_person"]
        assert (awaited.role, awaited.unit) == (Role.COUNTER_OFFICER.value, unit)

        # Only a counter officer of the receiving unit may check the card.
        with pytest.raises(dossiers.ActionRefused, match="needs role counter_officer"):
            await dossiers.act(
                stack.client,
                stack.settings.database_url,
                code,
                Action.CHECK_IDENTITY_IN_PERSON,
                InPersonIdentityCheck(
                    officer=officer(Role.SPECIALIST, unit), method=IdentityCheckMethod.CHIP_READ
                ),
            )
        counter = officer(Role.COUNTER_OFFICER, unit)
        await act(
            stack,
            code,
            Action.CHECK_IDENTITY_IN_PERSON,
            InPersonIdentityCheck(
                officer=counter, method=IdentityCheckMethod.CHIP_READ, note="NFC reader"
            ),
        )
        # Received while the registry is still down: the citizen is not held at the counter
        # (the lane's own registry lookups then wait for it, as any lane does).
        steps = await reached(stack, code, TimelineStep.TRANSFERRED)
        assert (await view(stack, code)).status is DossierStatus.IN_PROCESSING
        checked = next(e for e in steps if e.step == TimelineStep.IDENTITY_CHECKED_IN_PERSON)
        assert checked.actor == counter.officer_id
        assert "chip_id_card, chip_read: NFC reader" in checked.note
        names = [e.step for e in steps]
        assert names.index(TimelineStep.IDENTITY_REGISTRY_UNANSWERED) < names.index(
            TimelineStep.IDENTITY_CHECKED_IN_PERSON
        )
        assert names.index(TimelineStep.IDENTITY_CHECKED_IN_PERSON) < names.index(
            "receipt and appointment slip"
        )
        assert TimelineStep.IDENTITY_MISMATCH_FLAGGED not in names

    # The registry is back: its answer is a mismatch, flagged to the leader, not a refusal.
    await registry_back(stack, code, TimelineStep.IDENTITY_MISMATCH_FLAGGED)
    flagged = next(
        e for e in await timeline(stack, code) if e.step == TimelineStep.IDENTITY_MISMATCH_FLAGGED
    )
    assert flagged.note == (
        f"leader of {unit}: identity does not match the population registry: full_name"
    )
    assert unit_notices(stack, code, "identity_mismatch") == [f"leaders@{unit}"]
    current = await view(stack, code)
    assert current.stage is Stage.PROCESSING  # the dossier goes on; the leader decides

    await approve_through(stack, code, unit)
    await act(stack, code, Action.HAND_OVER, HandOver(officer=counter, rating=3))
    outcome = await result(stack, code)
    assert outcome.outcome is Outcome.APPROVED
    audited = await dossiers.timeline(stack.client, stack.settings.database_url, code)
    assert [e.step for e in audited].count(TimelineStep.IDENTITY_MISMATCH_FLAGGED) == 1


async def test_a_matching_identity_checked_in_person_is_confirmed_when_the_registry_is_back(
    skipping: EngineStack,
) -> None:
    stack = skipping
    unit = "tay-ho"
    package = sample_civil_packages()[4].package_id
    async with registry_down(stack.simulators):
        code = await submit(stack, submission(BIRTH, unit, citizen=4, subject_reference=package))
        await past_patience(stack, code)
        await act(
            stack,
            code,
            Action.CHECK_IDENTITY_IN_PERSON,
            InPersonIdentityCheck(
                officer=officer(Role.COUNTER_OFFICER, unit), method=IdentityCheckMethod.VISUAL
            ),
        )
        await reached(stack, code, TimelineStep.TRANSFERRED)
    await registry_back(stack, code, TimelineStep.IDENTITY_CONFIRMED_BY_REGISTRY)
    steps = [e.step for e in await timeline(stack, code)]
    assert TimelineStep.IDENTITY_MISMATCH_FLAGGED not in steps
    assert unit_notices(stack, code, "identity_mismatch") == []


async def test_an_online_filing_keeps_waiting_for_the_registry(skipping: EngineStack) -> None:
    stack = skipping
    unit = "tay-ho"
    package = sample_civil_packages()[5].package_id
    sub = submission(BIRTH, unit, citizen=5, subject_reference=package).model_copy(
        update={"intake_channel": IntakeChannel.ONLINE}
    )
    async with registry_down(stack.simulators):
        code = await submit(stack, sub)
        await past_patience(stack, code)
        await asyncio.sleep(1)
        waiting = await view(stack, code)
        assert waiting.status is DossierStatus.SUBMITTED
        assert not any(a.action == "check_identity_in_person" for a in waiting.awaiting)
        with pytest.raises(dossiers.ActionRefused, match="not possible now"):
            await dossiers.act(
                stack.client,
                stack.settings.database_url,
                code,
                Action.CHECK_IDENTITY_IN_PERSON,
                InPersonIdentityCheck(
                    officer=officer(Role.COUNTER_OFFICER, unit),
                    method=IdentityCheckMethod.CHIP_READ,
                ),
            )
    # Back: the registry's check receives it, as before.
    await registry_back(stack, code, TimelineStep.RECEIPT)
    steps = [e.step for e in await timeline(stack, code)]
    assert TimelineStep.IDENTITY_REGISTRY_UNANSWERED not in steps
    assert TimelineStep.IDENTITY_CHECKED_IN_PERSON not in steps
