"""The outbox's drainer: portal syncs, notifications and webhooks, sent after the step that
caused them was recorded, outside any dossier's history.

At least once: a message is marked delivered only after its destination said so. In order
per dossier and destination: only the oldest undelivered message of each is ever claimed.
Retries back off, and attempts, the last error and the next attempt are kept in the row, so
a restarted drainer carries on where the last one stopped; a claim is a lease, so several
drainers share the work without sending one row twice at once. The portal's rate limit is
kept by a token bucket shared by this drainer's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.exceptions import ApplicationError
from temporalio.runtime import Runtime

from activities.http import REGISTRY_REJECTED, idempotency_key
from activities.notify import send_notification
from activities.portal import send_sync
from activities.webhooks import post_event, undelivered_reason
from codec.payload import load_keys
from config import Settings
from schemas.exchanges import Notification, PortalSync
from store import outbox as store
from store.db import engine_for, writing
from store.tables import webhook_subscriptions
from workflows.policies import WEBHOOK_WINDOW

log = logging.getLogger(__name__)


class Backoff(BaseModel):
    """The wait before the next attempt: doubling from `first` up to `longest`."""

    model_config = ConfigDict(frozen=True)

    first: timedelta = timedelta(seconds=1)
    longest: timedelta = timedelta(minutes=5)

    def after(self, attempts: int) -> timedelta:
        return min(self.longest, self.first * (1 << min(30, max(0, attempts - 1))))


class TokenBucket:
    """At most `rate` calls a second on average, bursts of up to one second's worth."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = rate
        self._at = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
                self._at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)


class Attempt(BaseModel):
    """How one delivery attempt ended."""

    model_config = ConfigDict(frozen=True)

    delivered: bool
    status_code: int | None = None
    error: str | None = None
    refused: bool = False  # the destination refused the message itself


class OutboxDrainer:
    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient,
        *,
        runtime: Runtime | None = None,
        batch: int = 100,
        idle_poll: float = 0.5,
        lease: timedelta = timedelta(seconds=90),
        backoff: Backoff | None = None,
        webhook_window: timedelta = WEBHOOK_WINDOW,
    ) -> None:
        self._settings = settings
        self._http = http
        self._runtime = runtime
        self._batch = batch
        self._idle_poll = idle_poll
        # Longer than any one call's answer window with its connection: a lease only runs
        # out under a drainer that died.
        self._lease = lease
        self._backoff = backoff or Backoff()
        self._webhook_window = webhook_window
        self._seal = store.Seal(load_keys(data_dir=settings.data_dir))
        self._portal_rate = TokenBucket(settings.registry_rate_limits["portal"])
        self._name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._gauges_at = 0.0
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Drain until `stop()`; a database that is away is waited for, not fatal. A pass
        under way finishes first, so no claimed row waits out its lease."""
        self._stopping.clear()
        while not self._stopping.is_set():
            try:
                sent = await self.drain_once()
            except Exception:
                log.exception("outbox: drain pass failed; trying again")
                sent = 0
            await self._report()
            if not sent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._idle_poll)

    def stop(self) -> None:
        self._stopping.set()

    async def drain_once(self) -> int:
        """One pass: claim what is due, send it, record how each went. Returns how many
        messages were attempted."""
        now = datetime.now(UTC)
        token = f"{self._name}:{uuid.uuid4().hex[:8]}"
        async with writing(self._settings.database_url) as conn:
            messages = await store.claim(conn, token, now, self._lease, self._batch)
        if not messages:
            return 0
        targets = await self._webhook_targets(messages)
        attempts = await asyncio.gather(*(self._try(m, targets) for m in messages))
        # One transaction for the pass's outcomes: on SQLite, one turn at the write lock.
        async with writing(self._settings.database_url) as conn:
            for message, attempt in zip(messages, attempts, strict=True):
                await self._record(conn, message, attempt)
        return len(messages)

    async def _webhook_targets(
        self, messages: list[store.OutboxMessage]
    ) -> dict[str, tuple[str, str]]:
        ids = {m.subscription_id for m in messages if m.subscription_id}
        if not ids:
            return {}
        w = webhook_subscriptions.c
        async with engine_for(self._settings.database_url).connect() as conn:
            # A subscription stopped since its events were written gets no more of them.
            rows = await conn.execute(select(w.id, w.url, w.secret).where(w.id.in_(ids), w.active))
            return {row.id: (row.url, row.secret) for row in rows}

    async def _try(
        self, message: store.OutboxMessage, targets: dict[str, tuple[str, str]]
    ) -> Attempt:
        try:
            return await self._attempt(message, targets)
        except Exception as err:  # a bug in one message must not stop the others
            log.exception("outbox: message %s", message.message_key)
            return Attempt(delivered=False, error=f"{type(err).__name__}: {err}")

    async def _record(
        self, conn: AsyncConnection, message: store.OutboxMessage, attempt: Attempt
    ) -> None:
        if attempt.delivered:
            await store.delivered(conn, message.id, attempt.status_code or 0)
            return
        now = datetime.now(UTC)
        if attempt.refused:
            state = store.MessageState.REFUSED
        elif (
            message.kind is store.MessageKind.WEBHOOK
            and now - message.created_at > self._webhook_window
        ):
            # A receiver down for the whole window: given up, redeliverable by its owner.
            state = store.MessageState.FAILED
        else:
            state = store.MessageState.PENDING
        await store.not_delivered(
            conn,
            message.id,
            attempt.error or "not delivered",
            attempt.status_code,
            state=state,
            next_attempt_at=now + self._backoff.after(message.attempts + 1),
        )

    async def _attempt(
        self, message: store.OutboxMessage, targets: dict[str, tuple[str, str]]
    ) -> Attempt:
        if message.kind is store.MessageKind.WEBHOOK:
            target = targets.get(message.subscription_id or "")
            if target is None:
                return Attempt(delivered=False, refused=True, error="subscription stopped")
            url, secret = target
            try:
                response = await post_event(self._http, url, secret, store.webhook_event(message))
            except httpx.TransportError as err:
                return Attempt(delivered=False, error=undelivered_reason(url, err))
            if 200 <= response.status_code < 300:
                return Attempt(delivered=True, status_code=response.status_code)
            return Attempt(
                delivered=False,
                status_code=response.status_code,
                error=f"{url}: {response.status_code}",
            )
        try:
            if message.kind is store.MessageKind.PORTAL_SYNC:
                await self._portal_rate.take()
                sync = PortalSync.model_validate_json(self._seal.open(message.payload))
                response = await send_sync(self._http, self._settings, sync)
            else:
                response = await send_notification(
                    self._http,
                    self._settings,
                    Notification.model_validate_json(self._seal.open(message.payload)),
                    idempotency_key("notification", message.message_key),
                )
        except ApplicationError as err:
            refused = err.type == REGISTRY_REJECTED
            status = err.details[0] if refused and err.details else None
            return Attempt(
                delivered=False,
                refused=refused,
                error=err.message,
                status_code=status if isinstance(status, int) else None,
            )
        return Attempt(delivered=True, status_code=response.status_code)

    async def _report(self) -> None:
        """The backlog as gauges, at most every few seconds."""
        if time.monotonic() - self._gauges_at < 5:
            return
        self._gauges_at = time.monotonic()
        with contextlib.suppress(Exception):
            async with engine_for(self._settings.database_url).connect() as conn:
                waiting = await store.backlog(conn)
            meter = (self._runtime or Runtime.default()).metric_meter
            meter.create_gauge(
                "dossier_outbox_pending",
                "Portal syncs, notifications and webhooks written and not delivered yet",
            ).set(waiting.pending)
            lag = (
                0
                if waiting.oldest_created_at is None
                else int((datetime.now(UTC) - waiting.oldest_created_at).total_seconds())
            )
            meter.create_gauge(
                "dossier_outbox_lag_seconds",
                "Time the oldest undelivered outbox message has waited",
                "s",
            ).set(max(0, lag))
