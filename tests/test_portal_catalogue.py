"""`ops catalogue from-portal`: the rules that turn a national portal record into a catalogue
entry (tier, deadline, fee, documents, channels), each able to refuse, and its output read by
`ops catalogue import` as any city file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from domain.catalogue import plan_import, read_import_file, shipped_catalogue
from ops.__main__ import app
from ops.portal_catalogue import (
    UNCITED_BASIS,
    UNCONFIRMED_FEE,
    VND_CURRENCY,
    PortalRecord,
    Skipped,
    SkipReason,
    build_from_portal,
    document_kind,
    import_file,
    portal_deadline,
    portal_name,
    procedure_from_portal,
    read_portal_records,
)
from schemas.catalogue import (
    ChangeKind,
    DeliveryChannel,
    FlatFee,
    Procedure,
    Tier,
    UnitKind,
    WorkingDaysDeadline,
)

WD = "ngày làm việc"


def _method(how: str, qty: float | None, unit: str | None) -> dict[str, Any]:
    return {
        "submission_method": how,
        "processing_time_qty": qty,
        "processing_time_unit": unit,
        "processing_time_text": f"{qty} {unit}",
    }


def _record(**changes: Any) -> PortalRecord:
    """A ward-tier record as the portal gives one (a commune People's Committee, 5 working
    days), with `changes`."""
    base: dict[str, Any] = {
        "code": "1.099001",
        "name": "Thủ tục đăng ký thử nghiệm",
        "domain": "Hộ tịch",
        "executing_agency": "Ủy ban Nhân dân xã, phường, thị trấn.",
        "agency_levels": "Xã/Phường",
        "state": "UPDATED",
        "processing_time_text": "5 ngày làm việc",
        "methods": [_method("Trực tiếp", 5.0, WD), _method("Bưu chính", 5.0, WD)],
        "online_processing": {"qty": 5.0, "unit": WD},
        "fees": [],
        "documents": [
            {"name": "Tờ khai theo mẫu", "required": True, "case": None},
            {"name": "1. Giấy tờ tùy thân", "required": False, "case": None},
        ],
        "legal_basis": ["60/2014/QH13", "123/2015/NĐ-CP"],
        "has_online_submission": 1,
        "portal_url": "https://dichvucong.gov.vn/dich-vu-cong-truc-tuyen/1.099001",
        "read_offset": 0,
    }
    return PortalRecord.model_validate(base | changes)


def _build(record: PortalRecord) -> Procedure:
    built = procedure_from_portal(record, shipped_catalogue().units)
    assert isinstance(built, Procedure), built
    return built


def _skipped(record: PortalRecord) -> SkipReason:
    built = procedure_from_portal(record, shipped_catalogue().units)
    assert isinstance(built, Skipped), built
    return built.reason


# --- deadline: the direct-filing method's figure ---------------------------------------------
def test_working_days_of_direct_filing_are_the_deadline() -> None:
    procedure = _build(_record())
    assert procedure.deadline == WorkingDaysDeadline(days=5)
    assert procedure.version == 1 and procedure.name == "Đăng ký thử nghiệm"
    # The online service's figure does not override a single direct-filing one.
    other = _record(online_processing={"qty": 12.0, "unit": WD})
    assert portal_deadline(other) == WorkingDaysDeadline(days=5)


@pytest.mark.parametrize(
    ("methods", "online", "expected"),
    [
        ([_method("Trực tiếp", 24.0, "ngày")], None, SkipReason.CALENDAR_DAYS),
        ([_method("Trực tiếp", 12.0, "giờ")], None, SkipReason.DEADLINE_UNIT),
        ([_method("Trực tiếp", 7.0, "")], {"qty": 12.0, "unit": WD}, SkipReason.DEADLINE_UNIT),
        ([_method("Trực tuyến", 3.0, WD)], None, SkipReason.NO_DEADLINE),
        ([_method("Trực tiếp", 0.5, WD)], None, SkipReason.DEADLINE_RANGE),
        ([_method("Trực tiếp", 121.0, WD)], None, SkipReason.DEADLINE_RANGE),
        # Stages or cases the online service does not choose among.
        (
            [_method("Trực tiếp", 7.0, WD), _method("Trực tiếp", 25.0, WD)],
            {"qty": 35.0, "unit": "ngày"},
            SkipReason.SEVERAL_FIGURES,
        ),
        (
            [_method("Trực tiếp", 7.0, WD), _method("Trực tiếp", 25.0, WD)],
            None,
            SkipReason.SEVERAL_FIGURES,
        ),
    ],
)
def test_a_deadline_the_contract_cannot_hold_is_skipped(
    methods: list[dict[str, Any]], online: dict[str, Any] | None, expected: SkipReason
) -> None:
    record = _record(methods=methods, online_processing=online)
    assert portal_deadline(record) is expected
    assert _skipped(record) is expected


def test_the_online_service_fills_a_blank_direct_filing_figure() -> None:
    blank = [_method("Trực tiếp", 0.0, ""), _method("Bưu chính", 0.0, "")]
    record = _record(methods=blank, online_processing={"qty": 10.0, "unit": WD})
    assert portal_deadline(record) == WorkingDaysDeadline(days=10)
    in_days = _record(methods=blank, online_processing={"qty": 35.0, "unit": "ngày"})
    assert portal_deadline(in_days) is SkipReason.CALENDAR_DAYS
    nothing = _record(methods=blank, online_processing={"qty": 0.0, "unit": ""})
    assert portal_deadline(nothing) is SkipReason.NO_DEADLINE
    assert portal_deadline(_record(methods=blank, online_processing=None)) is SkipReason.NO_DEADLINE


def test_the_online_service_chooses_among_stages() -> None:
    # Check at receipt within 1 working day, decision within 2 from the complete dossier.
    record = _record(
        methods=[_method("Trực tiếp", 1.0, WD), _method("Trực tiếp", 2.0, WD)],
        online_processing={"qty": 2.0, "unit": WD},
    )
    assert portal_deadline(record) == WorkingDaysDeadline(days=2)


# --- tier and deciding unit -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("levels", "agency", "department"),
    [
        ("Tỉnh", "Sở Nội vụ", "so-noi-vu"),
        ("Tỉnh", "Hội đồng Giám định Y khoa tỉnh, Sở Nội vụ", "so-noi-vu"),
        ("Tỉnh, Bộ", "Sở Xây dựng - TP.HCM", "so-xay-dung"),
        ("Xã/Phường, Tỉnh", "Sở Xây dựng tỉnh Tuyên Quang, Chủ tịch UBND cấp xã", "so-xay-dung"),
        ("Tỉnh", "Sở Văn hóa, Thể thao và Du lịch, Sở Văn hóa và Thể thao", "so-van-hoa-the-thao"),
        ("Tỉnh", "Sở Công thương", "so-cong-thuong"),
        ("Tỉnh", "Công an tỉnh", "cong-an-thanh-pho"),
        ("Tỉnh", "Chủ tịch ủy ban nhân dân cấp tỉnh", "van-phong-ubnd-thanh-pho"),
        ("Tỉnh", "Ủy ban nhân dân cấp tỉnh", "van-phong-ubnd-thanh-pho"),
        ("Tỉnh", "Uỷ ban nhân dân tỉnh", "van-phong-ubnd-thanh-pho"),
        # Other provinces' department of culture, sports and tourism; their body for sports.
        ("Tỉnh", "Sở Văn hoá, Thể thao và Du lịch", "so-van-hoa-the-thao"),
        (
            "Tỉnh",
            "Cơ quan chuyên môn về thể dục, thể thao thuộc Ủy ban nhân dân cấp tỉnh",
            "so-van-hoa-the-thao",
        ),
    ],
)
def test_a_named_city_department_decides_city_tier(
    levels: str, agency: str, department: str
) -> None:
    procedure = _build(_record(agency_levels=levels, executing_agency=agency))
    assert procedure.tier is Tier.CITY
    assert procedure.competent_unit_kind is UnitKind.CITY_DEPARTMENT
    assert procedure.competent_department == department


def test_tourism_goes_to_the_tourism_department() -> None:
    record = _record(
        domain="Lữ hành", agency_levels="Tỉnh", executing_agency="Sở Văn hóa, Thể thao và Du lịch"
    )
    assert _build(record).competent_department == "so-du-lich"


@pytest.mark.parametrize(
    ("levels", "agency"),
    [
        ("Xã/Phường", ""),
        ("Xã/Phường", "Chủ tịch Ủy ban nhân dân xã"),
        ("Xã/Phường, Tỉnh", "Công an cấp Xã, Cơ sở trợ giúp xã hội, Chủ tịch Ủy ban nhân dân xã"),
    ],
)
def test_a_commune_body_decides_ward_tier(levels: str, agency: str) -> None:
    procedure = _build(_record(agency_levels=levels, executing_agency=agency))
    assert procedure.tier is Tier.WARD and procedure.competent_department is None
    assert procedure.competent_unit_kind is UnitKind.WARD


@pytest.mark.parametrize(
    ("levels", "agency", "reason"),
    [
        ("Bộ", "Bộ Kế hoạch và Đầu tư", SkipReason.CENTRAL),
        (
            "Bộ",
            "Cục Lãnh sự - Bộ Ngoại giao, Sở Ngoại vụ Thành phố Hồ Chí Minh",
            SkipReason.CENTRAL,
        ),
        ("Cơ quan khác", "", SkipReason.CENTRAL),
        (
            "Xã/Phường, Tỉnh, Bộ",
            "Ban Thi đua - Khen thưởng Trung ương - Bộ Nội vụ",
            SkipReason.CENTRAL,
        ),
        ("Tỉnh", "Bộ Chỉ huy Quân sự tỉnh", SkipReason.NO_UNIT),
        ("Tỉnh", "Trung tâm Dịch vụ việc làm", SkipReason.NO_UNIT),
        ("Tỉnh", "", SkipReason.NO_UNIT),
        # A commune's police is not the city's, a department's centre not the department.
        ("Tỉnh", "Công an xã", SkipReason.NO_UNIT),
        ("Tỉnh", "Trung tâm thuộc Sở Nội vụ", SkipReason.NO_UNIT),
        ("Tỉnh", "Bảo hiểm xã hội tỉnh", SkipReason.NO_UNIT),
    ],
)
def test_what_no_hanoi_unit_decides_is_skipped(
    levels: str, agency: str, reason: SkipReason
) -> None:
    assert _skipped(_record(agency_levels=levels, executing_agency=agency)) is reason


def test_another_provinces_own_procedure_and_certification_are_skipped() -> None:
    local = _record(legal_basis=["60/2014/QH13", "30/2025/NQ-HĐND"])
    assert _skipped(local) is SkipReason.LOCAL
    assert _skipped(_record(legal_basis=["81/2026/QĐ-UBND"])) is SkipReason.LOCAL
    # Hanoi's own procedures stay, with the city's texts as their basis.
    hanoi = _build(_record(name="(Hà Nội) Đăng ký biến động", legal_basis=["33/2026/QĐ-UBND"]))
    assert hanoi.name == "(Hà Nội) Đăng ký biến động"
    assert hanoi.legal_basis.startswith("33/2026/QĐ-UBND")
    by_hanoi = _record(
        agency_levels="Tỉnh",
        executing_agency="Sở Văn hóa và Thể thao Thành phố Hà Nội",
        legal_basis=["12/2026/QĐ-UBND"],
    )
    assert _build(by_hanoi).competent_department == "so-van-hoa-the-thao"
    assert _skipped(_record(domain="Chứng thực")) is SkipReason.CERTIFICATION
    assert _skipped(_record(documents=[])) is SkipReason.NO_DOCUMENTS


# --- fee, documents, channels, legal basis ---------------------------------------------------
USD = "019b3fb2-dee2-76ab-aa53-22d4d903a2bb"


def _fee(
    amount: float, how: str = "Trực tiếp", currency: str = VND_CURRENCY, text: str = ""
) -> dict[str, Any]:
    return {
        "fee_type": "FEE",
        "amount_value": amount,
        "amount_text": text,
        "currency_id": currency,
        "submission_method": how,
    }


@pytest.mark.parametrize(
    ("fees", "fee", "marked"),
    [
        ([], None, True),  # the portal says nothing: unconfirmed
        ([_fee(0), _fee(0, "Bưu chính")], None, False),  # stated: no fee
        ([_fee(50000), _fee(50000, "Bưu chính")], FlatFee(amount_vnd=50000), False),
        ([_fee(50000), _fee(100000)], None, True),  # amounts by case
        ([_fee(25, currency=USD)], None, True),
        ([_fee(0), _fee(30000, "Bưu chính")], None, False),  # direct filing's own fee
        # No currency: the amount only where its text writes it in đồng.
        (
            [_fee(35000000, currency="", text="35.000.000 đồng/lần")],
            FlatFee(amount_vnd=35000000),
            False,
        ),
        ([_fee(500, currency="", text="là 500.000 đồng/giấy.")], None, True),
        ([_fee(15, currency="", text="Đăng ký lại khai sinh")], None, True),
        ([_fee(0, currency=""), _fee(0, currency="")], None, False),
    ],
)
def test_fee_from_the_direct_filing_method(
    fees: list[dict[str, Any]], fee: FlatFee | None, marked: bool
) -> None:
    procedure = _build(_record(fees=fees))
    assert procedure.fee == fee
    assert (UNCONFIRMED_FEE in procedure.legal_basis) is marked
    assert procedure.legal_basis.startswith("60/2014/QH13; 123/2015/NĐ-CP")


def test_documents_get_ascii_kinds_unique_in_the_entry() -> None:
    procedure = _build(
        _record(
            documents=[
                {"name": "Tờ khai đăng ký khai tử theo mẫu", "required": False, "case": None},
                {"name": "a) Giấy báo tử hoặc giấy tờ thay thế", "required": False, "case": None},
                {
                    "name": "Tờ khai đăng ký khai tử theo mẫu (bản sao)",
                    "required": False,
                    "case": None,
                },
            ]
        )
    )
    kinds = [d.kind for d in procedure.required_documents]
    assert kinds == [
        "to_khai_dang_ky_khai_tu_theo_mau",
        "giay_bao_tu_hoac_giay_to_thay_the",
        "to_khai_dang_ky_khai_tu_theo_mau_ban_sao",
    ]
    assert procedure.required_documents[1].name == "a) Giấy báo tử hoặc giấy tờ thay thế"
    assert document_kind("Đơn đề nghị cấp Giấy chứng nhận đủ điều kiện hoạt động") == (
        "don_de_nghi_cap_giay_chung_nhan_du_dieu"
    )
    assert document_kind("1. Sổ bảo hiểm xã hội") == "so_bao_hiem_xa_hoi"
    repeated = _build(_record(documents=[{"name": "Tờ khai", "required": True, "case": None}] * 3))
    assert [d.kind for d in repeated.required_documents] == ["to_khai", "to_khai_2", "to_khai_3"]


def test_channels_follow_the_methods_and_online_submission() -> None:
    assert _build(_record()).delivery_channels == (
        DeliveryChannel.COUNTER,
        DeliveryChannel.POST,
        DeliveryChannel.ONLINE,
    )
    counter_only = _record(methods=[_method("Trực tiếp", 5.0, WD)], has_online_submission=0)
    assert _build(counter_only).delivery_channels == (DeliveryChannel.COUNTER,)


def test_a_record_without_legal_texts_is_marked() -> None:
    procedure = _build(_record(legal_basis=[]))
    assert procedure.legal_basis == f"{UNCITED_BASIS}; {UNCONFIRMED_FEE}"


def test_portal_names_in_the_catalogues_form() -> None:
    assert portal_name("Thủ tục đăng ký  khai sinh") == "Đăng ký khai sinh"
    assert portal_name("Cấp bản sao Trích lục hộ tịch") == "Cấp bản sao Trích lục hộ tịch"


# --- the output is an import file ------------------------------------------------------------
def test_the_build_is_a_file_the_import_takes_as_new_procedures(tmp_path: Path) -> None:
    shipped = shipped_catalogue()
    records = [
        _record(),
        _record(code="1.099002", agency_levels="Tỉnh", executing_agency="Sở Nội vụ"),
        _record(code="1.099003", agency_levels="Bộ", executing_agency="Bộ Tài chính"),
        _record(code="1.001193"),  # shipped: its hand-entered entry stays
    ]
    build = build_from_portal(records, shipped.units, frozenset(shipped.procedures))
    assert [p.code for p in build.procedures] == ["1.099001", "1.099002"]
    assert build.skipped_by_reason() == {SkipReason.CENTRAL: 1, SkipReason.SHIPPED: 1}
    path = tmp_path / "portal.json"
    path.write_text(import_file(build, tmp_path / "portal.jsonl"), encoding="utf-8")
    read = read_import_file(path, shipped.units, shipped.retired)
    assert read == list(build.procedures)
    plan = plan_import(path.name, read, shipped.procedures)
    assert [c.kind for c in plan.changes] == [ChangeKind.NEW, ChangeKind.NEW]


def test_from_portal_command_prints_the_import_file(tmp_path: Path) -> None:
    source = tmp_path / "portal.jsonl"
    lines = [_record(), _record(code="1.099004", methods=[_method("Trực tiếp", 3.0, "ngày")])]
    source.write_text("".join(r.model_dump_json() + "\n" for r in lines), encoding="utf-8")
    assert read_portal_records(source) == lines
    result = CliRunner().invoke(app, ["catalogue", "from-portal", str(source)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out.json"
    out.write_text(result.stdout, encoding="utf-8")
    shipped = shipped_catalogue()
    [read] = read_import_file(out, shipped.units, shipped.retired)
    assert read.code == "1.099001"
    assert json.loads(result.stdout)["source"].endswith("portal.jsonl")
    assert "skipped, deadline in calendar days: 1" in result.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"code": "1.099001"}\n', encoding="utf-8")
    refused = CliRunner().invoke(app, ["catalogue", "from-portal", str(bad)])
    assert refused.exit_code == 2 and "bad.jsonl line 1" in refused.stderr
