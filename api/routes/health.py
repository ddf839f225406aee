"""Liveness and readiness, for the load balancer and the orchestrator."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from api.contract import ContractRoute
from api.deps import Context
from api.problems import FieldError, ProblemError, problem_responses
from store.db import engine_for

router = APIRouter(tags=["health"], route_class=ContractRoute)

# Readiness must answer quickly even when a dependency hangs: the probe has its own timeout.
CHECK_TIMEOUT = timedelta(seconds=2)


class Health(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Literal["ready"] = "ready"
    temporal: Literal["ok"] = "ok"
    database: Literal["ok"] = "ok"


@router.get("/healthz", summary="The process is up")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    summary="Temporal and the database answer",
    responses=problem_responses(503),
)
async def readyz(ctx: Context) -> Readiness:
    failures: list[FieldError] = []
    try:
        await ctx.temporal.workflow_service.get_system_info(
            GetSystemInfoRequest(), timeout=CHECK_TIMEOUT
        )
    except Exception as err:  # any failure means "not ready", whatever its kind
        failures.append(
            FieldError(field="temporal", rule=f"does not answer ({type(err).__name__})")
        )
    try:
        async with asyncio.timeout(CHECK_TIMEOUT.total_seconds()):
            async with engine_for(ctx.settings.database_url).connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as err:
        failures.append(
            FieldError(field="database", rule=f"does not answer ({type(err).__name__})")
        )
    if failures:
        detail = "not ready: " + ", ".join(f"{f.field} {f.rule}" for f in failures)
        raise ProblemError(503, "not-ready", detail, failures)
    return Readiness()
