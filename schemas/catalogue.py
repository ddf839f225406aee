"""The procedure catalogue and the units that receive and decide dossiers."""

from __future__ import annotations

from datetime import time
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Tier(StrEnum):
    WARD = "ward"  # cấp xã: ward or commune People's Committee
    CITY = "city"  # cấp tỉnh: a city department


class UnitKind(StrEnum):
    WARD = "ward"
    COMMUNE = "commune"
    CITY_DEPARTMENT = "city_department"
    # Trung tâm Phục vụ hành chính công thành phố and its branches (QĐ 63/2024/QĐ-UBND):
    # counters that receive and return city-tier dossiers; they decide nothing.
    CITY_SERVICE_CENTRE = "city_service_centre"


class Registry(StrEnum):
    POPULATION = "population"
    CIVIL_STATUS = "civil_status"
    LAND = "land"
    BUSINESS = "business"


class DeliveryChannel(StrEnum):
    COUNTER = "counter"
    POST = "post"
    ONLINE = "online"


class CertificationBook(StrEnum):
    """The certification books a commune keeps, one number series each (Circular 01/2020/TT-BTP
    art. 13: sổ chứng thực bản sao từ bản chính, sổ chứng thực chữ ký, sổ chứng thực hợp đồng,
    giao dịch). The value is the book's symbol in its number, e.g. `01/2026-SCT/BS`."""

    COPIES = "BS"  # bản sao từ bản chính
    SIGNATURES = "CK"  # chữ ký, chữ ký người dịch, điểm chỉ
    CONTRACTS = "HĐGD"  # hợp đồng, giao dịch, di chúc, văn bản về di sản (and their amendments)


class SupplementRule(StrEnum):
    # Decree 61/2018 art. 19(4): the processing time counts again from the day the complete
    # dossier arrives.
    RESTART = "restart"
    # Only where a procedure's own text says so (named in `supplement_text`): the appointment
    # moves back by the working time spent waiting.
    PAUSE = "pause"


# Decree 61/2018 art. 19(4): the dossier goes back for a supplement once, within 3 working days
# of receipt, listing everything missing.
DECREE_SUPPLEMENT_REQUESTS = 1
DECREE_SUPPLEMENT_WINDOW_DAYS = 3


class WorkingDaysDeadline(Frozen):
    kind: Literal["working_days"] = "working_days"
    days: int = Field(ge=1, le=120)


class SameDayDeadline(Frozen):
    """Certification: returned the same working day, or the next one when received after the
    cutoff (Decree 23/2015 art. 7 as amended; 15:00 on provincial portals). "After" is strict:
    received at 15:00:00 is due the same day."""

    kind: Literal["same_day"] = "same_day"
    cutoff: time = time(15, 0)


Deadline = Annotated[WorkingDaysDeadline | SameDayDeadline, Field(discriminator="kind")]


class FlatFee(Frozen):
    kind: Literal["flat"] = "flat"
    amount_vnd: int = Field(ge=0)


class PerPageFee(Frozen):
    """Certified copies: a price for the first pages, a lower one after, capped per copy."""

    kind: Literal["per_page"] = "per_page"
    first_pages: int = Field(ge=0)
    first_page_vnd: int = Field(ge=0)
    next_page_vnd: int = Field(ge=0)
    max_per_copy_vnd: int = Field(ge=0)
    counted_document: str | None = Field(
        default=None,
        description="Kind of the submitted document whose pages are charged (the copy being "
        "certified); all documents' pages when absent",
    )


Fee = Annotated[FlatFee | PerPageFee, Field(discriminator="kind")]


class RequiredDocument(Frozen):
    kind: str = Field(pattern=r"^[a-z0-9_]+$", description="Stable slug the counter software sends")
    name: str = Field(min_length=1, description="Vietnamese name of the document")


class Procedure(Frozen):
    """One administrative procedure (TTHC) at one catalogue version."""

    code: str = Field(pattern=r"^[0-9]\.[0-9]{6}$", description="National TTHC code, e.g. 1.001193")
    version: int = Field(ge=1)
    name: str = Field(min_length=3)
    field: str = Field(min_length=2, description="Lĩnh vực, e.g. hộ tịch, chứng thực, đất đai")
    tier: Tier
    competent_unit_kind: UnitKind
    competent_department: str | None = Field(
        default=None, description="Unit code of the deciding city department (city tier only)"
    )
    certification: bool = False
    certification_book: CertificationBook | None = Field(
        default=None,
        description="The book a certification is numbered in (certification procedures only)",
    )
    deadline: Deadline
    supplement_rule: SupplementRule = SupplementRule.RESTART
    supplement_requests: int = Field(
        default=DECREE_SUPPLEMENT_REQUESTS,
        ge=1,
        description="How many times the unit may return the dossier for a supplement",
    )
    supplement_window_days: int | None = Field(
        default=DECREE_SUPPLEMENT_WINDOW_DAYS,
        ge=1,
        description="Working days after receipt within which a supplement may be requested; "
        "null: until the decision",
    )
    supplement_text: str | None = Field(
        default=None,
        min_length=3,
        description="The procedure's own text that sets supplement terms other than the "
        "decree's (Decree 61/2018 art. 19(4)); required for any of them",
    )
    required_documents: tuple[RequiredDocument, ...] = Field(min_length=1)
    registries: tuple[Registry, ...] = ()
    fee: Fee | None = None
    online_fee_exempt: bool = Field(
        default=False,
        description="No fee when the dossier is filed online, where a text grants it (cited in "
        "legal_basis)",
    )
    e_signed: bool = True
    delivery_channels: tuple[DeliveryChannel, ...] = Field(min_length=1)
    legal_basis: str = Field(min_length=3)


class Unit(Frozen):
    """A receiving or deciding body: a ward/commune People's Committee or a city department."""

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    agency_code: str = Field(
        pattern=r"^[0-9A-Z]{3}\.[0-9A-Z]{2}\.[0-9A-Z]{2}\.[A-Z][0-9]{2}$",
        description="Circular 10/2016/TT-BTTTT agency code, the prefix of dossier codes",
    )
    name: str
    kind: UnitKind
    parent: str | None = Field(
        default=None, description="The centre a branch belongs to (city service centre only)"
    )
    address: str | None = Field(
        default=None,
        min_length=5,
        description="Street address as a public source gives it; null when none confirms one",
    )
    address_source: str | None = Field(
        default=None, min_length=5, description="Where the address comes from (required with it)"
    )
    escalation_working_hours: int | None = Field(
        default=None,
        ge=1,
        le=240,
        description="Working hours a task may wait before it goes to the unit's leader; "
        "the engine's default (domain/escalation.py) when absent",
    )


# --- importing a catalogue file (`ops catalogue import`) ------------------------------------------
class ImportRowError(Frozen):
    """One rule a row of an imported file breaks: the row (CSV: the line, header = 1; JSON: the
    entry's position, from 1), the column or field, and the rule."""

    row: int = Field(ge=1)
    code: str | None = None
    field: str
    rule: str

    def __str__(self) -> str:
        where = f"row {self.row}" + (f" ({self.code})" if self.code else "")
        return f"{where}: {self.field}: {self.rule}"


class ChangeKind(StrEnum):
    NEW = "new"  # a code the catalogue did not hold: version 1
    CHANGED = "changed"  # a new version; dossiers filed under the old one keep it
    UNCHANGED = "unchanged"  # nothing recorded


class FieldChange(Frozen):
    field: str
    before: str | None
    after: str | None


class ProcedureChange(Frozen):
    code: str
    name: str
    kind: ChangeKind
    version_before: int | None
    version_after: int | None
    fields: tuple[FieldChange, ...] = ()
    # Open dossiers filed under `version_before`; they keep that version (their filing carries
    # the whole procedure as it was), only new dossiers get `version_after`.
    dossiers_in_flight: int = 0


class ImportPlan(Frozen):
    """What an import would record: one change per row of the file, in file order."""

    file: str
    changes: tuple[ProcedureChange, ...]

    @property
    def to_record(self) -> tuple[ProcedureChange, ...]:
        return tuple(c for c in self.changes if c.kind is not ChangeKind.UNCHANGED)
