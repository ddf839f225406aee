"""Status changes pushed to the integrators' webhooks: at least once, signed, retried.

Each delivery is a POST of the event as JSON with `X-Webhook-Event-Id` (receivers drop
duplicates by it), `X-Webhook-Sequence` (the step's position in the dossier's log: a receiver
sees them increase per dossier) and `X-Webhook-Signature: sha256=<hex>`, the HMAC-SHA256 of
the exact body under the subscription's secret. The outbox's drainer sends them; the activity
below is what dossiers opened before the outbox still schedule (subscriptions that answered
2xx are recorded, so a retry only goes to those that did not).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import Row, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.http import CONNECT_SECONDS
from config import Settings
from schemas.exchanges import WebhookEvent
from store.db import engine_for, writing
from store.tables import webhook_deliveries, webhook_subscriptions

WEBHOOK_UNDELIVERED = "WebhookUndelivered"
# A receiver only has to store the event and say so.
ANSWER_SECONDS = 10.0


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post_event(
    http: httpx.AsyncClient, url: str, secret: str, event: WebhookEvent
) -> httpx.Response:
    """One POST of the event to one receiver; transport errors and timeouts propagate."""
    body = event.model_dump_json().encode()
    return await http.post(
        url,
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Webhook-Event-Id": event.event_id,
            "X-Webhook-Sequence": str(event.sequence),
            "X-Webhook-Signature": signature(secret, body),
        },
        timeout=httpx.Timeout(ANSWER_SECONDS, connect=CONNECT_SECONDS),
    )


def undelivered_reason(url: str, err: httpx.TransportError) -> str:
    if isinstance(err, httpx.TimeoutException):
        return f"{url}: no answer within {ANSWER_SECONDS:g} s"
    return f"{url}: {type(err).__name__}"


class WebhookActivities:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http

    @activity.defn(name="deliver_webhooks")
    async def deliver_webhooks(self, event: WebhookEvent) -> int:
        """Returns how many subscriptions received the event in this attempt."""
        url = self._settings.database_url
        units = {event.receiving_unit, event.competent_unit}
        async with engine_for(url).connect() as conn:
            subscriptions = (
                await conn.execute(
                    select(webhook_subscriptions).where(
                        webhook_subscriptions.c.unit.in_(units), webhook_subscriptions.c.active
                    )
                )
            ).all()
            done = {
                row.subscription_id
                for row in await conn.execute(
                    select(webhook_deliveries.c.subscription_id).where(
                        webhook_deliveries.c.event_id == event.event_id
                    )
                )
            }
        pending = [s for s in subscriptions if s.id not in done]
        # All at once: one slow receiver must not use up the others' window.
        outcomes = await asyncio.gather(*(self._deliver(s, event) for s in pending))
        failures = [outcome for outcome in outcomes if outcome is not None]
        if failures:
            # Retried with backoff by Temporal; only the subscriptions still missing get it.
            raise ApplicationError(
                f"{event.event_id}: not delivered to {'; '.join(failures)}",
                type=WEBHOOK_UNDELIVERED,
            )
        return len(pending)

    async def _deliver(self, subscription: Row[Any], event: WebhookEvent) -> str | None:
        """None once the receiver took the event (and that is recorded), else why not."""
        try:
            response = await post_event(self._http, subscription.url, subscription.secret, event)
        except httpx.TransportError as err:
            return undelivered_reason(subscription.url, err)
        if not 200 <= response.status_code < 300:
            return f"{subscription.url}: {response.status_code}"
        async with writing(self._settings.database_url) as write:
            await write.execute(
                webhook_deliveries.insert().values(
                    event_id=event.event_id,
                    subscription_id=subscription.id,
                    delivered_at=datetime.now(UTC),
                    status_code=response.status_code,
                )
            )
        return None
