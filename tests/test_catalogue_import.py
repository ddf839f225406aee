"""`ops catalogue import`: every bad row reported and nothing recorded; what changed versioned;
the import audited; the recorded catalogue is the one new dossiers are filed under."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from domain.catalogue import (
    IMPORT_COLUMNS,
    CatalogueError,
    CatalogueImportError,
    catalogue_csv,
    default_catalogue,
    plan_import,
    read_import_file,
    shipped_catalogue,
    use_procedures,
)
from ops.__main__ import app
from ops.catalogue import CATALOGUE_CHAIN, import_catalogue, recorded_catalogue_csv
from schemas.catalogue import ChangeKind, Procedure, SameDayDeadline, WorkingDaysDeadline
from store.audit import events, first_break
from store.db import engine_for
from store.procedures import install_recorded, recorded_procedures
from store.startup import prepare_database
from store.tables import procedures as procedures_table
from tests.test_store_migrations import scratch_postgres

BIRTH = "1.001193"
COPY = "2.000815"
OPERATOR = "nguyen.van.an"
REASON = "Quyết định công bố danh mục TTHC của UBND Thành phố"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database with the shipped catalogue recorded: a file, or a scratch PostgreSQL
    database (DATABASE_URL's server when it names one)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/engine.db"
        await prepare_database(url)
        yield url
        await engine_for(url).dispose()
    else:
        async with scratch_postgres("catalogue_test") as url:
            await prepare_database(url)
            yield url


@pytest.fixture(autouse=True)
def shipped_in_effect() -> Iterator[None]:
    """Each test leaves this process filing under the shipped catalogue, as it found it."""
    yield
    use_procedures(shipped_catalogue().procedures.values())


def _rows(*procedures: Procedure) -> list[dict[str, str]]:
    """CSV rows (column -> cell) of procedures, in the export format."""
    return list(csv.DictReader(io.StringIO(catalogue_csv(procedures))))


def _write_csv(
    path: Path, rows: list[dict[str, str]], columns: tuple[str, ...] = IMPORT_COLUMNS
) -> Path:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def _shipped(code: str) -> Procedure:
    return shipped_catalogue().procedure(code)


def _new_procedure_row() -> dict[str, str]:
    """A procedure the shipped catalogue does not hold, written by hand as a city would."""
    return {
        "code": "1.013700",
        "name": "Thủ tục thử nghiệm cấp xã",
        "field": "Hộ tịch",
        "tier": "ward",
        "competent_unit_kind": "ward",
        "deadline": "5",
        "fee": "20000",
        "online_fee_exempt": "yes",
        "required_documents": "application_form=Tờ khai | identity_card=Căn cước",
        "delivery_channels": "counter | online",
        "legal_basis": "Quyết định thử nghiệm [?]",
    }


# --- reading files ---------------------------------------------------------------------------
def test_a_good_csv_file_reads_every_row(tmp_path: Path) -> None:
    changed = _rows(_shipped(BIRTH))[0] | {"deadline": "2"}
    path = _write_csv(
        tmp_path / "danh-muc.csv", [changed, *_rows(_shipped(COPY)), _new_procedure_row()]
    )
    shipped = shipped_catalogue()
    read = read_import_file(path, shipped.units, shipped.retired)
    assert [p.code for p in read] == [BIRTH, COPY, "1.013700"]
    birth, copy, new = read
    assert birth.deadline == WorkingDaysDeadline(days=2)
    assert isinstance(copy.deadline, SameDayDeadline) and copy.fee == _shipped(COPY).fee
    assert new.online_fee_exempt and [d.kind for d in new.required_documents] == [
        "application_form",
        "identity_card",
    ]
    plan = plan_import(path.name, read, shipped.procedures, {(BIRTH, _shipped(BIRTH).version): 4})
    kinds = {c.code: (c.kind, c.version_before, c.version_after) for c in plan.changes}
    version = _shipped(BIRTH).version
    assert kinds == {
        BIRTH: (ChangeKind.CHANGED, version, version + 1),
        COPY: (ChangeKind.UNCHANGED, _shipped(COPY).version, _shipped(COPY).version),
        "1.013700": (ChangeKind.NEW, None, 1),
    }
    [birth_change, _] = plan.to_record
    assert [(f.field, f.before, f.after) for f in birth_change.fields] == [
        ("deadline", '{"kind": "working_days", "days": 1}', '{"kind": "working_days", "days": 2}')
    ]
    assert birth_change.dossiers_in_flight == 4


def test_a_good_json_file_holds_procedures(tmp_path: Path) -> None:
    changed = _shipped(COPY).model_dump(mode="json") | {"name": "Chứng thực bản sao (tên mới)"}
    del changed["version"]  # the import gives versions
    path = tmp_path / "danh-muc.json"
    path.write_text(json.dumps({"procedures": [changed]}, ensure_ascii=False), encoding="utf-8")
    shipped = shipped_catalogue()
    [read] = read_import_file(path, shipped.units)
    assert read.name == "Chứng thực bản sao (tên mới)"
    [change] = plan_import(path.name, [read], shipped.procedures).changes
    assert change.kind is ChangeKind.CHANGED and [f.field for f in change.fields] == ["name"]


def test_the_shipped_catalogue_round_trips_through_the_csv_format(tmp_path: Path) -> None:
    shipped = shipped_catalogue()
    path = tmp_path / "all.csv"
    path.write_text(catalogue_csv(shipped.procedures.values()), encoding="utf-8")
    plan = plan_import(path.name, read_import_file(path, shipped.units), shipped.procedures)
    assert len(plan.changes) == len(shipped.procedures) and not plan.to_record


def test_every_bad_row_is_reported_with_its_row_field_and_rule(tmp_path: Path) -> None:
    good = _rows(_shipped(BIRTH))[0]
    rows = [
        good | {"code": "2.000635", "tier": "province"},  # row 2: unknown column value
        good | {"code": "1.1193"},  # row 3: bad code pattern
        good | {"code": "1.000656", "deadline": "ba ngày"},  # row 4: bad deadline
        good | {"code": "1.000894", "deadline": "0"},  # row 5: deadline out of range
        _rows(_shipped("2.001610"))[0] | {"competent_department": "so-khong-co"},  # row 6
        good,  # row 7: first 1.001193
        good | {"name": "Đăng ký khai sinh (bản 2)"},  # row 8: duplicate code
        good | {"code": "1.001022", "name": ""},  # row 9: missing required field
        good | {"code": "1.004873", "certification": "maybe"},  # row 10: bad yes/no
        good | {"code": "3.000722"},  # row 11: a retired code
        good | {"code": "1.004859", "required_documents": "chỉ một tên"},  # row 12
    ]
    path = _write_csv(tmp_path / "sai.csv", rows)
    shipped = shipped_catalogue()
    with pytest.raises(CatalogueImportError) as raised:
        read_import_file(path, shipped.units, shipped.retired)
    found = {(e.row, e.field): e.rule for e in raised.value.errors}
    assert "Input should be 'ward' or 'city'" in found[(2, "tier")]
    assert "should match pattern" in found[(3, "code")]
    assert "not a number of working days" in found[(4, "deadline")]
    assert "greater than or equal to 1" in found[(5, "deadline.days")]
    assert found[(6, "competent_department")] == "unknown unit so-khong-co"
    assert found[(8, "code")] == "duplicate procedure code, already at row 7"
    assert found[(9, "name")] == "Field required"
    assert found[(10, "certification")] == "'maybe' is not yes or no"
    assert found[(11, "code")].startswith("retired code:") and "2.000986" in found[(11, "code")]
    assert found[(12, "required_documents")] == "'chỉ một tên' is not kind=Name"
    assert {row for row, _ in found} == {2, 3, 4, 5, 6, 8, 9, 10, 11, 12}
    message = str(raised.value)
    assert "sai.csv: 10 error(s), nothing imported" in message
    assert "row 6 (2.001610): competent_department: unknown unit so-khong-co" in message


def test_a_header_with_unknown_or_missing_columns_is_refused(tmp_path: Path) -> None:
    row = _rows(_shipped(BIRTH))[0]
    columns = (*(c for c in IMPORT_COLUMNS if c != "legal_basis"), "thoi_han")
    path = _write_csv(
        tmp_path / "cot.csv", [{k: v for k, v in row.items() if k in columns}], columns
    )
    with pytest.raises(CatalogueImportError) as raised:
        read_import_file(path, shipped_catalogue().units)
    assert [str(e) for e in raised.value.errors] == [
        "row 1: thoi_han: unknown column",
        "row 1: legal_basis: required column missing",
    ]


def test_a_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "danh-muc.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(CatalogueError, match=r"\.csv or \.json"):
        read_import_file(path, shipped_catalogue().units)


# --- importing into the database ---------------------------------------------------------------
async def _recorded_versions(url: str) -> dict[str, int]:
    async with engine_for(url).connect() as conn:
        rows = await conn.execute(
            select(procedures_table.c.code, func.max(procedures_table.c.version)).group_by(
                procedures_table.c.code
            )
        )
        return {str(code): int(version) for code, version in rows}


async def test_an_import_versions_what_changed_and_is_audited(
    database_url: str, tmp_path: Path
) -> None:
    before = await _recorded_versions(database_url)
    changed = _rows(_shipped(BIRTH))[0] | {"deadline": "2"}
    path = _write_csv(tmp_path / "qd.csv", [changed, *_rows(_shipped(COPY)), _new_procedure_row()])

    dry = await import_catalogue(database_url, path, operator=OPERATOR, reason=REASON, dry_run=True)
    assert [c.code for c in dry.to_record] == [BIRTH, "1.013700"]
    assert await _recorded_versions(database_url) == before

    plan = await import_catalogue(
        database_url, path, operator=OPERATOR, reason=REASON, dry_run=False
    )
    assert plan.to_record == dry.to_record
    after = await _recorded_versions(database_url)
    assert after == before | {BIRTH: before[BIRTH] + 1, "1.013700": 1}

    async with engine_for(database_url).connect() as conn:
        chain = await events(conn, CATALOGUE_CHAIN)
        latest = await recorded_procedures(conn)
    [event] = chain
    assert first_break(chain) is None
    assert (event.event_type, event.actor) == ("catalogue_import", OPERATOR)
    payload = json.loads(event.payload)
    assert payload["reason"] == REASON and payload["file"] == "qd.csv"
    assert [c["code"] for c in payload["changes"]] == [BIRTH, "1.013700"]
    assert latest[BIRTH].deadline == WorkingDaysDeadline(days=2)
    assert latest[COPY] == _shipped(COPY)

    # The same file again changes nothing and writes no event.
    again = await import_catalogue(
        database_url, path, operator=OPERATOR, reason=REASON, dry_run=False
    )
    assert not again.to_record and await _recorded_versions(database_url) == after
    async with engine_for(database_url).connect() as conn:
        assert len(await events(conn, CATALOGUE_CHAIN)) == 1


async def test_a_file_with_one_bad_row_imports_nothing(database_url: str, tmp_path: Path) -> None:
    before = await _recorded_versions(database_url)
    changed = _rows(_shipped(BIRTH))[0] | {"deadline": "2"}
    bad = _new_procedure_row() | {"competent_unit_kind": "city_department"}
    path = _write_csv(tmp_path / "qd.csv", [changed, bad])
    with pytest.raises(CatalogueImportError) as raised:
        await import_catalogue(database_url, path, operator=OPERATOR, reason=REASON, dry_run=False)
    assert [str(e) for e in raised.value.errors] == [
        "row 3 (1.013700): competent_unit_kind: ward tier is decided by commune, ward"
    ]
    assert await _recorded_versions(database_url) == before
    async with engine_for(database_url).connect() as conn:
        assert await events(conn, CATALOGUE_CHAIN) == []


async def test_new_dossiers_are_filed_under_the_imported_version(
    database_url: str, tmp_path: Path
) -> None:
    """What a restarted API or filing process does: prepare_database installs the recorded
    catalogue in the one catalogue object everything holds."""
    held = default_catalogue()
    version = _shipped(BIRTH).version
    path = _write_csv(tmp_path / "qd.csv", [_rows(_shipped(BIRTH))[0] | {"deadline": "2"}])
    await import_catalogue(database_url, path, operator=OPERATOR, reason=REASON, dry_run=False)
    assert held.procedure(BIRTH).version == version  # not before the process starts again
    await prepare_database(database_url)
    assert held.procedure(BIRTH).version == version + 1
    assert held.procedure(BIRTH).deadline == WorkingDaysDeadline(days=2)
    # Retired codes stay out even though the database records them.
    assert "3.000722" not in held.procedures
    exported = await recorded_catalogue_csv(database_url)
    assert "1.001193,Đăng ký khai sinh,Hộ tịch,ward,ward,,no,,2," in exported


async def test_a_recorded_version_of_a_retired_code_is_not_offered(database_url: str) -> None:
    retired = _shipped("2.000986").model_copy(update={"code": "3.000722", "version": 2})
    async with engine_for(database_url, writer=True).begin() as conn:
        await conn.execute(
            procedures_table.insert().values(
                code=retired.code,
                version=retired.version,
                name=retired.name,
                tier=retired.tier.value,
                definition=retired.model_dump_json(),
                loaded_at=func.now(),
            )
        )
    catalogue = await install_recorded(database_url)
    assert "3.000722" not in catalogue.procedures and "2.000986" in catalogue.procedures


def test_the_command_lists_every_error_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    good = _rows(_shipped(BIRTH))[0]
    path = _write_csv(
        tmp_path / "qd.csv", [good | {"deadline": "x"}, good | {"code": "1.000656", "tier": "tinh"}]
    )
    from config import settings

    settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app,
            ["catalogue", "import", str(path), "--operator", OPERATOR, "--reason", REASON],
        )
        dry = CliRunner().invoke(
            app,
            [
                "catalogue",
                "import",
                str(_write_csv(tmp_path / "ok.csv", [good | {"deadline": "2"}])),
                "--dry-run",
            ],
        )
        missing_reason = CliRunner().invoke(app, ["catalogue", "import", str(path)])
    finally:
        settings.cache_clear()
    assert result.exit_code == 2
    assert "qd.csv: 2 error(s), nothing imported" in result.output
    assert "row 2 (1.001193): deadline:" in result.output
    assert "row 3 (1.000656): tier:" in result.output
    assert dry.exit_code == 0, dry.output
    assert "1.001193 changed, version" in dry.output and "deadline:" in dry.output
    assert "would record 1 version(s), 0 unchanged" in dry.output
    assert missing_reason.exit_code == 2 and "--operator" in missing_reason.output
