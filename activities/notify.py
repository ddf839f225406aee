"""Telling citizens and officers, and sending results by post."""

from __future__ import annotations

import httpx
from temporalio import activity

from activities.http import call
from config import Settings
from schemas.exchanges import Notification, PostOrder, PostReceipt


class NotifyActivities:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http

    @activity.defn(name="notify")
    async def notify(self, notification: Notification) -> None:
        await call(
            self._http,
            "notification service",
            "POST",
            f"{self._settings.url('notify')}/v1/notifications",
            json=notification.model_dump(mode="json"),
        )

    @activity.defn(name="send_by_post")
    async def send_by_post(self, order: PostOrder) -> PostReceipt:
        response = await call(
            self._http,
            "post service",
            "POST",
            f"{self._settings.url('notify')}/v1/post/orders",
            json=order.model_dump(mode="json"),
        )
        return PostReceipt(tracking_number=str(response.json()["tracking_number"]))
