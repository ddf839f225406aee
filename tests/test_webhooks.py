"""Status changes reach the integrators' webhooks at least once, signed, and a receiver that
was down gets them when it is back, without holding the dossier."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from schemas.actions import Action, HandOver
from schemas.statuses import Role, Stage
from simulators.process import free_ports
from simulators.seed import sample_civil_packages
from store.db import writing
from store.tables import webhook_subscriptions
from tests.conftest import EngineStack
from tests.driver import act, officer, result, submission, submit, view
from tests.test_lifecycle import approve_through

BIRTH = "1.001193"


@dataclass
class Receiver:
    url: str
    up: bool = False
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    refused: int = 0


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
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


async def test_status_changes_are_signed_and_redelivered_after_the_receiver_was_down(
    stack: EngineStack, receiver: Receiver
) -> None:
    secret = await subscribe(stack, "tuong-mai", receiver.url)
    package = sample_civil_packages()[60].package_id
    code = await submit(
        stack, submission(BIRTH, "tuong-mai", citizen=60, subject_reference=package)
    )
    await approve_through(stack, code, "tuong-mai")
    await act(
        stack, code, Action.HAND_OVER, HandOver(officer=officer(Role.COUNTER_OFFICER, "tuong-mai"))
    )

    # The receiver was down the whole time: the dossier closed all the same.
    for _ in range(100):
        if (await view(stack, code)).stage is Stage.CLOSED:
            break
        await asyncio.sleep(0.1)
    assert (await view(stack, code)).stage is Stage.CLOSED
    assert receiver.refused > 0 and not receiver.received

    receiver.up = True
    await result(stack, code, timeout=120)  # the workflow ends once every change is delivered

    events = []
    for headers, body in receiver.received:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-webhook-signature"], expected)
        event = json.loads(body)
        assert headers["x-webhook-event-id"] == event["event_id"]
        events.append(event)
    statuses = [
        e["status"]
        for e in sorted({e["event_id"]: e for e in events}.values(), key=lambda e: e["at"])
    ]
    assert statuses == ["received", "in_processing", "result_ready", "returned"]
    assert all(e["dossier_code"] == code for e in events)
