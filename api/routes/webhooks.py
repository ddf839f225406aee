"""Webhook subscriptions: where a unit's status changes are sent (signed with the
subscription's secret, through the outbox: at least once, in order per dossier), what was
delivered to each, and sending a range of events again."""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import secrets
import socket
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import (
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    UrlConstraints,
    model_validator,
)
from sqlalchemy import select

from api.auth import Key, require_unit
from api.contract import ContractRoute
from api.deps import Context
from api.problems import field_problem, problem_responses
from schemas.formats import UnitCode
from store import outbox
from store.audit import append_operator_event
from store.db import engine_for, writing
from store.tables import webhook_subscriptions

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=ContractRoute)

SECRET_BYTES = 32
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
WebhookUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)]


class WebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: UnitCode = Field(description="One of the key's units")
    url: WebhookUrl = Field(description="http(s) URL that receives the POSTs")


class Webhook(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    unit: str
    url: str
    created_at: AwareDatetime


class WebhookCreated(Webhook):
    secret: str = Field(
        description="HMAC-SHA256 key of the `X-Webhook-Signature` header; shown only now"
    )


class WebhookList(BaseModel):
    model_config = ConfigDict(frozen=True)

    items: list[Webhook]


class Delivery(BaseModel):
    """One event for the subscription and how its delivery went."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    dossier_code: str
    sequence: int = Field(description="The step's position in the dossier's log")
    status: str = Field(description="The dossier's status the event tells")
    event_at: AwareDatetime
    state: outbox.MessageState
    attempts: int
    last_error: str | None
    status_code: int | None = Field(description="The receiver's last answer")
    next_attempt_at: AwareDatetime | None = Field(description="While pending")
    delivered_at: AwareDatetime | None


class DeliveryPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    items: list[Delivery]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )


class RedeliveryRequest(BaseModel):
    """Which events to send again: a dossier, a range of its sequence numbers, a time range,
    or several of these together."""

    model_config = ConfigDict(extra="forbid")

    dossier_code: str | None = Field(default=None, max_length=40)
    from_sequence: int | None = Field(default=None, ge=1)
    to_sequence: int | None = Field(default=None, ge=1)
    since: AwareDatetime | None = Field(default=None, description="Events at or after")
    until: AwareDatetime | None = Field(default=None, description="Events at or before")

    @model_validator(mode="after")
    def _a_range(self) -> RedeliveryRequest:
        bounds = (self.dossier_code, self.from_sequence, self.to_sequence, self.since, self.until)
        if all(bound is None for bound in bounds):
            raise ValueError(
                "give dossier_code, from_sequence/to_sequence or since/until: "
                "redelivering everything at once is not a range"
            )
        if (
            self.from_sequence is not None
            and self.to_sequence is not None
            and self.from_sequence > self.to_sequence
        ):
            raise ValueError("from_sequence must not be after to_sequence")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("since must not be after until")
        return self


class Redelivery(BaseModel):
    model_config = ConfigDict(frozen=True)

    requeued: int = Field(description="Events queued again for the subscription")


class RedeliveryAudit(BaseModel):
    """What the dossier's audit chain records of a redelivery."""

    model_config = ConfigDict(frozen=True)

    subscription_id: str
    system: str
    scope: outbox.RedeliveryRange
    requeued: int


# --- where a webhook may point ------------------------------------------------------------------
async def refused_address(url: str, allowed: tuple[str, ...]) -> str | None:
    """Why the URL's host may not receive webhooks, or None. Every address the host resolves
    to must be public: a subscription must not make the engine call into its own network,
    a cloud metadata service (169.254.169.254) or itself."""
    host = (AnyHttpUrl(url).host or "").strip("[]").lower()
    if host in allowed:
        return None
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                host, None, proto=socket.IPPROTO_TCP
            )
        except OSError:
            return f"host {host} does not resolve"
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    for address in addresses:
        mapped = getattr(address, "ipv4_mapped", None)
        checked = mapped or address
        if not checked.is_global or checked.is_multicast:
            return (
                f"host {host} is {address}, a loopback, private, link-local or reserved "
                "address; webhooks go to public addresses unless the host is in "
                "WEBHOOK_ALLOWED_HOSTS"
            )
    return None


@router.post(
    "",
    status_code=201,
    summary="Subscribe a URL to a unit's status changes",
    responses=problem_responses(400, 401, 403, 413, 422, 503),
)
async def create_webhook(body: WebhookRequest, key: Key, ctx: Context) -> WebhookCreated:
    require_unit(key, body.unit, "unit")
    why = await refused_address(str(body.url), ctx.settings.webhook_allowed_hosts)
    if why is not None:
        raise field_problem(400, "webhook-address-refused", "url", why)
    created = WebhookCreated(
        id=str(uuid.uuid4()),
        unit=body.unit,
        url=str(body.url),
        created_at=datetime.now(UTC),
        secret=secrets.token_urlsafe(SECRET_BYTES),
    )
    async with writing(ctx.settings.database_url) as conn:
        await conn.execute(
            webhook_subscriptions.insert().values(
                system=key.system, active=True, **created.model_dump()
            )
        )
    return created


@router.get(
    "",
    summary="The key's subscriptions (without their secrets)",
    responses=problem_responses(401, 503),
)
async def list_webhooks(key: Key, ctx: Context) -> WebhookList:
    w = webhook_subscriptions.c
    statement = (
        select(w.id, w.unit, w.url, w.created_at)
        .where(w.system == key.system, w.active)
        .order_by(w.created_at, w.id)
    )
    async with engine_for(ctx.settings.database_url).connect() as conn:
        rows = (await conn.execute(statement)).all()
    return WebhookList(
        items=[
            Webhook(
                id=row.id,
                unit=row.unit,
                url=row.url,
                created_at=row.created_at,
            )
            for row in rows
        ]
    )


@router.delete(
    "/{webhook_id}",
    status_code=204,
    summary="Stop a subscription",
    responses=problem_responses(401, 404, 422, 503),
)
async def delete_webhook(
    webhook_id: WebhookId,
    key: Key,
    ctx: Context,
) -> Response:
    w = webhook_subscriptions.c
    async with writing(ctx.settings.database_url) as conn:
        # Deactivated, not deleted: the delivery log keeps pointing at it.
        result = await conn.execute(
            webhook_subscriptions.update()
            .where(w.id == webhook_id, w.system == key.system, w.active)
            .values(active=False)
        )
    if result.rowcount == 0:
        # Another system's subscription is as unknown as one that never existed.
        raise field_problem(404, "not-found", "id", f"no webhook {webhook_id}")
    return Response(status_code=204)


WebhookId = Annotated[str, Path(pattern=UUID_PATTERN, description="The subscription's id")]


async def _own_subscription(ctx: Context, key: Key, webhook_id: str) -> None:
    w = webhook_subscriptions.c
    async with engine_for(ctx.settings.database_url).connect() as conn:
        found = (
            await conn.execute(select(w.id).where(w.id == webhook_id, w.system == key.system))
        ).first()
    if found is None:
        raise field_problem(404, "not-found", "id", f"no webhook {webhook_id}")


def _cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def _after(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise field_problem(400, "bad-cursor", "cursor", "not a cursor this API issued") from None


@router.get(
    "/{webhook_id}/deliveries",
    summary="The subscription's events and how each delivery went, oldest first",
    responses=problem_responses(400, 401, 404, 422, 503),
)
async def list_deliveries(
    webhook_id: WebhookId,
    key: Key,
    ctx: Context,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=64, description="`next_cursor` of the previous page")
    ] = None,
) -> DeliveryPage:
    await _own_subscription(ctx, key, webhook_id)
    after = _after(cursor)
    async with engine_for(ctx.settings.database_url).connect() as conn:
        rows = await outbox.deliveries(conn, webhook_id, after, limit + 1)
    page = rows[:limit]
    items = []
    for row in page:
        event = outbox.webhook_event(row)
        items.append(
            Delivery(
                event_id=event.event_id,
                dossier_code=row.dossier_code,
                sequence=row.sequence,
                status=event.status,
                event_at=row.event_at,
                state=row.state,
                attempts=row.attempts,
                last_error=row.last_error,
                status_code=row.status_code,
                next_attempt_at=row.next_attempt_at
                if row.state is outbox.MessageState.PENDING
                else None,
                delivered_at=row.delivered_at,
            )
        )
    more = len(rows) > limit
    return DeliveryPage(items=items, next_cursor=_cursor(page[-1].id) if more and page else None)


@router.post(
    "/{webhook_id}/redeliver",
    status_code=202,
    summary="Send a range of the subscription's events again, in their order",
    responses=problem_responses(400, 401, 404, 422, 503),
)
async def redeliver(
    webhook_id: WebhookId, body: RedeliveryRequest, key: Key, ctx: Context
) -> Redelivery:
    await _own_subscription(ctx, key, webhook_id)
    scope = outbox.RedeliveryRange(**body.model_dump())
    async with writing(ctx.settings.database_url) as conn:
        codes = await outbox.redeliver(conn, webhook_id, scope, datetime.now(UTC))
        requeued = sum(codes.values())
        # Recorded in each dossier's audit chain: who had its events sent again, and which.
        for code, count in sorted(codes.items()):
            await append_operator_event(
                conn,
                code=code,
                event_type="webhook_redelivery",
                operator=f"api:{key.system}",
                payload=RedeliveryAudit(
                    subscription_id=webhook_id, system=key.system, scope=scope, requeued=count
                ),
            )
    return Redelivery(requeued=requeued)
