"""Every shipped procedure's code, name and deadline against the source file it was checked
with (domain/data/sources/procedures-2025.json): what the sources confirm must match, and what
they do not is listed there as unverified."""

from __future__ import annotations

import json
from typing import Any

import pytest

from domain.catalogue import DATA_DIR, Catalogue, load_catalogue
from schemas.catalogue import SameDayDeadline, WorkingDaysDeadline

SOURCE_FILE = DATA_DIR / "sources" / "procedures-2025.json"
CHECKED = ("name", "deadline")


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SOURCE_FILE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


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
    source: dict[str, Any], catalogue: Catalogue
) -> None:
    records = {r["code"]: r for r in source["procedures"]}
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
    assert set(records) <= set(catalogue.procedures) | set(catalogue.retired)
