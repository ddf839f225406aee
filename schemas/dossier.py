"""A dossier as filed, as it moves, and as it ends."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from schemas.catalogue import DeliveryChannel, Procedure, Tier, Unit
from schemas.citizen_id import CITIZEN_ID_PATTERN, citizen_id_problem
from schemas.formats import Name, ProcedureCode, UnitCode
from schemas.statuses import Action, DossierStatus, Lane, Outcome, Role, Stage


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntakeChannel(StrEnum):
    COUNTER = "counter"  # KenhThucHien 1
    ONLINE = "online"  # KenhThucHien 2
    POST = "post"  # KenhThucHien 3


class ApplicantKind(StrEnum):
    CITIZEN = "citizen"  # LoaiDoiTuong 1
    BUSINESS = "business"  # 2
    STATE_BODY = "state_body"  # 3
    OTHER = "other"  # 4


class Applicant(Model):
    citizen_id: str = Field(
        description="Personal identification number, 12 digits",
        # Stated for clients; the validator below gives the rule a wrong one breaks.
        json_schema_extra={"pattern": CITIZEN_ID_PATTERN},
    )
    full_name: Name = Field(min_length=2, max_length=120)
    date_of_birth: date
    kind: ApplicantKind = ApplicantKind.CITIZEN
    phone: str | None = Field(default=None, pattern=r"^0[0-9]{9}$")
    email: Name | None = Field(default=None, max_length=200)
    address: Name | None = Field(default=None, max_length=300)

    @field_validator("citizen_id")
    @classmethod
    def _citizen_id(cls, value: str) -> str:
        problem = citizen_id_problem(value)
        if problem:
            raise ValueError(problem)
        return value


# A submitted document's title as the counter software sends it; the catalogue's name of the
# document (the portal's text, notes included) may be longer.
DOCUMENT_TITLE_MAX = 300


class SubmittedDocument(Model):
    kind: str = Field(pattern=r"^[a-z0-9_]+$")
    title: Name = Field(min_length=1, max_length=DOCUMENT_TITLE_MAX)
    pages: int = Field(default=1, ge=1, le=2000)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class DossierSubmission(Model):
    """What the counter or the portal sends when a citizen files a dossier."""

    procedure_code: ProcedureCode
    receiving_unit: UnitCode = Field(description="Unit code of the counter that took the dossier")
    competent_unit: UnitCode | None = Field(
        default=None,
        description="Ward-tier only: the ward that decides (residence, land location). "
        "Defaults to the receiving unit; city-tier procedures go to their department.",
    )
    intake_channel: IntakeChannel = IntakeChannel.COUNTER
    delivery_channel: DeliveryChannel = DeliveryChannel.COUNTER
    applicant: Applicant
    documents: list[SubmittedDocument] = Field(min_length=1, max_length=200)
    subject_reference: Name | None = Field(
        default=None,
        max_length=64,
        description="What the registries look up besides the applicant: parcel id, "
        "business code or civil-status record id",
    )
    copies: int = Field(default=1, ge=1, le=100, description="Certification: copies requested")
    received_at: AwareDatetime | None = Field(
        default=None, description="When the counter took the dossier; now when absent"
    )


class DossierFiling(Model):
    """The dossier workflow's input: the submission, resolved against the catalogue."""

    code: str
    submission: DossierSubmission
    procedure: Procedure  # the version filed under, kept for the dossier's whole life
    receiving_unit: Unit
    competent_unit: Unit
    received_at: AwareDatetime


# The officer identity the signing service accepts as a signer (its certificate's subject and
# a safe file name): the API, the workflows, the activities and the signing simulator all
# use this one rule, so an officer the API accepts can sign (`Lê Hoa` is a name, not an id).
OFFICER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class Officer(Model):
    """Who performs a human step: checked by the step's validator, kept in the timeline."""

    officer_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=OFFICER_ID_PATTERN,
        description="Letters, digits, '.', '_' and '-', starting with a letter or digit",
    )
    full_name: Name = Field(min_length=1, max_length=120)
    role: Role
    unit: UnitCode


class Appointment(Model):
    """The receipt and appointment slip (Circular 01/2018 form 01) or a new appointment."""

    received_at: AwareDatetime
    due_at: AwareDatetime


class AwaitedAction(Model):
    """A human step the dossier waits for: the officers' inbox reads these."""

    action: Action
    role: Role
    unit: str
    since: AwareDatetime
    claimed_by: str | None = Field(
        default=None,
        description="The officer who holds the task: nobody else may take the step until they "
        "release it or the unit's leader reassigns it",
    )
    claimed_at: AwareDatetime | None = Field(default=None, description="Since when they hold it")
    delegated_to: str | None = Field(
        default=None,
        description="A leader's task handed to a deputy of the unit, who may take the step "
        "in the leader's place (ký thay)",
    )
    escalated_at: AwareDatetime | None = Field(
        default=None,
        description="When the task, waiting past its unit's threshold, went to the unit's leader",
    )


class TimelineEntry(Model):
    at: AwareDatetime
    status: DossierStatus
    step: str
    actor: str = Field(description="officer id, 'citizen', 'system' or an operator")
    note: str = ""
    due_at: AwareDatetime | None = None
    awaiting: list[AwaitedAction] = Field(
        default_factory=list, description="The human steps awaited once this step was taken"
    )


class ClockState(Model):
    due_at: AwareDatetime
    running: bool = True
    paused_working_seconds: int = 0
    warned: bool = False
    apologized: bool = False
    overdue: bool = False


class DossierView(Model):
    """The answer to the `status` query."""

    code: str
    procedure_code: str
    procedure_version: int
    receiving_unit: str
    competent_unit: str
    tier: Tier
    lane: Lane
    stage: Stage
    status: DossierStatus
    portal_status_code: int
    received_at: AwareDatetime
    applicant_ref: str = Field(description="The citizen ID, masked")
    intake_channel: IntakeChannel = Field(
        default=IntakeChannel.COUNTER, description="How the citizen filed the dossier"
    )
    clock: ClockState | None
    awaiting: list[AwaitedAction]
    handled_by: str = Field(description="Workflow id that takes the current human step")
    outcome: Outcome | None = None
    result_ready_at: AwareDatetime | None = None
    closed_at: AwareDatetime | None = None
    on_time: bool | None = None
    reason: str | None = None
