"""The outbox on the real stack: a portal refusal kept with its reason and shown by
`ops stuck`, the drainers' leases, and the backlog's gauges."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from rich.console import Console
from sqlalchemy import select

from ops import stuck
from store import outbox
from store.db import engine_for, writing
from store.tables import outbox as outbox_table
from tests.conftest import EngineStack, session_drainer
from tests.driver import result, submission, submit

BIRTH = "1.001193"


async def messages_of(stack: EngineStack, code: str) -> list[outbox.OutboxMessage]:
    async with engine_for(stack.settings.database_url).connect() as conn:
        rows = await conn.execute(
            select(outbox_table).where(outbox_table.c.dossier_code == code).order_by("id")
        )
        return [outbox.OutboxMessage.model_validate(row._asdict()) for row in rows]


async def test_a_portal_refusal_is_kept_with_its_reason_and_shown_as_undelivered(
    stack: EngineStack,
) -> None:
    faults = f"{stack.simulators.url('portal')}/_sim/faults"
    httpx.post(faults, json={"fail_next": 1, "status": 400}).raise_for_status()
    code = await submit(stack, submission(BIRTH, "tay-tuu", citizen=52, full_name="Tên Không Khớp"))
    await result(stack, code)  # rejected at intake; its one sync refused, not retried

    [sync] = [m for m in await messages_of(stack, code) if m.kind is outbox.MessageKind.PORTAL_SYNC]
    assert sync.state is outbox.MessageState.REFUSED and sync.attempts == 1
    assert sync.status_code == 400 and sync.last_error
    assert "national portal refused" in sync.last_error
    assert sync.sequence >= 1
    # The applicant's data is not kept in clear.
    assert sync.payload.startswith(outbox.SEALED) and "Không Khớp" not in sync.payload

    async with engine_for(stack.settings.database_url).connect() as conn:
        rows = await stuck.undelivered(conn, datetime.now(UTC), stuck.UNDELIVERED_AFTER)
    [row] = [r for r in rows if r.code == code]
    assert row.kind is stuck.StuckKind.UNDELIVERED and row.activity == "portal"
    assert row.attempts == 1 and row.last_error and row.last_error.startswith("refused, step")

    # Narrow, like the rest of `ops stuck`: nothing wider than the operator's 80 columns.
    screen = io.StringIO()
    narrow = Console(file=screen, width=80, force_terminal=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stuck, "console", narrow)
        stuck.show_stuck([row], as_json=False)
    lines = screen.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any(code in line and "undelivered portal x1" in line for line in lines), lines
    assert any("refused" in line for line in lines)


async def test_two_drainers_never_hold_the_same_message_and_keep_each_queues_order(
    stack: EngineStack,
) -> None:
    await stack.stop_drainer()
    code = f"TEST-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    rows = [
        {
            "message_key": f"{code}:{destination}:{seq}",
            "dossier_code": code,
            "sequence": seq,
            "event_key": f"run:{seq}",
            "kind": outbox.MessageKind.NOTIFICATION.value,
            "destination": destination,
            "subscription_id": None,
            "payload": "{}",
            "state": outbox.MessageState.PENDING.value,
            "attempts": 0,
            "created_at": now,
            "event_at": now,
            "next_attempt_at": now,
        }
        for destination in ("notify", "elsewhere")
        for seq in (1, 2, 3)
    ]
    try:
        async with writing(stack.settings.database_url) as conn:
            await conn.execute(outbox_table.insert(), rows)

        async def claim(token: str) -> list[outbox.OutboxMessage]:
            async with writing(stack.settings.database_url) as conn:
                return await outbox.claim(conn, token, datetime.now(UTC), timedelta(minutes=1), 100)

        first, second = await asyncio.gather(claim("a"), claim("b"))
        mine = [m for m in first + second if m.dossier_code == code]
        # Only the head of each queue, each held by one drainer.
        assert sorted((m.destination, m.sequence) for m in mine) == [
            ("elsewhere", 1),
            ("notify", 1),
        ]
        assert len({m.id for m in mine}) == len(mine)
        # Leased: nobody else gets them, and the next of a queue waits for its head.
        assert not [m for m in await claim("c") if m.dossier_code == code]
        head = next(m for m in mine if m.destination == "notify")
        async with writing(stack.settings.database_url) as conn:
            await outbox.delivered(conn, head.id, 200)
        [after] = [m for m in await claim("d") if m.dossier_code == code]
        assert (after.destination, after.sequence) == ("notify", 2)
    finally:
        async with writing(stack.settings.database_url) as conn:
            await conn.execute(
                outbox_table.update()
                .where(outbox_table.c.dossier_code == code)
                .values(state=outbox.MessageState.DELIVERED.value)
            )
        assert stack.http is not None
        stack.start_drainer(session_drainer(stack, stack.http))


async def test_the_drainer_reports_the_backlog_as_gauges(stack: EngineStack) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as http:
        while True:
            text = (await http.get(stack.metrics_url)).text
            found = [
                line
                for line in text.splitlines()
                if line.startswith(("dossier_outbox_pending", "dossier_outbox_lag_seconds"))
            ]
            if len(found) >= 2:
                break
            assert time.monotonic() < deadline, "no outbox gauges"
            await asyncio.sleep(0.5)
    assert all(float(line.rsplit(" ", 1)[1]) >= 0 for line in found)
