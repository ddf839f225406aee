"""Status changes reach the integrators' webhooks through the outbox: at least once, signed,
in order per dossier with their sequence; a receiver that is down holds no dossier and gets
every event when it is back, and a restarted drainer carries on."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from temporalio.client import WorkflowExecutionStatus

from schemas.actions import Action, HandOver
from schemas.statuses import Role, Stage
from simulators.process import free_ports
from simulators.seed import sample_civil_packages
from store import outbox
from store.db import engine_for, writing
from store.tables import webhook_subscriptions
from tests.conftest import EngineStack, session_drainer
from tests.driver import (
    act,
    officer,
    portal_statuses,
    result,
    sent_out,
    submission,
    submit,
    view,
)
from tests.test_lifecycle import approve_through

BIRTH = "1.001193"


@dataclass
class Receiver:
    url: str
    up: bool = False
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    refused: int = 0


@pytest.fixture
async def receiver(stack: EngineStack) -> AsyncIterator[Receiver]:
    [port] = free_ports(1)
    state = Receiver(url=f"http://127.0.0.1:{port}/hook")
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        if not state.up:
            state.refused += 1
            return Response(status_code=503)
        state.received.append((dict(request.headers), await request.body()))
        return Response(status_code=204)

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.02)
    yield state
    server.should_exit = True
    await task
    # Gone with the test: later tests' dossiers are not sent to it.
    async with writing(stack.settings.database_url) as conn:
        await conn.execute(
            webhook_subscriptions.update()
            .where(webhook_subscriptions.c.url == state.url)
            .values(active=False)
        )


async def subscribe(stack: EngineStack, unit: str, url: str) -> str:
    secret = uuid.uuid4().hex
    async with writing(stack.settings.database_url) as conn:
        await conn.execute(
            webhook_subscriptions.insert().values(
                id=str(uuid.uuid4()),
                system="test-integrator",
                unit=unit,
                url=url,
                secret=secret,
                created_at=datetime.now(UTC),
                active=True,
            )
        )
    return secret


def events_by_dossier(
    receiver: Receiver, secret: str
) -> tuple[dict[str, list[dict[str, object]]], Counter[str]]:
    """What the receiver took, per dossier in arrival order, each signature checked, and how
    many times each event id came."""
    per_dossier: dict[str, list[dict[str, object]]] = {}
    seen: Counter[str] = Counter()
    for headers, body in receiver.received:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-webhook-signature"], expected)
        event = json.loads(body)
        assert headers["x-webhook-event-id"] == event["event_id"]
        assert headers["x-webhook-sequence"] == str(event["sequence"])
        seen[event["event_id"]] += 1
        per_dossier.setdefault(event["dossier_code"], []).append(event)
    return per_dossier, seen


async def webhooks_sent(stack: EngineStack, codes: list[str], timeout: float = 120) -> None:
    for code in codes:
        await sent_out(stack, code, (outbox.MessageKind.WEBHOOK,), timeout=timeout)


async def test_a_receiver_down_for_twenty_dossiers_holds_none_and_gets_every_event_in_order(
    stack: EngineStack, receiver: Receiver
) -> None:
    secret = await subscribe(stack, "tuong-mai", receiver.url)
    packages = sample_civil_packages()

    async def one(index: int) -> str:
        citizen = 60 + index
        code = await submit(
            stack,
            submission(
                BIRTH,
                "tuong-mai",
                citizen=citizen,
                subject_reference=packages[citizen].package_id,
            ),
        )
        await approve_through(stack, code, "tuong-mai")
        await act(
            stack,
            code,
            Action.HAND_OVER,
            HandOver(officer=officer(Role.COUNTER_OFFICER, "tuong-mai")),
        )
        await result(stack, code, timeout=120)
        return code

    codes = await asyncio.gather(*(one(i) for i in range(20)))

    # The receiver was down the whole time: every dossier's workflow completed all the same.
    for code in codes:
        described = await stack.client.get_workflow_handle(code).describe()
        assert described.status is WorkflowExecutionStatus.COMPLETED, code
        assert (await view(stack, code)).stage is Stage.CLOSED
    assert receiver.refused > 0 and not receiver.received

    receiver.up = True
    await webhooks_sent(stack, codes)

    per_dossier, seen = events_by_dossier(receiver, secret)
    assert set(per_dossier) == set(codes)
    assert all(count == 1 for count in seen.values()), seen.most_common(3)
    for code in codes:
        events = per_dossier[code]
        sequences = [int(str(e["sequence"])) for e in events]
        assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences), code
        assert [e["status"] for e in events] == [
            "received",
            "in_processing",
            "result_ready",
            "returned",
        ]


async def test_a_restarted_drainer_carries_on_where_the_last_one_stopped(
    stack: EngineStack, receiver: Receiver
) -> None:
    """Attempts, the last error and the next attempt live in the outbox: a new drainer (a
    worker restarted) picks them up, and what was delivered is not sent again."""
    secret = await subscribe(stack, "tuong-mai", receiver.url)
    package = sample_civil_packages()[59].package_id
    code = await submit(
        stack, submission(BIRTH, "tuong-mai", citizen=59, subject_reference=package)
    )
    # The first status change fails against the receiver, and the drainer stops.
    await until(lambda: receiver.refused > 0)
    await stack.stop_drainer()
    async with engine_for(stack.settings.database_url).connect() as conn:
        failing = await outbox.undelivered(conn, datetime.now(UTC), timedelta(0))
    [first] = [m for m in failing if m.dossier_code == code]
    assert first.attempts >= 1 and first.last_error and "503" in first.last_error

    # With no drainer, the dossier goes on and closes; nothing leaves.
    await approve_through(stack, code, "tuong-mai")
    await act(
        stack, code, Action.HAND_OVER, HandOver(officer=officer(Role.COUNTER_OFFICER, "tuong-mai"))
    )
    handle = stack.client.get_workflow_handle(code)
    await asyncio.wait_for(handle.result(), 60)
    portal_before = len(portal_statuses(stack, code))
    async with engine_for(stack.settings.database_url).connect() as conn:
        assert await outbox.pending_of(conn, code) > 0

    receiver.up = True
    assert stack.http is not None
    stack.start_drainer(session_drainer(stack, stack.http))
    await sent_out(stack, code, tuple(outbox.MessageKind))
    per_dossier, seen = events_by_dossier(receiver, secret)
    assert all(count == 1 for count in seen.values())
    assert [e["status"] for e in per_dossier[code]] == [
        "received",
        "in_processing",
        "result_ready",
        "returned",
    ]
    assert len(portal_statuses(stack, code)) > portal_before
    assert portal_statuses(stack, code)[-1] == 10


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
