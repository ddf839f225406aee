"""Human steps: each is a Temporal Update whose validator checks role, unit and state."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.dossier import Officer, SubmittedDocument
from schemas.formats import FreeText, Name
from schemas.statuses import Action, DossierStatus

__all__ = ["Action"]  # where the routes and workflows have always imported it from


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    officer: Officer


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
    """An officer takes the task awaited from their role at their unit, so colleagues see it
    is being handled."""


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
