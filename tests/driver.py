"""Drives dossiers through the real stack the way the counter software and officers would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

import httpx
from temporalio.client import WorkflowHandle

from domain.catalogue import default_catalogue
from samples import document_title
from schemas.actions import Acknowledgement, Action, Step
from schemas.catalogue import DeliveryChannel, Procedure
from schemas.dossier import (
    Applicant,
    DossierSubmission,
    DossierView,
    Officer,
    SubmittedDocument,
    TimelineEntry,
)
from schemas.lanes import DossierResult
from schemas.statuses import Role, Stage
from services import dossiers
from simulators.seed import sample_citizens
from store import outbox
from store.db import engine_for
from tests.conftest import EngineStack
from tests.instants import ARRIVAL, Arrival


def officer(role: Role, unit: str, number: int = 1) -> Officer:
    return Officer(
        officer_id=f"{unit}.{role.value}.{number}",
        full_name=f"Cán bộ {role.value} {number}",
        role=role.value,
        unit=unit,
    )


def procedure(code: str) -> Procedure:
    return default_catalogue().procedure(code)


def submission(
    procedure_code: str,
    receiving_unit: str,
    *,
    citizen: int = 0,
    competent_unit: str | None = None,
    delivery: DeliveryChannel = DeliveryChannel.COUNTER,
    received_at: datetime | None = None,
    subject_reference: str | None = None,
    full_name: str | None = None,
    citizen_id: str | None = None,
    skip_documents: int = 0,
) -> DossierSubmission:
    person = sample_citizens()[citizen]
    required = procedure(procedure_code).required_documents
    return DossierSubmission(
        procedure_code=procedure_code,
        receiving_unit=receiving_unit,
        competent_unit=competent_unit,
        delivery_channel=delivery,
        applicant=Applicant(
            citizen_id=citizen_id or person.citizen_id,
            full_name=full_name or person.full_name,
            date_of_birth=person.date_of_birth,
            phone=person.phone,
            address=person.address,
        ),
        documents=[
            SubmittedDocument(kind=d.kind, title=document_title(d.name), pages=2)
            for d in required[skip_documents:]
        ],
        subject_reference=subject_reference,
        received_at=received_at,
    )


async def submit(stack: EngineStack, sub: DossierSubmission) -> str:
    """File at the counter at the scenario's instant (see tests/instants.py): the dossier's
    clock reads that instant, whatever the real hour."""
    if stack.start_at is None:  # no time skipping: the real present
        receipt = await dossiers.submit(
            stack.client, sub, default_catalogue(), stack.settings.database_url
        )
        stack.started.append(receipt.code)
        return receipt.code
    arrival = Arrival(at=stack.start_at)
    token = ARRIVAL.set(arrival)
    try:
        receipt = await dossiers.submit(
            stack.client,
            sub,
            default_catalogue(),
            stack.settings.database_url,
            now=stack.start_at,
        )
    finally:
        ARRIVAL.reset(token)
    stack.started.append(receipt.code)
    assert arrival.delay is not None and arrival.workflow_id == receipt.code
    handle = stack.client.get_workflow_handle(receipt.code)
    assert await stack.env.fast_forward(handle, arrival.delay)
    return receipt.code


async def view(stack: EngineStack, code: str) -> DossierView:
    return await dossiers.status(stack.client, stack.settings.database_url, code)


async def wait_for(
    stack: EngineStack,
    code: str,
    action: Action,
    timeout: float = 30,
    until: Callable[[DossierView], bool] = lambda _: True,
) -> DossierView:
    """Until the dossier awaits `action` (and, with `until`, is as it says: the read model
    shows a step once it is written, a moment after the workflow took it); fails with what
    it awaits instead."""
    deadline = time.monotonic() + timeout
    while True:
        current = await view(stack, code)
        if any(a.action == action.value for a in current.awaiting) and until(current):
            return current
        if current.stage is Stage.CLOSED or time.monotonic() > deadline:
            raise AssertionError(
                f"{code} never awaited {action.value}: {current.status.value} at "
                f"{current.stage.value}, awaiting {[a.action for a in current.awaiting]}"
            )
        await asyncio.sleep(0.1)


async def act(stack: EngineStack, code: str, action: Action, step: Step) -> Acknowledgement:
    await wait_for(stack, code, action)
    return await dossiers.act(stack.client, stack.settings.database_url, code, action, step)


async def result(stack: EngineStack, code: str, timeout: float = 60) -> DossierResult:
    handle: WorkflowHandle[object, DossierResult] = stack.client.get_workflow_handle(
        code, result_type=DossierResult
    )
    outcome = await asyncio.wait_for(handle.result(), timeout)
    await sent_out(stack, code, timeout=timeout)
    return outcome


async def sent_out(
    stack: EngineStack,
    code: str,
    kinds: tuple[outbox.MessageKind, ...] = (
        outbox.MessageKind.PORTAL_SYNC,
        outbox.MessageKind.NOTIFICATION,
    ),
    timeout: float = 60,
) -> None:
    """Until the dossier's messages of `kinds` have left the outbox (delivered or refused):
    the portal and the notify service hear of a step shortly after it, not with it."""
    deadline = time.monotonic() + timeout
    while True:
        async with engine_for(stack.settings.database_url).connect() as conn:
            if not await outbox.pending_of(conn, code, kinds):
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{code}: outbox messages still pending after {timeout:g} s")
        await asyncio.sleep(0.1)


async def timeline(stack: EngineStack, code: str) -> list[TimelineEntry]:
    return await dossiers.timeline(stack.client, stack.settings.database_url, code)


def portal_statuses(stack: EngineStack, code: str) -> list[int]:
    response = httpx.get(f"{stack.simulators.url('portal')}/_sim/dossiers/{code}/statuses")
    response.raise_for_status()
    return [int(s) for s in response.json()["statuses"]]
