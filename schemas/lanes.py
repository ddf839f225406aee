"""What the dossier workflow and its processing lanes say to each other, and how a dossier ends."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from schemas.dossier import ClockState, DossierFiling, Model, TimelineEntry
from schemas.exchanges import IssuedDocument, RegistryFinding
from schemas.statuses import DossierStatus, Outcome


class LaneJob(Model):
    """Input of a processing lane's child workflow."""

    filing: DossierFiling
    clock: ClockState


class ProgressEvent(Model):
    """A lane tells the dossier what happened, so that the dossier's status, search attributes,
    timeline and the portal stay current while the lane works."""

    entry: TimelineEntry
    clock: ClockState


class LaneResult(Model):
    outcome: Outcome
    clock: ClockState
    decided_at: AwareDatetime
    reason: str | None = None
    findings: list[RegistryFinding] = Field(default_factory=list)
    documents: list[IssuedDocument] = Field(default_factory=list)
    fee_paid_vnd: int = 0


class DossierResult(Model):
    """What the dossier workflow returns when it closes."""

    code: str
    outcome: Outcome
    status: DossierStatus
    received_at: AwareDatetime
    due_at: AwareDatetime | None
    result_ready_at: AwareDatetime | None
    closed_at: AwareDatetime
    on_time: bool | None
    apologized: bool
    reason: str | None = None
    documents: list[IssuedDocument] = Field(default_factory=list)
