"""`python -m ops catalogue from-portal SOURCE`: catalogue entries from the national portal's
procedure records (dichvucong.gov.vn), as a JSON file `ops catalogue import` accepts.

SOURCE is JSON Lines, one procedure record a line in the format of
domain/data/sources/dvcqg-procedures.jsonl (the portal page's facts copied verbatim, its
origin in procedures-2025.json). Each record becomes one Procedure, or is skipped with its
reason; the reasons are counted on stderr. The rules:

- tier: a city department of units.json named in `executing_agency` (its name without
  "thành phố Hà Nội", followed by nothing or by a province: "Sở Nội vụ", "Sở Xây dựng tỉnh X";
  "Ủy ban nhân dân cấp tỉnh" and its chairman are the city People's Committee, whose office
  is `van-phong-ubnd-thanh-pho`) and the province level in `agency_levels` → city tier, that
  department; else the commune level with a commune People's Committee (or no agency) named
  → ward tier; else skipped: decided by a ministry or central body, or by a provincial body
  Hanoi's units do not hold.
- deadline: the figure of the direct-filing method ("Trực tiếp"), the one the procedure's
  published text sets; the online service's figure only where that method's is blank (0, no
  unit) or to choose among several (stages or cases: the one it also gives), as it disagrees
  with the procedure's in some records and many have none. One figure in "ngày làm việc" →
  that many working days; calendar days ("ngày"), hours, no unit, several figures the online
  service does not choose among, or a figure the contract cannot hold → skipped.
- fee: the direct-filing method's fees: none listed → null, marked "lệ phí [?]" in
  legal_basis; all 0 → null (no fee); one amount in đồng (the portal's currency id for đồng,
  or no currency and the same amount written "N đồng" in its text) → a flat fee; anything
  else (amounts by case, a foreign currency, a figure its text contradicts) → null, marked
  "lệ phí [?]".
- documents: the checklist of the first case, each with an ASCII slug of its name as kind
  (the portal marks few as required, so all of them are listed).
- channels: counter and post where the record has those methods (counter when it has none),
  online where it takes online submission. legal_basis: the record's document codes.
- a province's own procedure (its legal basis cites its People's Council's resolutions or its
  People's Committee's decisions) is skipped unless it is Hanoi's (named "(Hà Nội) ..." or
  decided by a Hanoi body).
- certification procedures are skipped (their book and same-day rule are set by hand), and so
  are codes the shipped catalogue holds: their hand-entered entries are richer.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain.catalogue import CatalogueError, check_procedure
from schemas.catalogue import (
    DeliveryChannel,
    FlatFee,
    Procedure,
    RequiredDocument,
    Tier,
    Unit,
    UnitKind,
    WorkingDaysDeadline,
)

# The portal's words.
DIRECT = "Trực tiếp"
POST = "Bưu chính"
WORKING_DAYS = "ngày làm việc"
CALENDAR_DAYS = "ngày"
COMMUNE_LEVEL = "Xã/Phường"
PROVINCE_LEVEL = "Tỉnh"
_NAME_PREFIX = "Thủ tục "
UNCONFIRMED_FEE = "lệ phí [?]"
UNCITED_BASIS = "căn cứ pháp lý [?]"
# The contract's limits on a working-days deadline (schemas.catalogue.WorkingDaysDeadline).
_MAX_DAYS = 120
_KIND_MAX_LENGTH = 40
# A figure the portal left blank.
_EMPTY_FIGURE = (0.0, "")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PortalMethod(_Record):
    submission_method: str
    processing_time_qty: float | None = None
    processing_time_unit: str | None = None
    processing_time_text: str | None = None


class PortalProcessing(_Record):
    qty: float | None = None
    unit: str | None = None


class PortalFee(_Record):
    fee_type: str | None = None
    amount_value: float | None = None
    amount_text: str | None = None
    currency_id: str | None = None
    submission_method: str | None = None


class PortalDocument(_Record):
    name: str
    required: bool | None = None
    case: str | None = None


class PortalRecord(_Record):
    """One procedure page of the national portal, as dvcqg-procedures.jsonl holds it."""

    code: str
    name: str
    domain: str | None = None
    executing_agency: str | None = None
    agency_levels: str | None = None
    state: str | None = None
    processing_time_text: str | None = None
    methods: tuple[PortalMethod, ...] = ()
    online_processing: PortalProcessing | None = None
    fees: tuple[PortalFee, ...] = ()
    documents: tuple[PortalDocument, ...] = ()
    legal_basis: tuple[str, ...] = ()
    has_online_submission: int | None = None
    portal_url: str
    read_offset: int | None = Field(
        default=None, description="Offset in the scraped file where the record was read"
    )


class SkipReason(StrEnum):
    CENTRAL = "decided by a ministry or central body"
    NO_UNIT = "decided by a provincial body Hanoi's units do not hold"
    CALENDAR_DAYS = "deadline in calendar days"
    DEADLINE_UNIT = "deadline in hours or without a unit"
    SEVERAL_FIGURES = "several processing figures for direct filing"
    NO_DEADLINE = "no processing figure for direct filing"
    DEADLINE_RANGE = "deadline the contract cannot hold"
    NO_DOCUMENTS = "no documents listed"
    CERTIFICATION = "certification (book and same-day rule set by hand)"
    LOCAL = "another province's own procedure (its council's or committee's texts)"
    SHIPPED = "already in the catalogue, or retired from it"
    INVALID = "fails the catalogue's validation"


class Skipped(_Record):
    code: str
    reason: SkipReason
    detail: str = ""


class PortalBuild(_Record):
    """What the builder makes of a source file: the procedures, and what it left out."""

    procedures: tuple[Procedure, ...]
    skipped: tuple[Skipped, ...]

    def skipped_by_reason(self) -> dict[SkipReason, int]:
        counts = Counter(s.reason for s in self.skipped)
        return {reason: counts[reason] for reason in SkipReason if counts[reason]}


class PortalImportFile(_Record):
    """The builder's output: the JSON form of `ops catalogue import`."""

    source: str
    procedures: tuple[Procedure, ...]


def read_portal_records(path: Path) -> list[PortalRecord]:
    """The records of a JSON Lines source file; CatalogueError naming the line when bad."""
    records: list[PortalRecord] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(PortalRecord.model_validate_json(line))
        except ValidationError as exc:
            raise CatalogueError(f"{path.name} line {number}: {exc}", file=path.name) from exc
    return records


def portal_name(name: str) -> str:
    """A portal name in the catalogue's form: no leading 'Thủ tục ', capital first."""
    name = " ".join(name.split()).removeprefix(_NAME_PREFIX)
    return name[:1].upper() + name[1:]


def portal_deadline(record: PortalRecord) -> WorkingDaysDeadline | SkipReason:
    """The deadline the record sets for direct filing, or why it gives none the contract holds."""
    online = record.online_processing
    online_figure = online and (online.qty, (online.unit or "").strip())
    figures = {
        (m.processing_time_qty, (m.processing_time_unit or "").strip())
        for m in record.methods
        if m.submission_method == DIRECT
    } - {_EMPTY_FIGURE, (None, "")}
    if not figures:
        # The direct-filing method left blank (0, no unit): the online service's figure.
        if not online_figure or online_figure in (_EMPTY_FIGURE, (None, "")):
            return SkipReason.NO_DEADLINE
        figures = {online_figure}
    if len(figures) > 1:
        # Stages or cases: the one the online service also gives (the decision's, from the
        # complete dossier, where the other is the check at receipt), else none.
        if not online_figure or online_figure not in figures:
            return SkipReason.SEVERAL_FIGURES
        figures = {online_figure}
    [(qty, unit)] = figures
    if unit == CALENDAR_DAYS:
        return SkipReason.CALENDAR_DAYS
    if unit != WORKING_DAYS:
        return SkipReason.DEADLINE_UNIT
    if qty is None or qty != int(qty) or not 1 <= qty <= _MAX_DAYS:
        return SkipReason.DEADLINE_RANGE
    return WorkingDaysDeadline(days=int(qty))


# Names the portal gives the city People's Committee and its chairman: their dossiers go
# through the committee's office.
_PEOPLES_COMMITTEE_OFFICE = "van-phong-ubnd-thanh-pho"
_PEOPLES_COMMITTEE_NAMES = (
    "ủy ban nhân dân",
    "ubnd",
    "chủ tịch ủy ban nhân dân",
    "chủ tịch ubnd",
)
# Provincial bodies the portal names that are other departments in Hanoi. Other provinces'
# department of culture, sports and tourism is two in Hanoi: Sở Du lịch for tourism fields,
# Sở Văn hóa và Thể thao for the rest (and for sports, which the portal also gives as the
# province's "specialised body for sports").
_CULTURE_AND_SPORTS = "so-van-hoa-the-thao"
_TOURISM = "so-du-lich"
_OTHER_NAMES = {
    "sở văn hóa, thể thao và du lịch": _CULTURE_AND_SPORTS,
    "cơ quan chuyên môn về thể dục, thể thao thuộc ủy ban nhân dân cấp tỉnh": _CULTURE_AND_SPORTS,
}
_TOURISM_FIELD = re.compile(r"du lịch|lữ hành")
# What may follow a department's name: nothing, the next agency, or a province (another
# province's department: "Sở Xây dựng tỉnh X", "Sở Xây dựng - TP.HCM").
_PROVINCE_QUALIFIER = re.compile(r"^(?:$|[,;]|tỉnh\b|cấp tỉnh\b|thành phố\b|tp\b|[-–(])")
# A province's own text: its People's Council's resolution or its People's Committee's decision.
_PROVINCIAL_TEXT = re.compile(r"NQ-HĐND|QĐ-UBND")
_HANOI_PREFIX = "(Hà Nội)"
_COMMUNE_BODY = re.compile(r"\b(?:xã(?! hội)|phường|cấp xã)\b")
# A ministry ("Bộ Tài chính", "Cục Lãnh sự - Bộ Ngoại giao"), not a province's military
# command ("Bộ Chỉ huy Quân sự tỉnh").
_CENTRAL_BODY = re.compile(
    r"(?:^|- )(?:bộ (?!chỉ huy)|cục |tổng cục )|trung ương|chính phủ|thủ tướng"
)
# The old placement of the tone mark ("hoá", "Uỷ") as the new ("hóa", "Ủy"), so names compare.
_OLD_TONE_PAIRS = tuple(
    zip(
        ("oá", "oà", "oả", "oã", "oạ", "oé", "oè", "oẻ", "oẽ", "oẹ", "uý", "uỳ", "uỷ", "uỹ", "uỵ"),
        ("óa", "òa", "ỏa", "õa", "ọa", "óe", "òe", "ỏe", "õe", "ọe", "úy", "ùy", "ủy", "ũy", "ụy"),
        strict=True,
    )
)


def department_names(units: Mapping[str, Unit]) -> dict[str, str]:
    """The names the portal gives each city department (folded) → its unit code."""
    names: dict[str, str] = {}
    for unit in units.values():
        if unit.kind is not UnitKind.CITY_DEPARTMENT:
            continue
        base = re.split(r" (?:thành phố )?Hà Nội\b", unit.name)[0]
        names[_folded(base)] = unit.code
    if _PEOPLES_COMMITTEE_OFFICE in units:
        names |= dict.fromkeys(_PEOPLES_COMMITTEE_NAMES, _PEOPLES_COMMITTEE_OFFICE)
    names |= {name: code for name, code in _OTHER_NAMES.items() if code in units}
    return names


def _folded(text: str) -> str:
    folded = " ".join(unicodedata.normalize("NFC", text).casefold().split())
    for old, new in _OLD_TONE_PAIRS:
        folded = folded.replace(old, new)
    return folded


def _agencies(record: PortalRecord) -> list[str]:
    return [_folded(a) for a in re.split(r"[,;]", record.executing_agency or "") if a.strip()]


def _department(record: PortalRecord, names: Mapping[str, str]) -> str | None:
    """The first city department the record's agency text names, where a name begins the
    text or follows a comma."""
    text = _folded(record.executing_agency or "")
    found: list[tuple[int, str]] = []
    # Longest name first, so "chủ tịch ủy ban nhân dân" is tried before "ủy ban nhân dân".
    for name in sorted(names, key=len, reverse=True):
        for match in re.finditer(re.escape(name), text):
            start, end = match.span()
            begins = start == 0 or text[:start].rstrip().endswith((",", ";"))
            if begins and _PROVINCE_QUALIFIER.match(text[end:].strip()):
                found.append((start, names[name]))
    if not found:
        return None
    code = min(found)[1]
    if code == _CULTURE_AND_SPORTS and _TOURISM_FIELD.search(_folded(record.domain or "")):
        return _TOURISM
    return code


def competent_tier(
    record: PortalRecord, units: Mapping[str, Unit]
) -> tuple[Tier, str | None] | SkipReason:
    """(tier, deciding city department or None) from the record's agencies and levels."""
    levels = {level.strip() for level in (record.agency_levels or "").split(",")}
    agencies = _agencies(record)
    if PROVINCE_LEVEL in levels:
        department = _department(record, department_names(units))
        if department is not None:
            return Tier.CITY, department
    if COMMUNE_LEVEL in levels and (not agencies or any(_COMMUNE_BODY.search(a) for a in agencies)):
        return Tier.WARD, None
    if not levels & {PROVINCE_LEVEL, COMMUNE_LEVEL} or (
        agencies and all(_CENTRAL_BODY.search(a) for a in agencies)
    ):
        return SkipReason.CENTRAL
    return SkipReason.NO_UNIT


_LIST_MARKER = re.compile(r"^\s*(?:[a-zA-Zđ]|\d{1,2})[.)]\s+")


def _is_hanoi(record: PortalRecord) -> bool:
    """Hanoi's own procedure: the portal prefixes its name with "(Hà Nội)" or names a Hanoi
    body as the agency."""
    return record.name.lstrip().startswith(_HANOI_PREFIX) or "hà nội" in _folded(
        record.executing_agency or ""
    )


def document_kind(name: str) -> str:
    """An ASCII slug of a document's name: its first words, without diacritics or the list
    marker ("1.", "a)") the portal leaves in front of some."""
    name = _LIST_MARKER.sub("", name)
    ascii_name = unicodedata.normalize("NFKD", name.replace("đ", "d").replace("Đ", "D"))
    ascii_name = ascii_name.encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", ascii_name)
    kind = ""
    for word in words:
        longer = f"{kind}_{word}" if kind else word
        if len(longer) > _KIND_MAX_LENGTH:
            break
        kind = longer
    return kind or "document"


def required_documents(record: PortalRecord) -> tuple[RequiredDocument, ...]:
    """The first case's checklist, each kind unique (a repeated slug gets _2, _3 ...)."""
    documents: list[RequiredDocument] = []
    seen: Counter[str] = Counter()
    for document in record.documents:
        name = " ".join(document.name.split())
        if not name:
            continue
        kind = document_kind(name)
        seen[kind] += 1
        if seen[kind] > 1:
            kind = f"{kind}_{seen[kind]}"
        documents.append(RequiredDocument(kind=kind, name=name))
    return tuple(documents)


# The portal's currency id for đồng: the one whose fee texts say "đồng" (another, used for
# consular fees, never does).
VND_CURRENCY = "019b3fb2-b5b8-70ac-85e2-9409ec1eaffa"
_DONG_AMOUNT = re.compile(r"(\d{1,3}(?:\.\d{3})+|\d+)\s*(?:đồng|đ\b)")


def _amount_vnd(fee: PortalFee) -> int | None:
    """The fee in đồng: its amount when in the đồng currency; without a currency, only when
    its text writes that same amount in đồng (the figure alone misreads "500.000" as 500)."""
    amount = fee.amount_value or 0
    if amount != int(amount):
        return None
    if fee.currency_id == VND_CURRENCY:
        return int(amount)
    if fee.currency_id:
        return None
    written = {int(n.replace(".", "")) for n in _DONG_AMOUNT.findall(fee.amount_text or "")}
    return int(amount) if written == {int(amount)} else None


def portal_fee(record: PortalRecord) -> tuple[FlatFee | None, bool]:
    """(fee, confirmed): the direct-filing method's fee as the contract holds it."""
    fees = [f for f in record.fees if f.submission_method in (DIRECT, None)] or list(record.fees)
    if not fees:
        return None, False
    if all(not f.amount_value for f in fees):
        return None, True
    amounts = {_amount_vnd(f) for f in fees}
    if len(amounts) == 1 and None not in amounts:
        [amount] = amounts
        return FlatFee(amount_vnd=amount or 0), True
    return None, False


def delivery_channels(record: PortalRecord) -> tuple[DeliveryChannel, ...]:
    methods = {m.submission_method for m in record.methods}
    channels = []
    if DIRECT in methods or not methods:
        channels.append(DeliveryChannel.COUNTER)
    if POST in methods:
        channels.append(DeliveryChannel.POST)
    if record.has_online_submission:
        channels.append(DeliveryChannel.ONLINE)
    return tuple(channels)


def procedure_from_portal(record: PortalRecord, units: Mapping[str, Unit]) -> Procedure | Skipped:
    """The record as a Procedure (version 1), or why it is left out."""
    if _folded(record.domain or "") == "chứng thực":
        return Skipped(code=record.code, reason=SkipReason.CERTIFICATION)
    local = [c for c in record.legal_basis if _PROVINCIAL_TEXT.search(c)]
    if local and not _is_hanoi(record):
        return Skipped(code=record.code, reason=SkipReason.LOCAL, detail="; ".join(local))
    decided = competent_tier(record, units)
    if isinstance(decided, SkipReason):
        return Skipped(code=record.code, reason=decided, detail=record.executing_agency or "")
    deadline = portal_deadline(record)
    if isinstance(deadline, SkipReason):
        return Skipped(code=record.code, reason=deadline, detail=record.processing_time_text or "")
    documents = required_documents(record)
    if not documents:
        return Skipped(code=record.code, reason=SkipReason.NO_DOCUMENTS)
    fee, fee_confirmed = portal_fee(record)
    basis = [" ".join(c.split()) for c in record.legal_basis if c.strip()] or [UNCITED_BASIS]
    if not fee_confirmed:
        basis.append(UNCONFIRMED_FEE)
    tier, department = decided
    entry = {
        "code": record.code,
        "version": 1,
        "name": portal_name(record.name),
        "field": " ".join((record.domain or "").split()),
        "tier": tier,
        "competent_unit_kind": UnitKind.WARD if tier is Tier.WARD else UnitKind.CITY_DEPARTMENT,
        "competent_department": department,
        "deadline": deadline,
        "required_documents": documents,
        "fee": fee,
        "delivery_channels": delivery_channels(record),
        "legal_basis": "; ".join(dict.fromkeys(basis)),
    }
    try:
        procedure = Procedure.model_validate(entry)
    except ValidationError as exc:
        return Skipped(code=record.code, reason=SkipReason.INVALID, detail=str(exc))
    problem = check_procedure(procedure, units)
    if problem is not None:
        return Skipped(code=record.code, reason=SkipReason.INVALID, detail=": ".join(problem))
    return procedure


def build_from_portal(
    records: Iterable[PortalRecord], units: Mapping[str, Unit], shipped: Collection[str] = ()
) -> PortalBuild:
    """Every record mapped or skipped, codes the catalogue already holds (`shipped`, with its
    retired ones) left out."""
    procedures: list[Procedure] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for record in sorted(records, key=lambda r: r.code):
        if record.code in shipped or record.code in seen:
            skipped.append(Skipped(code=record.code, reason=SkipReason.SHIPPED))
            continue
        seen.add(record.code)
        built = procedure_from_portal(record, units)
        if isinstance(built, Skipped):
            skipped.append(built)
        else:
            procedures.append(built)
    return PortalBuild(procedures=tuple(procedures), skipped=tuple(skipped))


def import_file(build: PortalBuild, source: Path) -> str:
    """The build as the JSON `ops catalogue import` reads."""
    document = PortalImportFile(
        source=f"national portal records, {source.name}", procedures=build.procedures
    )
    data = document.model_dump(mode="json", exclude_defaults=False)
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
