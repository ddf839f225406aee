"""Which unit decides a dossier, and on which lane it is processed.

Decree 118/2025 art. 4: dossiers are taken regardless of administrative boundary inside the
province, so the receiving unit may differ from the competent one. City-tier procedures go
up to their department and the result comes back to the counter that received it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from domain import lanes
from schemas.catalogue import Procedure, Tier, Unit, UnitKind


class RoutingError(ValueError):
    """A submission names a unit that cannot decide this procedure."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class Route(BaseModel):
    model_config = ConfigDict(frozen=True)

    lane: str  # the task queue of the processing child workflow
    tier: Tier
    competent_unit: str
    cross_unit: bool  # received at one unit, decided at another (liên thông / phi địa giới)


def competent_unit_code(procedure: Procedure, receiving_unit: Unit, requested: str | None) -> str:
    """The unit that decides, before it is looked up in the catalogue."""
    if procedure.tier is Tier.CITY:
        assert procedure.competent_department is not None  # enforced by the catalogue
        if requested is not None and requested != procedure.competent_department:
            raise RoutingError(
                "competent_unit",
                f"procedure {procedure.code} is decided by {procedure.competent_department}",
            )
        return procedure.competent_department
    if procedure.certification:
        # Decree 23/2015 art. 5: any commune-level People's Committee certifies; the one
        # that takes the request does it the same day.
        if requested is not None and requested != receiving_unit.code:
            raise RoutingError(
                "competent_unit", "certification is done by the unit that receives the request"
            )
        return receiving_unit.code
    return requested or receiving_unit.code


def check_receiving_unit(procedure: Procedure, receiving_unit: Unit) -> None:
    """Where a dossier of this procedure may be filed.

    Ward and commune counters take every procedure (Decree 118/2025: regardless of boundary).
    The city's Public Administration Service Centre and its branches are the counters of the
    city-tier procedures (QĐ 63/2024/QĐ-UBND; the 12 branches kept for the departments'
    procedures after 1-7-2025, CV 3590/SNV-SBN); ward-tier ones are received by the wards.
    A department is not a counter.
    """
    if receiving_unit.kind is UnitKind.CITY_DEPARTMENT:
        raise RoutingError(
            "receiving_unit",
            f"{receiving_unit.code} is a city department; dossiers are received at ward and "
            "commune counters and at the city's service centre",
        )
    if receiving_unit.kind is UnitKind.CITY_SERVICE_CENTRE and procedure.tier is not Tier.CITY:
        raise RoutingError(
            "receiving_unit",
            f"{receiving_unit.code} is a counter of the city's service centre, which receives "
            f"city-tier procedures; {procedure.code} is ward tier and is received at a ward or "
            "commune counter",
        )


def route(procedure: Procedure, receiving_unit: Unit, competent_unit: Unit) -> Route:
    check_receiving_unit(procedure, receiving_unit)
    if procedure.tier is Tier.CITY:
        if competent_unit.kind is not UnitKind.CITY_DEPARTMENT:
            raise RoutingError("competent_unit", "a city-tier procedure is decided by a department")
        lane = lanes.CITY_PROCESSING
    else:
        if competent_unit.kind is UnitKind.CITY_DEPARTMENT:
            raise RoutingError(
                "competent_unit", "a ward-tier procedure is decided by a ward or commune"
            )
        lane = lanes.CERTIFICATION if procedure.certification else lanes.WARD_PROCESSING
    return Route(
        lane=lane,
        tier=procedure.tier,
        competent_unit=competent_unit.code,
        cross_unit=competent_unit.code != receiving_unit.code,
    )
