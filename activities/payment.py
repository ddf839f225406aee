"""Fees through the portal's payment platform; its checksum is verified before trusting it."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.http import REGISTRY_REJECTED, Endpoint, call, idempotency_key
from config import Settings
from schemas.exchanges import FeeReceipt, FeeRequest

# The platform answers once the bank or wallet has; gateways allow it tens of seconds.
PAY = Endpoint(service="payment platform", method="POST", path="/v1/payments", answer_seconds=20)


class PaymentActivities:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http

    @activity.defn(name="collect_fee")
    async def collect_fee(self, request: FeeRequest) -> FeeReceipt:
        # One fee per dossier: the request id is fixed per dossier, so a retry never charges
        # twice.
        request_id = idempotency_key("fee", request.dossier_code)
        response = await call(
            self._http,
            self._settings.url("payment"),
            PAY,
            json={
                "request_id": request_id,
                "dossier_code": request.dossier_code,
                "amount_vnd": request.amount_vnd,
                "payer_citizen_id": request.payer_citizen_id,
                "description": request.description,
            },
            idempotency_key=request_id,
        )
        body = response.json()
        message = (
            f"{body['payment_id']}|{body['dossier_code']}|{body['amount_vnd']}|{body['status']}"
        )
        expected = hmac.new(
            self._settings.payment_checksum_secret.encode(), message.encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, str(body["checksum"])):
            raise ApplicationError(
                f"payment {body['payment_id']}: checksum does not match the message",
                type=REGISTRY_REJECTED,
                non_retryable=True,
            )
        if body["status"] != "paid" or int(body["amount_vnd"]) != request.amount_vnd:
            raise ApplicationError(
                f"payment {body['payment_id']}: status {body['status']}, "
                f"amount {body['amount_vnd']} for {request.amount_vnd} requested",
                type=REGISTRY_REJECTED,
                non_retryable=True,
            )
        return FeeReceipt(
            payment_id=str(body["payment_id"]),
            amount_vnd=int(body["amount_vnd"]),
            paid_at=datetime.fromisoformat(str(body["paid_at"])),
        )
