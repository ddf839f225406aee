"""Notifications (SMS, e-mail, Zalo) and VNPost orders, via the provincial data-sharing
platform (LGSP). Nothing is delivered: what would have been sent is kept for inspection."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import FastAPI
from pydantic import Field

from simulators.common import Body, Reply, create_sim_app, now_vn


class NotificationRequest(Body):
    dossier_code: str = Field(min_length=1, max_length=64)
    recipient: str = Field(min_length=1, max_length=200)
    channel: Literal["sms", "email", "zalo"]
    template: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1, max_length=2000)


class NotificationReply(Reply):
    notification_id: str
    accepted: bool


class SentNotification(Reply):
    notification_id: str
    dossier_code: str
    recipient: str
    channel: Literal["sms", "email", "zalo"]
    template: str
    text: str
    sent_at: datetime


class PostOrderRequest(Body):
    dossier_code: str = Field(min_length=1, max_length=64)
    recipient_name: str = Field(min_length=1, max_length=200)
    address: str = Field(min_length=1, max_length=500)
    item: str = Field(min_length=1, max_length=200, description="What is sent, e.g. the result")


class PostOrderReply(Reply):
    tracking_number: str
    accepted: bool


class PostOrder(Reply):
    tracking_number: str
    dossier_code: str
    recipient_name: str
    address: str
    item: str
    ordered_at: datetime


def create_app() -> FastAPI:
    app, state = create_sim_app(
        "notify",
        "Notification and post simulator",
        "Stands in for SMS/e-mail/Zalo gateways and VNPost orders via the LGSP.",
    )
    sent: list[SentNotification] = []
    orders: dict[tuple[str, str], PostOrder] = {}

    @app.post("/v1/notifications")
    async def notify(body: NotificationRequest) -> NotificationReply:
        notification_id = f"NTF{len(sent) + 1:08d}"
        sent.append(
            SentNotification(notification_id=notification_id, sent_at=now_vn(), **body.model_dump())
        )
        state.record_effect("notification", f"{body.dossier_code}/{body.template}")
        return NotificationReply(notification_id=notification_id, accepted=True)

    @app.post("/v1/post/orders")
    async def post_order(body: PostOrderRequest) -> PostOrderReply:
        # One parcel per dossier and item: a retried order must not send the result twice.
        key = (body.dossier_code, body.item)
        order = orders.get(key)
        if order is None:
            order = PostOrder(
                tracking_number=f"EMS{len(orders) + 1:09d}VN",
                ordered_at=now_vn(),
                **body.model_dump(),
            )
            orders[key] = order
            state.record_effect("post_order", body.dossier_code)
        return PostOrderReply(tracking_number=order.tracking_number, accepted=True)

    @app.get("/_sim/notifications", tags=["_sim"])
    async def notifications(dossier_code: str | None = None) -> list[SentNotification]:
        return [n for n in sent if dossier_code is None or n.dossier_code == dossier_code]

    @app.get("/_sim/post/orders", tags=["_sim"])
    async def post_orders(dossier_code: str | None = None) -> list[PostOrder]:
        return [
            o for o in orders.values() if dossier_code is None or o.dossier_code == dossier_code
        ]

    return app
