"""Submit a dossier, list a unit's dossiers, read one and its timeline."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from api.auth import Key, require_role, require_unit
from api.contract import ContractRoute
from api.deps import ApiContext, Context, DossierCode, ask, visible_dossier
from api.problems import problem_responses
from schemas.dossier import DossierSubmission, DossierView, TimelineEntry
from schemas.formats import (
    CURSOR_MAX_LENGTH,
    CURSOR_PATTERN,
    PROCEDURE_CODE_PATTERN,
    UNIT_CODE_MAX_LENGTH,
    UNIT_CODE_PATTERN,
)
from schemas.formats import (
    DossierCode as Code,
)
from schemas.statuses import DossierStatus, Role
from services import dossiers
from services.dossiers import IdempotencyKey, Receipt
from store import views
from store.db import engine_for
from store.tables import idempotency_keys

router = APIRouter(prefix="/v1", tags=["dossiers"], route_class=ContractRoute)


class Timeline(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: Code
    entries: list[TimelineEntry]


@router.post(
    "/dossiers",
    status_code=201,
    response_model=Receipt,
    summary="File a dossier (idempotent per Idempotency-Key)",
    responses={
        200: {
            "model": Receipt,
            "description": "A retry with the same Idempotency-Key and body: the first answer",
        },
        **problem_responses(400, 401, 403, 409, 413, 422, 503),
    },
)
async def submit_dossier(
    submission: DossierSubmission,
    key: Key,
    ctx: Context,
    idempotency_key: Annotated[
        str,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            description="Chosen by the caller, one per dossier: a retry with the same key and "
            "body returns the first answer and never files a second dossier",
        ),
    ],
) -> JSONResponse:
    require_role(key, Role.COUNTER_OFFICER.value, "Authorization")
    require_unit(key, submission.receiving_unit, "receiving_unit")
    # The digest of the validated model, not of the bytes: whitespace and key order in the
    # client's JSON must not turn a retry into a conflict.
    digest = hashlib.sha256(submission.model_dump_json().encode()).hexdigest()
    # One request per key at a time in this process, so exactly one of concurrent retries
    # answers 201; the database claim keeps them to one dossier across processes.
    async with ctx.submissions.hold((key.system, idempotency_key)):
        replay = await _known_key(ctx, key.system, idempotency_key)
        receipt = await dossiers.submit(
            ctx.temporal,
            submission,
            ctx.catalogue,
            ctx.settings.database_url,
            idempotency=IdempotencyKey(system=key.system, key=idempotency_key, body_digest=digest),
        )
    return JSONResponse(
        receipt.model_dump(mode="json"),
        status_code=200 if replay else 201,
        headers={"Location": f"/v1/dossiers/{receipt.code}"},
    )


async def _known_key(ctx: ApiContext, system: str, key: str) -> bool:
    statement = select(idempotency_keys.c.dossier_code).where(
        idempotency_keys.c.system == system, idempotency_keys.c.key == key
    )
    async with engine_for(ctx.settings.database_url).connect() as conn:
        return (await conn.execute(statement)).first() is not None


@router.get(
    "/dossiers",
    summary="Dossiers of the key's units, newest received first",
    responses=problem_responses(401, 403, 422, 503),
)
async def list_dossiers(
    key: Key,
    ctx: Context,
    unit: Annotated[
        str | None,
        Query(
            pattern=UNIT_CODE_PATTERN,
            max_length=UNIT_CODE_MAX_LENGTH,
            description="Receiving or competent unit (one of the key's); all of them if absent",
        ),
    ] = None,
    status: Annotated[DossierStatus | None, Query()] = None,
    procedure: Annotated[
        str | None, Query(pattern=PROCEDURE_CODE_PATTERN, max_length=16, description="TTHC code")
    ] = None,
    overdue: Annotated[bool | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN,
            max_length=CURSOR_MAX_LENGTH,
            description="`next_cursor` of the previous page",
        ),
    ] = None,
) -> views.DossierPage:
    if unit is not None:
        require_unit(key, unit, "unit")
    filters = views.DossierFilters(
        units=(unit,) if unit is not None else key.units,
        status=status,
        procedure=procedure,
        overdue=overdue,
    )
    async with engine_for(ctx.settings.database_url).connect() as conn:
        return await views.dossier_page(conn, filters, limit, cursor)


@router.get(
    "/dossiers/{code}",
    summary="A dossier's status, appointment and what it awaits",
    responses=problem_responses(401, 404, 422, 503),
)
async def get_dossier(code: DossierCode, key: Key, ctx: Context) -> DossierView:
    return await visible_dossier(ctx, key, code)


@router.get(
    "/dossiers/{code}/timeline",
    summary="Every step of a dossier, in order",
    responses=problem_responses(401, 404, 422, 503),
)
async def get_timeline(code: DossierCode, key: Key, ctx: Context) -> Timeline:
    await visible_dossier(ctx, key, code)
    entries = await ask(dossiers.timeline(ctx.temporal, ctx.settings.database_url, code))
    return Timeline(code=code, entries=entries)
