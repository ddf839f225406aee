"""A unit's inbox: its open tasks, the earliest due first (from the read model); and the surge
sharing of a ward's certification lane, which puts its certification tasks in its neighbours'
certifiers' inboxes while it is open."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.auth import Key, require_role, require_unit
from api.contract import ContractRoute
from api.deps import Context
from api.problems import problem_responses
from schemas.actions import SharingClosing, SharingOpening
from schemas.formats import UNIT_CODE_MAX_LENGTH, UNIT_CODE_PATTERN, DossierCode, UnitCode
from schemas.statuses import Action, Role
from services import sharing
from store import views
from store.db import engine_for

router = APIRouter(prefix="/v1", tags=["inbox"], route_class=ContractRoute)


class InboxTask(BaseModel):
    """An open task: the steps its role may take on the dossier, any one of them."""

    model_config = ConfigDict(frozen=True)

    id: int
    dossier_code: DossierCode
    actions: list[Action] = Field(
        min_length=1, description="The alternatives awaited (approve or refuse): any one"
    )
    action: str = Field(
        description="The same actions joined by '/' (`approve/refuse`); read `actions`",
        json_schema_extra={"deprecated": True},
    )
    unit: UnitCode
    role: Role
    since: AwareDatetime
    due_at: AwareDatetime | None
    claimed_by: str | None
    escalated_at: AwareDatetime | None = Field(
        default=None, description="When it went to the unit's leader, waiting past the threshold"
    )

    @classmethod
    def of(cls, task: views.TaskRecord) -> InboxTask:
        return cls.model_validate({**task.model_dump(), "actions": task.action.split("/")})


UnitPath = Annotated[
    str,
    Path(pattern=UNIT_CODE_PATTERN, max_length=UNIT_CODE_MAX_LENGTH, description="A unit code"),
]


class Inbox(BaseModel):
    model_config = ConfigDict(frozen=True)

    unit: UnitCode
    role: Role | None
    shared_from: list[UnitCode] = Field(
        default=[], description="Units whose certification tasks this one shares in a surge"
    )
    items: list[InboxTask]


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
        str,
        Query(
            pattern=UNIT_CODE_PATTERN,
            max_length=UNIT_CODE_MAX_LENGTH,
            description="One of the key's units",
        ),
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
    return Inbox(
        unit=unit, role=role, shared_from=shared_from, items=[InboxTask.of(row) for row in rows]
    )


class Sharings(BaseModel):
    model_config = ConfigDict(frozen=True)

    unit: UnitCode
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
