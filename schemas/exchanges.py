"""Inputs and outputs of activities: what crosses from workflows to the outside world."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.catalogue import Deadline, Registry
from schemas.dossier import DossierView, Officer, TimelineEntry
from schemas.statuses import DossierStatus


class Exchange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- population registry -------------------------------------------------------------------
class IdentityCheck(Exchange):
    dossier_code: str
    citizen_id: str
    full_name: str
    date_of_birth: date


class IdentityResult(Exchange):
    matched: bool
    mismatches: tuple[str, ...] = ()


# --- civil status, land, business registries -------------------------------------------------
class RegistryConsultation(Exchange):
    dossier_code: str
    registry: Registry
    subject_reference: str | None
    citizen_id: str


class RegistryFinding(Exchange):
    """What one registry said about the dossier: the specialist reads it while appraising."""

    registry: Registry
    found: bool
    summary: str


# --- national portal -------------------------------------------------------------------------
class PortalDocument(Exchange):
    """A document the applicant filed (TaiLieuNop)."""

    kind: str  # MaThanhPhanHoSo: the catalogue's document kind
    title: str  # TenTepDinhKem
    sha256: str | None = None  # TepDinhKemId


class PortalFee(Exchange):
    """A fee of the dossier (DanhSachLePhi) and whether it was paid."""

    name: str  # TenPhiLePhi
    code: str  # MaPhiLePhi
    amount_vnd: int = Field(ge=0)  # Gia
    paid: bool = False


class PortalSupplement(Exchange):
    """One return for a supplement (DanhSachHoSoBoSung)."""

    number: int = Field(ge=1)  # HoSoBoSungId
    requested_by: str  # NguoiYeuCauBoSung
    content: str  # NoiDungBoSung
    requested_at: AwareDatetime  # NgayBoSung
    received_by: str | None = None  # NguoiTiepNhanBoSung
    received_at: AwareDatetime | None = None  # NgayTiepNhanBoSung
    due_before: AwareDatetime | None = None  # NgayHenTraTruoc
    due_after: AwareDatetime | None = None  # NgayHenTraMoi


class PortalResult(Exchange):
    """A result document (DanhSachGiayToKetQua)."""

    kind: str  # TenGiayTo / MaGiayToKetQua
    sha256: str  # GiayToId


class PortalProgress(Exchange):
    """One step of the dossier's processing (QuaTrinhXuLy), sent once."""

    actor: str  # NguoiXuLy
    at: AwareDatetime  # ThoiDiemXuLy
    step: str  # NoiDungXuLy
    status_code: int = Field(ge=1, le=10)  # TrangThai
    due_at: AwareDatetime | None = None  # NgayKetThucTheoQuyDinh


class PortalSync(Exchange):
    dossier_code: str
    procedure_code: str
    status_code: int = Field(ge=1, le=10)
    received_at: AwareDatetime
    due_at: AwareDatetime | None
    # The deciding unit's slug, kept for readers; the portal gets its agency code.
    processing_unit: str
    intake_channel: int = Field(ge=1, le=3)
    step: str
    actor: str
    at: AwareDatetime
    returned_at: AwareDatetime | None = None
    # What the provincial one-stop systems send besides the status (defaults: syncs scheduled
    # before these fields existed still run).
    procedure_name: str = ""
    procedure_field: str = ""
    agency_code: str = ""  # DonViXuLy: the deciding unit's agency code
    receiving_agency_code: str = ""
    applicant_name: str = ""  # ChuHoSo
    applicant_id: str = ""  # SoGiayToChuHoSo
    applicant_type: int = Field(default=1, ge=1, le=4)  # LoaiDoiTuong
    applicant_phone: str | None = None
    applicant_email: str | None = None
    documents: tuple[PortalDocument, ...] = ()
    fees: tuple[PortalFee, ...] = ()
    supplements: tuple[PortalSupplement, ...] = ()
    results: tuple[PortalResult, ...] = ()
    # The steps since the previous sync, this one's included: over the dossier's syncs, one
    # row per step.
    progress: tuple[PortalProgress, ...] = ()


# --- notifications and post ------------------------------------------------------------------
class NotificationChannel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    ZALO = "zalo"


class Notification(Exchange):
    dossier_code: str
    recipient: str
    channel: NotificationChannel
    template: str
    text: str


class PostOrder(Exchange):
    dossier_code: str
    recipient_name: str
    address: str
    item: str


class PostReceipt(Exchange):
    tracking_number: str


# --- fees ------------------------------------------------------------------------------------
class FeeRequest(Exchange):
    dossier_code: str
    amount_vnd: int = Field(gt=0)
    payer_citizen_id: str
    description: str


class FeeReceipt(Exchange):
    payment_id: str
    amount_vnd: int
    paid_at: AwareDatetime


# --- results and e-signature -----------------------------------------------------------------
class ResultKind(StrEnum):
    DECISION = "decision"  # the result the procedure grants
    CERTIFIED_COPY = "certified_copy"
    REFUSAL_NOTICE = "refusal_notice"  # Circular 01/2018 form 03
    APOLOGY_SLIP = "apology_slip"  # form 04: apology and new appointment


class ResultDraft(Exchange):
    dossier_code: str
    kind: ResultKind
    procedure_code: str
    procedure_name: str
    applicant_name: str
    competent_unit: str
    decided_by: Officer
    decided_at: AwareDatetime
    text: str


class Signature(Exchange):
    """A remote e-signature over the SHA-256 of the document, with the signer's certificate."""

    signature_b64: str
    certificate_pem: str
    algorithm: str
    signer_id: str
    signed_at: AwareDatetime


class IssueRequest(Exchange):
    draft: ResultDraft
    e_sign: bool


class WetInkSignature(Exchange):
    """A result signed on paper when it could not be e-signed (the signing service refused,
    or the officer has no usable certificate): who signed, when, and the scanned signed
    document's SHA-256, recorded by the leader."""

    signed_by: Officer
    signed_at: AwareDatetime
    scan_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    why: str = Field(description="Why it was not e-signed")


class IssuedDocument(Exchange):
    dossier_code: str
    kind: ResultKind
    path: str = Field(description="Where the document is kept, under DATA_DIR/results")
    sha256: str
    signature: Signature | None = Field(description="None where the procedure signs on paper")
    wet_ink: WetInkSignature | None = Field(
        default=None, description="The paper signature, where e-signing was refused"
    )


# --- the legal clock (local activities: the calendar's data may change between deploys,
# so its answers are recorded in history instead of recomputed on replay) -------------------
class DueRequest(Exchange):
    received_at: AwareDatetime
    deadline: Deadline


class ClockMarks(Exchange):
    """When to warn and when to apologise, for one appointment."""

    warn_at: AwareDatetime
    apologize_at: AwareDatetime


class MarksRequest(Exchange):
    received_at: AwareDatetime
    due_at: AwareDatetime
    deadline: Deadline


class ShiftRequest(Exchange):
    start: AwareDatetime
    end: AwareDatetime | None = None
    working_seconds: int = 0


# --- the read model and the audit log ----------------------------------------------------------
class OutboxMessages(Exchange):
    """What only informs the outside world, caused by one step: written into the outbox in
    the step's own transaction, delivered after it by the outbox's drainer."""

    portal_sync: PortalSync | None = None
    notifications: tuple[Notification, ...] = ()
    webhooks: bool = Field(
        default=False,
        description="A status change: one webhook per active subscription of the dossier's "
        "receiving or competent unit, as they are when the step is written",
    )


class ProjectionRecord(Exchange):
    """One timeline step to write: the audit event, the dossier's row and its inbox tasks, and
    the messages the step sends out."""

    event_key: str = Field(description="run id and timeline index: the same step, the same key")
    event_type: str
    view: DossierView
    timeline: list[TimelineEntry]
    outbox: OutboxMessages = OutboxMessages()


class ProjectionReceipt(Exchange):
    """Recorded in the workflow's history, so auditors can match each audit event to it."""

    event_key: str
    seq: int
    payload_digest: str
    at: AwareDatetime | None = Field(
        default=None,
        description="The step's time as the audit event holds it; the timeline takes it from "
        "here, so a replay tells the time the audit log tells",
    )
    subscribers: int = Field(
        default=0, description="Webhook subscriptions of the dossier's units at this step"
    )


class WebhookEvent(Exchange):
    """A status change as integrators receive it; `event_id` is stable across redeliveries and
    `sequence` is the step's position in the dossier's log (increasing per dossier)."""

    event_id: str
    sequence: int = Field(default=0, ge=0, description="0: sent before the outbox")
    dossier_code: str
    procedure_code: str
    status: DossierStatus
    portal_status_code: int
    step: str
    at: AwareDatetime
    due_at: AwareDatetime | None
    receiving_unit: str
    competent_unit: str


# --- the archive ------------------------------------------------------------------------------
class ArchivePass(Exchange):
    """One pass of the archiver: the closed runs it copied and what is still waiting."""

    archived: int = Field(description="Closed workflow runs copied in this pass")
    already_archived: int = Field(description="Closed runs listed that were already copied")
    pending_dossiers: int = Field(
        description="Dossiers closed in the read model whose own history is not archived yet"
    )
    oldest_pending_closed_at: AwareDatetime | None = None
