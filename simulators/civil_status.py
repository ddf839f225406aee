"""Civil-status registry (hộ tịch): inter-agency birth/death/marriage packages.

Packages are pulled by id with a bearer token, then acknowledged so the sender stops
offering them. The token is `CIVIL_STATUS_TOKEN` (default "dev-civil-status-token"), the
same variable the engine's settings read.
"""

from __future__ import annotations

import hmac
from datetime import date
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Header, Path

from config import load_settings
from simulators.common import ApiError, Reply, create_sim_app, not_found
from simulators.seed import PACKAGE_ID_PATTERN, SeedCivilPackage, sample_civil_packages

PackageId = Annotated[str, Path(pattern=PACKAGE_ID_PATTERN)]


class PackageReply(Reply):
    package_id: str
    kind: Literal["birth", "death", "marriage"]
    subject_citizen_id: str
    registered_on: date
    acknowledged: bool


class AckReply(Reply):
    package_id: str
    acknowledged: bool


def create_app() -> FastAPI:
    app, _ = create_sim_app(
        "civil_status",
        "Civil-status registry simulator",
        "Stands in for the civil-status database's inter-agency packages.",
    )
    token = load_settings().civil_status_token
    packages: dict[str, SeedCivilPackage] = {p.package_id: p for p in sample_civil_packages()}
    acknowledged: set[str] = set()

    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        scheme, _, given = (authorization or "").partition(" ")
        # Constant-time compare: the real service guards personal data with this token.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
            raise ApiError(401, "unauthorized", "missing or wrong bearer token")

    def lookup(package_id: str) -> SeedCivilPackage:
        found = packages.get(package_id)
        if found is None:
            raise not_found(f"package {package_id}")
        return found

    @app.get("/v1/packages/{package_id}", dependencies=[Depends(require_token)])
    async def get_package(package_id: PackageId) -> PackageReply:
        package = lookup(package_id)
        return PackageReply(**package.model_dump(), acknowledged=package.package_id in acknowledged)

    @app.post("/v1/packages/{package_id}/ack", dependencies=[Depends(require_token)])
    async def ack(package_id: PackageId) -> AckReply:
        lookup(package_id)
        acknowledged.add(package_id)  # a set: acknowledging twice is harmless
        return AckReply(package_id=package_id, acknowledged=True)

    return app
