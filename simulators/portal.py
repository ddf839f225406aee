"""National public-service portal (DVCQG): dossier status sync.

The real portal answers HTTP 200/400 with `{error_code, message}` instead of the usual error
shape, so this module validates the body itself rather than letting FastAPI answer 422.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, ConfigDict, Field, ValidationError

from simulators.common import (
    Body,
    Reply,
    create_sim_app,
    describe_validation_errors,
    not_found,
)

PORTAL_DATE_FORMAT = "%Y%m%d%H%M%S"  # yyyyMMddHHmmss, local time


def _portal_date(value: str) -> str:
    if len(value) != 14 or not value.isdigit():
        raise ValueError(f"must be yyyyMMddHHmmss (14 digits), got {value!r}")
    try:
        datetime.strptime(value, PORTAL_DATE_FORMAT)
    except ValueError:
        raise ValueError(f"is not a real date and time: {value!r}") from None
    return value


PortalDate = Annotated[str, AfterValidator(_portal_date)]


class DossierSync(Body):
    """One dossier as DVCQG receives it; keys keep the portal's names."""

    # The portal accepts many more keys (ChuHoSo, TaiLieuNop, ...); keep them, check these.
    model_config = ConfigDict(extra="allow", frozen=True)

    MaHoSo: str = Field(min_length=1, max_length=64)
    MaTTHC: str = Field(min_length=1, max_length=64)
    TrangThaiHoSo: int = Field(ge=1, le=10, strict=True)
    NgayTiepNhan: PortalDate
    NgayHenTra: PortalDate
    NgayTra: PortalDate | None = None
    NgayKetThucXuLy: PortalDate | None = None
    ThoiDiemXuLy: PortalDate | None = None


class PortalReply(Reply):
    error_code: int
    message: str


class StatusesReply(Reply):
    code: str
    statuses: list[int]


def receipt_key(dossier: DossierSync) -> str:
    """One receipt per dossier, status and processing time: a status the dossier reaches
    twice (in processing again after the fees) is two receipts, a resent sync is not."""
    key = f"{dossier.MaHoSo}/{dossier.TrangThaiHoSo}"
    return f"{key}/{dossier.ThoiDiemXuLy}" if dossier.ThoiDiemXuLy else key


def _portal_error(message: str) -> JSONResponse:
    return JSONResponse(PortalReply(error_code=1, message=message).model_dump(), status_code=400)


def create_app() -> FastAPI:
    app, state = create_sim_app(
        "portal",
        "National portal (DVCQG) simulator",
        "Stands in for the national public-service portal's dossier sync.",
    )
    # Every status received per dossier, in order (a resent status shows up twice).
    statuses: dict[str, list[int]] = {}
    latest: dict[str, DossierSync] = {}

    @app.post(
        "/v1/dossiers/sync",
        response_model=PortalReply,
        responses={400: {"model": PortalReply, "description": "error_code 1: bad dossier"}},
        # The body is validated by hand (for the 400 shape); still document it.
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": DossierSync.model_json_schema()}},
            }
        },
    )
    async def sync(request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            dossier = DossierSync.model_validate_json(raw)
        except ValidationError as exc:
            return _portal_error(describe_validation_errors(exc.errors()))
        statuses.setdefault(dossier.MaHoSo, []).append(dossier.TrangThaiHoSo)
        latest[dossier.MaHoSo] = dossier
        state.record_effect("portal_receipt", receipt_key(dossier))
        return JSONResponse(PortalReply(error_code=0, message="ok").model_dump())

    @app.get("/_sim/dossiers/{code}/statuses", tags=["_sim"])
    async def dossier_statuses(code: str) -> StatusesReply:
        return StatusesReply(code=code, statuses=list(statuses.get(code, [])))

    @app.get("/_sim/dossiers/{code}", tags=["_sim"])
    async def dossier_latest(code: str) -> DossierSync:
        """The last body received for the dossier, extra keys included."""
        found = latest.get(code)
        if found is None:
            raise not_found(f"dossier {code}")
        return found

    return app
