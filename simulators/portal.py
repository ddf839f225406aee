"""National public-service portal (DVCQG): dossier status sync.

The real portal answers HTTP 200/400 with `{error_code, message}` instead of the usual error
shape, so this module validates the body itself rather than letting FastAPI answer 422.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, ConfigDict, Field, ValidationError, model_validator

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


AGENCY_CODE = r"^[0-9A-Z]{3}\.[0-9A-Z]{2}\.[0-9A-Z]{2}\.[A-Z][0-9]{2}$"  # Circular 10/2016


def _optional_portal_date(value: str) -> str:
    return value and _portal_date(value)


OptionalPortalDate = Annotated[str, AfterValidator(_optional_portal_date)]


class Part(Body):
    model_config = ConfigDict(extra="allow", frozen=True)


class SubmittedFile(Part):
    """TaiLieuNop: a document the applicant filed."""

    MaThanhPhanHoSo: str = Field(min_length=1)
    TenTepDinhKem: str = Field(min_length=1)


class FeeLine(Part):
    """DanhSachLePhi: a fee and whether it was paid."""

    TenPhiLePhi: str = Field(min_length=1)
    MaPhiLePhi: str = Field(min_length=1)
    Gia: int = Field(ge=0, strict=True)
    TrangThai: int = Field(ge=0, le=1, strict=True)


class SupplementLine(Part):
    """DanhSachHoSoBoSung: a return for a supplement."""

    HoSoBoSungId: int = Field(ge=1, strict=True)
    NguoiYeuCauBoSung: str = Field(min_length=1)
    NoiDungBoSung: str
    NgayBoSung: PortalDate
    NgayTiepNhanBoSung: OptionalPortalDate = ""
    TrangThaiBoSung: int = Field(ge=0, le=1, strict=True)


class ResultLine(Part):
    """DanhSachGiayToKetQua: a result document."""

    TenGiayTo: str = Field(min_length=1)
    GiayToId: str = Field(min_length=1)


class ProgressRow(Part):
    """QuaTrinhXuLy: one step of the processing."""

    MaHoSo: str = Field(min_length=1, max_length=64)
    NguoiXuLy: str = Field(min_length=1)
    ThoiDiemXuLy: PortalDate
    NoiDungXuLy: str = Field(min_length=1)
    TrangThai: int = Field(ge=1, le=10, strict=True)


class DossierSync(Body):
    """One dossier as DVCQG receives it; keys keep the portal's names."""

    # The portal accepts more keys (TrichYeuHoSo, DinhDanhCHS, ...); keep them, check these.
    model_config = ConfigDict(extra="allow", frozen=True)

    MaHoSo: str = Field(min_length=1, max_length=64)
    MaTTHC: str = Field(min_length=1, max_length=64)
    TrangThaiHoSo: int = Field(ge=1, le=10, strict=True)
    NgayTiepNhan: PortalDate
    NgayHenTra: PortalDate
    NgayTra: PortalDate | None = None
    NgayKetThucXuLy: PortalDate | None = None
    ThoiDiemXuLy: PortalDate | None = None
    # The unit by its agency code, not a local name.
    DonViXuLy: str = Field(pattern=AGENCY_CODE)
    ChuHoSo: str = Field(min_length=1, max_length=200)
    SoGiayToChuHoSo: str = Field(min_length=1, max_length=64)
    LoaiDoiTuong: int = Field(ge=1, le=4, strict=True)
    TaiLieuNop: list[SubmittedFile] = Field(min_length=1)
    DanhSachLePhi: list[FeeLine] = Field(default_factory=list)
    DanhSachHoSoBoSung: list[SupplementLine] = Field(default_factory=list)
    DanhSachGiayToKetQua: list[ResultLine] = Field(default_factory=list)
    QuaTrinhXuLy: list[ProgressRow] = Field(min_length=1)

    @model_validator(mode="after")
    def _progress_matches(self) -> DossierSync:
        last = self.QuaTrinhXuLy[-1]
        if last.TrangThai != self.TrangThaiHoSo:
            raise ValueError(
                f"QuaTrinhXuLy: the last row's TrangThai {last.TrangThai} is not the "
                f"dossier's TrangThaiHoSo {self.TrangThaiHoSo}"
            )
        if any(row.MaHoSo != self.MaHoSo for row in self.QuaTrinhXuLy):
            raise ValueError("QuaTrinhXuLy: every row's MaHoSo must be the dossier's")
        return self


class PortalReply(Reply):
    error_code: int
    message: str


class StatusesReply(Reply):
    code: str
    statuses: list[int]


class ProgressReply(Reply):
    code: str
    rows: list[ProgressRow]


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
    # Every progress row received per dossier, in order: one per step of the dossier.
    progress: dict[str, list[ProgressRow]] = {}

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
        progress.setdefault(dossier.MaHoSo, []).extend(dossier.QuaTrinhXuLy)
        state.record_effect("portal_receipt", receipt_key(dossier))
        return JSONResponse(PortalReply(error_code=0, message="ok").model_dump())

    @app.get("/_sim/dossiers/{code}/statuses", tags=["_sim"])
    async def dossier_statuses(code: str) -> StatusesReply:
        return StatusesReply(code=code, statuses=list(statuses.get(code, [])))

    @app.get("/_sim/dossiers/{code}/progress", tags=["_sim"])
    async def dossier_progress(code: str) -> ProgressReply:
        return ProgressReply(code=code, rows=list(progress.get(code, [])))

    @app.get("/_sim/dossiers/{code}", tags=["_sim"])
    async def dossier_latest(code: str) -> DossierSync:
        """The last body received for the dossier, extra keys included."""
        found = latest.get(code)
        if found is None:
            raise not_found(f"dossier {code}")
        return found

    return app
