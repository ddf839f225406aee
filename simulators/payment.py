"""The portal's payment platform: fee payments with an HMAC checksum over the result.

The checksum lets the engine prove the confirmation came from the platform: hex
HMAC-SHA256, key `PAYMENT_CHECKSUM_SECRET` (default "dev-payment-secret"), over
`f"{payment_id}|{dossier_code}|{amount_vnd}|{status}"` in UTF-8.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Annotated, Literal

from fastapi import FastAPI, Path
from pydantic import Field

from config import load_settings
from simulators.common import ApiError, Body, CitizenId, Reply, create_sim_app, not_found, now_vn


class PaymentRequest(Body):
    request_id: str = Field(min_length=1, max_length=100)
    dossier_code: str = Field(min_length=1, max_length=64)
    # Whole đồng, strictly an integer: a float amount is a bug in the caller.
    amount_vnd: int = Field(gt=0, le=10_000_000_000, strict=True)
    payer_citizen_id: CitizenId
    description: str = Field(default="", max_length=500)


class PaymentReply(Reply):
    payment_id: str
    request_id: str
    dossier_code: str
    amount_vnd: int
    status: Literal["paid"]
    paid_at: datetime
    checksum: str


def payment_checksum(
    secret: str, payment_id: str, dossier_code: str, amount_vnd: int, status: str
) -> str:
    message = f"{payment_id}|{dossier_code}|{amount_vnd}|{status}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def create_app() -> FastAPI:
    app, state = create_sim_app(
        "payment",
        "Payment platform simulator",
        "Stands in for the national portal's fee-payment platform.",
    )
    secret = load_settings().payment_checksum_secret
    by_request: dict[str, tuple[PaymentRequest, PaymentReply]] = {}
    by_id: dict[str, PaymentReply] = {}

    @app.post("/v1/payments")
    async def pay(body: PaymentRequest) -> PaymentReply:
        # Idempotent on request_id: an engine retry after a lost reply must not charge twice.
        earlier = by_request.get(body.request_id)
        if earlier is not None:
            first, reply = earlier
            if first != body:
                raise ApiError(
                    409, "conflict", f"request_id {body.request_id} was used for another payment"
                )
            return reply
        paid_at = now_vn()
        payment_id = f"PAY{paid_at:%Y%m%d}{len(by_id) + 1:08d}"
        checksum = payment_checksum(secret, payment_id, body.dossier_code, body.amount_vnd, "paid")
        reply = PaymentReply(
            payment_id=payment_id,
            request_id=body.request_id,
            dossier_code=body.dossier_code,
            amount_vnd=body.amount_vnd,
            status="paid",
            paid_at=paid_at,
            checksum=checksum,
        )
        by_request[body.request_id] = (body, reply)
        by_id[payment_id] = reply
        state.record_effect("payment", body.dossier_code)
        return reply

    @app.get("/v1/payments/{payment_id}")
    async def get_payment(payment_id: Annotated[str, Path(max_length=64)]) -> PaymentReply:
        found = by_id.get(payment_id)
        if found is None:
            raise not_found(f"payment {payment_id}")
        return found

    return app
