"""Population database (Cơ sở dữ liệu quốc gia về dân cư): identity checks by citizen ID."""

from __future__ import annotations

import unicodedata
from datetime import date
from typing import Annotated, Literal

from fastapi import FastAPI, Path
from pydantic import Field

from simulators.common import Body, CitizenId, Reply, create_sim_app, not_found
from simulators.seed import SeedCitizen, sample_citizens


class VerifyRequest(Body):
    request_id: str = Field(min_length=1, max_length=100)
    citizen_id: CitizenId
    full_name: str = Field(min_length=1, max_length=200)
    date_of_birth: date


class VerifyReply(Reply):
    request_id: str
    citizen_id: str
    matched: bool
    mismatches: list[Literal["full_name", "date_of_birth"]]


def normalise_name(name: str) -> str:
    """Compare names as officers do: NFC (portal input mixes composed and decomposed
    Vietnamese), case-insensitive, runs of whitespace as one space."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def create_app() -> FastAPI:
    app, state = create_sim_app(
        "population",
        "Population registry simulator",
        "Stands in for the national population database (identity verification).",
    )
    citizens: dict[str, SeedCitizen] = {c.citizen_id: c for c in sample_citizens()}

    def lookup(citizen_id: str) -> SeedCitizen:
        found = citizens.get(citizen_id)
        if found is None:
            raise not_found(f"citizen {citizen_id}")
        return found

    @app.post("/v1/citizens/verify")
    async def verify(body: VerifyRequest) -> VerifyReply:
        # Each check is a consultation of the national database, logged on its side.
        state.record_effect("identity_check", body.request_id)
        record = lookup(body.citizen_id)
        mismatches: list[Literal["full_name", "date_of_birth"]] = []
        if normalise_name(body.full_name) != normalise_name(record.full_name):
            mismatches.append("full_name")
        if body.date_of_birth != record.date_of_birth:
            mismatches.append("date_of_birth")
        return VerifyReply(
            request_id=body.request_id,
            citizen_id=body.citizen_id,
            matched=not mismatches,
            mismatches=mismatches,
        )

    @app.get("/v1/citizens/{citizen_id}")
    async def get_citizen(citizen_id: Annotated[CitizenId, Path()]) -> SeedCitizen:
        return lookup(citizen_id)

    return app
