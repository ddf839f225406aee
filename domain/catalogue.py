"""The procedure catalogue and the receiving/deciding units, loaded from data files.

`data/procedures.json` lists the administrative procedures (TTHC) the engine routes and
`data/units.json` the units that receive or decide them: Hanoi's city departments and the 126
wards and communes of 1 July 2025 (Nghị quyết 1656/NQ-UBTVQH15). Both are validated against the
pydantic contracts in `schemas.catalogue` and cross-checked when loaded, so a bad edit fails at
start-up with a message naming the file, the entry and the field, never mid-dossier.

Agency codes. Each unit carries a Circular 10/2016/TT-BTTTT agency code, the prefix of dossier
codes (Decree 61/2018 art. 26). The official codes of the post-merger units are not in hand, so
the shipped file uses a systematic PLACEHOLDER scheme: city departments `000.00.NN.H26`, wards
`000.01.NN.H26`, communes `000.02.NN.H26`. They are data, not code: replace them with the list
the city publishes by editing `units.json` (or by passing another file to `load_catalogue`).

Entries whose `legal_basis` contains "[?]" carry a TTHC code, fee or deadline that could not be
confirmed; treat them as configurable.

The module is pure: standard library, pydantic and `schemas` only, and no I/O at import time
(files are read inside `load_catalogue`), so workflows can import it inside Temporal's sandbox.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from schemas.catalogue import (
    DECREE_SUPPLEMENT_REQUESTS,
    DECREE_SUPPLEMENT_WINDOW_DAYS,
    CertificationBook,
    ChangeKind,
    FieldChange,
    FlatFee,
    ImportPlan,
    ImportRowError,
    PerPageFee,
    Procedure,
    ProcedureChange,
    RequiredDocument,
    SameDayDeadline,
    SupplementRule,
    Tier,
    Unit,
    UnitKind,
)

DATA_DIR = Path(__file__).parent / "data"
PROCEDURES_FILE = DATA_DIR / "procedures.json"
UNITS_FILE = DATA_DIR / "units.json"

# Top-level keys a data file may carry besides its list of entries.
_METADATA_KEYS = frozenset({"source", "note"})
_RETIRED_KEY = "retired"

# A commune-level People's Committee decides ward-tier procedures; a city department (or a
# city-level body such as the land registration office) decides city-tier ones.
_KINDS_FOR_TIER: dict[Tier, frozenset[UnitKind]] = {
    Tier.WARD: frozenset({UnitKind.WARD, UnitKind.COMMUNE}),
    Tier.CITY: frozenset({UnitKind.CITY_DEPARTMENT}),
}

_Model = TypeVar("_Model", bound=BaseModel)


class CatalogueError(ValueError):
    """The catalogue data is invalid, or a lookup names something it does not hold.

    For data errors the message reads `<file> entry <index> (<code>): <field>: <problem>`, with
    the 0-based index of the entry in the file's list; `file`, `index`, `code` and `field` hold
    the same parts for programs.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        index: int | None = None,
        code: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.index = index
        self.code = code
        self.field = field


def _entry_error(
    file: str, index: int, code: str | None, field: str, problem: str
) -> CatalogueError:
    label = f"{file} entry {index}" + (f" ({code})" if code else "")
    return CatalogueError(
        f"{label}: {field}: {problem}", file=file, index=index, code=code, field=field
    )


@dataclass(frozen=True)
class Catalogue:
    """Procedures by TTHC code and units by unit code, both read-only."""

    procedures: Mapping[str, Procedure]
    units: Mapping[str, Unit]
    # Codes taken out of the catalogue, with why (and what replaces them): no new dossier is
    # filed under them, those already filed keep their version.
    retired: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def procedure(self, code: str) -> Procedure:
        try:
            return self.procedures[code]
        except KeyError:
            raise CatalogueError(f"unknown procedure code {code}", code=code) from None

    def unit(self, code: str) -> Unit:
        try:
            return self.units[code]
        except KeyError:
            raise CatalogueError(f"unknown unit code {code}", code=code) from None

    def wards(self) -> list[Unit]:
        """Commune-level units (phường and xã), the ward tier, in file order."""
        return [u for u in self.units.values() if u.kind in _KINDS_FOR_TIER[Tier.WARD]]

    def service_centres(self) -> list[Unit]:
        """The city's Public Administration Service Centre and its branches, in file order."""
        return [u for u in self.units.values() if u.kind is UnitKind.CITY_SERVICE_CENTRE]

    def departments(self) -> list[Unit]:
        """City-level deciding units, in file order."""
        return [u for u in self.units.values() if u.kind is UnitKind.CITY_DEPARTMENT]


def load_catalogue(
    procedures_path: Path | None = None, units_path: Path | None = None
) -> Catalogue:
    """Read, validate and cross-check the two data files (the shipped ones by default)."""
    units_path = units_path or UNITS_FILE
    procedures_path = procedures_path or PROCEDURES_FILE
    units = _load_units(units_path)
    procedures = _load_procedures(procedures_path, units)
    retired = _load_retired(procedures_path, procedures)
    return Catalogue(
        procedures=MappingProxyType(procedures),
        units=MappingProxyType(units),
        retired=MappingProxyType(retired),
    )


# The procedures in effect in this process: the shipped file's until `use_procedures` installs
# those recorded in the database (store.startup does it before the first dossier is filed).
_IN_EFFECT: dict[str, Procedure] = {}


@lru_cache(maxsize=1)
def shipped_catalogue() -> Catalogue:
    """The catalogue as the shipped data files have it, loaded once per process."""
    return load_catalogue()


@lru_cache(maxsize=1)
def default_catalogue() -> Catalogue:
    """The catalogue in effect in this process, one object for its whole life: the shipped file
    when loaded, then whatever `use_procedures` installs (the `procedures` table's latest
    versions), seen at once by everything holding this object."""
    shipped = shipped_catalogue()
    _IN_EFFECT.update(shipped.procedures)
    return Catalogue(
        procedures=MappingProxyType(_IN_EFFECT), units=shipped.units, retired=shipped.retired
    )


def use_procedures(procedures: Iterable[Procedure]) -> None:
    """Make `procedures` (one version per code) the procedures in effect for new dossiers.

    Each is checked against the units again, so a recorded entry that no longer fits
    `units.json` stops the start naming it instead of refusing dossiers later. Dossiers already
    filed are not touched: each carries the procedure version it was filed under."""
    catalogue = default_catalogue()
    chosen: dict[str, Procedure] = {}
    for procedure in procedures:
        if procedure.code in catalogue.retired:
            continue
        if procedure.code in chosen:
            raise CatalogueError(f"procedure {procedure.code} given twice", code=procedure.code)
        problem = check_procedure(procedure, catalogue.units)
        if problem is not None:
            field, rule = problem
            raise CatalogueError(
                f"recorded procedure {procedure.code} version {procedure.version}: {field}: {rule}",
                code=procedure.code,
                field=field,
            )
        chosen[procedure.code] = procedure
    _IN_EFFECT.clear()
    _IN_EFFECT.update(chosen)


def missing_documents(
    procedure: Procedure, submitted_kinds: Iterable[str]
) -> list[RequiredDocument]:
    """Required documents not among `submitted_kinds`, in catalogue order.

    Decree 61/2018 art. 19(4) (and, at intake, Circular 01/2018 form 02): the supplement
    request lists everything missing at once, so the counter asks for all of these in one form.
    """
    submitted = set(submitted_kinds)
    return [doc for doc in procedure.required_documents if doc.kind not in submitted]


def fee_vnd(procedure: Procedure, pages: int, copies: int, *, online: bool = False) -> int:
    """The fee in VND for `copies` copies of a `pages`-page document (0 when there is no fee).

    `online`: the dossier was filed online; a procedure whose text exempts online filings
    (`online_fee_exempt`, its basis in `legal_basis`) then costs nothing.

    A flat fee is charged once per copy (per case for certification, per copy for civil-status
    extracts; Circular 226/2016/TT-BTC, Circular 281/2016/TT-BTC): pass `copies=1` for a single
    case. The per-page rule for certified copies prices each copy's first `first_pages` pages at
    `first_page_vnd`, the rest at `next_page_vnd`, capped at `max_per_copy_vnd` per copy
    (2,000 VND/page, 1,000 from page 3, at most 200,000 per copy).
    """
    if pages < 0 or copies < 0:
        raise ValueError(f"pages and copies must be non-negative, got {pages} and {copies}")
    fee = procedure.fee
    if fee is None or (online and procedure.online_fee_exempt):
        return 0
    if isinstance(fee, FlatFee):
        return fee.amount_vnd * copies
    first = min(pages, fee.first_pages)
    per_copy = first * fee.first_page_vnd + (pages - first) * fee.next_page_vnd
    return min(per_copy, fee.max_per_copy_vnd) * copies


def billable_pages(procedure: Procedure, documents: Iterable[tuple[str, int]]) -> int:
    """Pages the per-page rule charges, from (document kind, pages) pairs: those of the copy
    being certified when the fee names it, else every document's."""
    fee = procedure.fee
    counted = fee.counted_document if isinstance(fee, PerPageFee) else None
    return sum(pages for kind, pages in documents if counted is None or kind == counted)


# The copies book keeps the scope every certification was numbered in before the books were
# split, so its series goes on where it was; the other books each start their own.
_LEGACY_BOOK = CertificationBook.COPIES


def book_scope(procedure: Procedure, unit_code: str, year: int) -> str:
    """The number series a certification of `procedure` at `unit_code` takes in `year`: one per
    book (Circular 01/2020/TT-BTP numbers each book on its own, from 1 each year)."""
    book = _book_of(procedure)
    base = f"certbook:{unit_code}:{year}"
    return base if book is _LEGACY_BOOK else f"{base}:{book.value}"


def book_entry(procedure: Procedure, number: int, year: int) -> str:
    """The entry printed on the certified result: its number and the book's number and symbol."""
    return f"Số chứng thực {number}, quyển số 01/{year}-SCT/{_book_of(procedure).value}"


def _book_of(procedure: Procedure) -> CertificationBook:
    if procedure.certification_book is None:
        raise CatalogueError(
            f"procedure {procedure.code} is numbered in no certification book",
            code=procedure.code,
            field="certification_book",
        )
    return procedure.certification_book


# --- loading -------------------------------------------------------------------------------


def _read_entries(path: Path, key: str) -> list[Any]:
    """The list of entries in a data file: a bare list, or an object with `key` (and metadata)."""
    raw = _read_json(path, key)
    if isinstance(raw, dict):
        raw = raw.get(key)
    if not isinstance(raw, list):
        raise CatalogueError(f"{path.name}: expected a list of {key}", file=path.name, field=key)
    if not raw:
        raise CatalogueError(f"{path.name}: no {key}", file=path.name, field=key)
    return raw


def _read_json(path: Path, key: str) -> Any:
    """A data file's JSON, its top-level keys checked when it is an object."""
    name = path.name
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogueError(f"{name}: cannot read {path}: {exc.strerror}", file=name) from exc
    except json.JSONDecodeError as exc:
        raise CatalogueError(
            f"{name}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", file=name
        ) from exc
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - _METADATA_KEYS - {key, _RETIRED_KEY})
        if unknown:
            raise CatalogueError(f"{name}: unknown top-level keys {unknown}", file=name)
        for meta in _METADATA_KEYS & set(raw):
            if not isinstance(raw[meta], str):
                raise CatalogueError(f"{name}: {meta}: should be a string", file=name, field=meta)
    return raw


def _load_retired(path: Path, procedures: Mapping[str, Procedure]) -> dict[str, str]:
    """`retired`: [{code, replaced_by?, reason}], codes no new dossier may be filed under."""
    raw = _read_json(path, "procedures")
    entries = raw.get(_RETIRED_KEY, []) if isinstance(raw, dict) else []
    file = path.name
    retired: dict[str, str] = {}
    for index, entry in enumerate(entries if isinstance(entries, list) else [None]):
        where = f"{file} {_RETIRED_KEY}[{index}]"
        if not isinstance(entry, dict) or set(entry) - {"code", "replaced_by", "reason"}:
            raise CatalogueError(f"{where}: should be {{code, replaced_by, reason}}", file=file)
        code, by, reason = entry.get("code"), entry.get("replaced_by"), entry.get("reason")
        if not isinstance(code, str) or not isinstance(reason, str) or not reason:
            raise CatalogueError(f"{where}: needs a code and a reason", file=file)
        if code in procedures:
            raise CatalogueError(f"{where}: {code} is retired and listed", file=file, code=code)
        if by is not None and by not in procedures:
            raise CatalogueError(f"{where}: replaced_by {by} is not a procedure", file=file)
        retired[code] = f"{reason} (replaced by {by})" if by else reason
    return retired


def _validate(model: type[_Model], file: str, index: int, entry: Any) -> _Model:
    code = _entry_code(entry)
    if not isinstance(entry, dict):
        raise _entry_error(file, index, code, "(entry)", "should be a JSON object")
    try:
        return model.model_validate(entry)
    except ValidationError as exc:
        problems = [(_field_path(err["loc"], entry), err["msg"]) for err in exc.errors()]
        first_field = problems[0][0]
        text = "; ".join(f"{f}: {m}" for f, m in problems)
        label = f"{file} entry {index}" + (f" ({code})" if code else "")
        raise CatalogueError(
            f"{label}: {text}", file=file, index=index, code=code, field=first_field
        ) from exc


def _entry_code(entry: Any) -> str | None:
    if isinstance(entry, dict):
        code = entry.get("code")
        if isinstance(code, str) and code:
            return code
    return None


def _field_path(loc: Sequence[int | str], entry: Any) -> str:
    """`deadline.days`, `required_documents[2].kind`: pydantic's loc without union tags.

    A discriminated union adds the tag to the loc (`deadline.working_days.days`); the tag is
    the value of the input's `kind`, not a key, so it is dropped.
    """
    parts: list[str] = []
    node: Any = entry
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and 0 <= item < len(node) else None
            continue
        if isinstance(node, dict) and item not in node and node.get("kind") == item:
            continue
        parts.append(f".{item}" if parts else item)
        node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(entry)"


def _load_units(path: Path) -> dict[str, Unit]:
    file = path.name
    units: dict[str, Unit] = {}
    index_of_code: dict[str, int] = {}
    index_of_agency: dict[str, int] = {}
    for index, entry in enumerate(_read_entries(path, "units")):
        unit = _validate(Unit, file, index, entry)
        if unit.code in index_of_code:
            raise _entry_error(
                file,
                index,
                unit.code,
                "code",
                f"duplicate unit code, already at entry {index_of_code[unit.code]}",
            )
        if unit.agency_code in index_of_agency:
            raise _entry_error(
                file,
                index,
                unit.code,
                "agency_code",
                f"duplicate agency code {unit.agency_code}, already at entry "
                f"{index_of_agency[unit.agency_code]}",
            )
        if (unit.address is None) != (unit.address_source is None):
            raise _entry_error(
                file, index, unit.code, "address_source", "an address needs its source, and only"
            )
        index_of_code[unit.code] = index
        index_of_agency[unit.agency_code] = index
        units[unit.code] = unit
    for unit in units.values():
        if unit.parent is None:
            continue
        index = index_of_code[unit.code]
        if unit.kind is not UnitKind.CITY_SERVICE_CENTRE:
            raise _entry_error(
                file, index, unit.code, "parent", "only a service centre's branch has a parent"
            )
        parent = units.get(unit.parent)
        if parent is None or parent.kind is not UnitKind.CITY_SERVICE_CENTRE:
            raise _entry_error(
                file, index, unit.code, "parent", f"{unit.parent} is not a city service centre"
            )
    return units


def _load_procedures(path: Path, units: Mapping[str, Unit]) -> dict[str, Procedure]:
    file = path.name
    procedures: dict[str, Procedure] = {}
    index_of_code: dict[str, int] = {}
    for index, entry in enumerate(_read_entries(path, "procedures")):
        procedure = _validate(Procedure, file, index, entry)
        if procedure.code in index_of_code:
            raise _entry_error(
                file,
                index,
                procedure.code,
                "code",
                f"duplicate procedure code, already at entry {index_of_code[procedure.code]}",
            )
        problem = check_procedure(procedure, units)
        if problem is not None:
            raise _entry_error(file, index, procedure.code, *problem)
        index_of_code[procedure.code] = index
        procedures[procedure.code] = procedure
    return procedures


def check_procedure(p: Procedure, units: Mapping[str, Unit]) -> tuple[str, str] | None:
    """The first cross-field inconsistency as (field, problem), or None."""
    if p.competent_unit_kind not in _KINDS_FOR_TIER[p.tier]:
        allowed = ", ".join(sorted(_KINDS_FOR_TIER[p.tier]))
        return "competent_unit_kind", f"{p.tier} tier is decided by {allowed}"
    if p.tier is Tier.CITY:
        if p.competent_department is None:
            return "competent_department", "required for a city-tier procedure"
        department = units.get(p.competent_department)
        if department is None:
            return "competent_department", f"unknown unit {p.competent_department}"
        if department.kind is not UnitKind.CITY_DEPARTMENT:
            return (
                "competent_department",
                f"{p.competent_department} is a {department.kind}, not a city department",
            )
    elif p.competent_department is not None:
        # Ward tier: the competent body is the People's Committee of the ward or commune the
        # dossier belongs to, never a fixed unit.
        return "competent_department", "must be empty for a ward-tier procedure"
    if p.certification and p.certification_book is None:
        return "certification_book", "a certification procedure names its book (BS, CK or HĐGD)"
    if not p.certification and p.certification_book is not None:
        return "certification_book", "only certification procedures are numbered in a book"
    if p.online_fee_exempt and p.fee is None:
        return "online_fee_exempt", "an exemption needs a fee to exempt"
    if p.certification and p.tier is not Tier.WARD:
        # Decree 23/2015 as amended by Decree 280/2025: certification is done by communes.
        return "tier", "certification procedures are ward tier"
    if isinstance(p.deadline, SameDayDeadline) and not p.certification:
        # Same day with the 15:00 cutoff is a certification rule (Decree 23/2015 art. 7).
        return "deadline.kind", "same_day deadlines are for certification procedures only"
    if isinstance(p.fee, PerPageFee) and not p.certification:
        return "fee.kind", "per_page fees are for certification procedures only"
    seen: dict[str, int] = {}
    for i, doc in enumerate(p.required_documents):
        if doc.kind in seen:
            return (
                f"required_documents[{i}].kind",
                f"duplicate document kind {doc.kind}, already at [{seen[doc.kind]}]",
            )
        seen[doc.kind] = i
    if isinstance(p.fee, PerPageFee) and p.fee.counted_document not in (None, *seen):
        return "fee.counted_document", f"{p.fee.counted_document} is not a required document"
    if not p.delivery_channels:
        return "delivery_channels", "at least one delivery channel is required"
    if len(set(p.delivery_channels)) != len(p.delivery_channels):
        return "delivery_channels", "duplicate delivery channel"
    if len(set(p.registries)) != len(p.registries):
        return "registries", "duplicate registry"
    if p.supplement_text is None:
        # Decree 61/2018 art. 19(4) holds unless the procedure's own text says otherwise.
        if p.supplement_rule is not SupplementRule.RESTART:
            return "supplement_text", "the pause rule needs the procedure's text that gives it"
        if p.supplement_requests != DECREE_SUPPLEMENT_REQUESTS:
            return "supplement_text", "more than one supplement request needs the text allowing it"
        if p.supplement_window_days != DECREE_SUPPLEMENT_WINDOW_DAYS:
            return (
                "supplement_text",
                "a supplement window other than 3 working days needs the text that sets it",
            )
    return None


# --- importing a catalogue file --------------------------------------------------------------
# The flat CSV format (README "Catalogue"): one procedure a row, these columns, UTF-8. Cells
# left empty take the field's default. Lists are separated by "|".
IMPORT_COLUMNS: tuple[str, ...] = (
    "code",
    "name",
    "field",
    "tier",  # ward | city
    "competent_unit_kind",  # ward | commune | city_department
    "competent_department",  # unit code of the deciding city department (city tier)
    "certification",  # yes | no
    "certification_book",  # BS | CK | HĐGD (certification only)
    "deadline",  # N (working days) | same_day | same_day HH:MM (cutoff)
    "fee",  # empty (none) | N (flat VND) | per_page F/P/N/MAX[/document kind]
    "online_fee_exempt",  # yes | no
    "supplement_rule",  # restart | pause
    "supplement_requests",
    "supplement_window_days",  # N | until_decision
    "supplement_text",
    "required_documents",  # kind=Name | kind=Name
    "registries",  # population | civil_status | land | business
    "e_signed",  # yes | no
    "delivery_channels",  # counter | post | online
    "legal_basis",
)
REQUIRED_COLUMNS: frozenset[str] = frozenset(
    {
        "code",
        "name",
        "field",
        "tier",
        "competent_unit_kind",
        "deadline",
        "required_documents",
        "delivery_channels",
        "legal_basis",
    }
)
_LIST_COLUMNS = frozenset({"registries", "delivery_channels"})
_BOOL_COLUMNS = frozenset({"certification", "online_fee_exempt", "e_signed"})
_INT_COLUMNS = frozenset({"supplement_requests"})
_TRUE = frozenset({"yes", "true", "1", "có", "x"})
_FALSE = frozenset({"no", "false", "0", "không"})
# The version of an imported row is the import's to give; rows are validated with this one.
_UNVERSIONED = 1
# A row of an imported file: its number, its Procedure-shaped entry, its cells' errors.
_Row = tuple[int, Any, list[tuple[str, str]]]


class CatalogueImportError(CatalogueError):
    """The file cannot be imported; `errors` lists every rule every row breaks."""

    def __init__(self, file: str, errors: Sequence[ImportRowError]) -> None:
        listed = "\n".join(f"  {e}" for e in errors)
        super().__init__(f"{file}: {len(errors)} error(s), nothing imported:\n{listed}", file=file)
        self.errors = tuple(errors)


def read_import_file(
    path: Path, units: Mapping[str, Unit], retired: Mapping[str, str] | None = None
) -> list[Procedure]:
    """The procedures of a CSV or JSON catalogue file, each row validated and cross-checked
    against `units`; CatalogueImportError listing every error when any row is bad.

    JSON holds Procedure objects (a list, or `{"procedures": [...]}`); their `version` is
    ignored, the import gives it."""
    name = path.name
    rows: list[_Row]
    if path.suffix.lower() == ".csv":
        rows = _csv_rows(path)
    elif path.suffix.lower() == ".json":
        rows = [
            (index, dict(entry) if isinstance(entry, dict) else entry, [])
            for index, entry in enumerate(_read_entries(path, "procedures"), start=1)
        ]
    else:
        raise CatalogueError(f"{name}: a catalogue file is .csv or .json", file=name)
    errors: list[ImportRowError] = []
    procedures: list[Procedure] = []
    row_of_code: dict[str, int] = {}
    for row, entry, cell_errors in rows:
        code = _entry_code(entry)
        errors.extend(ImportRowError(row=row, code=code, field=f, rule=r) for f, r in cell_errors)
        if not isinstance(entry, dict):
            errors.append(ImportRowError(row=row, field="(entry)", rule="should be an object"))
            continue
        if code is not None and code in row_of_code:
            errors.append(
                ImportRowError(
                    row=row,
                    code=code,
                    field="code",
                    rule=f"duplicate procedure code, already at row {row_of_code[code]}",
                )
            )
        elif code is not None:
            row_of_code[code] = row
        if code is not None and retired and code in retired:
            errors.append(
                ImportRowError(
                    row=row, code=code, field="code", rule=f"retired code: {retired[code]}"
                )
            )
        entry.setdefault("version", _UNVERSIONED)
        try:
            procedure = Procedure.model_validate(entry)
        except ValidationError as exc:
            # A cell that could not be read is reported once, as read, not again as missing.
            unread = {f for f, _ in cell_errors}
            for e in exc.errors():
                field = _field_path(e["loc"], entry)
                if field.split(".")[0].split("[")[0] not in unread:
                    errors.append(ImportRowError(row=row, code=code, field=field, rule=e["msg"]))
            continue
        if cell_errors:
            continue
        problem = check_procedure(procedure, units)
        if problem is not None:
            errors.append(ImportRowError(row=row, code=code, field=problem[0], rule=problem[1]))
            continue
        procedures.append(procedure.model_copy(update={"version": _UNVERSIONED}))
    if errors:
        raise CatalogueImportError(name, errors)
    if not procedures:
        raise CatalogueError(f"{name}: no procedures", file=name)
    return procedures


def plan_import(
    file: str,
    procedures: Sequence[Procedure],
    current: Mapping[str, Procedure],
    in_flight: Mapping[tuple[str, int], int] | None = None,
) -> ImportPlan:
    """What importing `procedures` over the `current` ones (latest version per code) records:
    a new code gets version 1, a changed procedure its current version + 1, an unchanged one
    nothing. `in_flight` counts open dossiers per (code, version), for the report."""
    in_flight = in_flight or {}
    changes: list[ProcedureChange] = []
    for procedure in procedures:
        before = current.get(procedure.code)
        if before is None:
            changes.append(
                ProcedureChange(
                    code=procedure.code,
                    name=procedure.name,
                    kind=ChangeKind.NEW,
                    version_before=None,
                    version_after=1,
                )
            )
            continue
        after = procedure.model_copy(update={"version": before.version})
        fields = _changed_fields(before, after)
        changes.append(
            ProcedureChange(
                code=procedure.code,
                name=procedure.name,
                kind=ChangeKind.CHANGED if fields else ChangeKind.UNCHANGED,
                version_before=before.version,
                version_after=before.version + 1 if fields else before.version,
                fields=fields,
                dossiers_in_flight=in_flight.get((before.code, before.version), 0),
            )
        )
    return ImportPlan(file=file, changes=tuple(changes))


def versioned(plan: ImportPlan, procedures: Sequence[Procedure]) -> list[Procedure]:
    """The procedures the plan records, each with the version the plan gives it."""
    by_code = {p.code: p for p in procedures}
    return [
        by_code[c.code].model_copy(update={"version": c.version_after})
        for c in plan.to_record
        if c.version_after is not None
    ]


def _changed_fields(before: Procedure, after: Procedure) -> tuple[FieldChange, ...]:
    old = before.model_dump(mode="json")
    new = after.model_dump(mode="json")
    return tuple(
        FieldChange(field=name, before=_shown(old[name]), after=_shown(new[name]))
        for name in Procedure.model_fields
        if old[name] != new[name]
    )


def _shown(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _csv_rows(path: Path) -> list[_Row]:
    """(row number, Procedure-shaped entry, cell errors) per data row; the header is row 1."""
    name = path.name
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CatalogueError(f"{name}: cannot read {path}: {exc.strerror}", file=name) from exc
    except UnicodeDecodeError as exc:
        raise CatalogueError(f"{name}: not UTF-8 text: {exc.reason}", file=name) from exc
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    header_errors = [
        ImportRowError(row=1, field=h or "(empty)", rule="unknown column")
        for h in header
        if h not in IMPORT_COLUMNS
    ] + [
        ImportRowError(row=1, field=c, rule="required column missing")
        for c in IMPORT_COLUMNS
        if c in REQUIRED_COLUMNS and c not in header
    ]
    if header_errors:
        raise CatalogueImportError(name, header_errors)
    rows: list[_Row] = []
    for row, record in enumerate(reader, start=2):
        cells = {k.strip(): (v or "").strip() for k, v in record.items() if k is not None}
        if None in record:
            rows.append((row, {}, [("(row)", f"more cells than the {len(header)} columns")]))
            continue
        entry, problems = _csv_entry(cells)
        rows.append((row, entry, problems))
    return rows


def _csv_entry(cells: Mapping[str, str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    entry: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for column, cell in cells.items():
        if not cell:
            continue
        try:
            entry[column] = _cell(column, cell)
        except ValueError as exc:
            problems.append((column, str(exc)))
    return entry, problems


def _cell(column: str, cell: str) -> Any:
    if column in _BOOL_COLUMNS:
        if cell.lower() in _TRUE:
            return True
        if cell.lower() in _FALSE:
            return False
        raise ValueError(f"{cell!r} is not yes or no")
    if column in _LIST_COLUMNS:
        return [item.strip() for item in cell.split("|") if item.strip()]
    if column in _INT_COLUMNS:
        return _integer(cell)
    if column == "supplement_window_days":
        return None if cell == "until_decision" else _integer(cell)
    if column == "deadline":
        return _deadline(cell)
    if column == "fee":
        return _fee(cell)
    if column == "required_documents":
        return _documents(cell)
    return cell


def _integer(cell: str) -> int:
    if not cell.isdigit():
        raise ValueError(f"{cell!r} is not a whole number")
    return int(cell)


def _deadline(cell: str) -> dict[str, Any]:
    if cell.isdigit():
        return {"kind": "working_days", "days": int(cell)}
    words = cell.split()
    if words and words[0] == "same_day" and len(words) <= 2:
        deadline: dict[str, Any] = {"kind": "same_day"}
        if len(words) == 2:
            deadline["cutoff"] = words[1]
        return deadline
    raise ValueError(f"{cell!r} is not a number of working days, same_day or same_day HH:MM")


def _fee(cell: str) -> dict[str, Any]:
    if cell.isdigit():
        return {"kind": "flat", "amount_vnd": int(cell)}
    kind, _, rest = cell.partition(" ")
    parts = rest.strip().split("/")
    if kind == "per_page" and len(parts) in (4, 5) and all(p.isdigit() for p in parts[:4]):
        fee: dict[str, Any] = {
            "kind": "per_page",
            "first_pages": int(parts[0]),
            "first_page_vnd": int(parts[1]),
            "next_page_vnd": int(parts[2]),
            "max_per_copy_vnd": int(parts[3]),
        }
        if len(parts) == 5:
            fee["counted_document"] = parts[4]
        return fee
    raise ValueError(f"{cell!r} is not a VND amount or per_page PAGES/FIRST/NEXT/MAX[/kind]")


def _documents(cell: str) -> list[dict[str, str]]:
    documents = []
    for item in cell.split("|"):
        kind, sep, name = item.partition("=")
        if not sep or not kind.strip() or not name.strip():
            raise ValueError(f"{item.strip()!r} is not kind=Name")
        documents.append({"kind": kind.strip(), "name": name.strip()})
    return documents


def catalogue_csv(procedures: Iterable[Procedure]) -> str:
    """The procedures in the flat CSV import format (the inverse of `read_import_file`), so a
    city can start its file from the catalogue in effect."""
    lines: list[list[str]] = [list(IMPORT_COLUMNS)]
    for p in procedures:
        cells = {
            "code": p.code,
            "name": p.name,
            "field": p.field,
            "tier": p.tier.value,
            "competent_unit_kind": p.competent_unit_kind.value,
            "competent_department": p.competent_department or "",
            "certification": _yes_no(p.certification),
            "certification_book": p.certification_book.value if p.certification_book else "",
            "deadline": _deadline_cell(p),
            "fee": _fee_cell(p),
            "online_fee_exempt": _yes_no(p.online_fee_exempt),
            "supplement_rule": p.supplement_rule.value,
            "supplement_requests": str(p.supplement_requests),
            "supplement_window_days": (
                "until_decision"
                if p.supplement_window_days is None
                else str(p.supplement_window_days)
            ),
            "supplement_text": p.supplement_text or "",
            "required_documents": " | ".join(f"{d.kind}={d.name}" for d in p.required_documents),
            "registries": " | ".join(r.value for r in p.registries),
            "e_signed": _yes_no(p.e_signed),
            "delivery_channels": " | ".join(c.value for c in p.delivery_channels),
            "legal_basis": p.legal_basis,
        }
        lines.append([cells[c] for c in IMPORT_COLUMNS])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(lines)
    return out.getvalue()


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _deadline_cell(p: Procedure) -> str:
    if isinstance(p.deadline, SameDayDeadline):
        return f"same_day {p.deadline.cutoff.strftime('%H:%M')}"
    return str(p.deadline.days)


def _fee_cell(p: Procedure) -> str:
    fee = p.fee
    if fee is None:
        return ""
    if isinstance(fee, FlatFee):
        return str(fee.amount_vnd)
    parts = [fee.first_pages, fee.first_page_vnd, fee.next_page_vnd, fee.max_per_copy_vnd]
    tail = f"/{fee.counted_document}" if fee.counted_document else ""
    return f"per_page {'/'.join(str(n) for n in parts)}{tail}"
