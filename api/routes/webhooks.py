"""Webhook subscriptions: where a unit's status changes are sent (the delivery, signed with
the subscription's secret, is a workflow activity)."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import AnyHttpUrl, AwareDatetime, BaseModel, ConfigDict, Field, UrlConstraints
from sqlalchemy import select

from api.auth import Key, require_unit
from api.contract import ContractRoute
from api.deps import Context
from api.problems import field_problem, problem_responses
from schemas.formats import UnitCode
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


@router.post(
    "",
    status_code=201,
    summary="Subscribe a URL to a unit's status changes",
    responses=problem_responses(401, 403, 413, 422, 503),
)
async def create_webhook(body: WebhookRequest, key: Key, ctx: Context) -> WebhookCreated:
    require_unit(key, body.unit, "unit")
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
    webhook_id: Annotated[str, Path(pattern=UUID_PATTERN, description="The subscription's id")],
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
