"""A unit's inbox: its open tasks, the earliest due first (from the read model); and the surge
sharing of a ward's certification lane, which puts its certification tasks in its neighbours'
certifiers' inboxes while it is open."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict

from api.auth import Key, require_role, require_unit
from api.deps import Context
from api.problems import problem_responses
from api.routes.dossiers import UNIT_PATTERN
from schemas.actions import SharingClosing, SharingOpening
from schemas.statuses import Role
from services import sharing
from store import views
from store.db import engine_for

router = APIRouter(prefix="/v1", tags=["inbox"])

UnitPath = Annotated[str, Path(pattern=UNIT_PATTERN, max_length=64, description="A unit code")]


class Inbox(BaseModel):
    model_config = ConfigDict(frozen=True)

    unit: str
    role: Role | None
    shared_from: list[str] = []
    items: list[views.TaskRecord]


@router.get(
    "/inbox",
    summary="A unit's open tasks, the earliest due first",
    description="With the certification tasks of the units sharing their certification with "
    "this one now (`shared_from`), when no role or the certifier's is asked.",
    responses=problem_responses(401, 403, 422, 503),
)
async def inbox(
    key: Key,
    ctx: Context,
    unit: Annotated[
        str, Query(pattern=UNIT_PATTERN, max_length=64, description="One of the key's units")
    ],
    role: Annotated[Role | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    escalated: Annotated[
        bool | None,
        Query(description="Only tasks escalated to the unit's leader (true) or not (false)"),
    ] = None,
) -> Inbox:
    require_unit(key, unit, "unit")
    database_url = ctx.settings.database_url
    shared_from: list[str] = []
    if role in (None, Role.CERTIFIER):
        shared_from = await sharing.shared_with(database_url, unit)
    async with engine_for(database_url).connect() as conn:
        rows = await views.inbox(
            conn,
            unit=unit,
            role=role.value if role else None,
            limit=limit,
            shared_from=shared_from,
            escalated=escalated,
        )
    return Inbox(unit=unit, role=role, shared_from=shared_from, items=rows)


class Sharings(BaseModel):
    model_config = ConfigDict(frozen=True)

    unit: str
    items: list[views.SharingRecord]


@router.post(
    "/units/{unit}/certification-sharing",
    summary="Open the unit's certification lane to neighbouring wards' certifiers",
    description=(SharingOpening.__doc__ or "").strip(),
    status_code=201,
    responses=problem_responses(401, 403, 422, 503),
)
async def open_sharing(unit: UnitPath, opening: SharingOpening, key: Key, ctx: Context) -> Sharings:
    require_unit(key, unit, "unit")
    require_role(key, opening.officer.role, "officer.role")
    records = await sharing.open_sharing(
        ctx.settings.database_url, ctx.catalogue, unit, opening, recorded_by=f"api:{key.system}"
    )
    return Sharings(unit=unit, items=records)


@router.post(
    "/units/{unit}/certification-sharing/close",
    summary="Close the sharing of the unit's certification lane",
    description=(SharingClosing.__doc__ or "").strip(),
    responses=problem_responses(401, 403, 409, 422, 503),
)
async def close_sharing(
    unit: UnitPath, closing: SharingClosing, key: Key, ctx: Context
) -> Sharings:
    require_unit(key, unit, "unit")
    require_role(key, closing.officer.role, "officer.role")
    records = await sharing.close_sharing(ctx.settings.database_url, unit, closing)
    return Sharings(unit=unit, items=records)


@router.get(
    "/units/{unit}/certification-sharing",
    summary="The unit's sharings of certification, given and received, newest first",
    responses=problem_responses(401, 403, 422, 503),
)
async def list_sharing(unit: UnitPath, key: Key, ctx: Context) -> Sharings:
    require_unit(key, unit, "unit")
    async with engine_for(ctx.settings.database_url).connect() as conn:
        return Sharings(unit=unit, items=await views.sharings(conn, unit=unit))
