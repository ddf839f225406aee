"""Business registry: enterprises by enterprise code (mã số doanh nghiệp)."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Path

from simulators.common import create_sim_app, not_found
from simulators.seed import ENTERPRISE_CODE_PATTERN, SeedEnterprise, sample_enterprises


def create_app() -> FastAPI:
    app, _ = create_sim_app(
        "business",
        "Business registry simulator",
        "Stands in for the national business registration system.",
    )
    enterprises = {e.enterprise_code: e for e in sample_enterprises()}

    @app.get("/v1/enterprises/{enterprise_code}")
    async def get_enterprise(
        enterprise_code: Annotated[str, Path(pattern=ENTERPRISE_CODE_PATTERN)],
    ) -> SeedEnterprise:
        found = enterprises.get(enterprise_code)
        if found is None:
            raise not_found(f"enterprise {enterprise_code}")
        return found

    return app
