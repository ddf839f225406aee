"""Calls to the registries: a retried call with an effect has that effect once, each call's
limit fits it (and the workflow's timeouts fit the calls), and an exceeded limit is named."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from sqlalchemy import select
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import documents, notify, payment, portal, registries
from activities.books import BookActivities
from activities.http import (
    CONNECT_SECONDS,
    REGISTRY_UNAVAILABLE,
    call,
    idempotency_key,
    new_http_client,
)
from activities.notify import NotifyActivities
from activities.payment import PaymentActivities
from activities.portal import PortalActivities
from config import Settings, load_settings
from schemas.exchanges import (
    FeeRequest,
    Notification,
    NotificationChannel,
    PortalDocument,
    PortalProgress,
    PortalSync,
    PostOrder,
)
from simulators.process import SimulatorsProcess
from simulators.seed import sample_citizens, sample_civil_packages
from store.db import engine_for
from store.startup import prepare_database
from store.tables import book_entries
from tests.conftest import EngineStack
from tests.driver import submission, submit, view
from workflows import policies

T = TypeVar("T")
A = TypeVar("A")
BIRTH = "1.001193"


def effects(sims: SimulatorsProcess, service: str, kind: str, key: str) -> int:
    """How many times the simulator did `kind` for `key` (0: never)."""
    reply = httpx.get(f"{sims.url(service)}/_sim/effects", params={"kind": kind, "key": key})
    reply.raise_for_status()
    return sum(int(e["count"]) for e in reply.json())


@asynccontextmanager
async def slow(sims: SimulatorsProcess, service: str, latency_ms: int) -> AsyncIterator[None]:
    """The registry answers after `latency_ms`, for the block."""
    faults = f"{sims.url(service)}/_sim/faults"
    before = httpx.get(faults).json()["latency_ms"]
    httpx.post(faults, json={"latency_ms": latency_ms}).raise_for_status()
    try:
        yield
    finally:
        httpx.post(faults, json={"latency_ms": before}).raise_for_status()


@pytest.fixture
async def settings(simulators: SimulatorsProcess, tmp_path: Path) -> Settings:
    url = f"sqlite+aiosqlite:///{tmp_path}/engine.db"
    await prepare_database(url)
    return load_settings().model_copy(
        update={"registry_urls": dict(simulators.urls), "data_dir": tmp_path, "database_url": url}
    )


@pytest.fixture
async def http(simulators: SimulatorsProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with new_http_client(simulators.urls.values()) as client:
        yield client


def attempt(
    run: Callable[[A], Awaitable[T]],
    arg: A,
    *,
    workflow_id: str = "000.00.00.H26-000000-0000",
    activity_id: str = "7",
    number: int = 1,
) -> Awaitable[T]:
    """One attempt of an activity, as a worker runs it for that workflow."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        workflow_id=workflow_id,
        workflow_run_id="run-1",
        activity_id=activity_id,
        attempt=number,
    )
    return env.run(run, arg)


def dossier(name: str) -> str:
    """A dossier code no other test uses."""
    return f"000.00.99.H26-{name}-{time.monotonic_ns() % 10_000:04d}"


# --- one effect, whatever the retries ------------------------------------------------------------
async def test_a_retried_payment_charges_once(
    simulators: SimulatorsProcess, settings: Settings, http: httpx.AsyncClient
) -> None:
    activities = PaymentActivities(settings, http)
    fee = FeeRequest(
        dossier_code=dossier("fee"),
        amount_vnd=50_000,
        payer_citizen_id=sample_citizens()[3].citizen_id,
        description="Lệ phí chứng thực",
    )
    first = await attempt(activities.collect_fee, fee)
    again = await attempt(activities.collect_fee, fee, number=2)
    assert again == first
    assert effects(simulators, "payment", "payment", fee.dossier_code) == 1


async def test_a_retried_portal_sync_is_one_receipt_and_a_status_reached_again_another(
    simulators: SimulatorsProcess, settings: Settings, http: httpx.AsyncClient
) -> None:
    activities = PortalActivities(settings, http)
    at = datetime(2026, 11, 27, 3, 15, tzinfo=UTC)
    sync = PortalSync(
        dossier_code=dossier("portal"),
        procedure_code=BIRTH,
        status_code=4,
        received_at=at - timedelta(hours=1),
        due_at=at + timedelta(days=1),
        processing_unit="hoan-kiem",
        intake_channel=1,
        step="transferred",
        actor="system",
        at=at,
        agency_code="000.01.01.H26",
        applicant_name="Nguyễn Văn An",
        applicant_id="001090000001",
        documents=(PortalDocument(kind="to_khai", title="Tờ khai"),),
        progress=(PortalProgress(actor="system", at=at, step="transferred", status_code=4),),
    )
    for number in (1, 2, 3):
        await attempt(activities.sync_portal, sync, number=number)
    # In processing again after the fees: the same status, another step.
    paid_at = at + timedelta(hours=2)
    later = sync.model_copy(
        update={
            "step": "fees paid",
            "at": paid_at,
            "progress": (
                PortalProgress(actor="system", at=paid_at, step="fees paid", status_code=4),
            ),
        }
    )
    await attempt(activities.sync_portal, later)

    code = sync.dossier_code
    statuses = httpx.get(f"{simulators.url('portal')}/_sim/dossiers/{code}/statuses").json()
    assert statuses["statuses"] == [4, 4]
    assert effects(simulators, "portal", "portal_receipt", f"{code}/4/20261127101500") == 1
    assert effects(simulators, "portal", "portal_receipt", f"{code}/4/20261127121500") == 1


async def test_a_retried_post_order_sends_one_parcel(
    simulators: SimulatorsProcess, settings: Settings, http: httpx.AsyncClient
) -> None:
    activities = NotifyActivities(settings, http)
    order = PostOrder(
        dossier_code=dossier("post"),
        recipient_name="Nguyễn Văn An",
        address="12 Hàng Bạc, phường Hoàn Kiếm, Hà Nội",
        item="decision",
    )
    first = await attempt(activities.send_by_post, order)
    again = await attempt(activities.send_by_post, order, number=2)
    assert again == first
    assert effects(simulators, "notify", "post_order", order.dossier_code) == 1


async def test_a_retried_notice_is_sent_once_and_a_later_notice_with_the_same_text_again(
    simulators: SimulatorsProcess, settings: Settings, http: httpx.AsyncClient
) -> None:
    activities = NotifyActivities(settings, http)
    code = dossier("notice")
    notice = Notification(
        dossier_code=code,
        recipient="0912345678",
        channel=NotificationChannel.SMS,
        template="supplement_requested",
        text=f"Hồ sơ {code} cần bổ sung: identity_card",
    )
    await attempt(activities.notify, notice, workflow_id=f"{code}.processing")
    await attempt(activities.notify, notice, workflow_id=f"{code}.processing", number=2)
    key = f"{code}/supplement_requested"
    assert effects(simulators, "notify", "notification", key) == 1
    # A second supplement request of the same run is a notice of its own.
    await attempt(activities.notify, notice, workflow_id=f"{code}.processing", activity_id="12")
    assert effects(simulators, "notify", "notification", key) == 2


async def test_a_certification_step_run_again_keeps_its_book_number(settings: Settings) -> None:
    books = BookActivities(settings)
    scope = f"certbook:hoan-kiem:{time.monotonic_ns()}"
    first, second = dossier("book"), dossier("book")
    take = books.next_book_number
    number = await attempt(take, scope, workflow_id=f"{first}.certification")
    again = await attempt(take, scope, workflow_id=f"{first}.certification", number=2)
    other = await attempt(take, scope, workflow_id=f"{second}.certification")
    # Attempts at once for one dossier (a task retried while the first still runs).
    together = await asyncio.gather(
        *(attempt(take, scope, workflow_id=f"{second}.certification", number=n) for n in (2, 3, 4))
    )
    assert (number, again, other, together) == (1, 1, 2, [2, 2, 2])
    async with engine_for(settings.database_url).connect() as conn:
        rows = (await conn.execute(select(book_entries).where(book_entries.c.scope == scope))).all()
    assert {r.dossier_code: r.number for r in rows} == {first: 1, second: 2}


async def test_a_repeated_key_with_another_body_is_refused(simulators: SimulatorsProcess) -> None:
    body: dict[str, str | int] = {
        "request_id": "pay-conflict",
        "dossier_code": dossier("conflict"),
        "amount_vnd": 50_000,
        "payer_citizen_id": sample_citizens()[0].citizen_id,
    }
    pay = f"{simulators.url('payment')}/v1/payments"
    headers = {"Idempotency-Key": f"key-{time.monotonic_ns()}"}
    async with httpx.AsyncClient(timeout=10) as client:
        first = await client.post(pay, json=body, headers=headers)
        again = await client.post(pay, json=body, headers=headers)
        other = await client.post(pay, json={**body, "amount_vnd": 60_000}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert effects(simulators, "payment", "payment", str(body["dossier_code"])) == 1


# --- limits that fit, named when exceeded --------------------------------------------------------
def test_every_call_fits_in_its_activity_attempt() -> None:
    attempt_of_registry_call = policies.REGISTRY_CALL.total_seconds()
    for endpoint in [
        registries.VERIFY_IDENTITY,
        registries.CITIZEN,
        registries.PARCEL,
        registries.ENTERPRISE,
        payment.PAY,
        portal.SYNC,
        notify.NOTIFY,
        notify.ORDER_POST,
    ]:
        assert endpoint.answer_seconds + CONNECT_SECONDS < attempt_of_registry_call, endpoint
    # A civil-status consultation pulls the package, then acknowledges it.
    package_and_ack = registries.CIVIL_STATUS_PACKAGE.answer_seconds + (
        registries.CIVIL_STATUS_ACK.answer_seconds
    )
    assert package_and_ack + 2 * CONNECT_SECONDS < attempt_of_registry_call
    signing = documents.SIGN.answer_seconds + CONNECT_SECONDS
    assert signing < policies.SIGNING_CALL.total_seconds()
    assert policies.SIGNING_HEARTBEAT < policies.SIGNING_CALL


async def test_a_timeout_names_the_registry_the_call_and_the_limit(
    simulators: SimulatorsProcess, http: httpx.AsyncClient
) -> None:
    quick = registries.PARCEL.model_copy(update={"answer_seconds": 0.5})
    async with slow(simulators, "land", 1500):
        with pytest.raises(ApplicationError) as raised:
            await call(http, simulators.url("land"), quick, path_params={"parcel_id": "P-1"})
    message = "land registry GET /v1/parcels/{parcel_id}: no answer within 0.5 s"
    assert raised.value.message == message
    assert raised.value.type == REGISTRY_UNAVAILABLE and not raised.value.non_retryable


async def test_an_identity_check_slower_than_its_limit_says_so_and_runs_once(
    stack: EngineStack,
) -> None:
    """The population registry answers after 12 s, past the 10 s limit: the first attempt fails
    naming the registry, the call and the limit; the retry carries the same request, which the
    registry answers once, and the dossier goes on."""
    sims = stack.simulators
    package = sample_civil_packages()[96].package_id
    async with slow(sims, "population", 12_000):
        code = await submit(
            stack, submission(BIRTH, "tay-ho", citizen=96, subject_reference=package)
        )
        failure = await first_failure(stack, code, "check_identity")
        deadline = time.monotonic() + 60
        while (await view(stack, code)).status.value == "submitted":
            assert time.monotonic() < deadline, "the identity check never succeeded"
            await asyncio.sleep(0.5)
    assert failure == "population registry POST /v1/citizens/verify: no answer within 10 s"
    request_id = idempotency_key("identity", code)
    assert effects(sims, "population", "identity_check", request_id) == 1


async def first_failure(stack: EngineStack, code: str, activity_type: str) -> str:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        description = await stack.client.get_workflow_handle(code).describe()
        for pending in description.raw_description.pending_activities:
            if pending.activity_type.name == activity_type and pending.HasField("last_failure"):
                failure = Failure()
                failure.CopyFrom(pending.last_failure)  # failures travel encrypted
                error = await stack.client.data_converter.decode_failure(failure)
                return str(getattr(error, "message", error))
        await asyncio.sleep(0.2)
    raise AssertionError(f"{activity_type} of {code} never failed")
