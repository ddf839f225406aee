"""Human steps: each is a Temporal Update whose validator checks role, unit and state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.dossier import OFFICER_ID_PATTERN, Officer, SubmittedDocument
from schemas.formats import FreeText, Name, UnitCode
from schemas.statuses import Action, DossierStatus

__all__ = ["Action"]  # where the routes and workflows have always imported it from


class SharingGrant(BaseModel):
    """A leader opened unit `unit`'s certification lane to `neighbour`'s certifiers until
    `until` (a surge: Hà Đông split certification off its counter). The engine resolves it
    from its record when a neighbour's certifier acts, and the step carries it, so the lane's
    validator checks it without reading the database and the timeline records it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grant_id: int
    unit: str
    neighbour: str
    opened_by: str
    opened_at: AwareDatetime
    until: AwareDatetime

    def covers(self, unit: str, neighbour: str, at: datetime) -> bool:
        return (
            self.unit == unit and self.neighbour == neighbour and self.opened_at <= at < self.until
        )


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    officer: Officer
    acting_for: SharingGrant | None = Field(
        default=None,
        description="Set by the engine when a neighbouring unit's certifier acts under an open "
        "sharing of the dossier's certification lane; what a client sends here is replaced",
    )


class Withdrawal(Step):
    """Decree 118/2025 art. 21: before a decision, the citizen may withdraw; the counter
    officer of the receiving unit records the request."""

    reason: FreeText = Field(min_length=3, max_length=500)


class Recommendation(StrEnum):
    APPROVE = "approve"
    REFUSE = "refuse"


class Appraisal(Step):
    recommendation: Recommendation
    note: FreeText = Field(default="", max_length=2000)


class SupplementRequest(Step):
    """Circular 01/2018 form 02: everything missing is listed at once."""

    missing: list[Name] = Field(min_length=1, max_length=50)
    note: FreeText = Field(default="", max_length=2000)


class Supplement(Step):
    documents: list[SubmittedDocument] = Field(min_length=1, max_length=200)


class Approval(Step):
    note: FreeText = Field(default="", max_length=2000)


class Refusal(Step):
    """Circular 01/2018 form 03: a refusal always states its reason."""

    reason: FreeText = Field(min_length=10, max_length=2000)


class Certification(Step):
    note: FreeText = Field(default="", max_length=2000)


class Claim(Step):
    """An officer takes the task awaited from their role at their unit: from then on only
    they may take its step, until they release it or the unit's leader reassigns it."""


class ReleaseReason(StrEnum):
    """Why a holder gives a task back to the unit's inbox."""

    ABSENT = "absent"  # leave, sickness, a mission out of the office
    WORKLOAD = "workload"  # more than they can handle in time
    CONFLICT_OF_INTEREST = "conflict_of_interest"  # they may not decide this dossier
    WRONG_TASK = "wrong_task"  # claimed by mistake
    OTHER = "other"  # said in the note


class Release(Step):
    """The holder gives the task back: any officer of the role at the unit may claim it."""

    reason: ReleaseReason
    note: str = Field(default="", max_length=500)


class ReassignReason(StrEnum):
    """Why the unit's leader moves a task to another officer."""

    ASSIGNMENT = "assignment"  # the head assigns the dossier to a specialist (art. 19)
    ABSENT = "absent"
    WORKLOAD = "workload"
    CONFLICT_OF_INTEREST = "conflict_of_interest"
    ESCALATED = "escalated"  # the task waited past the unit's threshold
    OTHER = "other"


OfficerId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=OFFICER_ID_PATTERN,
        description="The officer id of the one who takes the task",
    ),
]


class Reassignment(Step):
    """The unit's leader gives a task (claimed or not) to another officer of its role."""

    task: Action = Field(description="The awaited step, e.g. appraise")
    to: OfficerId
    reason: ReassignReason
    note: str = Field(default="", max_length=500)


class Delegation(Step):
    """The unit's leader hands a task that awaits the leader (approve or refuse, certify,
    sign on paper) to a deputy of the unit, who takes the step in the leader's place."""

    task: Action = Field(description="The awaited step, e.g. approve")
    to: OfficerId
    reason: ReassignReason
    note: str = Field(default="", max_length=500)


class HandOver(Step):
    """Art. 31: one satisfaction rating per dossier, taken when the result is handed over."""

    rating: int | None = Field(
        default=None, ge=1, le=3, description="1 unsatisfied .. 3 very satisfied"
    )


class Acknowledgement(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    accepted_at: AwareDatetime
    status: DossierStatus


class WetSignature(Step):
    """The result could not be e-signed: the leader signed it on paper and records who signed,
    when, and the SHA-256 of the scanned signed document."""

    signed_at: AwareDatetime
    scan_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="lowercase hex SHA-256")


class IdentityDocument(StrEnum):
    """What the counter officer checked the applicant against, in person."""

    # Căn cước / CCCD gắn chíp: the chip read at the counter (NFC reader or the VNeID
    # verification app) and the photo compared with the person at the counter.
    CHIP_ID_CARD = "chip_id_card"


class IdentityCheckMethod(StrEnum):
    """How the officer checked the card."""

    CHIP_READ = "chip_read"  # the chip's signed data read at the counter
    VISUAL = "visual"  # the printed card examined and compared by sight


class InPersonIdentityCheck(Step):
    """The population registry cannot answer: the counter officer receives the dossier on the
    applicant's chip ID card, checked in person. The registry check still runs when the
    registry is back; a mismatch is flagged to the unit's leader."""

    document: IdentityDocument = IdentityDocument.CHIP_ID_CARD
    method: IdentityCheckMethod
    note: FreeText = Field(default="", max_length=500)


class SharingOpening(BaseModel):
    """A unit's leader opens its certification lane to neighbouring wards' certifiers for a
    period (a surge): while open they see its certification tasks and may claim and certify
    them, for the unit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    officer: Officer
    neighbours: list[UnitCode] = Field(
        min_length=1, max_length=12, description="Unit codes of the wards or communes helping"
    )
    until: AwareDatetime = Field(description="When the sharing ends, at the latest")
    reason: FreeText = Field(min_length=10, max_length=500)


class SharingClosing(BaseModel):
    """The unit's leader ends the sharing early (all neighbours, or those named)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    officer: Officer
    neighbours: list[UnitCode] = Field(
        default_factory=list, max_length=12, description="Only these; every neighbour when empty"
    )
    reason: FreeText = Field(min_length=3, max_length=500)
