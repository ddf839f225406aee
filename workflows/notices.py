"""Notices to citizens and units, sent by the notify lane."""

from __future__ import annotations

from temporalio import workflow

from schemas.catalogue import Unit
from schemas.dossier import DossierFiling
from schemas.exchanges import Notification, NotificationChannel
from workflows.policies import REGISTRY_CALL, TRANSIENT

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from domain import lanes


def to_applicant(filing: DossierFiling, template: str, text: str) -> Notification:
    applicant = filing.submission.applicant
    return Notification(
        dossier_code=filing.code,
        recipient=applicant.phone or applicant.email or applicant.citizen_id,
        channel=NotificationChannel.SMS if applicant.phone else NotificationChannel.EMAIL,
        template=template,
        text=text,
    )


def to_unit(filing: DossierFiling, unit: Unit, template: str, text: str) -> Notification:
    """To the unit's leaders' mailbox: the inbox shows it too, this is the push."""
    return Notification(
        dossier_code=filing.code,
        recipient=f"leaders@{unit.code}",
        channel=NotificationChannel.EMAIL,
        template=template,
        text=text,
    )


async def send(notification: Notification) -> None:
    await workflow.execute_activity_method(
        NotifyActivities.notify,
        notification,
        task_queue=lanes.NOTIFY,
        start_to_close_timeout=REGISTRY_CALL,
        retry_policy=TRANSIENT,
    )
