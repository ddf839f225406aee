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

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from schemas.catalogue import (
    DECREE_SUPPLEMENT_REQUESTS,
    DECREE_SUPPLEMENT_WINDOW_DAYS,
    FlatFee,
    PerPageFee,
    Procedure,
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
    return Catalogue(procedures=MappingProxyType(procedures), units=MappingProxyType(units))


@lru_cache(maxsize=1)
def default_catalogue() -> Catalogue:
    """The shipped catalogue, loaded once per process."""
    return load_catalogue()


def missing_documents(
    procedure: Procedure, submitted_kinds: Iterable[str]
) -> list[RequiredDocument]:
    """Required documents not among `submitted_kinds`, in catalogue order.

    Decree 61/2018 art. 19(4) (and, at intake, Circular 01/2018 form 02): the supplement
    request lists everything missing at once, so the counter asks for all of these in one form.
    """
    submitted = set(submitted_kinds)
    return [doc for doc in procedure.required_documents if doc.kind not in submitted]


def fee_vnd(procedure: Procedure, pages: int, copies: int) -> int:
    """The fee in VND for `copies` copies of a `pages`-page document (0 when there is no fee).

    A flat fee is charged once per copy (per case for certification, per copy for civil-status
    extracts; Circular 226/2016/TT-BTC, Circular 281/2016/TT-BTC): pass `copies=1` for a single
    case. The per-page rule for certified copies prices each copy's first `first_pages` pages at
    `first_page_vnd`, the rest at `next_page_vnd`, capped at `max_per_copy_vnd` per copy
    (2,000 VND/page, 1,000 from page 3, at most 200,000 per copy).
    """
    if pages < 0 or copies < 0:
        raise ValueError(f"pages and copies must be non-negative, got {pages} and {copies}")
    fee = procedure.fee
    if fee is None:
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


# --- loading -------------------------------------------------------------------------------


def _read_entries(path: Path, key: str) -> list[Any]:
    """The list of entries in a data file: a bare list, or an object with `key` (and metadata)."""
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
        unknown = sorted(set(raw) - _METADATA_KEYS - {key})
        if unknown:
            raise CatalogueError(f"{name}: unknown top-level keys {unknown}", file=name)
        for meta in _METADATA_KEYS & set(raw):
            if not isinstance(raw[meta], str):
                raise CatalogueError(f"{name}: {meta}: should be a string", file=name, field=meta)
        raw = raw.get(key)
    if not isinstance(raw, list):
        raise CatalogueError(f"{name}: expected a list of {key}", file=name, field=key)
    if not raw:
        raise CatalogueError(f"{name}: no {key}", file=name, field=key)
    return raw


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
        problem = _check_procedure(procedure, units)
        if problem is not None:
            raise _entry_error(file, index, procedure.code, *problem)
        index_of_code[procedure.code] = index
        procedures[procedure.code] = procedure
    return procedures


def _check_procedure(p: Procedure, units: Mapping[str, Unit]) -> tuple[str, str] | None:
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
