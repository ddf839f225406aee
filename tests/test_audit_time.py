"""The audit log and the history tell the same time for every step, under load."""

from __future__ import annotations

import asyncio

from schemas.actions import Action, HandOver
from schemas.catalogue import DeliveryChannel
from schemas.statuses import Role
from simulators.seed import sample_civil_packages
from store import audit
from store.db import engine_for, writing
from store.tables import webhook_subscriptions
from tests.conftest import EngineStack
from tests.driver import act, officer, result, submission, submit, timeline
from tests.test_lifecycle import approve_through
from tests.test_webhooks import Receiver, receiver, subscribe

__all__ = ["receiver"]  # the fixture, for pytest

BIRTH = "1.001193"
UNITS = ("linh-nam", "vinh-hung", "dinh-cong")  # wards no other test subscribes
CHANNELS = (DeliveryChannel.COUNTER, DeliveryChannel.POST, DeliveryChannel.ONLINE)


async def through(stack: EngineStack, index: int) -> str:
    unit = UNITS[index % len(UNITS)]
    channel = CHANNELS[index % len(CHANNELS)]
    citizen = 72 + index
    package = sample_civil_packages()[citizen].package_id
    code = await submit(
        stack,
        submission(BIRTH, unit, citizen=citizen, subject_reference=package, delivery=channel),
    )
    await approve_through(stack, code, unit)
    if channel is DeliveryChannel.COUNTER:
        await act(
            stack, code, Action.HAND_OVER, HandOver(officer=officer(Role.COUNTER_OFFICER, unit))
        )
    await result(stack, code, timeout=120)
    return code


async def test_the_replayed_timeline_tells_the_times_of_the_audit_log_under_load(
    stack: EngineStack, receiver: Receiver
) -> None:
    """Many dossiers at once, read again and again by their officers, with webhooks: the
    read-model writes queue, and a workflow task that records a step is answered in two. A
    replay reads the workflow's clock at another point than the first run did; the timeline
    still holds the times the audit log wrote."""
    receiver.up = True
    for unit in UNITS:
        await subscribe(stack, unit, receiver.url)
    try:
        codes = await asyncio.gather(*(through(stack, index) for index in range(24)))
    finally:
        # The receiver goes with the test: later dossiers of these wards must not wait on it.
        async with writing(stack.settings.database_url) as conn:
            await conn.execute(
                webhook_subscriptions.update()
                .where(webhook_subscriptions.c.url == receiver.url)
                .values(active=False)
            )

    differences = []
    async with engine_for(stack.settings.database_url).connect() as conn:
        for code in codes:
            chain = await audit.events(conn, code)
            steps = await timeline(stack, code)  # closed: answered by a replay of its history
            assert len(chain) == len(steps)
            differences += [
                (code, event.seq, step.step, step.at - event.at)
                for event, step in zip(chain, steps, strict=True)
                if event.at != step.at
            ]
    assert differences == []
