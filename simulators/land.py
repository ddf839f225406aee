"""Land registry (VBDLIS-like): parcels by id."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Path

from simulators.common import create_sim_app, not_found
from simulators.seed import PARCEL_ID_PATTERN, SeedParcel, sample_parcels


def create_app() -> FastAPI:
    app, _ = create_sim_app(
        "land", "Land registry simulator", "Stands in for the land information system."
    )
    parcels = {p.parcel_id: p for p in sample_parcels()}

    @app.get("/v1/parcels/{parcel_id}")
    async def get_parcel(
        parcel_id: Annotated[str, Path(pattern=PARCEL_ID_PATTERN)],
    ) -> SeedParcel:
        found = parcels.get(parcel_id)
        if found is None:
            raise not_found(f"parcel {parcel_id}")
        return found

    return app
