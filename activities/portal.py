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


class PortalActivities:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http

    @activity.defn(name="sync_portal")
    async def sync_portal(self, sync: PortalSync) -> None:
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
        await call(
            self._http,
            self._settings.url("portal"),
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
