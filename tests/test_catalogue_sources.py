"""Every shipped procedure's code, name and deadline against the source file it was checked
with (domain/data/sources/procedures-2025.json, and the national portal's records in
dvcqg-procedures.jsonl that the generated entries were built from): what the sources confirm
must match, and what they do not is listed there as unverified."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from domain.catalogue import DATA_DIR, Catalogue, load_catalogue, read_import_file
from ops.portal_catalogue import (
    PortalRecord,
    build_from_portal,
    import_file,
    portal_deadline,
    procedure_from_portal,
    read_portal_records,
)
from schemas.catalogue import SameDayDeadline, WorkingDaysDeadline

SOURCE_FILE = DATA_DIR / "sources" / "procedures-2025.json"
PORTAL = "dvcqg-portal-pages"
PORTAL_FILE = DATA_DIR / "sources" / "dvcqg-procedures.jsonl"
PORTAL_PAGE = "https://dichvucong.gov.vn/dich-vu-cong-truc-tuyen/"
PORTAL_KEYS = (
    "code",
    "name",
    "domain",
    "executing_agency",
    "agency_levels",
    "state",
    "processing_time_text",
    "methods",
    "online_processing",
    "fees",
    "documents",
    "legal_basis",
    "has_online_submission",
    "portal_url",
    "read_offset",
)
CHECKED = ("name", "deadline")
# The shipped catalogue's size, and how many of its entries have code, name and deadline
# confirmed by a source.
SHIPPED_AT_LEAST = 150
VERIFIED_AT_LEAST = 150


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SOURCE_FILE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="module")
def portal() -> dict[str, PortalRecord]:
    return {r.code: r for r in read_portal_records(PORTAL_FILE)}


def portal_facts(record: PortalRecord) -> dict[str, Any]:
    """What a portal record confirms, in the form of procedures-2025.json's records."""
    facts: dict[str, Any] = {"code": record.code, "name": record.name, "source": PORTAL}
    deadline = portal_deadline(record)
    if isinstance(deadline, WorkingDaysDeadline):
        facts |= {"deadline": deadline.model_dump(mode="json"), "deadline_source": PORTAL}
    return facts


def confirmed(source: dict[str, Any], portal: dict[str, PortalRecord]) -> dict[str, Any]:
    """Per code, what the sources confirm: the portal's record, and for the hand-entered codes
    the record of procedures-2025.json (which holds what the portal confirms of them too)."""
    facts = {code: portal_facts(record) for code, record in portal.items()}
    return facts | {r["code"]: r for r in source["procedures"]}


def portal_name(name: str) -> str:
    """A name as compared: no leading 'Thủ tục ', capital first (the portal adds it to some)."""
    name = name.removeprefix("Thủ tục ")
    return name[:1].upper() + name[1:]


def test_every_source_names_its_origin(source: dict[str, Any]) -> None:
    for key, entry in source["sources"].items():
        assert entry["origin"] and entry["what"], key
    for record in source["procedures"]:
        assert record["source"] in source["sources"], record["code"]
        if "deadline" in record:
            assert record["deadline_source"] in source["sources"], record["code"]


def test_shipped_codes_names_and_deadlines_match_the_sources(
    source: dict[str, Any], catalogue: Catalogue, portal: dict[str, PortalRecord]
) -> None:
    records = confirmed(source, portal)
    unverified: dict[str, list[str]] = source["unverified"]
    for code, procedure in catalogue.procedures.items():
        record = records.get(code, {})
        for attribute in CHECKED:
            if attribute not in record:
                assert attribute in unverified.get(code, []), f"{code}: {attribute} unchecked"
                continue
            assert attribute not in unverified.get(code, []), f"{code}: {attribute} both"
        if "name" in record:
            assert portal_name(procedure.name) == portal_name(record["name"]), code
        if "deadline" in record:
            expected = record["deadline"]
            if expected["kind"] == "same_day":
                assert isinstance(procedure.deadline, SameDayDeadline), code
            else:
                assert procedure.deadline == WorkingDaysDeadline(days=expected["days"]), code
    # Nothing listed for a code the catalogue no longer ships.
    assert set(unverified) <= set(catalogue.procedures)
    listed = {r["code"] for r in source["procedures"]}
    assert listed <= set(catalogue.procedures) | set(catalogue.retired)


def test_the_portal_file_is_what_its_origin_says(
    source: dict[str, Any], portal: dict[str, PortalRecord]
) -> None:
    origin = source["sources"][PORTAL]
    assert origin["file"] == PORTAL_FILE.name
    assert "a27ed4e2e5abaf9a3caba63cfff95120095829a1" in origin["origin"]
    assert "Database/staging/procedures.jsonl" in origin["origin"]
    lines = [json.loads(line) for line in PORTAL_FILE.read_text(encoding="utf-8").splitlines()]
    codes = [line["code"] for line in lines]
    assert codes == sorted(set(codes)) and len(portal) == len(lines)  # sorted, each code once
    for line in lines:
        assert tuple(line) == PORTAL_KEYS, line["code"]
        assert line["portal_url"] == PORTAL_PAGE + line["code"]


def test_hand_entered_codes_record_what_the_portal_confirms(
    source: dict[str, Any], catalogue: Catalogue, portal: dict[str, PortalRecord]
) -> None:
    """A code entered by hand keeps its entry; what the portal confirms of it is in its record,
    with the portal's key where the portal is the one source (not listed as unverified)."""
    records = {r["code"]: r for r in source["procedures"]}
    hand = set(records) | set(source["unverified"])
    for code in hand & set(portal):
        facts = portal_facts(portal[code])
        record = records.get(code)
        assert record is not None, f"{code}: the portal confirms its name"
        for attribute in CHECKED:
            if attribute not in facts:
                continue
            if attribute == "name":
                assert portal_name(record["name"]) == portal_name(facts["name"]), code
            else:
                assert record["deadline"] == facts["deadline"], code
                assert record["deadline_source"] == PORTAL, code


def test_generated_entries_are_what_the_builder_makes_of_their_records(
    source: dict[str, Any], catalogue: Catalogue, portal: dict[str, PortalRecord], tmp_path: Path
) -> None:
    """Every shipped entry not entered by hand was built from its portal record: rebuilding it
    gives the shipped entry, field for field, and the build passes an import's validation."""
    hand = {r["code"] for r in source["procedures"]} | set(source["unverified"])
    generated = [p for code, p in catalogue.procedures.items() if code not in hand]
    assert generated
    for procedure in generated:
        assert procedure.code in portal, f"{procedure.code}: no source record"
        assert procedure_from_portal(portal[procedure.code], catalogue.units) == procedure
    held = frozenset(hand) | frozenset(catalogue.retired)
    build = build_from_portal(portal.values(), catalogue.units, held)
    assert list(build.procedures) == sorted(generated, key=lambda p: p.code)
    path = tmp_path / "portal.json"
    path.write_text(import_file(build, PORTAL_FILE), encoding="utf-8")
    assert read_import_file(path, catalogue.units, catalogue.retired) == list(build.procedures)


def test_the_catalogue_is_large_and_mostly_verified(
    source: dict[str, Any], catalogue: Catalogue, portal: dict[str, PortalRecord]
) -> None:
    """Code, name and deadline from a source for most procedures; the rest listed unverified."""
    records = confirmed(source, portal)
    verified = {
        code
        for code in catalogue.procedures
        if all(attribute in records.get(code, {}) for attribute in CHECKED)
    }
    unverified = set(source["unverified"])
    assert verified | unverified == set(catalogue.procedures)
    assert len(catalogue.procedures) >= SHIPPED_AT_LEAST
    assert len(verified) >= VERIFIED_AT_LEAST
