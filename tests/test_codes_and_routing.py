"""Dossier codes (national format, unique under concurrency) and routing rules."""

from __future__ import annotations

import asyncio
import os
from datetime import date, datetime
from pathlib import Path

import pytest

from domain.calendar import HANOI
from domain.catalogue import default_catalogue
from domain.codes import dossier_code, is_dossier_code, sequence_scope
from domain.routing import RoutingError, competent_unit_code, route
from schemas.catalogue import Tier
from schemas.dossier import Applicant, DossierSubmission, SubmittedDocument
from services.dossiers import FilingError, prepare_filing
from simulators.seed import sample_citizens
from store.sequences import next_value
from store.startup import prepare_database


def test_code_has_agency_receipt_day_and_daily_sequence() -> None:
    code = dossier_code("000.01.01.H26", date(2026, 2, 13), 7)
    assert code == "000.01.01.H26-260213-0007"
    assert is_dossier_code(code)
    with pytest.raises(ValueError, match=r"outside 1\.\.9999"):
        dossier_code("000.01.01.H26", date(2026, 2, 13), 10000)
    with pytest.raises(ValueError, match="Circular 10/2016"):
        dossier_code("HK", date(2026, 2, 13), 1)


@pytest.fixture(params=["sqlite", "configured"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/codes.db"
    else:
        url = os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path}/configured.db"
    await prepare_database(url)
    return url


async def test_concurrent_allocation_never_repeats_a_number(database_url: str) -> None:
    scope = sequence_scope("000.01.01.H26", date.today()) + f":{os.getpid()}:{id(database_url)}"
    values = await asyncio.gather(*(next_value(database_url, scope) for _ in range(200)))
    assert sorted(values) == list(range(1, 201))


def test_routing_sends_each_tier_to_its_lane() -> None:
    catalogue = default_catalogue()
    hoan_kiem = catalogue.unit("hoan-kiem")
    for procedure in catalogue.procedures.values():
        competent = catalogue.unit(competent_unit_code(procedure, hoan_kiem, None))
        lane = route(procedure, hoan_kiem, competent).lane
        if procedure.certification:
            assert lane == "certification" and competent == hoan_kiem
        elif procedure.tier is Tier.CITY:
            assert lane == "city-processing" and competent.code == procedure.competent_department
        else:
            assert lane == "ward-processing" and competent == hoan_kiem


def test_routing_refuses_units_that_cannot_decide() -> None:
    catalogue = default_catalogue()
    certification = catalogue.procedure("2.000815")
    with pytest.raises(RoutingError, match="certification is done by the unit that receives"):
        competent_unit_code(certification, catalogue.unit("hoan-kiem"), "ba-dinh")
    city = catalogue.procedure("2.001610")
    with pytest.raises(RoutingError, match="decided by so-tai-chinh"):
        competent_unit_code(city, catalogue.unit("hoan-kiem"), "ba-dinh")
    ward = catalogue.procedure("1.001193")
    with pytest.raises(RoutingError, match="decided by a ward or commune"):
        route(ward, catalogue.unit("hoan-kiem"), catalogue.unit("so-tai-chinh"))


def test_the_city_service_centre_receives_city_tier_procedures() -> None:
    catalogue = default_catalogue()
    branch = catalogue.unit("chi-nhanh-1")
    city = [p for p in catalogue.procedures.values() if p.tier is Tier.CITY]
    assert city
    for procedure in city:
        competent = catalogue.unit(competent_unit_code(procedure, branch, None))
        routed = route(procedure, branch, competent)
        assert routed.lane == "city-processing"
        assert routed.competent_unit == procedure.competent_department
        assert routed.cross_unit  # received at the branch, decided at the department


def test_the_city_service_centre_refuses_ward_tier_procedures() -> None:
    catalogue = default_catalogue()
    for code in ("trung-tam-phvhcc", "chi-nhanh-7"):
        counter = catalogue.unit(code)
        for procedure in catalogue.procedures.values():
            if procedure.tier is Tier.CITY:
                continue
            with pytest.raises(RoutingError) as refused:
                route(procedure, counter, counter)
            assert refused.value.field == "receiving_unit"
            assert "ward tier" in refused.value.rule and procedure.code in refused.value.rule


def test_a_department_is_not_a_counter() -> None:
    catalogue = default_catalogue()
    department = catalogue.unit("so-tai-chinh")
    with pytest.raises(RoutingError) as refused:
        route(catalogue.procedure("2.001610"), department, department)
    assert refused.value.field == "receiving_unit"
    assert "so-tai-chinh is a city department" in refused.value.rule


def submission(**changes: object) -> DossierSubmission:
    person = sample_citizens()[0]
    base = DossierSubmission(
        procedure_code="1.001193",
        receiving_unit="hoan-kiem",
        applicant=Applicant(
            citizen_id=person.citizen_id,
            full_name=person.full_name,
            date_of_birth=person.date_of_birth,
        ),
        documents=[SubmittedDocument(kind="birth_declaration", title="Tờ khai")],
    )
    return base.model_copy(update=changes)


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"procedure_code": "9.999999"}, "procedure_code", "unknown procedure"),
        ({"receiving_unit": "atlantis"}, "receiving_unit", "unknown unit"),
        ({"competent_unit": "so-tai-chinh"}, "competent_unit", "decided by a ward"),
        ({"receiving_unit": "chi-nhanh-2"}, "receiving_unit", "is ward tier"),
        (
            {"receiving_unit": "chi-nhanh-2", "competent_unit": "hoan-kiem"},
            "receiving_unit",
            "service centre",
        ),
        ({"receiving_unit": "so-tu-phap"}, "receiving_unit", "city department"),
        ({"received_at": datetime(2099, 1, 1, tzinfo=HANOI)}, "received_at", "future"),
        ({"received_at": datetime(2020, 1, 1, tzinfo=HANOI)}, "received_at", "within the last"),
    ],
)
def test_a_bad_submission_is_refused_naming_field_and_rule(
    changes: dict[str, object], field: str, rule: str
) -> None:
    with pytest.raises(FilingError) as refused:
        prepare_filing(submission(**changes), default_catalogue(), datetime.now(HANOI))
    assert refused.value.field == field
    assert rule in refused.value.rule.lower()


def test_a_city_tier_dossier_is_filed_at_a_branch_of_the_service_centre() -> None:
    catalogue = default_catalogue()
    filing = prepare_filing(
        submission(procedure_code="2.001610", receiving_unit="chi-nhanh-2"),
        catalogue,
        datetime.now(HANOI),
    )
    assert filing.receiving_unit.code == "chi-nhanh-2"
    assert filing.competent_unit.code == catalogue.procedure("2.001610").competent_department
