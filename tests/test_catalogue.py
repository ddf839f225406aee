"""The shipped catalogue loads and holds together; broken copies fail with a precise message."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from domain.catalogue import (
    PROCEDURES_FILE,
    UNITS_FILE,
    Catalogue,
    CatalogueError,
    book_entry,
    book_scope,
    default_catalogue,
    fee_vnd,
    load_catalogue,
    missing_documents,
)
from schemas.catalogue import (
    CertificationBook,
    FlatFee,
    PerPageFee,
    Procedure,
    SameDayDeadline,
    SupplementRule,
    Tier,
    UnitKind,
    WorkingDaysDeadline,
)

Mutation = Callable[[list[dict[str, Any]]], None]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def _raw(path: Path, key: str) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    entries: list[dict[str, Any]] = data[key]
    return entries


def _broken(tmp_path: Path, key: str, mutate: Mutation) -> Path:
    """A copy of a shipped data file with `mutate` applied to its entries."""
    source = PROCEDURES_FILE if key == "procedures" else UNITS_FILE
    data = json.loads(source.read_text(encoding="utf-8"))
    mutate(data[key])
    path = tmp_path / source.name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _index_of(entries: list[dict[str, Any]], code: str) -> int:
    return next(i for i, e in enumerate(entries) if e["code"] == code)


# --- the shipped catalogue -------------------------------------------------------------------


def test_shipped_catalogue_loads_and_is_cached(catalogue: Catalogue) -> None:
    assert default_catalogue() is default_catalogue()
    assert default_catalogue().procedures.keys() == catalogue.procedures.keys()


def test_procedure_counts(catalogue: Catalogue) -> None:
    procedures = list(catalogue.procedures.values())
    tiers = Counter(p.tier for p in procedures)
    assert len(procedures) >= 28
    assert tiers[Tier.WARD] > 0 and tiers[Tier.CITY] > 0
    assert sum(p.certification for p in procedures) >= 5
    # Decree 61/2018 art. 19(4) everywhere unless the entry names the procedure's own text.
    for p in procedures:
        if p.supplement_text is None:
            assert p.supplement_rule is SupplementRule.RESTART, p.code
            assert (p.supplement_requests, p.supplement_window_days) == (1, 3), p.code


def test_codes_unique_in_the_files() -> None:
    procedure_codes = [e["code"] for e in _raw(PROCEDURES_FILE, "procedures")]
    units = _raw(UNITS_FILE, "units")
    assert len(procedure_codes) == len(set(procedure_codes))
    assert len({u["code"] for u in units}) == len(units)
    assert len({u["agency_code"] for u in units}) == len(units)


def test_city_tier_departments_exist(catalogue: Catalogue) -> None:
    for p in catalogue.procedures.values():
        if p.tier is Tier.CITY:
            assert p.competent_department is not None, p.code
            assert catalogue.unit(p.competent_department).kind is UnitKind.CITY_DEPARTMENT
            assert p.competent_unit_kind is UnitKind.CITY_DEPARTMENT
        else:
            assert p.competent_department is None, p.code


def test_units(catalogue: Catalogue) -> None:
    kinds = Counter(u.kind for u in catalogue.units.values())
    # Hanoi since 1-7-2025: 51 wards and 75 communes (NQ 1656/NQ-UBTVQH15).
    assert kinds[UnitKind.WARD] == 51
    assert kinds[UnitKind.COMMUNE] == 75
    assert len(catalogue.wards()) == 126
    assert {u.code for u in catalogue.departments()} >= {"so-tu-phap", "so-tai-chinh"}
    assert all(u.agency_code.endswith(".H26") for u in catalogue.units.values())
    assert catalogue.unit("hoan-kiem").name == "UBND phường Hoàn Kiếm"
    assert catalogue.unit("ha-dong").kind is UnitKind.WARD


def test_known_procedures(catalogue: Catalogue) -> None:
    birth = catalogue.procedure("1.001193")
    assert birth.tier is Tier.WARD and birth.fee is None
    copy = catalogue.procedure("2.000815")
    assert copy.certification and isinstance(copy.deadline, SameDayDeadline)
    assert isinstance(copy.fee, PerPageFee)
    city = catalogue.procedure("1.012644")
    assert isinstance(city.deadline, WorkingDaysDeadline) and city.deadline.days == 30
    land = catalogue.procedure("1.013978")
    assert isinstance(land.deadline, WorkingDaysDeadline) and land.deadline.days == 17


def test_certification_rules_hold(catalogue: Catalogue) -> None:
    for p in catalogue.procedures.values():
        if p.certification:
            assert p.tier is Tier.WARD
        if isinstance(p.deadline, SameDayDeadline):
            assert p.certification, p.code


def test_unknown_lookups_raise(catalogue: Catalogue) -> None:
    with pytest.raises(CatalogueError, match=r"unknown procedure code 9\.999999"):
        catalogue.procedure("9.999999")
    with pytest.raises(CatalogueError, match="unknown unit code nowhere"):
        catalogue.unit("nowhere")


def test_catalogue_is_read_only(catalogue: Catalogue) -> None:
    with pytest.raises(TypeError):
        catalogue.procedures["1.001193"] = catalogue.procedure("1.001193")  # type: ignore[index]


# --- broken copies -----------------------------------------------------------------------------


def _expect_error(tmp_path: Path, key: str, mutate: Mutation, *fragments: str) -> CatalogueError:
    path = _broken(tmp_path, key, mutate)
    with pytest.raises(CatalogueError) as info:
        if key == "procedures":
            load_catalogue(procedures_path=path)
        else:
            load_catalogue(units_path=path)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return info.value


def test_missing_field(tmp_path: Path) -> None:
    def drop_name(entries: list[dict[str, Any]]) -> None:
        del entries[3]["name"]

    code = _raw(PROCEDURES_FILE, "procedures")[3]["code"]
    error = _expect_error(
        tmp_path, "procedures", drop_name, f"procedures.json entry 3 ({code}): name: Field required"
    )
    assert (error.index, error.code, error.field) == (3, code, "name")


def test_bad_deadline(tmp_path: Path) -> None:
    index = _index_of(_raw(PROCEDURES_FILE, "procedures"), "1.001193")

    def zero_days(entries: list[dict[str, Any]]) -> None:
        entries[index]["deadline"] = {"kind": "working_days", "days": 0}

    _expect_error(
        tmp_path,
        "procedures",
        zero_days,
        f"procedures.json entry {index} (1.001193): deadline.days: ",
        "greater than or equal to 1",
    )


def test_same_day_deadline_outside_certification(tmp_path: Path) -> None:
    index = _index_of(_raw(PROCEDURES_FILE, "procedures"), "1.001193")

    def same_day(entries: list[dict[str, Any]]) -> None:
        entries[index]["deadline"] = {"kind": "same_day", "cutoff": "15:00:00"}

    _expect_error(tmp_path, "procedures", same_day, f"entry {index} (1.001193): deadline.kind")


def test_supplement_terms_other_than_the_decree_need_the_procedure_text(tmp_path: Path) -> None:
    index = _index_of(_raw(PROCEDURES_FILE, "procedures"), "1.013979")

    def pause(entries: list[dict[str, Any]]) -> None:
        entries[index]["supplement_rule"] = "pause"

    def two_requests(entries: list[dict[str, Any]]) -> None:
        entries[index]["supplement_requests"] = 2

    def longer_window(entries: list[dict[str, Any]]) -> None:
        entries[index]["supplement_window_days"] = 5

    where = f"entry {index} (1.013979): supplement_text: "
    _expect_error(tmp_path, "procedures", pause, where, "pause rule needs the procedure's text")
    _expect_error(tmp_path, "procedures", two_requests, where, "more than one supplement")
    _expect_error(tmp_path, "procedures", longer_window, where, "other than 3 working days")

    def with_text(entries: list[dict[str, Any]]) -> None:
        pause(entries)
        two_requests(entries)
        entries[index]["supplement_text"] = "Quyết định công bố thủ tục (văn bản thử)"

    procedure = load_catalogue(procedures_path=_broken(tmp_path, "procedures", with_text))
    land = procedure.procedure("1.013979")
    assert land.supplement_rule is SupplementRule.PAUSE and land.supplement_requests == 2


def test_unknown_department(tmp_path: Path) -> None:
    index = _index_of(_raw(PROCEDURES_FILE, "procedures"), "2.001610")

    def unknown(entries: list[dict[str, Any]]) -> None:
        entries[index]["competent_department"] = "so-khong-ton-tai"

    _expect_error(
        tmp_path,
        "procedures",
        unknown,
        f"entry {index} (2.001610): competent_department: unknown unit so-khong-ton-tai",
    )


def test_department_pointing_at_a_ward(tmp_path: Path) -> None:
    index = _index_of(_raw(PROCEDURES_FILE, "procedures"), "2.001610")

    def ward(entries: list[dict[str, Any]]) -> None:
        entries[index]["competent_department"] = "hoan-kiem"

    _expect_error(tmp_path, "procedures", ward, "competent_department: hoan-kiem is a ward")


def test_city_tier_without_department(tmp_path: Path) -> None:
    index = _index_of(_raw(PROCEDURES_FILE, "procedures"), "2.001610")

    def drop(entries: list[dict[str, Any]]) -> None:
        entries[index]["competent_department"] = None

    _expect_error(tmp_path, "procedures", drop, f"entry {index} (2.001610): competent_department")


def test_ward_tier_with_department(tmp_path: Path) -> None:
    def add(entries: list[dict[str, Any]]) -> None:
        entries[0]["competent_department"] = "so-tu-phap"

    _expect_error(
        tmp_path, "procedures", add, "entry 0 (", "): competent_department: must be empty"
    )


def test_certification_at_city_tier(tmp_path: Path) -> None:
    index = _index_of(_raw(PROCEDURES_FILE, "procedures"), "2.000884")

    def to_city(entries: list[dict[str, Any]]) -> None:
        entries[index].update(
            tier="city", competent_unit_kind="city_department", competent_department="so-tu-phap"
        )

    _expect_error(tmp_path, "procedures", to_city, f"entry {index} (2.000884): tier:")


def test_duplicate_procedure_code(tmp_path: Path) -> None:
    def duplicate(entries: list[dict[str, Any]]) -> None:
        entries.append(dict(entries[0]))

    count = len(_raw(PROCEDURES_FILE, "procedures"))
    code = _raw(PROCEDURES_FILE, "procedures")[0]["code"]
    _expect_error(
        tmp_path,
        "procedures",
        duplicate,
        f"entry {count} ({code}): code: duplicate procedure code, already at entry 0",
    )


def test_duplicate_document_kind(tmp_path: Path) -> None:
    def duplicate(entries: list[dict[str, Any]]) -> None:
        docs = entries[0]["required_documents"]
        docs.append(dict(docs[0]))

    _expect_error(tmp_path, "procedures", duplicate, "entry 0 (", "required_documents[", "].kind")


def test_empty_delivery_channels(tmp_path: Path) -> None:
    def empty(entries: list[dict[str, Any]]) -> None:
        entries[2]["delivery_channels"] = []

    _expect_error(tmp_path, "procedures", empty, "entry 2 (", "): delivery_channels:")


def test_bad_document_kind_names_the_list_index(tmp_path: Path) -> None:
    def bad(entries: list[dict[str, Any]]) -> None:
        entries[0]["required_documents"][1]["kind"] = "Not A Slug"

    _expect_error(tmp_path, "procedures", bad, "entry 0 (", "required_documents[1].kind:")


def test_duplicate_unit_and_agency_codes(tmp_path: Path) -> None:
    def duplicate_code(entries: list[dict[str, Any]]) -> None:
        entries[5]["code"] = entries[4]["code"]

    def duplicate_agency(entries: list[dict[str, Any]]) -> None:
        entries[7]["agency_code"] = entries[6]["agency_code"]

    _expect_error(tmp_path, "units", duplicate_code, "units.json entry 5 (", "): code: duplicate")
    _expect_error(tmp_path, "units", duplicate_agency, "units.json entry 7 (", "): agency_code:")


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "procedures.json"
    path.write_text('{"procedures": [', encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"procedures\.json: invalid JSON at line 1"):
        load_catalogue(procedures_path=path)


# --- documents and fees ------------------------------------------------------------------------


def test_missing_documents_lists_everything_missing(catalogue: Catalogue) -> None:
    birth = catalogue.procedure("1.001193")
    kinds = [d.kind for d in birth.required_documents]
    assert kinds == ["birth_declaration", "birth_certificate_medical", "identity_card"]
    assert missing_documents(birth, kinds) == []
    assert [d.kind for d in missing_documents(birth, ["identity_card", "unrelated"])] == [
        "birth_declaration",
        "birth_certificate_medical",
    ]
    assert missing_documents(birth, iter(())) == list(birth.required_documents)


def _per_page_procedure() -> Procedure:
    return default_catalogue().procedure("2.000815")


@pytest.mark.parametrize(
    ("pages", "copies", "expected"),
    [
        (1, 1, 2000),
        (2, 1, 4000),
        (3, 1, 5000),  # 2,000 x 2 + 1,000 from page 3
        (300, 1, 200000),  # 302,000 capped per copy
        (3, 2, 10000),
        (300, 2, 400000),
        (0, 1, 0),
        (5, 0, 0),
    ],
)
def test_fee_per_page(pages: int, copies: int, expected: int) -> None:
    assert fee_vnd(_per_page_procedure(), pages, copies) == expected


def test_fee_flat_and_none(catalogue: Catalogue) -> None:
    signature = catalogue.procedure("2.000884")
    assert signature.fee == FlatFee(amount_vnd=10000)
    assert fee_vnd(signature, pages=7, copies=1) == 10000
    assert fee_vnd(signature, pages=1, copies=3) == 30000
    assert fee_vnd(catalogue.procedure("2.001035"), pages=4, copies=1) == 50000
    assert fee_vnd(catalogue.procedure("2.000913"), pages=1, copies=1) == 30000
    assert fee_vnd(catalogue.procedure("2.000927"), pages=1, copies=1) == 25000
    assert fee_vnd(catalogue.procedure("1.001193"), pages=1, copies=1) == 0


def test_online_filing_is_exempt_only_where_the_text_grants_it(catalogue: Catalogue) -> None:
    household = catalogue.procedure("1.001612")
    assert household.online_fee_exempt and "trực tuyến" in household.legal_basis
    assert fee_vnd(household, pages=1, copies=1, online=True) == 0
    assert fee_vnd(household, pages=1, copies=1) == 100000
    copy = catalogue.procedure("2.000815")
    assert not copy.online_fee_exempt
    assert fee_vnd(copy, pages=2, copies=1, online=True) == 4000
    for p in catalogue.procedures.values():
        if p.online_fee_exempt:  # the basis is cited, and marked while unconfirmed
            assert p.fee is not None and "trực tuyến" in p.legal_basis, p.code


def test_each_kind_of_certification_is_numbered_in_its_own_book(catalogue: Catalogue) -> None:
    books = {
        code: catalogue.procedure(code).certification_book
        for code in ("2.000815", "2.000884", "2.000992", "2.001035", "2.001019", "2.001406")
    }
    assert books == {
        "2.000815": CertificationBook.COPIES,
        "2.000884": CertificationBook.SIGNATURES,
        "2.000992": CertificationBook.SIGNATURES,
        "2.001035": CertificationBook.CONTRACTS,
        "2.001019": CertificationBook.CONTRACTS,
        "2.001406": CertificationBook.CONTRACTS,
    }
    assert all(
        (p.certification_book is not None) == p.certification for p in catalogue.procedures.values()
    )
    copy, signature, contract = (
        catalogue.procedure(c) for c in ("2.000815", "2.000884", "2.001035")
    )
    # The copies book goes on in the series every certification used before the split.
    assert book_scope(copy, "hoan-kiem", 2026) == "certbook:hoan-kiem:2026"
    assert book_scope(signature, "hoan-kiem", 2026) == "certbook:hoan-kiem:2026:CK"
    assert book_scope(contract, "hoan-kiem", 2026) == "certbook:hoan-kiem:2026:HĐGD"
    assert book_entry(signature, 7, 2026) == "Số chứng thực 7, quyển số 01/2026-SCT/CK"
    assert book_entry(copy, 7, 2026) == "Số chứng thực 7, quyển số 01/2026-SCT/BS"
    with pytest.raises(CatalogueError, match="no certification book"):
        book_scope(catalogue.procedure("1.001193"), "hoan-kiem", 2026)


@pytest.mark.parametrize(
    ("code", "change", "field", "problem"),
    [
        ("2.000815", {"certification_book": None}, "certification_book", "names its book"),
        ("1.001193", {"certification_book": "BS"}, "certification_book", "only certification"),
        ("1.001193", {"online_fee_exempt": True}, "online_fee_exempt", "needs a fee"),
    ],
)
def test_books_and_exemptions_are_checked_when_loaded(
    tmp_path: Path, code: str, change: dict[str, Any], field: str, problem: str
) -> None:
    def mutate(entries: list[dict[str, Any]]) -> None:
        entries[_index_of(entries, code)].update(change)

    with pytest.raises(CatalogueError, match=problem) as raised:
        load_catalogue(procedures_path=_broken(tmp_path, "procedures", mutate))
    assert raised.value.field == field and raised.value.code == code


def test_corrected_codes_and_names(catalogue: Catalogue) -> None:
    """Codes and names as the 2025 lists and the national portal have them."""
    assert catalogue.procedure("2.002036").name == "Thủ tục thôi quốc tịch Việt Nam ở trong nước"
    assert catalogue.procedure("2.002036").competent_department == "so-tu-phap"
    assert "một thành viên" in catalogue.procedure("2.001583").name
    assert catalogue.procedure("1.012644").competent_department == "so-dan-toc-ton-giao"
    assert "trẻ em dưới 6 tuổi" in catalogue.procedure("2.000986").name
    assert "1.013236" in catalogue.procedures
    assert {"3.000722", "1.009972"} <= set(catalogue.retired)
    assert not {"3.000722", "1.009972"} & set(catalogue.procedures)
    names = {c: catalogue.procedure(c).name for c in ("2.001035", "2.001406", "2.000913")}
    assert names == {
        "2.001035": "Chứng thực giao dịch liên quan đến tài sản là động sản, quyền sử dụng đất, "
        "nhà ở",
        "2.001406": "Chứng thực văn bản phân chia di sản mà di sản là động sản, quyền sử dụng "
        "đất, nhà ở",
        "2.000913": "Chứng thực việc sửa đổi, bổ sung, hủy bỏ giao dịch",
    }


def test_fee_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        fee_vnd(_per_page_procedure(), pages=-1, copies=1)


# --- the city's service centre -----------------------------------------------------------------


def test_service_centre_and_its_branches(catalogue: Catalogue) -> None:
    centres = catalogue.service_centres()
    # The centre and its 12 regional branches (sovhtt.hanoi.gov.vn; CV 3590/SNV-SBN).
    assert [u.code for u in centres] == ["trung-tam-phvhcc"] + [
        f"chi-nhanh-{n}" for n in range(1, 13)
    ]
    assert all(u.parent == "trung-tam-phvhcc" for u in centres[1:])
    assert catalogue.unit("chi-nhanh-1").address is not None
    assert "258 Võ Chí Công" in (catalogue.unit("chi-nhanh-1").address or "")
    # Only where a source gives it; the others stay unconfirmed (null), never made up.
    with_address = {u.code for u in centres if u.address is not None}
    assert with_address == {"trung-tam-phvhcc", "chi-nhanh-1", "chi-nhanh-2", "chi-nhanh-7"}
    assert all(u.address_source for u in centres if u.address is not None)
    # Neither a ward nor a department: wards() and departments() are unchanged.
    assert not {u.code for u in centres} & {u.code for u in catalogue.wards()}
    assert not {u.code for u in centres} & {u.code for u in catalogue.departments()}


def test_address_without_its_source(tmp_path: Path) -> None:
    index = _index_of(_raw(UNITS_FILE, "units"), "chi-nhanh-3")

    def unsourced(entries: list[dict[str, Any]]) -> None:
        entries[index]["address"] = "1 Phố Không Rõ"

    _expect_error(tmp_path, "units", unsourced, f"entry {index} (chi-nhanh-3): address_source")


def test_branch_of_something_that_is_not_a_centre(tmp_path: Path) -> None:
    index = _index_of(_raw(UNITS_FILE, "units"), "chi-nhanh-3")

    def wrong_parent(entries: list[dict[str, Any]]) -> None:
        entries[index]["parent"] = "hoan-kiem"

    _expect_error(
        tmp_path,
        "units",
        wrong_parent,
        f"entry {index} (chi-nhanh-3): parent: hoan-kiem is not a city service centre",
    )
