"""Status sync to the national public-service portal (DVCQG)."""

from __future__ import annotations

from datetime import datetime

import httpx
from temporalio import activity

from activities.http import call
from config import Settings
from domain.calendar import HANOI
from schemas.exchanges import PortalSync


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
            "national portal",
            "POST",
            f"{self._settings.url('portal')}/v1/dossiers/sync",
            json=body,
        )
