"""A unit's inbox: its open tasks, the earliest due first (from the read model)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from api.auth import Key, require_unit
from api.deps import Context
from api.problems import problem_responses
from api.routes.dossiers import UNIT_PATTERN
from schemas.statuses import Role
from store import views
from store.db import engine_for

router = APIRouter(prefix="/v1", tags=["inbox"])


class Inbox(BaseModel):
    model_config = ConfigDict(frozen=True)

    unit: str
    role: Role | None
    items: list[views.TaskRecord]


@router.get(
    "/inbox",
    summary="A unit's open tasks, the earliest due first",
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
) -> Inbox:
    require_unit(key, unit, "unit")
    async with engine_for(ctx.settings.database_url).connect() as conn:
        rows = await views.inbox(conn, unit=unit, role=role.value if role else None, limit=limit)
    return Inbox(unit=unit, role=role, items=rows)
