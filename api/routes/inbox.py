"""A unit's inbox: its open tasks, the earliest due first (from the read model)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.auth import Key, require_unit
from api.contract import ContractRoute
from api.deps import Context
from api.problems import problem_responses
from schemas.formats import UNIT_CODE_MAX_LENGTH, UNIT_CODE_PATTERN, DossierCode, UnitCode
from schemas.statuses import Action, Role
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

    @classmethod
    def of(cls, task: views.TaskRecord) -> InboxTask:
        return cls.model_validate({**task.model_dump(), "actions": task.action.split("/")})


class Inbox(BaseModel):
    model_config = ConfigDict(frozen=True)

    unit: UnitCode
    role: Role | None
    items: list[InboxTask]


@router.get(
    "/inbox",
    summary="A unit's open tasks, the earliest due first",
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
) -> Inbox:
    require_unit(key, unit, "unit")
    async with engine_for(ctx.settings.database_url).connect() as conn:
        rows = await views.inbox(conn, unit=unit, role=role.value if role else None, limit=limit)
    return Inbox(unit=unit, role=role, items=[InboxTask.of(row) for row in rows])
