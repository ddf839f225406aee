"""The sample dossiers the demo, `make run` and the benchmark file: a mix that crosses every
lane, each with an applicant and a subject the registry simulators know."""

from __future__ import annotations

import json

from domain.catalogue import Catalogue
from schemas.catalogue import Procedure, Registry, Tier
from schemas.dossier import (
    DOCUMENT_TITLE_MAX,
    Applicant,
    DossierSubmission,
    IntakeChannel,
    SubmittedDocument,
)
from simulators.seed import (
    SeedCitizen,
    sample_citizens,
    sample_civil_packages,
    sample_enterprises,
    sample_parcels,
)


def demo_procedures(catalogue: Catalogue) -> list[Procedure]:
    """A mix that crosses every lane: ward-tier, city-tier and certification, in turn."""
    ward = [p for p in catalogue.procedures.values() if p.tier is Tier.WARD and not p.certification]
    city = [p for p in catalogue.procedures.values() if p.tier is Tier.CITY]
    cert = [p for p in catalogue.procedures.values() if p.certification]
    mix: list[Procedure] = []
    for i in range(max(len(ward), len(city), len(cert))):
        for group in (ward, cert, city):
            mix.append(group[i % len(group)])
    return mix


def applicant_of(citizen: SeedCitizen) -> Applicant:
    """A seeded citizen as the applicant of a dossier."""
    return Applicant(
        citizen_id=citizen.citizen_id,
        full_name=citizen.full_name,
        date_of_birth=citizen.date_of_birth,
        phone=citizen.phone,
        address=citizen.address,
    )


def sample_submission(index: int, catalogue: Catalogue) -> DossierSubmission:
    procedure = demo_procedures(catalogue)[index % len(demo_procedures(catalogue))]
    wards = catalogue.wards()
    receiving = wards[index % len(wards)]
    citizen = sample_citizens()[index % len(sample_citizens())]
    reference: str | None = None
    if Registry.LAND in procedure.registries:
        reference = sample_parcels()[index % len(sample_parcels())].parcel_id
    elif Registry.BUSINESS in procedure.registries:
        reference = sample_enterprises()[index % len(sample_enterprises())].enterprise_code
    elif Registry.CIVIL_STATUS in procedure.registries:
        reference = sample_civil_packages()[index % len(sample_civil_packages())].package_id
    competent = None
    if procedure.tier is Tier.WARD and not procedure.certification and index % 4 == 1:
        # Location-free intake: filed at one ward, decided by the ward of residence.
        competent = wards[(index + 7) % len(wards)].code
    channels = procedure.delivery_channels
    return DossierSubmission(
        procedure_code=procedure.code,
        receiving_unit=receiving.code,
        competent_unit=competent,
        intake_channel=IntakeChannel.ONLINE if index % 7 == 3 else IntakeChannel.COUNTER,
        delivery_channel=channels[index % len(channels)],
        applicant=applicant_of(citizen),
        documents=[
            SubmittedDocument(kind=d.kind, title=document_title(d.name), pages=1 + (index + n) % 3)
            for n, d in enumerate(procedure.required_documents)
        ],
        subject_reference=reference,
        copies=1 + index % 2 if procedure.certification else 1,
    )


def document_title(name: str) -> str:
    """The title a counter gives a document: the catalogue's name, cut to what a submission
    holds (some portal names carry whole notes)."""
    if len(name) <= DOCUMENT_TITLE_MAX:
        return name
    return name[: DOCUMENT_TITLE_MAX - 1].rstrip() + "…"


def samples_json(count: int, catalogue: Catalogue) -> str:
    """The first `count` sample submissions as a JSON list: `starter.py samples`."""
    return json.dumps(
        [
            sample_submission(i, catalogue).model_dump(mode="json", exclude_none=True)
            for i in range(count)
        ],
        ensure_ascii=False,
        indent=2,
    )
