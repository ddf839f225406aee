"""Status sync to the national public-service portal (DVCQG)."""

from __future__ import annotations

from datetime import datetime

import httpx
from temporalio import activity

from activities.http import Endpoint, call, idempotency_key
from config import Settings
from domain.calendar import HANOI
from schemas.exchanges import PortalSync

SYNC = Endpoint(
    service="national portal", method="POST", path="/v1/dossiers/sync", answer_seconds=15
)


def portal_time(value: datetime) -> str:
    """The portal's date format: yyyyMMddHHmmss, local time."""
    return value.astimezone(HANOI).strftime("%Y%m%d%H%M%S")


def _optional_time(value: datetime | None) -> str:
    return portal_time(value) if value is not None else ""


def portal_record(sync: PortalSync) -> dict[str, object]:
    """The dossier as the provincial one-stop systems send it to DVCQG (HoSoDongBoDVC and
    QuaTrinhXuLy of HuanVu201/DichVuCong_KhoaLuan_PASETO, SyncLocalDataToDVCQG): applicant,
    documents, fees and payment, supplements, results and one progress row per step."""
    return {
        "DonViXuLy": sync.agency_code,
        "NoiNopHoSo": sync.receiving_agency_code,
        "TenTTHC": sync.procedure_name,
        "TenLinhVuc": sync.procedure_field,
        "ChuHoSo": sync.applicant_name,
        "SoGiayToChuHoSo": sync.applicant_id,
        "LoaiDoiTuong": sync.applicant_type,
        "SoDienThoai": sync.applicant_phone or "",
        "Email": sync.applicant_email or "",
        "TaiLieuNop": [
            {
                "MaThanhPhanHoSo": d.kind,
                "TenTepDinhKem": d.title,
                "TepDinhKemId": d.sha256 or "",
            }
            for d in sync.documents
        ],
        "DanhSachLePhi": [
            {
                "TenPhiLePhi": f.name,
                "MaPhiLePhi": f.code,
                "Gia": f.amount_vnd,
                "TrangThai": 1 if f.paid else 0,
            }
            for f in sync.fees
        ],
        "DuocThanhToanTrucTuyen": 1 if any(f.paid for f in sync.fees) else 0,
        "DanhSachHoSoBoSung": [
            {
                "HoSoBoSungId": s.number,
                "NguoiYeuCauBoSung": s.requested_by,
                "NoiDungBoSung": s.content,
                "NgayBoSung": portal_time(s.requested_at),
                "NguoiTiepNhanBoSung": s.received_by or "",
                "NgayTiepNhanBoSung": _optional_time(s.received_at),
                "TrangThaiBoSung": 1 if s.received_at is not None else 0,
                "NgayHenTraTruoc": _optional_time(s.due_before),
                "NgayHenTraMoi": _optional_time(s.due_after),
            }
            for s in sync.supplements
        ],
        "DanhSachGiayToKetQua": [
            {"TenGiayTo": r.kind, "MaGiayToKetQua": r.kind, "GiayToId": r.sha256}
            for r in sync.results
        ],
        "QuaTrinhXuLy": [
            {
                "MaHoSo": sync.dossier_code,
                "NguoiXuLy": p.actor,
                "ThoiDiemXuLy": portal_time(p.at),
                "NoiDungXuLy": p.step,
                "TrangThai": p.status_code,
                "NgayKetThucTheoQuyDinh": _optional_time(p.due_at),
            }
            for p in sync.progress
        ],
    }


async def send_sync(
    http: httpx.AsyncClient, settings: Settings, sync: PortalSync
) -> httpx.Response:
    """One sync to the portal; a refusal raises non-retryable, an outage retryable (as
    activities/http.py says)."""
    body: dict[str, object] = {
        "MaHoSo": sync.dossier_code,
        "MaTTHC": sync.procedure_code,
        "TrangThaiHoSo": sync.status_code,
        "KenhThucHien": sync.intake_channel,
        "NgayTiepNhan": portal_time(sync.received_at),
        "NgayHenTra": portal_time(sync.due_at or sync.received_at),
        "DonViXuLy": sync.processing_unit,
        "NoiDungXuLy": sync.step,
        "NguoiXuLy": sync.actor,
        "ThoiDiemXuLy": portal_time(sync.at),
    }
    if sync.returned_at is not None:
        body["NgayTra"] = portal_time(sync.returned_at)
    if sync.agency_code:
        body.update(portal_record(sync))
    return await call(
        http,
        settings.url("portal"),
        SYNC,
        json=body,
        # One receipt per step of the dossier: its status, what was done and when (a
        # status reached twice, in processing again after the fees, is two steps).
        idempotency_key=idempotency_key(
            "portal",
            sync.dossier_code,
            str(sync.status_code),
            sync.step,
            sync.at.isoformat(),
        ),
    )


class PortalActivities:
    """The sync as an activity: dossiers opened before the outbox still schedule it."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http

    @activity.defn(name="sync_portal")
    async def sync_portal(self, sync: PortalSync) -> None:
        await send_sync(self._http, self._settings, sync)
