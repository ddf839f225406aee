"""The words of a dossier's life that every reader shares: its timeline steps and their audit
event types, the lane's progress signal, the decisions, which workflow takes which human step,
and when the national portal hears of a change.

The workflows write these words into histories, the read model and the audit chain; ops,
exports, the demo and the benchmark read them back. Changing a value changes what running
dossiers and recorded histories say: add words, never rename one.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from schemas.actions import Action
from schemas.statuses import DossierStatus, Outcome

# The signal a lane sends its dossier workflow with each step it takes.
PROGRESS_SIGNAL = "progress"


class TimelineStep(StrEnum):
    """A step of the timeline. Its audit event type is `event_type_of(step)`."""

    # Intake at the receiving unit (Decree 61/2018 arts. 17-18).
    RECEIPT = "receipt and appointment slip"
    # An incomplete dossier at intake: the supplement request (Circular 01/2018 form 02) and
    # the citizen's supplement; no receipt and no clock in between.
    INTAKE_SUPPLEMENT_REQUESTED = "intake supplement requested"
    INTAKE_SUPPLEMENT_RECEIVED = "intake supplement received"
    # The population registry does not answer: at the counter, the chip ID card checked in
    # person; the registry's check when it is back, and a mismatch flagged to the leader.
    IDENTITY_REGISTRY_UNANSWERED = "identity registry not answering"
    IDENTITY_CHECKED_IN_PERSON = "identity checked in person"
    IDENTITY_CONFIRMED_BY_REGISTRY = "identity confirmed by the registry"
    IDENTITY_MISMATCH_FLAGGED = "identity mismatch flagged to the leader"
    TRANSFERRED = "transferred"
    # The competent unit's lane.
    REGISTRIES_CONSULTED = "registries consulted"
    APPRAISED = "appraised"
    SUPPLEMENT_REQUESTED = "supplement requested"
    SUPPLEMENT_RECEIVED = "supplement received"
    AWAITING_CERTIFICATION = "awaiting certification"
    CERTIFIED = "certified"
    APPROVED = "approved"
    E_SIGNATURE_REFUSED = "e-signature refused"
    SIGNED_ON_PAPER = "signed on paper"
    FEES_REQUESTED = "fees requested"
    FEES_PAID = "fees paid"
    CLAIMED = "claimed"
    # Who holds a task: given back, moved by the unit's leader, handed to a deputy, or sent up
    # to the leader after waiting past the unit's threshold.
    RELEASED = "released"
    REASSIGNED = "reassigned"
    DELEGATED = "delegated"
    ESCALATED = "escalated"
    # The legal clock (Decree 61/2018 art. 19).
    NEAR_DUE_WARNING = "near-due warning"
    APOLOGY_SLIP = "apology slip"
    OVERDUE = "overdue"
    # Return at the receiving unit (art. 20) and the end.
    RESULT_AT_RECEIVING_UNIT = "result at the receiving unit"
    RESULT_RETURNED = "result returned"
    PORTAL_SYNC_REFUSED = "portal sync refused"


def closed_step(outcome: Outcome) -> str:
    """The last step of every timeline: `closed: approved`, `closed: withdrawn`, ..."""
    return f"closed: {outcome.value}"


def event_type_of(step: str) -> str:
    """A timeline step's stable audit event type: `apology slip` -> `apology_slip`."""
    return re.sub(r"[^a-z0-9]+", "_", step.lower()).strip("_")[:64]


# The human steps that decide a dossier: withdrawal is possible only before one of them.
DECISIONS = frozenset({Action.APPROVE, Action.REFUSE, Action.CERTIFY})


class Holder(StrEnum):
    """Which workflow takes a human step (the update goes to it)."""

    DOSSIER = "dossier"  # intake and return, at the receiving unit
    LANE = "lane"  # while the competent unit works on the dossier
    CURRENT = "current"  # whichever holds the dossier now: ask the dossier workflow


HOLDER: dict[Action, Holder] = {
    Action.APPRAISE: Holder.LANE,
    Action.REQUEST_SUPPLEMENT: Holder.LANE,
    # At intake the dossier workflow takes it (an incomplete dossier), later the lane.
    Action.PROVIDE_SUPPLEMENT: Holder.CURRENT,
    Action.APPROVE: Holder.LANE,
    Action.REFUSE: Holder.LANE,
    Action.CERTIFY: Holder.LANE,
    Action.CLAIM: Holder.LANE,
    Action.RELEASE: Holder.LANE,
    Action.REASSIGN: Holder.LANE,
    Action.DELEGATE: Holder.LANE,
    Action.RECORD_WET_SIGNATURE: Holder.LANE,
    Action.HAND_OVER: Holder.DOSSIER,
    Action.CHECK_IDENTITY_IN_PERSON: Holder.DOSSIER,
    Action.WITHDRAW: Holder.CURRENT,
}

PortalState = tuple[DossierStatus, datetime | None]


def portal_sync_needed(
    step: str, status: DossierStatus, due_at: datetime | None, last_synced: PortalState | None
) -> bool:
    """The national portal hears of a step when the status or the appointment changed since
    the last sync; the steps about the portal itself are never synced back to it."""
    return step != TimelineStep.PORTAL_SYNC_REFUSED and last_synced != (status, due_at)
