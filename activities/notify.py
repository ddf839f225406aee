"""Telling citizens and officers, and sending results by post."""

from __future__ import annotations

import httpx
from temporalio import activity

from activities.http import Endpoint, call, idempotency_key
from config import Settings
from schemas.exchanges import Notification, PostOrder, PostReceipt

NOTIFY = Endpoint(
    service="notification service", method="POST", path="/v1/notifications", answer_seconds=10
)
# VNPost books the parcel and its pick-up before it answers.
ORDER_POST = Endpoint(
    service="post service", method="POST", path="/v1/post/orders", answer_seconds=15
)


async def send_notification(
    http: httpx.AsyncClient, settings: Settings, notification: Notification, key: str
) -> httpx.Response:
    """One notice; `key` names it (the step that sent it), so a retry is not a second SMS."""
    return await call(
        http,
        settings.url("notify"),
        NOTIFY,
        json=notification.model_dump(mode="json"),
        idempotency_key=key,
    )


class NotifyActivities:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http

    @activity.defn(name="notify")
    async def notify(self, notification: Notification) -> None:
        # A notice is the one its dossier's run scheduled at that point: the same text sent
        # again later (a second supplement request) is another notice, a retry is not.
        info = activity.info()
        assert info.workflow_id is not None and info.workflow_run_id is not None
        await send_notification(
            self._http,
            self._settings,
            notification,
            idempotency_key(
                "notification", info.workflow_id, info.workflow_run_id, info.activity_id
            ),
        )

    @activity.defn(name="send_by_post")
    async def send_by_post(self, order: PostOrder) -> PostReceipt:
        response = await call(
            self._http,
            self._settings.url("notify"),
            ORDER_POST,
            json=order.model_dump(mode="json"),
            # One parcel per dossier and item.
            idempotency_key=idempotency_key("post", order.dossier_code, order.item),
        )
        return PostReceipt(tracking_number=str(response.json()["tracking_number"]))
