"""What the catalogue decides on the real stack: the certification book a dossier is numbered
in, and the fee waived for an online filing where the procedure's text grants it."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import select

from schemas.actions import Action, Certification, HandOver
from schemas.dossier import IntakeChannel
from schemas.lifecycle import TimelineStep
from schemas.statuses import Outcome, Role
from simulators.seed import sample_enterprises
from store.db import engine_for
from store.tables import book_entries
from tests.conftest import EngineStack
from tests.driver import act, officer, result, submission, submit, timeline
from tests.test_lifecycle import approve_through

SIGNATURE = "2.000884"  # chứng thực chữ ký: the signatures book
COPY = "2.000815"  # chứng thực bản sao: the copies book
BUSINESS_HOUSEHOLD = "1.001612"  # online filing exempt from the fee
UNIT = "van-mieu-quoc-tu-giam"


async def _certified(stack: EngineStack, procedure: str, citizen: int) -> tuple[str, str]:
    """The book scope the dossier was numbered in, and the certified result's text."""
    code = await submit(stack, submission(procedure, UNIT, citizen=citizen))
    await act(stack, code, Action.CERTIFY, Certification(officer=officer(Role.CERTIFIER, UNIT)))
    await act(stack, code, Action.HAND_OVER, HandOver(officer=officer(Role.COUNTER_OFFICER, UNIT)))
    outcome = await result(stack, code)
    assert outcome.outcome is Outcome.APPROVED
    async with engine_for(stack.settings.database_url).connect() as conn:
        [scope] = (
            await conn.execute(
                select(book_entries.c.scope).where(book_entries.c.dossier_code == code)
            )
        ).scalars()
    [document] = outcome.documents
    return str(scope), Path(document.path).read_text(encoding="utf-8")


async def test_signatures_and_copies_are_numbered_in_their_own_books(stack: EngineStack) -> None:
    signature_scope, signature_text = await _certified(stack, SIGNATURE, citizen=30)
    copy_scope, copy_text = await _certified(stack, COPY, citizen=31)
    assert signature_scope.startswith(f"certbook:{UNIT}:") and signature_scope.endswith(":CK")
    assert copy_scope == signature_scope.removesuffix(":CK")  # the copies book's own series
    assert "-SCT/CK" in signature_text and "-SCT/BS" in copy_text


async def test_an_online_filing_exempt_by_its_text_pays_no_fee(stack: EngineStack) -> None:
    unit = "kim-lien"
    enterprise = sample_enterprises()[3].enterprise_code
    sub = submission(BUSINESS_HOUSEHOLD, unit, citizen=32, subject_reference=enterprise)
    code = await submit(stack, sub.model_copy(update={"intake_channel": IntakeChannel.ONLINE}))
    await approve_through(stack, code, unit)
    await act(stack, code, Action.HAND_OVER, HandOver(officer=officer(Role.COUNTER_OFFICER, unit)))
    assert (await result(stack, code)).outcome is Outcome.APPROVED
    steps = [e.step for e in await timeline(stack, code)]
    assert TimelineStep.FEES_REQUESTED not in steps
    payments = httpx.get(f"{stack.simulators.url('payment')}/_sim/calls").json()
    assert not [c for c in payments if c["body"] and c["body"].get("dossier_code") == code]
